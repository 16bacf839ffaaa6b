"""Slow readers over a real gateway: the process-wide outbox budget and the per-connection bound.

Stalled readers are raw clients that complete their handshake and then never read again, with a 4 KiB
receive buffer set before connecting, so the gateway's socket to them fills after a few KiB and every later
push waits in its outbox. A sender that does read pushes 16,000-byte texts to them, one private message at a
time: when its ack arrives the push has been queued (both leave from the same commit callback), so each
backlog is known after each send. The budget is a small one (1 MiB), so the test stays short.
"""

from __future__ import annotations

import logging
import socket

import httpx
import pytest
import trio

from gateway.outbox import CUT_BUDGET, CUT_CONNECTION_BOUND
from protocol import events
from protocol.codes import ConnectionStatus
from tests.harness import Gateway, RawClient, client_for, start_gateway
from tests.test_messaging import Device
from tests.test_metrics import parse

BUDGET = 1024 * 1024
TEXT = "x" * 16000
KiB = 1024


async def stalled_reader(gw: Gateway, user: str) -> tuple[RawClient, object]:
    """A connected client that will never read again, and the gateway's connection for it."""
    await gw.user(user)
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: the window starts small
    await sock.connect((gw.host, gw.port))
    client = RawClient(trio.SocketStream(sock), client_for(await gw.token(user, f"{user}-phone")))
    ack = await client.handshake(gw.clock.now_ms())
    assert isinstance(ack, events.ConnAck) and ack.code == ConnectionStatus.CONNECTED, ack
    conn = gw.services.delivery.node.connection(user, f"{user}-phone")
    assert conn is not None
    return client, conn


class Pusher:
    """Sends texts to stalled readers and checks the budget after every one."""

    def __init__(self, gw: Gateway, sender: Device) -> None:
        self.gw, self.sender = gw, sender
        self.largest_write = 0  # the largest growth of one backlog by one push: one frame

    @property
    def total(self) -> int:
        return self.gw.services.outbox_budget.total_bytes

    async def push(self, user: str, conn) -> None:
        before = conn.outbox_backlog_bytes
        assert (await self.sender.send_text(user, TEXT)).code == 0
        if before and conn._outbox.cut_reason is None:
            self.largest_write = max(self.largest_write, conn.outbox_backlog_bytes - before)
        assert self.total <= BUDGET  # once a write has returned, the total is within the budget again

    async def until_backlog(self, user: str, conn, at_least: int) -> None:
        while conn.outbox_backlog_bytes < at_least:
            await self.push(user, conn)
            assert conn._outbox.cut_reason is None


async def gone(gw: Gateway, user: str) -> None:
    """Until the gateway has unregistered the user's connection (its task logs the cut before that)."""
    with trio.fail_after(5):
        while gw.services.delivery.node.connections(user):  # noqa: ASYNC110 - the router has no event to wait on
            await trio.sleep(0.005)


def cut_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("slow reader cut off")]


def summary_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("slow readers cut off")]


async def metrics(gw: Gateway) -> dict[str, float]:
    async with httpx.AsyncClient() as http:
        return parse((await http.get(gw.running.admin_url + "/metrics")).text)


async def test_over_the_budget_the_largest_backlogs_are_cut_first_and_the_rest_go_on(
    nursery: trio.Nursery, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ember.connection")
    gw = await start_gateway(
        nursery, tmp_path, server={"outbox_budget_bytes": BUDGET}, client={"request_rate_limit": 100_000}
    )
    for user in ("alice", "bob"):
        await gw.user(user)
    alice = await Device.connect(gw, "alice")
    bob = await Device.connect(gw, "bob")  # reads: never cut
    readers = {name: await stalled_reader(gw, name) for name in ("big", "mid", "small")}
    conns = {name: conn for name, (_, conn) in readers.items()}
    pusher = Pusher(gw, alice)

    # Three backlogs, summing to just under the budget.
    await pusher.until_backlog("big", conns["big"], 560 * KiB)
    await pusher.until_backlog("mid", conns["mid"], 280 * KiB)
    await pusher.until_backlog("small", conns["small"], 80 * KiB)
    assert pusher.total <= BUDGET

    # Pushing to the smallest takes the total past the budget: the largest is cut, not the one pushed to.
    big_backlog = conns["big"].outbox_backlog_bytes
    while conns["big"]._outbox.cut_reason is None:
        assert conns["mid"]._outbox.cut_reason is None and conns["small"]._outbox.cut_reason is None
        await pusher.push("small", conns["small"])
    assert conns["big"]._outbox.cut_reason == CUT_BUDGET
    assert conns["mid"]._outbox.cut_reason is None and conns["small"]._outbox.cut_reason is None
    await gone(gw, "big")
    lines = cut_lines(caplog)
    assert len(lines) == 1, lines
    assert f"conn={conns['big'].conn_id} user=big client=big-phone reason=budget" in lines[0]
    assert f"backlog_bytes={big_backlog}" in lines[0] and f"outbox_budget_bytes={BUDGET}" in lines[0]
    assert "unlogged_cuts_since_last_line=0" in lines[0]
    assert TEXT not in "\n".join(caplog.messages)  # ids and sizes only, never a body

    # The others go on: the one that reads gets its messages, the stalled ones are still connected.
    assert (await alice.send_text("bob", "still here")).code == 0
    assert (await bob.push()).data["message"]["content"]["searchable_content"] == "still here"
    assert gw.services.delivery.node.connections("mid") and gw.services.delivery.node.connections("small")

    # Now "mid" is the largest when the budget is passed again: it goes next. Within the same second (the
    # gateway's clock has not moved), its cut is counted but not logged.
    while conns["mid"]._outbox.cut_reason is None:
        assert conns["small"]._outbox.cut_reason is None
        await pusher.push("mid", conns["mid"])
    await gone(gw, "mid")
    assert len(cut_lines(caplog)) == 1
    # A second later (by the gateway's clock) the count of the cuts not logged is (the server asks every second).
    gw.clock.advance(1.0)
    with trio.fail_after(5):
        while not summary_lines(caplog):  # noqa: ASYNC110 - a log record has no event to wait on
            await trio.sleep(0.01)
    assert summary_lines(caplog) == ["slow readers cut off without a line of their own: 1 reason=budget"]
    # And a second after that line, a cut has a line of its own again.
    gw.clock.advance(1.0)
    while conns["small"]._outbox.cut_reason is None:
        await pusher.push("small", conns["small"])
    await gone(gw, "small")
    lines = cut_lines(caplog)
    assert len(lines) == 2 and "user=small" in lines[1] and "unlogged_cuts_since_last_line=0" in lines[1]
    assert len(summary_lines(caplog)) == 1

    # Never more than one write over the budget, at any moment.
    budget = gw.services.outbox_budget
    assert BUDGET < budget.peak_bytes <= BUDGET + pusher.largest_write
    assert 16000 < pusher.largest_write < 17000  # one push of a 16,000-byte text
    m = await metrics(gw)
    assert m['ember_outbox_cuts_total{reason="budget"}'] == 3
    assert m['ember_outbox_cuts_total{reason="connection_bound"}'] == 0
    assert m["ember_outbox_budget_bytes"] == BUDGET
    assert m["ember_outbox_queued_bytes"] == budget.total_bytes <= BUDGET
    assert gw.services.delivery.node.connections("alice") and gw.services.delivery.node.connections("bob")
    for client, _ in readers.values():
        await client.aclose()
    await alice.aclose()
    await bob.aclose()


async def test_a_reader_past_its_own_bound_is_cut_logged_and_counted(
    nursery: trio.Nursery, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ember.connection")
    bound = 256 * KiB
    gw = await start_gateway(
        nursery, tmp_path, server={"outbox_max_bytes": bound}, client={"request_rate_limit": 100_000}
    )
    await gw.user("alice")
    alice = await Device.connect(gw, "alice")
    reader, conn = await stalled_reader(gw, "slow")
    pusher = Pusher(gw, alice)
    while conn._outbox.cut_reason is None:
        await pusher.push("slow", conn)
    assert conn._outbox.cut_reason == CUT_CONNECTION_BOUND
    assert bound < conn._outbox.cut_backlog_bytes <= bound + pusher.largest_write
    await gone(gw, "slow")
    lines = cut_lines(caplog)
    assert len(lines) == 1, lines
    assert f"conn={conn.conn_id} user=slow client=slow-phone reason=connection_bound" in lines[0]
    assert f"outbox_max_bytes={bound}" in lines[0]
    m = await metrics(gw)
    assert m['ember_outbox_cuts_total{reason="connection_bound"}'] == 1
    assert m['ember_outbox_cuts_total{reason="budget"}'] == 0
    assert m["ember_outbox_queued_bytes"] == 0  # the cut outbox's bytes were released with it
    await reader.aclose()
    await alice.aclose()
