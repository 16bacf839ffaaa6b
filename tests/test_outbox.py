"""The outbox over real loopback sockets: direct writes, the writer task once the kernel is full, overflow,
and a budget shared by several outboxes."""

from __future__ import annotations

import socket

import trio

from gateway.outbox import CUT_BUDGET, CUT_CONNECTION_BOUND, Outbox, OutboxBudget, cork

CHUNK = 64 * 1024


async def socket_pair(client_receive_buffer: int | None = None) -> tuple[trio.SocketStream, trio.SocketStream]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    sock = trio.socket.socket()
    if client_receive_buffer is not None:  # before connecting: the window the server sees starts small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, client_receive_buffer)
    await sock.connect(("127.0.0.1", port))
    client = trio.SocketStream(sock)
    server = await listeners[0].accept()
    await listeners[0].aclose()
    return server, client


async def test_order_is_kept_across_direct_writes_and_the_writer_task() -> None:
    server, client = await socket_pair()
    async with trio.open_nursery() as nursery:
        outbox = Outbox(server, max_queued_bytes=64 * CHUNK)
        outbox.attach(nursery)
        # Far more than the kernel buffers hold: the tail must go through the writer task.
        chunks = [bytes([i % 256]) * CHUNK for i in range(48)]
        for chunk in chunks:
            assert outbox.send(chunk)
        assert outbox._writer_started  # the kernel filled up before the reader began
        received = bytearray()
        with trio.fail_after(10):
            while len(received) < len(chunks) * CHUNK:
                received += await client.receive_some(1 << 20)
            await outbox.drain()
        assert bytes(received) == b"".join(chunks)
        nursery.cancel_scope.cancel()
    outbox.detach()
    await server.aclose()
    await client.aclose()


async def test_a_peer_that_stops_reading_overflows_and_is_cut_off() -> None:
    server, client = await socket_pair()
    overflowed = trio.Event()
    async with trio.open_nursery() as nursery:
        outbox = Outbox(server, max_queued_bytes=8 * CHUNK, on_overflow=overflowed.set)
        outbox.attach(nursery)
        sent = 0
        with trio.fail_after(10):
            while outbox.send(b"x" * CHUNK):
                sent += 1
                await trio.lowlevel.checkpoint()  # let the writer task run, as a real server would
        assert overflowed.is_set() and outbox.overflowed and outbox.closed
        assert not outbox.send(b"more")  # refused from now on
        assert sent > 8  # the kernel took some, the queue the rest, up to its bound
        nursery.cancel_scope.cancel()
    outbox.detach()
    await server.aclose()
    await client.aclose()


async def test_cork_collects_and_writes_each_outbox_once() -> None:
    server, client = await socket_pair()
    async with trio.open_nursery() as nursery:
        outbox = Outbox(server)
        outbox.attach(nursery)
        with cork():
            for i in range(5):
                outbox.send(f"frame{i};".encode())
            assert len(outbox._held) == 5  # collected, not written, while corked
        assert outbox._held == []
        data = b""
        with trio.fail_after(5):
            while len(data) < 35:
                data += await client.receive_some(100)
        assert data == b"frame0;frame1;frame2;frame3;frame4;"
        nursery.cancel_scope.cancel()
    outbox.detach()
    await server.aclose()
    await client.aclose()


async def test_a_shared_budget_cuts_the_largest_backlog_and_a_detach_gives_its_bytes_back() -> None:
    (server_a, client_a), (server_b, client_b) = [await socket_pair(4096) for _ in range(2)]
    budget = OutboxBudget(limit_bytes=12 * CHUNK)
    cut = trio.Event()
    async with trio.open_nursery() as nursery:
        a = Outbox(server_a, max_queued_bytes=64 * CHUNK, on_overflow=cut.set, budget=budget)
        b = Outbox(server_b, max_queued_bytes=64 * CHUNK, budget=budget)
        for outbox in (a, b):
            outbox.attach(nursery)
        with trio.fail_after(10):
            while a.backlog_bytes < 8 * CHUNK:  # neither peer reads
                assert a.send(b"a" * CHUNK)
                await trio.lowlevel.checkpoint()
            while not a.closed:  # b's growing backlog takes the total past the budget: a, the larger, goes
                assert b.send(b"b" * CHUNK)
                assert budget.total_bytes <= budget.limit_bytes
                await trio.lowlevel.checkpoint()
        assert cut.is_set() and a.cut_reason == CUT_BUDGET and a.backlog_bytes == 0 and not a.send(b"more")
        assert a.cut_backlog_bytes >= 8 * CHUNK and a.drained  # its connection need not wait for a flush
        assert not b.closed and b.cut_reason is None
        assert budget.total_bytes == b.backlog_bytes > 0
        assert budget.cuts == {CUT_CONNECTION_BOUND: 0, CUT_BUDGET: 1}
        assert budget.limit_bytes < budget.peak_bytes <= budget.limit_bytes + CHUNK
        nursery.cancel_scope.cancel()  # the writer tasks: their chunks in flight are credited back
    for outbox in (a, b):
        outbox.detach()
    assert budget.total_bytes == 0
    for stream in (server_a, client_a, server_b, client_b):
        await stream.aclose()
