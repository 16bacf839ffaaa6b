"""docs/PROTOCOL.md §8.7: the server's DISCONNECT ("going away"), its vector, and what the SDK does with it."""

from __future__ import annotations

import msgpack
import pytest
import trio
import trio.testing

import client
from gateway.server import SHUTDOWN_RETRY_MS, shutdown_gracefully
from protocol import events
from protocol.codes import ConnectionStatus
from protocol.frames import HEADER_SIZE
from protocol.token import parse_token
from tests import vectors_ops
from tests.harness import start_gateway
from tests.storage_helpers import held_writer, wait_until
from tests.test_messaging import Device

TEXT = vectors_ops.DOC.read_text(encoding="utf-8")
BLOCKS = vectors_ops.read_blocks(TEXT)


def doc(name: str) -> bytes:
    return bytes.fromhex("".join(BLOCKS[name].split()))


def test_the_doc_has_the_vectors_and_the_code_makes_them() -> None:
    assert set(BLOCKS) == set(vectors_ops.OUTPUTS)
    assert vectors_ops.rewrite(TEXT, vectors_ops.compute(vectors_ops.doc_inputs(TEXT))) == TEXT


def test_the_vector_decodes_as_the_doc_says() -> None:
    assert msgpack.unpackb(doc("goaway_plaintext")) == vectors_ops.GOAWAY
    frame = doc("goaway_frame")
    assert frame[3] == 9 and frame[4] == 1  # DISCONNECT, encrypted
    _, client_conn = vectors_ops.handshake(vectors_ops.doc_inputs(TEXT))
    [event] = client_conn.receive_data(frame)
    assert event == events.GoAway("shutdown", 1000, "gw2.example.com:7600")
    assert len(frame) == HEADER_SIZE + len(doc("goaway_plaintext")) + 16


def test_a_clear_or_out_of_range_goaway_is_a_violation() -> None:
    server, client_conn = vectors_ops.handshake(vectors_ops.doc_inputs(TEXT))
    from protocol import codec
    from protocol.frames import FrameType, encode_frame

    [event] = client_conn.receive_data(encode_frame(FrameType.DISCONNECT, codec.pack(vectors_ops.GOAWAY)))
    assert isinstance(event, events.ProtocolViolation)
    server, client_conn = vectors_ops.handshake(vectors_ops.doc_inputs(TEXT))
    [event] = client_conn.receive_data(server.goaway("x", 3_600_001))
    assert isinstance(event, events.ProtocolViolation)
    fresh, _ = vectors_ops.handshake(vectors_ops.doc_inputs(TEXT))
    with pytest.raises(RuntimeError):
        type(fresh)(server_nonce=b"\0" * 32, server_time_ms=0).goaway("x", 0)


async def test_shutdown_answers_requests_then_says_goodbye(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path)
    await gw.user("bob")
    bob = await Device.connect(gw, "bob")
    raw = bob.client
    writer = gw.services.store.writer
    async with trio.open_nursery() as inner:
        async with held_writer(writer):  # the request is read and waits for its commit during the shutdown
            request_id, frame = raw.proto.request("set_blacklist", {"user_id": "eve", "blocked": True})
            await raw.send(frame)
            await wait_until(lambda: writer.queued >= 1)
            inner.start_soon(shutdown_gracefully, gw.services, [])
            await trio.testing.wait_all_tasks_blocked()
    got = []
    while (event := await raw.next_event()) is not None:
        got.append(event)
    assert [type(e) for e in got] == [events.Response, events.GoAway]
    assert got[0].request_id == request_id and got[0].code == 0
    assert got[1] == events.GoAway("shutdown", SHUTDOWN_RETRY_MS, "")
    assert not gw.services.delivery.node.connections("bob")
    await bob.aclose()


@pytest.mark.parametrize("read_poller", [True, False], ids=["poller", "own-reads"])
async def test_shutdown_acks_sends_whose_commit_is_pending(nursery: trio.Nursery, tmp_path, read_poller) -> None:
    """Sends are answered from their commit's callback, not by a request task: going away waits for those
    answers too. Without the poller the connection's task reads for itself: going away then ends that
    read, not the connection."""
    gw = await start_gateway(nursery, tmp_path, read_poller=read_poller)
    for user in ("alice", "bob"):
        await gw.user(user)
    alice = await Device.connect(gw, "alice")
    raw = alice.client
    writer = gw.services.store.writer
    sends = [
        raw.proto.request("send_message", {"conv": {"type": 0, "target": "bob"}, "content": {"type": 1}})
        for _ in range(5)
    ]
    async with trio.open_nursery() as inner:
        async with held_writer(writer):  # the sends are read and wait for their commit during the shutdown
            await raw.send(b"".join(frame for _, frame in sends))
            await wait_until(lambda: writer.queued >= len(sends))
            inner.start_soon(shutdown_gracefully, gw.services, [])
            await trio.testing.wait_all_tasks_blocked()
    got = []
    while (event := await raw.next_event()) is not None:
        got.append(event)
    assert [type(e) for e in got] == [events.Response] * len(sends) + [events.GoAway]
    assert [(e.request_id, e.code) for e in got[:-1]] == [(request_id, 0) for request_id, _ in sends]
    await raw.aclose()


async def test_the_sdk_reconnects_where_the_redirect_points(nursery: trio.Nursery, tmp_path) -> None:
    key = "3c" * 32
    new_home = await start_gateway(nursery, tmp_path / "b", token={"key": key})
    gw = await start_gateway(
        nursery, tmp_path / "a", token={"key": key},
        server={"shutdown_redirect": f"{new_home.host}:{new_home.port}"},
    )  # fmt: skip
    for g in (gw, new_home):
        await g.user("alice")
    token = await gw.token("alice", "alice-phone")
    # The same session (same secret) on the node the redirect names, as a shared database would have it.
    parts = parse_token(token)
    await new_home.services.store.issue_session(
        "alice", "alice-phone", parts.platform, parts.secret, new_home.clock.now_ms(), kick_platforms=None
    )
    async with client.connect(gw.host, gw.port, token, clock=gw.clock.now_ms, backoff=(0.01, 0.02)) as alice:
        stream = alice.events()
        await shutdown_gracefully(gw.services, [])
        with trio.fail_after(5):
            async for event in stream:
                if isinstance(event, events.GoAway):
                    break
            await alice.wait_status(ConnectionStatus.CONNECTED)
        assert new_home.services.delivery.node.connections("alice")
        started = trio.current_time()
        assert (await alice.request("get_blacklist")).code == 0
        assert trio.current_time() - started < 5


def test_the_set_push_token_vector_opens_to_the_request_the_gateway_reads() -> None:
    server, _ = vectors_ops.handshake(vectors_ops.doc_inputs(TEXT))
    assert msgpack.unpackb(doc("set_push_token_plaintext")) == {"m": "set_push_token", "p": vectors_ops.PUSH_TOKEN}
    [request] = server.receive_data(doc("set_push_token_frame"))
    assert isinstance(request, events.Request) and request.request_id == 1
    assert (request.method, request.params.raw) == ("set_push_token", vectors_ops.PUSH_TOKEN)
