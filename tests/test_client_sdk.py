"""client/: the SDK against a scripted server speaking protocol.ServerConnection over real sockets.

The scripted server checks what a real gateway checks at CONNECT (proof opens with the
session secret, credential sealed by the token key and naming the CONNECT's identity,
clock skew) and answers requests from a small script, so each test drives one SDK
behaviour. Nothing sleeps to "probably" see something: tests wait on the server's log or
on the client's status/events, each bounded by trio.fail_after.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

import client
from client import (
    ClientClosed,
    ConnAck,
    ConnectError,
    ConnectionStatus,
    ErrorCode,
    Notify,
    RequestTimeout,
    StatusChanged,
)
from client.options import ConnectOptions
from protocol.connection import ServerConnection
from protocol.events import ConnectRequested, Disconnect, Ping, ProtocolViolation, Request
from protocol.token import TokenError, issue_token, open_credential
from tests.ports import free_port

S = ConnectionStatus
SECRET = bytes(range(32))
TOKEN_KEY = bytes(range(100, 132))
MAX_SKEW_MS = 86_400_000
FAST = (0.01, 0.05)  # backoff for tests


def now_ms() -> int:
    return time.time_ns() // 1_000_000


TOKEN = issue_token(
    TOKEN_KEY, user_id="alice", client_id="phone-1", platform=2, secret=SECRET, issued_at_ms=now_ms()
)


class Peer:
    """One accepted connection; sealing and sending happen under one lock so frames keep their order."""

    def __init__(self, stream: trio.SocketStream, sc: ServerConnection) -> None:
        self.stream = stream
        self.sc = sc
        self.lock = trio.Lock()

    async def send(self, make: Callable[[], bytes]) -> None:
        async with self.lock:
            await self.stream.send_all(make())


class ScriptedServer:
    def __init__(self) -> None:
        self.port = 0
        self.peers: list[Peer] = []
        self.log: list[tuple[int, Any]] = []  # (connection index, protocol event)
        self.connack_script: list[ConnectionStatus] = []  # forced CONNACK codes, one per CONNECT
        self.answer_pings = True
        self.send_hello = True
        self.heads = {"msg": 7, "friend": 3}
        self._changed = trio.Event()

    def record(self, index: int, event: Any) -> None:
        self.log.append((index, event))
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, predicate: Callable[[int, Any], bool]) -> tuple[int, Any]:
        seen = 0
        while True:
            for item in self.log[seen:]:
                if predicate(*item):
                    return item
            seen = len(self.log)
            await self._changed.wait()

    def seen(self, kind: type) -> list[tuple[int, Any]]:
        return [(i, e) for i, e in self.log if isinstance(e, kind)]

    def decide(self, sc: ServerConnection, ev: ConnectRequested) -> ConnectionStatus:
        proof = sc.authenticate(SECRET)
        if proof is None:
            return S.SECRET_KEY_MISMATCH
        try:
            cred = open_credential(TOKEN_KEY, proof.credential)
        except TokenError:
            return S.TOKEN_INCORRECT
        if (cred.user_id, cred.client_id, cred.platform) != (ev.user_id, ev.client_id, ev.platform):
            return S.TOKEN_INCORRECT
        if self.connack_script:
            return self.connack_script.pop(0)
        if abs(proof.client_time_ms - now_ms()) > MAX_SKEW_MS:
            return S.TIME_INCONSISTENT
        return S.CONNECTED

    async def handle(self, stream: trio.SocketStream) -> None:
        sc = ServerConnection(server_nonce=os.urandom(32), server_time_ms=now_ms())
        peer = Peer(stream, sc)
        index = len(self.peers)
        self.peers.append(peer)
        try:
            if self.send_hello:
                await peer.send(sc.hello)
            while data := await stream.receive_some(65536):
                pending = sc.receive_data(data)
                while pending:
                    ev = pending.pop(0)
                    self.record(index, ev)
                    if isinstance(ev, ConnectRequested):
                        code = self.decide(sc, ev)
                        if code != S.CONNECTED:
                            await peer.send(lambda code=code: sc.reject(code))
                            return
                        keepalive = ev.keepalive_seconds or 60
                        await peer.send(
                            lambda k=keepalive: sc.accept(
                                server_time_ms=now_ms(), keepalive_seconds=k, heads=self.heads
                            )
                        )
                        pending += sc.receive_data(b"")
                    elif isinstance(ev, Request):
                        await self.answer(peer, ev)
                    elif isinstance(ev, Ping) and self.answer_pings:
                        await peer.send(sc.pong)
                    elif isinstance(ev, Disconnect | ProtocolViolation):
                        return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def answer(self, peer: Peer, req: Request) -> None:
        params = dict(req.params.raw)
        if req.method == "echo":
            await peer.send(lambda: peer.sc.response(req.request_id, ErrorCode.SUCCESS, {"params": params}))
        elif req.method == "fail":
            await peer.send(lambda: peer.sc.response(req.request_id, params["code"]))
        elif req.method == "drop":
            await trio.aclose_forcefully(peer.stream)
        elif req.method != "hang":
            await peer.send(lambda: peer.sc.response(req.request_id, ErrorCode.NOT_IMPLEMENTED))

    async def push(self, topic: str, data: Any = None) -> None:
        peer = self.peers[-1]
        await peer.send(lambda: peer.sc.notify(topic, data))

    async def kick(self, code: ConnectionStatus) -> None:
        await self.push(client.KICKED_TOPIC, {"code": int(code)})
        await trio.aclose_forcefully(self.peers[-1].stream)

    async def drop(self) -> None:
        await trio.aclose_forcefully(self.peers[-1].stream)


@pytest.fixture
async def server(nursery: trio.Nursery) -> ScriptedServer:
    srv = ScriptedServer()
    listeners = await nursery.start(functools.partial(trio.serve_tcp, srv.handle, 0, host="127.0.0.1"))
    srv.port = listeners[0].socket.getsockname()[1]
    return srv


def connect(server: ScriptedServer, **kwargs: Any) -> Any:
    kwargs.setdefault("backoff", FAST)
    return client.connect("127.0.0.1", server.port, TOKEN, **kwargs)


async def statuses_until(events: Any, last: ConnectionStatus) -> list[ConnectionStatus]:
    """The statuses on the event stream up to and including ``last``."""
    seen = []
    async for ev in events:
        if isinstance(ev, StatusChanged):
            seen.append(ev.status)
            if ev.status == last:
                return seen
    raise AssertionError(f"event stream ended before {last.name}: {seen}")


# --- handshake, requests, pushes ---------------------------------------------------------------


async def test_handshake_request_response_and_pushes(server: ScriptedServer) -> None:
    with trio.fail_after(5):
        async with connect(server) as c:
            assert c.status == S.CONNECTED
            assert c.connack is not None and c.connack.heads == {"msg": 7, "friend": 3}
            assert c.connack.keepalive_seconds == 60
            (_, hello) = server.seen(ConnectRequested)[0]
            assert (hello.user_id, hello.client_id, hello.platform) == ("alice", "phone-1", 2)

            ok = await c.request("echo", {"timeout": 1}, n=1, text="hé")
            assert ok.ok and ok.code == ErrorCode.SUCCESS
            assert ok.result == {"params": {"timeout": 1, "n": 1, "text": "hé"}}
            failed = await c.request("fail", code=int(ErrorCode.NOT_EXIST))
            assert failed.code is ErrorCode.NOT_EXIST and not failed.ok
            odd = await c.request("fail", code=77)  # unknown codes stay plain ints
            assert odd.code == 77

            await server.push("msg", {"seq": 8})
            await server.push("friend", {"head": 4})
            events = c.events()
            got = [await events.receive() for _ in range(4)]
            assert got == [
                StatusChanged(S.CONNECTING),
                StatusChanged(S.CONNECTED),
                Notify("msg", {"seq": 8}),
                Notify("friend", {"head": 4}),
            ]
            assert await c.ping() > 0
        assert c.status == S.LOGOUT
        # Leaving the block logs out but keeps the session.
        (_, bye) = await server.wait_for(lambda i, e: isinstance(e, Disconnect))
        assert bye.clear_session is False
        assert [e async for e in events] == [StatusChanged(S.LOGOUT)]


async def test_many_concurrent_requests_are_batched_and_all_answered(server: ScriptedServer) -> None:
    results: dict[int, Any] = {}

    async def one(c: client.Client, n: int) -> None:
        results[n] = (await c.request("echo", n=n)).result["params"]["n"]

    with trio.fail_after(5):
        async with connect(server) as c, trio.open_nursery() as nursery:
            for n in range(200):
                nursery.start_soon(one, c, n)
    assert results == {n: n for n in range(200)}


# --- first connect fails ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "code", [S.REJECTED, S.TOKEN_INCORRECT, S.SECRET_KEY_MISMATCH, S.KICKED_OFF, S.TIME_INCONSISTENT]
)
async def test_failed_first_connack_raises_connect_error(
    server: ScriptedServer, code: ConnectionStatus
) -> None:
    server.connack_script = [code]
    with trio.fail_after(5), pytest.raises(ConnectError) as info:
        async with connect(server):
            pytest.fail("connected")
    assert info.value.status is code
    assert len(server.seen(ConnectRequested)) == 1  # no retry of a first attempt


async def test_server_checks_decide_the_status(server: ScriptedServer) -> None:
    with trio.fail_after(5):
        # The clear overrides go into CONNECT, but the sealed credential names another client.
        with pytest.raises(ConnectError) as info:
            async with connect(server, client_id="tablet-9"):
                pass
        assert info.value.status is S.TOKEN_INCORRECT
        assert server.seen(ConnectRequested)[-1][1].client_id == "tablet-9"
        # A client clock two days off.
        with pytest.raises(ConnectError) as info:
            async with connect(server, clock=lambda: now_ms() - 2 * MAX_SKEW_MS):
                pass
        assert info.value.status is S.TIME_INCONSISTENT
        # Another session's secret: the proof does not open.
        other = issue_token(
            TOKEN_KEY,
            user_id="alice",
            client_id="phone-1",
            platform=2,
            secret=bytes(32),
            issued_at_ms=now_ms(),
        )
        with pytest.raises(ConnectError) as info:
            async with client.connect("127.0.0.1", server.port, other):
                pass
        assert info.value.status is S.SECRET_KEY_MISMATCH


async def test_unreachable_server_and_silent_server_are_server_down(nursery: trio.Nursery) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()
    with trio.fail_after(5):
        with pytest.raises(ConnectError) as info:
            async with client.connect("127.0.0.1", port, TOKEN):
                pass
        assert info.value.status is S.SERVER_DOWN

        silent = ScriptedServer()
        silent.send_hello = False
        listeners = await nursery.start(functools.partial(trio.serve_tcp, silent.handle, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        with pytest.raises(ConnectError) as info:
            async with client.connect("127.0.0.1", port, TOKEN, timeout=0.2):
                pass
        assert info.value.status is S.SERVER_DOWN


async def test_malformed_token_is_token_incorrect() -> None:
    with pytest.raises(ConnectError) as info:
        async with client.connect("127.0.0.1", 1, "em1.not-a-token"):
            pass
    assert info.value.status is S.TOKEN_INCORRECT


# --- kicks, drops, reconnects ------------------------------------------------------------------


async def test_kicked_push_sets_status_and_stops(server: ScriptedServer) -> None:
    with trio.fail_after(5):
        async with connect(server) as c:
            events = c.events()
            assert await statuses_until(events, S.CONNECTED) == [S.CONNECTING, S.CONNECTED]
            await server.kick(S.KICKED_OFF)
            assert await c.wait_status(S.KICKED_OFF) is S.KICKED_OFF
            # The push itself, the status, then the stream ends: no reconnect is coming.
            assert [e async for e in events] == [
                Notify(client.KICKED_TOPIC, {"code": -7}),
                StatusChanged(S.KICKED_OFF),
            ]
            with pytest.raises(ClientClosed) as info:
                await c.request("echo")
            assert info.value.status is S.KICKED_OFF
            with pytest.raises(ClientClosed):
                await c.wait_status(S.CONNECTED)
        assert c.status is S.KICKED_OFF  # leaving the block does not hide why
        assert len(server.seen(ConnectRequested)) == 1


async def test_transport_loss_reconnects_with_a_new_handshake(server: ScriptedServer) -> None:
    with trio.fail_after(5):
        async with connect(server) as c:
            events = c.events()
            await statuses_until(events, S.CONNECTED)
            down = trio.Event()

            async def watch() -> None:
                assert await c.wait_status(S.SERVER_DOWN) is S.SERVER_DOWN
                down.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                await trio.testing.wait_all_tasks_blocked()
                await server.drop()
                assert await statuses_until(events, S.CONNECTED) == [S.SERVER_DOWN, S.CONNECTING, S.CONNECTED]
            assert down.is_set()
            first, second = (e for _, e in server.seen(ConnectRequested))
            assert first.client_nonce != second.client_nonce
            assert (await c.request("echo", n=2)).result == {"params": {"n": 2}}


async def test_requests_wait_for_the_reconnect(server: ScriptedServer) -> None:
    with trio.fail_after(5):
        async with connect(server, backoff=(0.2, 0.2)) as c:
            await server.drop()
            await c.wait_status(S.SERVER_DOWN)
            answer = await c.request("echo", n=3)  # sent on the next connection
            assert answer.result == {"params": {"n": 3}}
            assert server.seen(Request)[-1][0] == 1


async def test_no_reconnect_after_terminal_status_on_a_reconnect_attempt(server: ScriptedServer) -> None:
    with trio.fail_after(5):
        async with connect(server) as c:
            events = c.events()
            await statuses_until(events, S.CONNECTED)
            server.connack_script = [S.SECRET_KEY_MISMATCH]
            await server.drop()
            assert await c.wait_status(S.SECRET_KEY_MISMATCH) is S.SECRET_KEY_MISMATCH
            rest = [e.status async for e in events if isinstance(e, StatusChanged)]
            assert rest == [S.SERVER_DOWN, S.CONNECTING, S.SECRET_KEY_MISMATCH]
            with pytest.raises(ClientClosed):
                await c.ping()
        assert len(server.seen(ConnectRequested)) == 2


async def test_time_inconsistent_is_retried_until_the_clock_is_right(server: ScriptedServer) -> None:
    skew = [0]
    with trio.fail_after(5):
        async with connect(server, clock=lambda: now_ms() + skew[0]) as c:
            events = c.events()
            await statuses_until(events, S.CONNECTED)
            skew[0] = 2 * MAX_SKEW_MS
            await server.drop()
            assert await statuses_until(events, S.TIME_INCONSISTENT) == [
                S.SERVER_DOWN,
                S.CONNECTING,
                S.TIME_INCONSISTENT,
            ]
            skew[0] = 0
            assert (await statuses_until(events, S.CONNECTED))[-2:] == [S.CONNECTING, S.CONNECTED]


async def test_no_reconnect_when_disabled(server: ScriptedServer) -> None:
    with trio.fail_after(5):
        async with connect(server, reconnect=False) as c:
            await server.drop()
            assert await c.wait_status(S.SERVER_DOWN) is S.SERVER_DOWN
            assert [e async for e in c.events()][-1] == StatusChanged(S.SERVER_DOWN)
            with pytest.raises(ClientClosed):
                await c.request("echo")
        assert len(server.seen(ConnectRequested)) == 1


# --- several endpoints (a cluster's nodes) ------------------------------------------------------


async def test_a_gateway_that_cannot_be_reached_is_left_for_the_next_endpoint(server: ScriptedServer) -> None:
    """The given address refuses connections: the first connect goes on to the next endpoint at once
    (no backoff in between, no failed status), and a later loss of that one tries the list again."""
    dead = free_port()  # nothing listens there
    with trio.fail_after(5):
        async with client.connect(
            "127.0.0.1", dead, TOKEN, backoff=FAST, endpoints=[("127.0.0.1", dead), ["127.0.0.1", server.port]]
        ) as c:
            assert c.status == S.CONNECTED
            assert len(server.seen(ConnectRequested)) == 1
            events = c.events()
            await statuses_until(events, S.CONNECTED)
            await server.drop()
            # The reconnect starts at the endpoint that was lost (the scripted server again), which answers.
            assert await statuses_until(events, S.CONNECTED) == [S.SERVER_DOWN, S.CONNECTING, S.CONNECTED]
            assert len(server.seen(ConnectRequested)) == 2
            assert (await c.request("echo", n=1)).result == {"params": {"n": 1}}


async def test_a_refusal_is_the_servers_answer_and_is_not_taken_to_the_next_endpoint(
    server: ScriptedServer,
) -> None:
    """Only "cannot be reached" moves on: a −5 from a gateway that answered ends the connect, and the
    other endpoint (a second scripted server that would accept) is never dialled."""
    other = ScriptedServer()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, other.handle, 0, host="127.0.0.1"))
        other_port = listeners[0].socket.getsockname()[1]
        server.connack_script = [S.TOKEN_INCORRECT]
        with trio.fail_after(5), pytest.raises(ConnectError) as info:
            async with connect(server, endpoints=[("127.0.0.1", other_port)]):
                pytest.fail("connected")
        assert info.value.status is S.TOKEN_INCORRECT
        assert other.peers == []
        nursery.cancel_scope.cancel()


def test_endpoints_must_be_host_port_pairs() -> None:
    for bad in ([("127.0.0.1",)], [("", 7600)], [("127.0.0.1", 0)], [("127.0.0.1", 65536)], [("h", "7600")], [7600]):
        with pytest.raises(ValueError, match="endpoints"):
            ConnectOptions("127.0.0.1", 7600, TOKEN, endpoints=bad)  # type: ignore[arg-type]
    listed = [["10.0.0.2", 7600]]  # lists are taken too (e.g. from a JSON config)
    options = ConnectOptions("127.0.0.1", 7600, TOKEN, endpoints=listed)  # type: ignore[arg-type]
    assert options.endpoints == (("10.0.0.2", 7600),)


async def test_request_in_flight_when_the_connection_drops_raises_client_closed(
    server: ScriptedServer,
) -> None:
    with trio.fail_after(5):
        async with connect(server) as c:
            with pytest.raises(ClientClosed) as info:
                await c.request("drop")  # the server closes instead of answering
            assert info.value.status is S.SERVER_DOWN
            await c.wait_status(S.CONNECTED)


async def test_request_timeout(server: ScriptedServer) -> None:
    with trio.fail_after(5):
        async with connect(server) as c:
            with pytest.raises(RequestTimeout):
                await c.request("hang", timeout=0.05)
            assert (await c.request("echo")).ok  # the connection is still fine


async def test_protocol_violation_closes_and_reconnects_without_logging_secrets(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ember.client")
    with trio.fail_after(5):
        async with connect(server) as c:
            events = c.events()
            await statuses_until(events, S.CONNECTED)
            await server.peers[-1].send(
                lambda: b"EM\x01\x06\x01" + bytes(9)
            )  # an "encrypted" NOTIFY with no tag
            assert await statuses_until(events, S.CONNECTED) == [S.SERVER_DOWN, S.CONNECTING, S.CONNECTED]
            for shown in (repr(c), str(c)):
                assert TOKEN not in shown and SECRET.hex() not in shown
    assert "protocol violation" in caplog.text
    assert TOKEN not in caplog.text and SECRET.hex() not in caplog.text and TOKEN[4:40] not in caplog.text


# --- disconnect, keepalive, hooks, event policy ----------------------------------------------


async def test_disconnect_with_clear_session(server: ScriptedServer) -> None:
    with trio.fail_after(5):
        async with connect(server) as c:
            await c.disconnect(clear_session=True)
            assert c.status is S.LOGOUT
            (_, bye) = server.seen(Disconnect)[0]
            assert bye.clear_session is True
            with pytest.raises(ClientClosed) as info:
                await c.request("echo")
            assert info.value.status is S.LOGOUT
            assert [e async for e in c.events()][-1] == StatusChanged(S.LOGOUT)
        assert len(server.seen(Disconnect)) == 1
        assert len(server.seen(ConnectRequested)) == 1


async def test_keepalive_pings_while_idle(server: ScriptedServer) -> None:
    with trio.fail_after(3):
        async with connect(server, keepalive_seconds=1) as c:
            assert c.connack is not None and c.connack.keepalive_seconds == 1
            await server.wait_for(lambda i, e: isinstance(e, Ping))
            await server.wait_for(lambda i, e: len(server.seen(Ping)) >= 2)
            assert c.status is S.CONNECTED


async def test_unanswered_pings_mean_the_transport_is_lost(server: ScriptedServer) -> None:
    server.answer_pings = False
    with trio.fail_after(3):
        async with connect(server, keepalive_seconds=1, reconnect=False) as c:
            await c.wait_status(S.SERVER_DOWN)
            assert server.seen(Ping)


async def test_on_connected_runs_in_receiving_after_every_connect(server: ScriptedServer) -> None:
    seen: list[tuple[ConnectionStatus, dict[str, int], Any]] = []

    async def on_connected(c: client.Client, connack: ConnAck) -> None:
        pulled = await c.request("echo", after_seq=connack.heads["msg"])
        seen.append((c.status, connack.heads, pulled.result))

    with trio.fail_after(5):
        async with connect(server, on_connected=on_connected) as c:
            assert c.status is S.CONNECTED
            assert seen == [(S.RECEIVING, {"msg": 7, "friend": 3}, {"params": {"after_seq": 7}})]
            events = c.events()
            assert await statuses_until(events, S.CONNECTED) == [S.CONNECTING, S.RECEIVING, S.CONNECTED]
            server.heads = {"msg": 9}
            await server.drop()
            assert await statuses_until(events, S.CONNECTED) == [
                S.SERVER_DOWN,
                S.CONNECTING,
                S.RECEIVING,
                S.CONNECTED,
            ]
            assert seen[-1] == (S.RECEIVING, {"msg": 9}, {"params": {"after_seq": 9}})
            with c.receiving():
                assert c.status is S.RECEIVING
            assert c.status is S.CONNECTED


async def test_full_event_buffer_drops_the_oldest(server: ScriptedServer) -> None:
    with trio.fail_after(5):
        async with connect(server, event_buffer=3) as c:
            for n in range(10):
                await server.push("msg", {"seq": n})
            await c.request("echo")  # answered after the pushes: they have all been read
            events = c.events()
            got = [await events.receive() for _ in range(3)]
            assert got == [Notify("msg", {"seq": n}) for n in (7, 8, 9)]
            assert c.dropped_events == 2 + 7  # the two statuses, then seq 0..6


async def test_an_error_in_the_block_comes_out_unwrapped(server: ScriptedServer) -> None:
    with trio.fail_after(5):
        with pytest.raises(KeyError):
            async with connect(server):
                raise KeyError("mine")
        (_, bye) = await server.wait_for(lambda i, e: isinstance(e, Disconnect))
        assert bye.clear_session is False


async def test_an_error_in_on_connected_ends_the_client(server: ScriptedServer) -> None:
    async def on_connected(c: client.Client, connack: ConnAck) -> None:
        raise ValueError("sync layer bug")

    with trio.fail_after(5), pytest.raises(ValueError, match="sync layer bug"):
        async with connect(server, on_connected=on_connected):
            pytest.fail("connected")


async def test_outbox_joins_queued_frames_and_applies_backpressure_before_sealing() -> None:
    from client._outbox import Outbox

    box = Outbox(limit_bytes=4)
    box.put(b"ab")
    box.put(b"cd")
    with trio.move_on_after(0.01) as waited:
        await box.wait_room()  # 4 bytes queued: full
    assert waited.cancelled_caught
    assert await box.take() == b"abcd"
    await box.wait_room()  # room again, returns at once
    box.put(b"x")
    assert await box.take() == b"x"
