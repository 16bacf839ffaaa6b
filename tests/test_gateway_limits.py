"""Bad peers, timeouts, keepalive and rate limits: each affects only its own connection."""

from __future__ import annotations

import struct

import trio

from protocol import events
from protocol.codes import ErrorCode
from protocol.frames import HEADER, MAGIC, VERSION, FrameType, encode_frame
from storage.messages import Conversation, Outgoing
from tests.harness import Gateway, RawClient, start_gateway


async def connected(
    gw: Gateway, user_id: str = "alice", client_id: str = "c1", platform: int = 2, **override
) -> RawClient:
    client = await RawClient.connected(gw, await gw.token(user_id, client_id, platform), **override)
    return client


async def roundtrip(client: RawClient, method: str, params: dict | None = None) -> events.Response:
    request_id, frame = client.proto.request(method, params)
    await client.send(frame)
    event = await client.next_event()
    assert isinstance(event, events.Response) and event.request_id == request_id, event
    return event


async def read_all(stream: trio.SocketStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


async def test_server_keeps_serving_while_others_misbehave(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path, server={"handshake_timeout_seconds": 30})
    await gw.user("alice", name="Alice")
    good = await connected(gw)

    garbage = await trio.open_tcp_stream(gw.host, gw.port)
    await garbage.send_all(b"\x00GET / HTTP/1.1\r\n\r\n" * 10)
    oversized = await trio.open_tcp_stream(gw.host, gw.port)
    # A header announcing a 2 GiB CONNECT: refused before any body is sent.
    await oversized.send_all(HEADER.pack(MAGIC, VERSION, FrameType.CONNECT, 0, 0, 0, 2**31 - 1))
    stalled = await trio.open_tcp_stream(gw.host, gw.port)  # never completes its handshake
    await stalled.send_all(b"EM")

    with trio.fail_after(5):
        for stream in (garbage, oversized):
            data = await read_all(stream)  # the server answers ERROR and closes
            assert FrameType.ERROR in {
                data[i + 3] for i in range(0, len(data) - 3) if data[i : i + 2] == MAGIC
            }
            await stream.aclose()
        # Meanwhile the good client is served, and a new one can connect.
        assert (await roundtrip(good, "get_user_info", {"user_ids": ["alice"]})).result["users"][0][
            "name"
        ] == "Alice"
        second = await connected(gw, "alice", "c2", platform=3)
        assert (await roundtrip(second, "get_user_info", {"user_ids": ["alice"]})).code == 0
    for c in (good, second):
        await c.aclose()
    await stalled.aclose()


async def test_handshake_timeout_drops_a_silent_client(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path, server={"handshake_timeout_seconds": 0.2})
    stream = await trio.open_tcp_stream(gw.host, gw.port)
    with trio.fail_after(5):
        data = await read_all(stream)  # ends when the server closes
    assert data[3] == FrameType.HELLO  # only the greeting was ever sent
    assert len(data) == HEADER.size + struct.unpack(">I", data[10:14])[0]
    await stream.aclose()


async def test_idle_connection_closed_after_one_and_a_half_keepalives(
    nursery: trio.Nursery, tmp_path
) -> None:
    gw = await start_gateway(nursery, tmp_path, server={"min_keepalive_seconds": 1})
    await gw.user("alice")
    client = await RawClient.open(gw, await gw.token("alice"), keepalive_seconds=1)
    ack = await client.handshake(gw.clock.now_ms())
    assert ack.keepalive_seconds == 1
    start = trio.current_time()
    # Pings keep it open past 1.5 s ...
    for _ in range(4):
        await trio.sleep(0.5)
        await client.send(client.proto.ping())
        assert isinstance(await client.next_event(), events.Pong)
    assert trio.current_time() - start >= 1.5
    # ... silence closes it.
    with trio.fail_after(5):
        assert await client.closed_by_server()
    await client.aclose()


async def test_keepalive_is_clamped_to_the_servers_bounds(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(
        nursery, tmp_path, server={"min_keepalive_seconds": 30, "max_keepalive_seconds": 300}
    )
    await gw.user("alice")
    low = await connected(gw, keepalive_seconds=5)
    assert (await roundtrip(low, "get_user_info", {"user_ids": []})).code == 0
    await low.aclose()
    client = await RawClient.open(gw, await gw.token("alice"), keepalive_seconds=3000)
    assert (await client.handshake(gw.clock.now_ms())).keepalive_seconds == 300
    await client.aclose()
    client = await RawClient.open(gw, await gw.token("alice"), keepalive_seconds=0)
    assert (await client.handshake(gw.clock.now_ms())).keepalive_seconds == 60  # the server default
    await client.aclose()


async def test_rate_limit_answers_250_and_keeps_the_connection(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path, client={"request_rate_limit": 5})
    await gw.user("alice")
    client = await connected(gw)
    frames = [client.proto.request("get_user_info", {"user_ids": ["alice"]}) for _ in range(8)]
    # Behind them, in the same write, a pull: refused too once the window is spent (charged by size, not exempt).
    frames.append(client.proto.request("pull", {"after_seq": 0}))
    await client.send(b"".join(frame for _, frame in frames))
    codes = {}
    while len(codes) < 9:
        event = await client.next_event()
        codes[event.request_id] = event.code
    assert [codes[request_id] for request_id, _ in frames] == [0] * 5 + [ErrorCode.OVER_FREQUENCY] * 4
    await client.aclose()


async def test_a_pull_costs_what_it_returns(nursery: trio.Nursery, tmp_path) -> None:
    """Empty pulls are cheap (0.1 each), a first 150-message page costs 1.6; the same page again is a
    re-read at 0.1 a message (15.1). With a limit of 20: page, five empty pulls, a re-read (17.2 spent),
    an empty pull, one more re-read (still under 20 when it arrived), then even an empty pull is refused.
    At first-read prices the re-reads would fit eleven times."""
    gw = await start_gateway(nursery, tmp_path, client={"request_rate_limit": 20}, message={"roaming": True})
    await gw.user("alice")
    await gw.user("bob")
    store = gw.services.store
    async with trio.open_nursery() as senders:  # 150 messages to alice, stored in a few group commits
        for i in range(150):
            msg = Outgoing(i + 1, gw.clock.now_ms(), Conversation(0, "alice"), "bob", {"type": 1}, 3)
            senders.start_soon(store.send_private, msg, gw.services.messages.policy)
    client = await connected(gw)
    with trio.fail_after(4):  # well inside one 5 s window
        first = await roundtrip(client, "pull", {"after_seq": 0, "limit": 150})
        assert first.code == 0 and len(first.result["messages"]) == 150
        for _ in range(5):
            assert (await roundtrip(client, "pull", {"after_seq": 150})).code == 0
        again = await roundtrip(client, "pull", {"after_seq": 0, "limit": 150})
        assert again.code == 0 and len(again.result["messages"]) == 150
        assert (await roundtrip(client, "pull", {"after_seq": 150})).code == 0
        assert (await roundtrip(client, "pull", {"after_seq": 0, "limit": 150})).code == 0
        assert (await roundtrip(client, "pull", {"after_seq": 150})).code == ErrorCode.OVER_FREQUENCY
    await client.aclose()


async def test_a_connection_over_its_limit_is_not_read_until_its_window_ends(
    nursery: trio.Nursery, tmp_path, monkeypatch
) -> None:
    """Requests read in the same read as the first refused one get 250; what the client sends after
    waits in the socket, unread, until the window ends, and is then served (code 0), not refused."""
    window = 1.5
    monkeypatch.setattr("gateway.connection.RATE_WINDOW_SECONDS", window)
    gw = await start_gateway(nursery, tmp_path, client={"request_rate_limit": 3})
    await gw.user("alice")
    client = await connected(gw)
    started = trio.current_time()  # the window opens when the first request arrives: not before this
    burst = [client.proto.request("get_user_info", {"user_ids": ["alice"]}) for _ in range(5)]
    await client.send(b"".join(frame for _, frame in burst))
    codes = {}
    with trio.fail_after(window / 2):
        while len(codes) < 5:
            event = await client.next_event()
            codes[event.request_id] = event.code
    assert [codes[request_id] for request_id, _ in burst] == [0, 0, 0] + [ErrorCode.OVER_FREQUENCY] * 2
    assert trio.current_time() < started + window, "too slow a machine for this window: the test proves nothing"
    late = await roundtrip(client, "get_user_info", {"user_ids": ["alice"]})
    assert late.code == 0  # a new window: without the pause it would have been refused at once
    assert trio.current_time() >= started + window
    await client.aclose()


async def test_invalid_requests_get_codes_not_disconnects(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path)
    await gw.user("alice")
    client = await connected(gw)
    assert (await roundtrip(client, "no_such_method")).code == ErrorCode.NOT_IMPLEMENTED
    bad = await roundtrip(client, "get_user_info", {"user_ids": "alice"})
    assert bad.code == ErrorCode.INVALID_PARAMETER and bad.result["field"] == "user_ids"
    assert (
        await roundtrip(client, "get_user_info", {"user_ids": ["x" * 65]})
    ).code == ErrorCode.INVALID_PARAMETER
    # A REQUEST body with no method name: 251 with the same request id.
    request_id = 77
    body = client.proto._seal(FrameType.REQUEST, b"\x80", request_id)  # an empty map
    await client.send(body)
    event = await client.next_event()
    assert (event.request_id, event.code) == (request_id, ErrorCode.INVALID_PARAMETER)
    assert (await roundtrip(client, "get_user_info", {"user_ids": ["alice"]})).code == 0
    await client.aclose()


async def test_clear_frame_after_handshake_closes_the_connection(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path)
    await gw.user("alice")
    client = await connected(gw)
    await client.stream.send_all(encode_frame(FrameType.REQUEST, b"\x81\xa1m\xa1x"))
    assert await client.closed_by_server()
    assert isinstance(client.received[-1], events.ServerError)
    await client.aclose()
