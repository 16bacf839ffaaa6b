"""The WebSocket transport (docs/PROTOCOL.md §2.2) over real sockets on 127.0.0.1, with a wsproto client.

The same protocol as over TCP: HELLO is the first binary message after the upgrade, every message holds
exactly one frame (``WsRawClient`` asserts it on everything it reads), and the gateway's rules — handshake,
violations, going away — are the ones TCP connections get.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import httpx
import pytest
import trio
import trio.testing
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection

from client import Conversation, ConversationType
from gateway.clock import Clock
from gateway.connection import GatewayConnection
from gateway.net.websocket import WsSettings, WsTransport, parse_networks
from gateway.server import SHUTDOWN_RETRY_MS, shutdown_gracefully
from gateway.signing import signed_json
from protocol import codec, events
from protocol.codes import ConnectionStatus, ErrorCode
from tests import harness
from tests.harness import Gateway, free_port, start_gateway
from tests.storage_helpers import held_writer, wait_until
from tests.test_messaging import Device
from tests.vector_blocks import DOC, Fence
from tests.ws_client import Pong, WsClient, WsRawClient, WsRefused, open_ws

LIMIT = 10  # seconds for any one test


async def start_ws(nursery: trio.Nursery, tmp_path, **server) -> Gateway:
    return await start_gateway(nursery, tmp_path, server={"ws_port": free_port(), **server})


async def ws_device(gw: Gateway, user: str, device: str = "web") -> Device:
    return Device(await WsRawClient.connected(gw, await gw.token(user, f"{user}-{device}", 5)))  # type: ignore[arg-type]


def text(body: str) -> dict:
    return {"type": 1, "searchable_content": body}


async def test_a_browser_side_and_a_tcp_sdk_message_each_other_push_and_pull(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_ws(nursery, tmp_path)
    for user in ("alice", "bob"):
        await gw.user(user)
    with trio.fail_after(LIMIT):
        alice = await ws_device(gw, "alice")  # over WebSocket, platform 5 (web)
        assert gw.services.metrics.ws_open == 1
        assert gw.services.metrics.ws_upgrades == {"accepted": 1}
        async with harness.sdk(gw, "bob", sync_messages=True) as bob:  # the Python SDK over TCP
            received = bob.messages.received()
            ack = await alice.send_text("bob", "over the web")
            assert ack.code == 0
            got = await anext(received)  # pushed to bob over TCP
            assert (got.from_user, got.content["searchable_content"]) == ("alice", "over the web")
            sent = await bob.messages.send(Conversation(ConversationType.PRIVATE, "alice"), text("over tcp"))
            push = await alice.push("msg")  # pushed to alice over WebSocket
            assert push.data["message"]["message_id"] == sent.message_id
            assert push.data["message"]["content"]["searchable_content"] == "over tcp"
            pulled = await alice.pull_all()  # and pulled back over WebSocket: both messages, in order
            assert [m["message"]["content"]["searchable_content"] for m in pulled] == ["over the web", "over tcp"]
            assert sorted(gw.services.delivery.census().by_platform.items()) == [(2, 1), (5, 1)]
        await alice.aclose()
    await wait_until(lambda: gw.services.metrics.ws_open == 0)


async def test_the_origin_is_checked_before_hello(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_ws(nursery, tmp_path, ws_allowed_origins="https://chat.example.com, http://localhost:8080")
    with trio.fail_after(LIMIT):
        with pytest.raises(WsRefused) as refused:
            await open_ws(gw, headers=[("Origin", "https://evil.example.com")])
        assert refused.value.status == 403  # an HTTP answer: no upgrade, so no HELLO was ever sent
        for origin in ("https://chat.example.com", "HTTP://LOCALHOST:8080"):  # compared case-insensitively
            ws = await open_ws(gw, headers=[("Origin", origin)])
            hello = await ws.next_event()
            assert isinstance(hello, BytesMessage) and hello.data[:4] == b"EM\x01\x01"  # HELLO
            await ws.aclose()
        no_origin = await open_ws(gw)  # a client that is not a browser sends none: allowed
        await no_origin.aclose()
    assert gw.services.metrics.ws_upgrades["forbidden_origin"] == 1


async def test_by_default_every_browser_origin_is_refused(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_ws(nursery, tmp_path)
    with trio.fail_after(LIMIT):
        with pytest.raises(WsRefused) as refused:
            await open_ws(gw, headers=[("Origin", f"http://127.0.0.1:{gw.running.ws_port}")])
        assert refused.value.status == 403


async def test_only_the_ws_path_upgrades(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_ws(nursery, tmp_path)
    with trio.fail_after(LIMIT):
        for path in ("/", "/wss", "/ws/x"):
            with pytest.raises(WsRefused) as refused:
                await open_ws(gw, path=path)
            assert refused.value.status == 404
        ws = await open_ws(gw, path="/ws?v=1")  # the query is ignored
        await ws.aclose()
        old_version = (
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"
        )
        for request, status in (
            (b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),  # plain HTTP, no upgrade
            (b"\x16\x03\x01 not http\r\n\r\n", b"400"),  # e.g. TLS spoken to a plain listener
            (old_version, b"426"),
        ):
            async with await trio.open_tcp_stream(gw.host, gw.running.ws_port) as stream:
                await stream.send_all(request)
                answer = b""
                while chunk := await stream.receive_some(4096):
                    answer += chunk
                assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer
                if status == b"426":
                    assert b"\r\nSec-WebSocket-Version: 13\r\n" in answer


async def test_a_text_message_closes_with_1003(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_ws(nursery, tmp_path)
    await gw.user("alice")
    with trio.fail_after(LIMIT):
        alice = await ws_device(gw, "alice")
        await alice.client.ws.send_text("hello?")
        assert await alice.client.next_event() is None
        assert alice.client.close is not None and alice.client.close.code == 1003
        assert "binary" in alice.client.close.reason
        await alice.aclose()


async def test_an_oversize_message_closes_with_1009_and_a_full_one_does_not(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_ws(nursery, tmp_path)  # server.max_frame_bytes: 262144
    await gw.user("alice")
    with trio.fail_after(LIMIT):
        alice = await ws_device(gw, "alice")
        # A frame of exactly the longest body allowed: answered (a bad request: 251), not closed for its size.
        def params(n: int) -> dict:
            return {"user_ids": ["x" * n]}

        n = 262144 - 300
        while len(codec.pack({"m": "get_user_info", "p": params(n)})) + 16 < 262144:
            n += 1
        request_id, frame = alice.client.proto.request("get_user_info", params(n))
        assert len(frame) == 14 + 262144
        await alice.client.send(frame)
        answer = await alice.client.next_event()
        assert isinstance(answer, events.Response) and answer.request_id == request_id
        await alice.client.ws.send_bytes(b"\0" * (14 + 262144 + 1))
        assert await alice.client.next_event() is None
        assert alice.client.close is not None and alice.client.close.code == 1009
        await alice.aclose()


async def test_websocket_pings_are_answered_with_pongs(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_ws(nursery, tmp_path)
    with trio.fail_after(LIMIT):
        ws = await open_ws(gw)
        hello = await ws.next_event()  # HELLO, the first message
        await ws.ping(b"are you there")
        pong = await ws.next_event()
        assert isinstance(pong, Pong) and pong.payload == b"are you there"
        assert hello is not None
        await ws.aclose()


async def test_garbage_and_two_frames_in_one_message_are_the_protocols_violation(
    nursery: trio.Nursery, tmp_path
) -> None:
    gw = await start_ws(nursery, tmp_path)
    await gw.user("alice")
    with trio.fail_after(LIMIT):
        raw = await WsRawClient.open(gw, await gw.token("alice"))
        assert isinstance(await raw.next_event(), events.Hello)
        await raw.ws.send_bytes(b"GET / HTTP/1.1\r\n\r\n")  # not a frame
        error = await raw.next_event()
        assert isinstance(error, events.ServerError) and error.code == ErrorCode.INVALID_DATA
        assert await raw.next_event() is None and raw.close is not None and raw.close.code == 1000
        await raw.aclose()

        alice = await ws_device(gw, "alice")
        _, ping = (0, alice.client.proto.ping())
        await alice.client.ws.send_bytes(ping + alice.client.proto.ping())  # two frames, one message
        error = await alice.client.next_event()
        assert isinstance(error, events.ServerError) and error.code == ErrorCode.INVALID_DATA
        assert "exactly one frame" in error.reason
        assert await alice.client.next_event() is None
        await alice.aclose()


async def test_broken_websocket_framing_closes_with_1002(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_ws(nursery, tmp_path)
    with trio.fail_after(LIMIT):
        ws = await open_ws(gw)
        assert await ws.next_event() is not None  # HELLO
        await ws.send_raw(b"\x82\x05hello")  # a binary frame a client did not mask (RFC 6455 §5.1)
        close = await ws.next_event()
        assert isinstance(close, CloseConnection) and close.code == 1002
        await ws.aclose()


async def test_the_handshake_timeout_covers_the_upgrade_and_connect(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_ws(nursery, tmp_path, handshake_timeout_seconds=0.2)
    with trio.fail_after(LIMIT):
        async with await trio.open_tcp_stream(gw.host, gw.running.ws_port) as silent:  # never sends its request
            assert await silent.receive_some(4096) == b""
        upgraded = await open_ws(gw)  # upgraded, never sends CONNECT
        assert isinstance(await upgraded.next_event(), BytesMessage)  # HELLO
        assert isinstance(await upgraded.next_event(), CloseConnection)
        assert await upgraded.next_event() is None
        await upgraded.aclose()
    assert gw.services.metrics.ws_upgrades["timeout"] == 1
    assert gw.services.metrics.handshake_timeouts == 2


async def test_going_away_answers_what_was_read_then_disconnects_then_closes_1001(
    nursery: trio.Nursery, tmp_path
) -> None:
    gw = await start_ws(nursery, tmp_path)
    await gw.user("alice")
    await gw.user("bob")
    alice = await ws_device(gw, "alice")
    raw = alice.client
    writer = gw.services.store.writer
    sends = [raw.proto.request("send_message", {"conv": {"type": 0, "target": "bob"}, "content": {"type": 1}}) for _ in range(3)]
    with trio.fail_after(LIMIT):
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
    assert got[-1] == events.GoAway("shutdown", SHUTDOWN_RETRY_MS, "")
    assert raw.close is not None and raw.close.code == 1001
    await raw.aclose()


async def test_ws_port_0_opens_no_websocket_listener(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path)
    assert gw.config.server.ws_port == 0 and gw.running.ws_port == 0
    # Only the TCP protocol listener and the admin API listen: nothing speaks HTTP upgrades on the TCP port.
    with trio.fail_after(LIMIT):
        stream = await trio.open_tcp_stream(gw.host, gw.port)
        data = await stream.receive_some(4096)
        assert data.startswith(b"EM")  # HELLO, straight away: the TCP transport
        await stream.aclose()


def test_x_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    settings = WsSettings(None, parse_networks("10.0.0.0/8, 127.0.0.1"), 1024)
    xff = [b"198.51.100.9, 203.0.113.7", b"10.1.2.3"]  # the client wrote the first, the proxies the rest
    assert settings.client_address("127.0.0.1", xff) == "203.0.113.7"
    assert settings.client_address("192.0.2.1", xff) == "192.0.2.1"  # not a proxy of ours: header ignored
    assert settings.client_address("127.0.0.1", []) == "127.0.0.1"
    assert settings.client_address("127.0.0.1", [b"unknown"]) == "127.0.0.1"
    assert WsSettings(None, (), 1024).client_address("127.0.0.1", xff) == "127.0.0.1"


@pytest.mark.parametrize("trusted", [True, False])
async def test_logs_name_the_forwarded_client_behind_a_trusted_proxy(
    nursery: trio.Nursery, tmp_path, caplog: pytest.LogCaptureFixture, trusted: bool
) -> None:
    gw = await start_ws(nursery, tmp_path, trusted_proxies="127.0.0.1" if trusted else "")
    with trio.fail_after(LIMIT), caplog.at_level(logging.INFO, logger="ember"):
        ws = await WsClient.open(gw.host, gw.running.ws_port, headers=[("X-Forwarded-For", "203.0.113.7")])
        assert await ws.next_event() is not None  # HELLO
        await ws.send_bytes(b"\0" * 14)  # a violation: logged with the peer
        while await ws.next_event() is not None:
            pass
        await ws.aclose()
    [line] = [r.getMessage() for r in caplog.records if "protocol violation" in r.getMessage()]
    if trusted:
        assert "peer=203.0.113.7 " in line
    else:
        assert "peer=127.0.0.1:" in line and "203.0.113.7" not in line


async def test_a_refused_connack_and_a_good_one_over_websocket(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_ws(nursery, tmp_path)
    await gw.user("alice")
    with trio.fail_after(LIMIT):
        raw = await WsRawClient.open(gw, await gw.token("alice"), secret=b"\1" * 32)  # a wrong secret
        ack = await raw.handshake(gw.clock.now_ms())
        assert isinstance(ack, events.ConnAck) and ack.code == ConnectionStatus.SECRET_KEY_MISMATCH
        assert await raw.next_event() is None and raw.close is not None and raw.close.code == 1000
        await raw.aclose()


WS_VECTORS = Fence("wsvector", "WebSocket vectors")


def test_the_transport_sections_bytes_are_what_wsproto_makes_of_the_section_10_frames() -> None:
    text = DOC.read_text(encoding="utf-8")
    ws = WS_VECTORS.hex_blocks(text)
    frames = {
        name: bytes.fromhex("".join(body.split()))
        for name, body in Fence("vector", "protocol vectors").bodies(text).items()
        if name in ("hello_frame", "ping_frame")
    }
    assert set(ws) == {"hello_message", "ping_message", "close_going_away"}
    server = Connection(ConnectionType.SERVER)
    assert ws["hello_message"] == server.send(BytesMessage(data=frames["hello_frame"]))
    server.receive_data(ws["ping_message"])  # the client's masked message opens to the PING frame
    [ping] = server.events()
    assert isinstance(ping, BytesMessage) and ping.message_finished and ping.data == frames["ping_frame"]
    assert ws["ping_message"][2:6] == bytes.fromhex("37fa213d")  # the key the section names
    assert ws["close_going_away"] == server.send(CloseConnection(1001))


async def test_invalid_utf8_text_closes_1007_and_a_clients_close_is_echoed(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_ws(nursery, tmp_path)
    await gw.user("alice")
    with trio.fail_after(LIMIT):
        ws = await open_ws(gw)
        assert isinstance(await ws.next_event(), BytesMessage)  # HELLO
        await ws.send_raw(b"\x81\x82\0\0\0\0\xff\xfe")  # a masked (key 0) text frame of two bytes that are not UTF-8
        close = await ws.next_event()
        assert isinstance(close, CloseConnection) and close.code == 1007
        await ws.aclose()

        alice = await ws_device(gw, "alice")
        await alice.client.send(alice.client.proto.disconnect())
        await alice.client.ws.stream.send_all(alice.client.ws.ws.send(CloseConnection(1000, "bye")))
        assert await alice.client.next_event() is None
        assert alice.client.close is not None and alice.client.close.code == 1000
        await alice.aclose()


async def test_sigterm_on_a_real_process_says_goodbye_over_websocket_too(tmp_path) -> None:
    """``ember serve`` with a WebSocket port: SIGTERM sends the WebSocket client its DISCONNECT and a Close
    1001, the listener stops accepting, and the process exits 0 (the in-process test above checks that the
    requests read before are answered first)."""
    from tests import test_process

    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    ws_port = free_port()
    (data / "ember.toml").write_text(
        f'[server]\nport = 0\nws_port = {ws_port}\nshutdown_seconds = 5\n'
        f'[admin]\nport = 0\nsecret = "{test_process.ADMIN_SECRET}"\n[token]\nkey = "{test_process.TOKEN_KEY}"\n'
    )
    (data / "ember.toml").chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")} | {"PYTHONPATH": str(test_process.ROOT)}
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "gateway.cli", "serve", "--data", str(data)],
        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env, cwd=tmp_path,
    )  # fmt: skip
    proc = test_process.Proc(process, tmp_path / "unused.log")
    try:
        match = await proc.read_until(rb"listening gateway=(\S+):(\d+) admin=(\S+) websocket=(\S+):(\d+)/ws ")
        assert int(match[5]) == ws_port
        proc.host, proc.port, proc.admin_url = match[1].decode(), int(match[2]), match[3].decode()
        async with httpx.AsyncClient() as http:

            async def call(path: str, payload: dict) -> dict:
                body, headers = signed_json(test_process.ADMIN_SECRET.encode(), payload, Clock().now_ms())
                answer = (await http.post(proc.admin_url + path, content=body, headers=headers)).json()
                assert answer["code"] == 0, answer
                return answer["result"]

            await call("/admin/user/create", {"user_id": "alice"})
            token = (await call("/admin/user/get_token", {"user_id": "alice", "client_id": "alice-web", "platform": 5}))["token"]
        gw = SimpleNamespace(host=proc.host, running=SimpleNamespace(ws_port=ws_port), clock=Clock())
        alice = Device(await WsRawClient.connected(gw, token))  # type: ignore[arg-type]
        assert (await alice.call("get_blacklist")).code == 0
        with trio.fail_after(LIMIT):
            process.send_signal(signal.SIGTERM)
            assert await alice.client.next_event() == events.GoAway("shutdown", SHUTDOWN_RETRY_MS, "")
            assert await alice.client.next_event() is None
            assert alice.client.close is not None and alice.client.close.code == 1001
            await alice.aclose()
            await proc.rest()
            assert await process.wait() == 0
        assert "shutdown: 1 connection(s) told to reconnect and closed" in proc.stderr.decode()
    finally:
        if process.returncode is None:
            process.kill()


async def test_websocket_pings_do_not_keep_a_silent_protocol_connection_alive(nursery: trio.Nursery, tmp_path) -> None:
    """The idle rule is the protocol's (§8.4): only binary messages count. A client that sends nothing but
    WebSocket pings is closed once it has been silent for 1.5 × keepalive, its pings answered until then."""
    gw = await start_ws(nursery, tmp_path, min_keepalive_seconds=1, keepalive_seconds=1)
    await gw.user("alice")
    with trio.fail_after(LIMIT):
        raw = await WsRawClient.connected(gw, await gw.token("alice", "alice-web", 5), keepalive_seconds=1)
        await raw.send(raw.proto.ping())  # one protocol PING first: later reads are the read poller's
        assert isinstance(await raw.next_event(), events.Pong)
        pongs = 0
        while True:
            await raw.ws.ping(b"still here")
            event = await raw.ws.next_event()
            if isinstance(event, Pong):
                pongs += 1
                await trio.sleep(0.2)
                continue
            break
        assert isinstance(event, CloseConnection) and event.code == 1000
        assert pongs >= 1
        await raw.aclose()


async def test_an_ended_websocket_connection_is_freed_at_once_not_by_the_cycle_collector(
    nursery: trio.Nursery, tmp_path
) -> None:
    """As tests/test_reads.py checks for TCP: no reference cycle through a connection or its transport."""
    gw = await start_ws(nursery, tmp_path)
    await gw.user("alice")
    token = await gw.token("alice")
    gc.collect()
    gc.disable()
    kinds = (GatewayConnection, WsTransport)
    before = {id(obj) for obj in gc.get_objects() if isinstance(obj, kinds)}  # other tests' leftovers
    try:
        with trio.fail_after(LIMIT):
            for _ in range(5):
                client = await WsRawClient.connected(gw, token)
                await client.send(client.proto.ping())  # the task's own read
                assert isinstance(await client.next_event(), events.Pong)
                await client.send(client.proto.ping())  # the poller's
                assert isinstance(await client.next_event(), events.Pong)
                await client.send(client.proto.disconnect())
                assert await client.closed_by_server()
                await client.aclose()
            # The server's side of the last close may still be winding down (on a busy machine, well after
            # the client saw it). With the cycle collector off, anything freed was freed by reference
            # counting: wait until they are, a step of the server at a time; a cycle never frees them, and
            # the deadline fails the test.
            alive: list[object] = []
            while True:
                await trio.testing.wait_all_tasks_blocked()
                await gw.services.store.inbox_head("alice")  # a storage round trip, for a teardown's writes
                alive = [obj for obj in gc.get_objects() if isinstance(obj, kinds) and id(obj) not in before]
                if len(alive) <= 2:  # at most the last connection and its transport, in their final step
                    break
    finally:
        gc.enable()
