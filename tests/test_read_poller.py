"""The read poller's level-triggered set cannot spin on a stale registration.

The stale registration is made the one way it can happen: a socket closed before ``remove`` while
a duplicate of its descriptor keeps the file open, so epoll goes on reporting the closed number.
Without the poller's repair, ``wait_readable`` would return at once forever and
``wait_all_tasks_blocked`` below would never return (the test then fails on its deadline).
"""

from __future__ import annotations

import os
import socket

import pytest
import trio
import trio.testing

from gateway.reads import HAVE_EPOLL, ReadPoller

pytestmark = pytest.mark.skipif(not HAVE_EPOLL, reason="the read poller needs epoll (Linux)")


def _pair() -> tuple[socket.socket, socket.socket]:
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    return ours, peer


async def test_a_stale_registration_costs_one_pass_and_live_readers_keep_working() -> None:
    got: dict[str, list[bytes]] = {"live": [], "late": []}
    live, live_peer = _pair()
    stale, stale_peer = _pair()
    late, late_peer = _pair()
    keep_open = os.dup(stale.fileno())  # the file outlives the descriptor the poller knows
    try:
        with trio.fail_after(10), ReadPoller() as poller:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(poller.run)
                poller.add(live.fileno(), lambda: got["live"].append(live.recv(100)))
                poller.add(stale.fileno(), lambda: pytest.fail("a removed socket's reader was called"))
                stale_fd = stale.fileno()
                stale.close()  # closed while registered: the bug this guards against
                poller.remove(stale_fd)  # too late for epoll_ctl(DEL): the number is gone
                await trio.testing.wait_all_tasks_blocked()
                passes_before = poller.passes

                stale_peer.send(b"nobody reads this")  # the stale registration becomes ready, and stays so
                await trio.testing.wait_all_tasks_blocked()  # never returns if the poller spins
                assert poller.rebuilds == 1
                assert poller.passes - passes_before == 1

                live_peer.send(b"still here")  # the rebuilt set kept the live reader
                await trio.testing.wait_all_tasks_blocked()
                assert got["live"] == [b"still here"]

                poller.add(late.fileno(), lambda: got["late"].append(late.recv(100)))  # and takes new ones
                late_peer.send(b"joined after")
                await trio.testing.wait_all_tasks_blocked()
                assert got["late"] == [b"joined after"]
                assert poller.rebuilds == 1
                nursery.cancel_scope.cancel()
    finally:
        os.close(keep_open)
        for sock in (live, live_peer, stale_peer, late, late_peer):
            sock.close()


async def test_a_reader_removed_earlier_in_the_same_pass_is_not_taken_for_stale() -> None:
    first, first_peer = _pair()
    second, second_peer = _pair()
    calls: list[str] = []
    try:
        with trio.fail_after(10), ReadPoller() as poller:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(poller.run)

                def read_and_remove_both(name: str, sock: socket.socket) -> None:
                    calls.append(name)
                    sock.recv(100)
                    poller.remove(first.fileno())  # whichever runs first ends both, as a kick would
                    poller.remove(second.fileno())

                poller.add(first.fileno(), lambda: read_and_remove_both("first", first))
                poller.add(second.fileno(), lambda: read_and_remove_both("second", second))
                first_peer.send(b"a")
                second_peer.send(b"b")
                await trio.testing.wait_all_tasks_blocked()  # both sent before the poller ran: one batch
                assert len(calls) == 1
                assert poller.rebuilds == 0
                nursery.cancel_scope.cancel()
    finally:
        for sock in (first, first_peer, second, second_peer):
            sock.close()
