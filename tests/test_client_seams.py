"""The SDK's seams (docs/ARCHITECTURE.md, "The SDK's seams"): the connect options declared and checked once
(``client.options``), and the link behind a transport (``client.link``) that a second transport can take over.

The options tests pass on the SDK from before the options had a class of their own too: they pin the checks
(messages, order) that the move had to keep.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from typing import Any

import pytest
import trio
import trio.testing

import client
from client.link import Dialer, Secrets, TcpTransport
from client.options import ConnectOptions
from protocol.codes import ConnectionStatus
from protocol.events import GoAway, Notify
from protocol.frames import HEADER, HEADER_SIZE, FrameType
from protocol.token import TokenParts, encode_token, parse_token
from tests.harness import start_gateway

# A well-formed token of no session; the tests that use it never reach a server.
TOKEN_OF_NOBODY = encode_token(TokenParts("nobody", "nobody-phone", 2, b"\x01" * 32, b"\x02" * 64))


async def _refusal(**options: Any) -> BaseException:
    """What entering ``connect`` raises with these options (port 1: nothing listens, nothing is dialled)."""
    options.setdefault("token", TOKEN_OF_NOBODY)
    with pytest.raises((ValueError, client.ConnectError)) as raised:
        async with client.connect("127.0.0.1", 1, **options):
            pytest.fail("connected")
    return raised.value


def test_connect_takes_exactly_the_options_fields() -> None:
    fields = [f for f in dataclasses.fields(ConnectOptions)]
    parameters = list(inspect.signature(client.connect).parameters.values())
    assert [p.name for p in parameters] == [f.name for f in fields]
    assert [p.name for p in parameters if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD] == ["host", "port", "token"]
    for parameter, field in zip(parameters, fields, strict=True):
        assert parameter.default == (inspect.Parameter.empty if field.default is dataclasses.MISSING else field.default)


def test_every_option_is_documented_once() -> None:
    doc = ConnectOptions.__doc__ or ""
    for field in dataclasses.fields(ConnectOptions):
        assert doc.count(f"        {field.name}: ") == 1, field.name


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("keepalive_seconds", -1, "keepalive_seconds must be in 0.."),
        ("keepalive_seconds", 10**6, "keepalive_seconds must be in 0.."),
        ("backoff", (0.0, 1.0), "backoff must be"),
        ("backoff", (2.0, 1.0), "backoff must be"),
        ("timeout", 0, "timeout must be positive"),
        ("event_buffer", 0, "event_buffer must be at least 1"),
        ("last_seq", -1, "last_seq must be >= 0"),
        ("message_buffer", 0, "message_buffer must be at least 1"),
        ("chatroom_buffer", 0, "chatroom_buffer must be at least 1"),
        ("transport", "carrier-pigeon", "transport must be 'tcp' or 'websocket'"),
    ],
)
async def test_an_option_out_of_range_is_refused_by_name(option: str, value: Any, message: str) -> None:
    refusal = await _refusal(**{option: value})
    assert isinstance(refusal, ValueError)
    assert str(refusal).startswith(message)


async def test_a_malformed_token_is_token_incorrect_checked_between_the_client_and_the_sync_options() -> None:
    refusal = await _refusal(token="em1.not-a-token")
    assert isinstance(refusal, client.ConnectError) and refusal.status == ConnectionStatus.TOKEN_INCORRECT
    # The order of the checks is kept: the client's own options first, then the token, then the sub-APIs'.
    assert isinstance(await _refusal(token="em1.not-a-token", timeout=0), ValueError)
    assert isinstance(await _refusal(token="em1.not-a-token", last_seq=-1), client.ConnectError)


def test_the_options_never_show_the_token() -> None:
    secret_looking = TOKEN_OF_NOBODY
    options = ConnectOptions("127.0.0.1", 1, secret_looking)
    assert secret_looking not in repr(options)


def _whole_frames(batch: Sequence[bytes]) -> list[FrameType]:
    """The type of each element, each checked to be exactly one frame, header included."""
    kinds = []
    for frame in batch:
        _magic, _version, kind, _flags, _reserved, _request_id, length = HEADER.unpack_from(frame)
        assert len(frame) == HEADER_SIZE + length
        kinds.append(FrameType(kind))
    return kinds


async def test_a_second_transport_carries_a_whole_session_frame_by_frame(nursery: trio.Nursery, tmp_path) -> None:
    """What a WebSocket transport (one message per frame) needs of the seam: every ``send`` gets whole frames,
    in order, and frames queued together still come in one call (TCP joins them into one write)."""
    gw = await start_gateway(nursery, tmp_path)
    await gw.user("alice")
    parts = parse_token(await gw.token("alice", "alice-phone"))
    batches: list[list[bytes]] = []

    class Recording(TcpTransport):
        async def send(self, frames: Sequence[bytes]) -> None:
            batches.append(list(frames))
            await super().send(frames)

    async def open_recording(host: str, port: int) -> Recording:
        return Recording(await trio.open_tcp_stream(host, port))

    pushed: list[Notify | GoAway] = []
    ended: list[ConnectionStatus] = []
    dialer = Dialer(
        host=gw.host, port=gw.port, user_id=parts.user_id, client_id=parts.client_id, platform=parts.platform,
        secrets=Secrets(parts.secret, parts.credential), keepalive_seconds=60, timeout=5, backoff=(0.01, 0.05),
        clock=gw.clock.now_ms, on_push=lambda _link, event: pushed.append(event), on_close=ended.append,
        open_transport=open_recording,
    )  # fmt: skip
    with trio.fail_after(10):
        link = await dialer.open()
        assert [_whole_frames(b) for b in batches] == [[FrameType.CONNECT]]
        answers: list[Any] = []


        async def ask() -> None:
            answers.append(await link.request("get_user_info", {"user_ids": ["alice"]}))

        async with trio.open_nursery() as session:
            async with trio.open_nursery() as asking:
                for _ in range(4):
                    asking.start_soon(ask)
                await trio.testing.wait_all_tasks_blocked()  # all four sealed and queued: no writer yet
                link.start(session)
            assert [a.code for a in answers] == [0, 0, 0, 0]
            assert await link.ping()
            assert link.disconnect(clear_session=False)
        await link.aclose()
    kinds = [_whole_frames(b) for b in batches]
    assert kinds[1] == [FrameType.REQUEST] * 4  # queued in one go, handed over in one go
    assert kinds[2:] == [[FrameType.PING], [FrameType.DISCONNECT]]
    assert ended == [ConnectionStatus.LOGOUT] and link.closed
