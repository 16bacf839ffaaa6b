"""The read poller: one task reads every established connection (gateway/reads.py).

Real sockets throughout: socket pairs for the poller alone, and a real gateway for the guarantee that
matters most, that a failure while handling one connection's bytes ends that connection and no other.
"""

from __future__ import annotations

import gc
import socket

import pytest
import trio

from gateway.connection import GatewayConnection
from gateway.reads import ReadPoller
from protocol import events
from protocol.codes import ErrorCode
from tests.harness import Gateway, RawClient, start_gateway


@pytest.fixture
async def gw(nursery: trio.Nursery, tmp_path) -> Gateway:
    return await start_gateway(nursery, tmp_path)


async def test_only_ready_sockets_are_read_and_a_removed_one_never_again() -> None:
    pairs = [socket.socketpair() for _ in range(3)]
    calls: list[int] = []
    both_read = trio.Event()
    with ReadPoller() as reads:

        def reader(index: int):
            def on_readable() -> None:
                calls.append(index)
                pairs[index][0].recv(100)
                if index == 0:
                    reads.remove(pairs[2][0].fileno())  # ready in this same pass: must not be called
                if {0, 1} <= set(calls):
                    both_read.set()

            return on_readable

        for index, (ours, _theirs) in enumerate(pairs):
            ours.setblocking(False)
            reads.add(ours.fileno(), reader(index))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reads.run)
            pairs[1][1].send(b"x")
            pairs[2][1].send(b"x")  # read in the pass that also reads pair 1, unless removed first
            pairs[0][1].send(b"x")
            with trio.fail_after(5):
                await both_read.wait()
            nursery.cancel_scope.cancel()
    assert 1 in calls and 0 in calls
    assert calls.count(1) == 1 and calls.count(0) == 1
    # Pair 2 may have been read before pair 0 removed it in the same pass, but never after.
    assert calls.count(2) <= 1 and (2 not in calls or calls.index(2) < calls.index(0))
    reads.remove(pairs[1][0].fileno())  # after close: a no-op, not an error
    for ours, theirs in pairs:
        ours.close()
        theirs.close()


async def test_a_failure_handling_one_connections_bytes_ends_only_that_connection(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = GatewayConnection._handle

    def failing_for_mallory(self: GatewayConnection, received, nursery):  # noqa: ANN001, ANN202
        if self.user_id == "mallory" and self._reading is not None:  # only what the poller read
            raise RuntimeError("a bug")
        return handle(self, received, nursery)

    monkeypatch.setattr(GatewayConnection, "_handle", failing_for_mallory)
    for user_id in ("alice", "bob", "mallory"):
        await gw.user(user_id)
    with trio.fail_after(10):
        alice = await RawClient.connected(gw, await gw.token("alice", "alice-phone"))
        mallory = await RawClient.connected(gw, await gw.token("mallory", "mallory-phone"))
        await mallory.send(mallory.proto.ping())  # the first read is the connection task's own
        assert isinstance(await mallory.next_event(), events.Pong)
        await mallory.send(mallory.proto.ping())  # then the poller reads
        assert await mallory.closed_by_server()
        await mallory.aclose()
        _, frame = alice.proto.request(
            "send_message", {"conv": {"type": 0, "target": "bob"}, "content": {"type": 1, "content": "hi"}}
        )
        await alice.send(frame)
        answer = await alice.next_event()
        assert isinstance(answer, events.Response) and answer.code == ErrorCode.SUCCESS, answer
        await alice.aclose()


async def test_an_ended_connection_is_freed_at_once_not_by_the_cycle_collector(gw: Gateway) -> None:
    """No reference cycle through a connection: ended ones go by reference counting.

    A cycle (the outbox holding a bound method of its connection) kept every ended connection until the
    cyclic collector ran: ~20 % more CPU per handshake, and its pauses in the handshake p99.
    """
    await gw.user("alice")
    token = await gw.token("alice")
    gc.collect()
    gc.disable()
    before = {
        id(obj) for obj in gc.get_objects() if isinstance(obj, GatewayConnection)
    }  # other tests' leftovers
    try:
        with trio.fail_after(10):
            for _ in range(10):
                client = await RawClient.connected(gw, token)
                await client.send(client.proto.ping())  # the task's own read
                assert isinstance(await client.next_event(), events.Pong)
                await client.send(client.proto.ping())  # the poller's
                assert isinstance(await client.next_event(), events.Pong)
                await client.send(client.proto.disconnect())
                assert await client.closed_by_server()
                await client.aclose()
            await gw.services.store.inbox_head("alice")  # a storage round trip: the last one has ended
        alive = [
            obj for obj in gc.get_objects() if isinstance(obj, GatewayConnection) and id(obj) not in before
        ]
        assert len(alive) <= 1, f"{len(alive)} ended connections still alive"
    finally:
        gc.enable()
