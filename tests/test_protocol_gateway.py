"""The protocol's handshake hardening, end to end: a real gateway, real sockets, someone on the path.

- every CONNACK the gateway decides after the proof opened is sealed; only the two "no key" answers are clear;
- the proof covers the HELLO and carries what the server acts on, so changing the clear handshake on the path
  either changes nothing or yields the clear -6 anyone could forge;
- the SDK does not believe a clear terminal status: it reports ServerDown and keeps reconnecting;
- the gateway's configuration cannot announce a keepalive the protocol's clients refuse.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import trio

import client as sdk
from gateway.config import Config, ConfigError
from protocol import codec, events
from protocol.codes import ConnectionStatus as S
from protocol.codes import UserStatus
from protocol.connection import MAX_KEEPALIVE_SECONDS, ClientConnection, ServerConnection
from protocol.frames import HEADER_SIZE, Frame, FrameDecoder, FrameType, encode_frame
from tests.harness import Gateway, client_for, start_gateway

FAST = (0.01, 0.05)


@pytest.fixture
async def gw(nursery: trio.Nursery, tmp_path) -> Gateway:
    return await start_gateway(nursery, tmp_path / "gw", server={"client_support_kickoff_event": True})


async def handshake_on_the_wire(
    gw: Gateway,
    proto: ClientConnection,
    *,
    client_time_ms: int | None = None,
    on_hello: Callable[[bytes], bytes] = lambda hello: hello,
    on_connect: Callable[[bytes], bytes] = lambda connect: connect,
) -> tuple[Frame, list[Any]]:
    """HELLO, CONNECT, then the gateway's bytes up to its CONNACK: (the CONNACK frame, the client's events).

    ``on_hello`` and ``on_connect`` are someone on the path: they may change the frames in flight.
    After a failure CONNACK the gateway must close the connection.
    """
    stream = await trio.open_tcp_stream(gw.host, gw.port)
    decoder = FrameDecoder()
    try:
        with trio.fail_after(5):
            hello = b""
            while len(hello) < HEADER_SIZE or len(hello) < HEADER_SIZE + int.from_bytes(hello[10:14], "big"):
                hello += await stream.receive_some(65536)
            [hello_event] = proto.receive_data(on_hello(hello))
            assert isinstance(hello_event, events.Hello)
            now = gw.clock.now_ms() if client_time_ms is None else client_time_ms
            await stream.send_all(on_connect(proto.connect(now)))
            got: list[Any] = []
            connack = None
            while connack is None:
                data = await stream.receive_some(65536)
                assert data, "closed before CONNACK"
                got += proto.receive_data(data)
                decoder.feed(data)
                while (frame := decoder.next_frame()) is not None:
                    if frame.type is FrameType.CONNACK:
                        connack = frame
            if isinstance(got[0], events.ConnAck) and got[0].code != S.CONNECTED:
                while await stream.receive_some(65536):
                    pass  # and then the gateway closes
    finally:
        await stream.aclose()
    return connack, got


async def connack_of(gw: Gateway, token: str, **kw: Any) -> tuple[bool, int]:
    """(sealed?, code) of the gateway's CONNACK, as the client state machine reads it."""
    override = kw.pop("override", {})
    frame, got = await handshake_on_the_wire(gw, client_for(token, **override), **kw)
    assert isinstance(got[0], events.ConnAck), got
    return frame.encrypted, got[0].code


# --- which CONNACKs are sealed ------------------------------------------------------------------


async def test_failures_decided_after_the_proof_are_sealed(gw: Gateway) -> None:
    await gw.user("alice")
    token = await gw.token("alice")
    assert await connack_of(gw, token) == (True, S.CONNECTED)
    assert await connack_of(gw, token, override={"credential": os.urandom(60)}) == (True, S.TOKEN_INCORRECT)
    assert await connack_of(gw, token, client_time_ms=1) == (True, S.TIME_INCONSISTENT)
    assert await gw.services.sessions.set_block_status("alice", UserStatus.FORBIDDEN) == 0
    assert await connack_of(gw, token) == (True, S.REJECTED)


async def test_deleted_sessions_answer_sealed(gw: Gateway) -> None:
    await gw.user("alice")
    phone = await gw.token("alice", "phone", platform=2)
    await gw.token("alice", "phone2", platform=1)  # same class: kicks "phone" (kickoff events on)
    assert await connack_of(gw, phone) == (True, S.KICKED_OFF)
    await gw.user("bob")
    bob = await gw.token("bob")
    await gw.services.store.end_session("bob", "c1", "cleared", gw.clock.now_ms())
    assert await connack_of(gw, bob) == (True, S.SECRET_KEY_MISMATCH)  # the proof opened: sealed


async def test_no_session_or_a_proof_that_does_not_open_is_the_only_clear_answer(gw: Gateway) -> None:
    await gw.user("alice")
    token = await gw.token("alice")
    unknown = {"client_id": "never-issued"}
    assert await connack_of(gw, token, override=unknown) == (False, S.SECRET_KEY_MISMATCH)
    assert await connack_of(gw, token, override={"secret": os.urandom(32)}) == (False, S.SECRET_KEY_MISMATCH)


# --- the transcript: changes on the path ---------------------------------------------------------


def _rewrite_connect(frame: bytes, **changes: Any) -> bytes:
    body = codec.unpack(frame[HEADER_SIZE:])
    body.update(changes)
    return encode_frame(FrameType.CONNECT, codec.pack(body))


async def test_changing_the_clear_platform_or_keepalive_on_the_path_changes_nothing(gw: Gateway) -> None:
    await gw.user("alice")
    token = await gw.token("alice", platform=2)
    proto = client_for(token, keepalive_seconds=30)
    # A different platform in clear would have been a (now sealed, terminal) -5 if the server believed it.
    frame, got = await handshake_on_the_wire(
        gw, proto, on_connect=lambda c: _rewrite_connect(c, platform=3, keepalive=3600)
    )
    assert frame.encrypted
    assert isinstance(got[0], events.ConnAck)
    assert (got[0].code, got[0].keepalive_seconds) == (S.CONNECTED, 30)  # the sealed keepalive


async def test_a_hello_changed_on_the_path_makes_the_proof_fail_in_clear(gw: Gateway) -> None:
    await gw.user("alice")
    token = await gw.token("alice")

    def shift_time(hello: bytes) -> bytes:
        body = codec.unpack(hello[HEADER_SIZE:])
        body["time"] -= 3_600_000  # e.g. to make the client believe its clock is wrong
        return encode_frame(FrameType.HELLO, codec.pack(body))

    assert await connack_of(gw, token, on_hello=shift_time) == (False, S.SECRET_KEY_MISMATCH)


async def test_a_client_that_asked_for_another_platform_is_still_token_incorrect(gw: Gateway) -> None:
    await gw.user("alice")
    token = await gw.token("alice", platform=2)
    # Not a change on the path: the client itself sealed platform 1 (a token for platform 2).
    assert await connack_of(gw, token, override={"platform": 1}) == (True, S.TOKEN_INCORRECT)


# --- the SDK does not believe a clear terminal status --------------------------------------------


class Path:
    """A TCP relay to the gateway that can instead answer every CONNECT with a forged clear CONNACK."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.forge: int | None = None
        self.forge_times: int | None = None  # forge only this many connections, then relay again
        self.forged = 0
        self.port = 0
        self.relays: list[trio.CancelScope] = []

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self.handle, listeners)

    async def handle(self, downstream: trio.SocketStream) -> None:
        async with downstream:
            if self.forge is not None and (self.forge_times is None or self.forged < self.forge_times):
                await self._forge(downstream, self.forge)
                return
            upstream = await trio.open_tcp_stream(self.gw.host, self.gw.port)
            async with upstream, trio.open_nursery() as nursery:
                self.relays.append(nursery.cancel_scope)
                nursery.start_soon(self._pump, downstream, upstream, nursery.cancel_scope)
                nursery.start_soon(self._pump, upstream, downstream, nursery.cancel_scope)

    @staticmethod
    async def _pump(src: trio.SocketStream, dst: trio.SocketStream, scope: trio.CancelScope) -> None:
        try:
            while data := await src.receive_some(65536):
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()

    async def _forge(self, stream: trio.SocketStream, code: int) -> None:
        impostor = ServerConnection(server_nonce=os.urandom(32), server_time_ms=self.gw.clock.now_ms())
        await stream.send_all(impostor.hello())
        try:
            while not any(
                isinstance(e, events.ConnectRequested)
                for e in impostor.receive_data(await stream.receive_some(65536))
            ):
                pass
        except trio.BrokenResourceError:
            return
        await stream.send_all(encode_frame(FrameType.CONNACK, codec.pack({"code": code})))
        self.forged += 1

    def cut(self) -> None:
        for scope in self.relays:
            scope.cancel()


@pytest.mark.parametrize("code", [S.TOKEN_INCORRECT, S.REJECTED, S.KICKED_OFF])
async def test_sdk_first_connect_with_a_forged_clear_status_is_server_down(
    nursery: trio.Nursery, gw: Gateway, code: S
) -> None:
    await gw.user("alice")
    path = Path(gw)
    path.forge = code
    await nursery.start(path.serve)
    with trio.fail_after(5), pytest.raises(sdk.ConnectError) as info:
        async with sdk.connect(
            "127.0.0.1", path.port, await gw.token("alice"), backoff=FAST, timeout=2, clock=gw.clock.now_ms
        ):
            pytest.fail("connected")
    assert info.value.status is S.SERVER_DOWN  # not `code`: an unauthenticated status is not believed


async def test_sdk_keeps_reconnecting_through_forged_clear_statuses(
    nursery: trio.Nursery, gw: Gateway
) -> None:
    await gw.user("alice")
    path = Path(gw)
    await nursery.start(path.serve)
    seen: list[S] = []
    with trio.fail_after(10):
        async with sdk.connect(
            "127.0.0.1", path.port, await gw.token("alice"), backoff=FAST, timeout=2, clock=gw.clock.now_ms
        ) as c:
            events_rx = c.events()
            path.forge = S.TOKEN_INCORRECT
            path.cut()
            while path.forged < 3:
                event = await events_rx.receive()
                if isinstance(event, sdk.StatusChanged):
                    seen.append(event.status)
            path.forge = None  # the path is clean again: the client gets through
            while c.status is not S.CONNECTED:
                event = await events_rx.receive()
                if isinstance(event, sdk.StatusChanged):
                    seen.append(event.status)
    assert S.TOKEN_INCORRECT not in seen
    assert S.SERVER_DOWN in seen


async def test_a_forged_clear_secret_key_mismatch_does_not_end_the_session(
    nursery: trio.Nursery, gw: Gateway
) -> None:
    """One device's first connect meets two injected clear −6 in a row, then a clean path: it connects
    (a clear −6 is retried before it is believed), and the session is still there (no new token needed)."""
    assert sdk.client.CLEAR_MISMATCH_ATTEMPTS > 2
    await gw.user("alice")
    path = Path(gw)
    path.forge, path.forge_times = S.SECRET_KEY_MISMATCH, 2
    await nursery.start(path.serve)
    token = await gw.token("alice")
    with trio.fail_after(10):
        async with sdk.connect(
            "127.0.0.1", path.port, token, backoff=FAST, timeout=2, clock=gw.clock.now_ms
        ) as c:
            assert c.status is S.CONNECTED
            # Later, on a reconnect: forged −6 again, fewer times than the SDK tries; it gets back in.
            events_rx = c.events()
            path.forged = 0
            path.cut()
            seen: list[S] = []
            while path.forged < path.forge_times or c.status is not S.CONNECTED:
                event = await events_rx.receive()
                if isinstance(event, sdk.StatusChanged):
                    seen.append(event.status)
            assert S.SECRET_KEY_MISMATCH not in seen and S.SERVER_DOWN in seen
    assert path.forged == 2


async def test_a_clear_secret_key_mismatch_that_persists_is_reported(nursery: trio.Nursery, gw: Gateway) -> None:
    await gw.user("alice")
    path = Path(gw)
    path.forge = S.SECRET_KEY_MISMATCH
    await nursery.start(path.serve)
    with trio.fail_after(10), pytest.raises(sdk.ConnectError) as info:
        async with sdk.connect(
            "127.0.0.1", path.port, await gw.token("alice"), backoff=FAST, timeout=2, clock=gw.clock.now_ms
        ):
            pytest.fail("connected")
    assert info.value.status is S.SECRET_KEY_MISMATCH and info.value.clear
    assert path.forged == sdk.client.CLEAR_MISMATCH_ATTEMPTS


async def test_a_sealed_secret_key_mismatch_is_final_at_once(nursery: trio.Nursery, gw: Gateway) -> None:
    """A session cleared by the app server is a sealed −6: no retries (the SDK must not hammer a dead token)."""
    await gw.user("alice")
    token = await gw.token("alice")
    await gw.services.sessions.destroy("alice", "c1")
    with trio.fail_after(5), pytest.raises(sdk.ConnectError) as info:
        async with sdk.connect("127.0.0.1", gw.port, token, backoff=(5.0, 5.0), clock=gw.clock.now_ms):
            pytest.fail("connected")
    assert info.value.status is S.SECRET_KEY_MISMATCH and not info.value.clear


# --- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["keepalive_seconds", "min_keepalive_seconds", "max_keepalive_seconds"])
def test_config_keepalive_is_bounded_by_what_clients_accept(key: str) -> None:
    top = {"keepalive_seconds": MAX_KEEPALIVE_SECONDS, "max_keepalive_seconds": MAX_KEEPALIVE_SECONDS}
    assert getattr(Config.default(server={**top, key: MAX_KEEPALIVE_SECONDS}).server, key) == 3600
    with pytest.raises(ConfigError, match=f"server.{key}: must be at most {MAX_KEEPALIVE_SECONDS}"):
        Config.default(server={**top, key: MAX_KEEPALIVE_SECONDS + 1})
