"""Every connection status of SPEC §3, over real sockets against a real gateway."""

from __future__ import annotations

import os
import sqlite3

import pytest
import trio

import client as sdk
from gateway.server import ACCEPT_BATCH
from protocol import events
from protocol.codec import unpack
from protocol.codes import TERMINAL_STATUSES, UserStatus
from protocol.codes import ConnectionStatus as S
from protocol.frames import FrameDecoder, FrameType
from protocol.token import encode_token, issue_token, parse_token
from storage import open_store
from tests import vectors
from tests.harness import Gateway, RawClient, start_gateway
from tests.storage_helpers import held_writer


@pytest.fixture
async def gw(nursery: trio.Nursery, tmp_path) -> Gateway:
    return await start_gateway(nursery, tmp_path / "gw")


async def connack(gw: Gateway, token: str, client_time_ms: int | None = None, **override) -> events.ConnAck:
    client = await RawClient.open(gw, token, **override)
    try:
        event = await client.handshake(gw.clock.now_ms() if client_time_ms is None else client_time_ms)
        assert isinstance(event, events.ConnAck), event
        return event
    finally:
        await client.aclose()


async def test_connected_with_a_fresh_token(gw: Gateway) -> None:
    await gw.user("alice")
    ack = await connack(gw, await gw.token("alice"))
    assert ack.code == S.CONNECTED
    assert ack.server_time_ms == gw.clock.now_ms()
    assert set(ack.heads) >= {"msg", "friend", "friend_request", "setting"}


async def test_many_connects_at_once_are_all_served(nursery: trio.Nursery, tmp_path) -> None:
    """More connects at once than the server accepts per wake-up of its listening socket."""
    gw = await start_gateway(nursery, tmp_path, server={"multi_endpoint": True})
    await gw.user("alice")
    tokens = [await gw.token("alice", f"c{i}") for i in range(ACCEPT_BATCH + 20)]
    codes: list[int] = []

    async def connect(token: str) -> None:
        client = await RawClient.open(gw, token)
        codes.append((await client.handshake(gw.clock.now_ms())).code)
        await client.aclose()

    async with trio.open_nursery() as clients:
        for token in tokens:
            clients.start_soon(connect, token)
    assert codes == [S.CONNECTED] * len(tokens)


# --- TokenIncorrect (-5): the proof opens, the credential is wrong ---------------------------


async def test_garbage_credential_is_token_incorrect(gw: Gateway) -> None:
    await gw.user("alice")
    ack = await connack(gw, await gw.token("alice"), credential=os.urandom(60))
    assert ack.code == S.TOKEN_INCORRECT


async def test_credential_sealed_by_another_server_is_token_incorrect(gw: Gateway) -> None:
    await gw.user("alice")
    parts = parse_token(await gw.token("alice"))
    forged = parse_token(
        issue_token(
            os.urandom(32), user_id="alice", client_id="c1", platform=2, secret=parts.secret, issued_at_ms=1
        )
    )
    ack = await connack(gw, encode_token(parts), credential=forged.credential)
    assert ack.code == S.TOKEN_INCORRECT


async def test_expired_token_is_token_incorrect(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path, token={"expire_seconds": 60})
    await gw.user("alice")
    token = await gw.token("alice")
    assert (await connack(gw, token)).code == S.CONNECTED
    gw.clock.advance(61)
    assert (await connack(gw, token)).code == S.TOKEN_INCORRECT


async def test_another_users_credential_is_token_incorrect(gw: Gateway) -> None:
    await gw.user("alice")
    await gw.user("bob")
    alice = parse_token(await gw.token("alice", "c1"))
    bob = parse_token(await gw.token("bob", "c2"))
    # alice's session and secret, bob's (valid, server-sealed) credential
    ack = await connack(gw, encode_token(alice), credential=bob.credential)
    assert ack.code == S.TOKEN_INCORRECT


async def test_another_client_ids_credential_is_token_incorrect(gw: Gateway) -> None:
    await gw.user("alice")
    phone = parse_token(await gw.token("alice", "phone", platform=2))
    desktop = parse_token(await gw.token("alice", "desktop", platform=3))
    ack = await connack(gw, encode_token(phone), credential=desktop.credential)
    assert ack.code == S.TOKEN_INCORRECT


async def test_another_platforms_credential_is_token_incorrect(gw: Gateway) -> None:
    await gw.user("alice")
    token = await gw.token("alice", "c1", platform=2)
    # Same session and secret, but CONNECT claims iOS while the credential says Android.
    assert (await connack(gw, token, platform=1)).code == S.TOKEN_INCORRECT


# --- SecretKeyMismatch (-6): no session, or the proof does not open ---------------------------


async def test_unknown_client_id_is_secret_key_mismatch(gw: Gateway) -> None:
    await gw.user("alice")
    assert (
        await connack(gw, await gw.token("alice"), client_id="never-issued")
    ).code == S.SECRET_KEY_MISMATCH


async def test_wrong_secret_is_secret_key_mismatch(gw: Gateway) -> None:
    await gw.user("alice")
    assert (await connack(gw, await gw.token("alice"), secret=os.urandom(32))).code == S.SECRET_KEY_MISMATCH


async def test_old_token_after_reissue_is_secret_key_mismatch(gw: Gateway) -> None:
    await gw.user("alice")
    old = await gw.token("alice")
    new = await gw.token("alice")  # same client id: a fresh secret replaces the old one
    assert (await connack(gw, old)).code == S.SECRET_KEY_MISMATCH
    assert (await connack(gw, new)).code == S.CONNECTED


async def test_clear_session_on_disconnect_is_secret_key_mismatch_later(gw: Gateway) -> None:
    await gw.user("alice")
    token = await gw.token("alice")
    client = await RawClient.connected(gw, token)
    await client.send(client.proto.disconnect(clear_session=True))
    assert await client.closed_by_server()
    await client.aclose()
    session = await gw.services.store.get_session("alice", "c1")
    assert (session.state, session.deleted_reason) == ("deleted", "cleared")
    assert (await connack(gw, token)).code == S.SECRET_KEY_MISMATCH


async def test_disconnect_without_clear_keeps_the_session(gw: Gateway) -> None:
    await gw.user("alice")
    token = await gw.token("alice")
    client = await RawClient.connected(gw, token)
    await client.send(client.proto.disconnect(clear_session=False))
    assert await client.closed_by_server()
    await client.aclose()
    assert (await connack(gw, token)).code == S.CONNECTED


async def test_kicked_session_is_secret_key_mismatch_without_kickoff_events(gw: Gateway) -> None:
    await gw.user("alice")
    phone = await gw.token("alice", "phone", platform=2)
    await gw.token("alice", "phone2", platform=1)  # same class (mobile): kicks "phone"
    assert (await connack(gw, phone)).code == S.SECRET_KEY_MISMATCH


async def test_kicked_session_is_kickedoff_with_kickoff_events(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path, server={"client_support_kickoff_event": True})
    await gw.user("alice")
    phone = await gw.token("alice", "phone", platform=2)
    await gw.token("alice", "phone2", platform=10)  # Harmony is mobile too
    assert (await connack(gw, phone)).code == S.KICKED_OFF
    # Another class (PC) is not kicked.
    await gw.token("alice", "desktop", platform=3)
    assert (await connack(gw, await gw.token("alice", "phone2", platform=10))).code == S.CONNECTED


async def test_database_replaced_is_secret_key_mismatch(tmp_path) -> None:
    """The same server secrets over a new, empty database: the session is gone."""
    config_sections = {"token": {"key": os.urandom(32).hex()}}
    async with trio.open_nursery() as nursery:
        gw = await start_gateway(nursery, tmp_path / "one", **config_sections)
        await gw.user("alice")
        token = await gw.token("alice")
        assert (await connack(gw, token)).code == S.CONNECTED
        nursery.cancel_scope.cancel()
    async with trio.open_nursery() as nursery:
        gw = await start_gateway(nursery, tmp_path / "two", **config_sections)
        await gw.user("alice")
        assert (await connack(gw, token)).code == S.SECRET_KEY_MISMATCH
        nursery.cancel_scope.cancel()


# --- Rejected (-3) and TimeInconsistent (-9) ---------------------------------------------------


async def test_forbidden_user_is_rejected_and_live_connection_closed(gw: Gateway) -> None:
    await gw.user("alice")
    token = await gw.token("alice")
    live = await RawClient.open(gw, token)
    assert (await live.handshake(gw.clock.now_ms())).code == S.CONNECTED
    assert await gw.services.sessions.set_block_status("alice", UserStatus.FORBIDDEN) == 0
    assert await live.closed_by_server()
    assert live.received == [events.Notify("kicked", {"code": S.REJECTED})]
    await live.aclose()
    assert (await connack(gw, token)).code == S.REJECTED


async def test_client_clock_too_far_off_is_time_inconsistent(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path, server={"max_clock_skew_seconds": 60})
    await gw.user("alice")
    token = await gw.token("alice")
    assert (await connack(gw, token, client_time_ms=gw.clock.now_ms() - 61_000)).code == S.TIME_INCONSISTENT
    assert (await connack(gw, token, client_time_ms=gw.clock.now_ms() + 61_000)).code == S.TIME_INCONSISTENT
    assert (await connack(gw, token, client_time_ms=gw.clock.now_ms() + 59_000)).code == S.CONNECTED


# --- Kick of a live connection, replay, tampering -----------------------------------------------


@pytest.mark.parametrize("kickoff_events, expected", [(False, S.SECRET_KEY_MISMATCH), (True, S.KICKED_OFF)])
async def test_new_token_kicks_live_connection_of_same_class(
    nursery: trio.Nursery, tmp_path, kickoff_events: bool, expected: S
) -> None:
    gw = await start_gateway(nursery, tmp_path, server={"client_support_kickoff_event": kickoff_events})
    await gw.user("alice")
    live = await RawClient.open(gw, await gw.token("alice", "ipad", platform=8))
    assert (await live.handshake(gw.clock.now_ms())).code == S.CONNECTED
    await gw.token("alice", "android-pad", platform=9)
    assert await live.closed_by_server()
    assert live.received == [events.Notify("kicked", {"code": expected})]
    await live.aclose()


async def test_multi_endpoint_keeps_both_devices(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path, server={"multi_endpoint": True})
    await gw.user("alice")
    first = await gw.token("alice", "phone-a", platform=2)
    await gw.token("alice", "phone-b", platform=2)
    assert (await connack(gw, first)).code == S.CONNECTED


async def test_replayed_connect_is_refused(gw: Gateway) -> None:
    await gw.user("alice")
    token = await gw.token("alice")
    original = await RawClient.open(gw, token)
    assert (await original.handshake(gw.clock.now_ms())).code == S.CONNECTED
    recorded_connect = original.sent[-1]

    # An eavesdropper replays the recorded CONNECT bytes on a new connection.
    replay = await trio.open_tcp_stream(gw.host, gw.port)
    await replay.send_all(recorded_connect)
    data = b""
    while True:
        chunk = await replay.receive_some(65536)
        if not chunk:
            break
        data += chunk
    await replay.aclose()

    decoder = FrameDecoder()
    decoder.feed(data)
    frames = []
    while (frame := decoder.next_frame()) is not None:
        frames.append(frame)
    assert [f.type for f in frames] == [FrameType.HELLO, FrameType.CONNACK]
    assert not frames[1].encrypted  # a failure CONNACK, never a sealed success
    assert unpack(frames[1].body) == {"code": S.SECRET_KEY_MISMATCH}
    # ... and the original connection was not displaced: it still answers.
    await original.send(original.proto.ping())
    assert isinstance(await original.next_event(), events.Pong)
    await original.aclose()


@pytest.mark.parametrize("attack", ["tamper", "reorder", "replay"])
async def test_tampered_reordered_or_replayed_frame_closes_the_connection(gw: Gateway, attack: str) -> None:
    await gw.user("alice")
    client = await RawClient.connected(gw, await gw.token("alice"))
    first = client.proto.request("get_user_info", {"user_ids": ["alice"]})[1]
    second = client.proto.request("get_user_info", {"user_ids": ["alice"]})[1]
    if attack == "tamper":
        bad = bytearray(first)
        bad[-1] ^= 0x01
        wire = bytes(bad)
    elif attack == "reorder":
        wire = second + first
    else:
        wire = first + first
    await client.stream.send_all(wire)
    assert await client.closed_by_server()
    kinds = [type(e) for e in client.received]
    # A replay is caught at the second copy, after the first was answered; the others at once.
    if attack == "replay":
        assert kinds[0] is events.Response
    assert kinds[-1] is events.ServerError
    assert client.received[-1].code == 2
    await client.aclose()


async def stay_then_disconnect(gw: Gateway, seconds: int) -> int:
    """alice connects (device c1), stays ``seconds`` on the gateway's clock and leaves; her session's
    last_seen from before she connected."""
    await gw.user("alice")
    token = await gw.token("alice")
    issued = (await gw.services.store.get_session("alice", "c1")).last_seen
    client = await RawClient.connected(gw, token)
    gw.clock.advance(seconds)
    await client.send(client.proto.disconnect())
    assert await client.closed_by_server()
    await client.aclose()
    return issued


async def test_last_seen_is_the_disconnect_time(gw: Gateway) -> None:
    issued = await stay_then_disconnect(gw, 90)
    # The server notes the disconnect before it closes the socket; the flush writes it (the server
    # also flushes every second, and at shutdown: see the next test).
    await gw.services.sessions.flush_last_seen()
    session = await gw.services.store.get_session("alice", "c1")
    assert session.last_seen == issued + 90_000


async def test_last_seen_is_written_before_the_store_closes(tmp_path) -> None:
    async with trio.open_nursery() as gateway_nursery:
        gw = await start_gateway(gateway_nursery, tmp_path)
        issued = await stay_then_disconnect(gw, 90)
        gateway_nursery.cancel_scope.cancel()  # stop the gateway, flushed or not
    async with open_store(gw.config.storage.path, server_key=gw.config.token.key_bytes(), url=gw.config.storage.url) as store:
        session = await store.get_session("alice", "c1")
    assert session is not None and session.last_seen == issued + 90_000


@pytest.mark.sqlite_only
async def test_a_failed_last_seen_write_is_written_by_the_next_flush(gw: Gateway) -> None:
    await gw.user("alice")
    await gw.token("alice", "c1")
    now = gw.clock.now_ms()
    sessions, store = gw.services.sessions, gw.services.store

    def refuse_session_updates(conn: sqlite3.Connection, on: bool) -> None:
        if on:  # a real SQLite failure of the write, on the writer's own connection
            conn.execute(
                "CREATE TEMP TRIGGER refuse BEFORE UPDATE ON sessions BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        else:
            conn.execute("DROP TRIGGER refuse")

    sessions.went_offline("alice", "c1", now + 1000)
    await store.run(refuse_session_updates, True)
    with pytest.raises(sqlite3.IntegrityError):
        await sessions.flush_last_seen()
    await store.run(refuse_session_updates, False)
    await sessions.flush_last_seen()
    session = await store.get_session("alice", "c1")
    assert session is not None and session.last_seen == now + 1000


async def test_last_seen_keeps_the_latest_disconnect(gw: Gateway) -> None:
    await gw.user("alice")
    await gw.token("alice", "c1")
    await gw.token("alice", "c2")
    now = gw.clock.now_ms()
    sessions = gw.services.sessions
    sessions.went_offline("alice", "c1", now + 2000)
    sessions.went_offline("alice", "c1", now + 1000)  # an older time never moves it back
    sessions.went_offline("alice", "c2", now + 3000)
    await sessions.flush_last_seen()
    await sessions.flush_last_seen()  # nothing left: no write
    listed = {s.client_id: s.last_seen for s in await gw.services.store.list_sessions("alice")}
    assert listed == {"c1": now + 2000, "c2": now + 3000}


async def test_a_connect_whose_storage_read_is_late_gets_a_retryable_error(nursery: trio.Nursery, tmp_path) -> None:
    """A stuck writer holds CONNECT's storage read: the handshake's own deadline ends the wait with a clear
    ERROR 4 (docs/PROTOCOL.md §8.6), which the SDK reports as ServerDown and retries; never a token status."""
    gw = await start_gateway(nursery, tmp_path / "gw", server={"handshake_timeout_seconds": 0.3})
    await gw.user("alice")
    token = await gw.token("alice")
    writer = gw.services.store.writer
    async with held_writer(writer):  # stuck until the block ends (at most 5 s)
        with trio.fail_after(4):  # the answer comes while the writer is still stuck
            raw = await RawClient.open(gw, token)
            assert await raw.handshake(gw.clock.now_ms()) == events.ServerError(*vectors.BUSY_ERROR)  # §10
            assert await raw.closed_by_server()
            await raw.aclose()
            with pytest.raises(sdk.ConnectError) as refused:
                async with sdk.connect(gw.host, gw.port, token, clock=gw.clock.now_ms, reconnect=False):
                    pass
        assert refused.value.status == S.SERVER_DOWN and refused.value.status not in TERMINAL_STATUSES
    await writer.submit(lambda conn: None)  # the late reads have answered (callbacks run in queue order) ...
    assert not gw.services.delivery.node.connections("alice")  # ... and registered no connection
    assert gw.services.metrics.handshake_timeouts == 2
    assert (await connack(gw, token)).code == S.CONNECTED  # with the writer free, the same token connects
