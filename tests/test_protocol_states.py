"""protocol.states: the table of which frames each state reads, checked against the real state machines.

Every frame type, clear and sealed (under the peer's real key at the right counter), with a well-formed body,
is fed in every state to a real ``ServerConnection`` / ``ClientConnection`` brought there by a real
handshake; the events and the state after must be what the table says. docs/PROTOCOL.md §2.1 must print
exactly the table.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from protocol import codec, events
from protocol.codes import ConnectionStatus, ErrorCode
from protocol.connection import ClientConnection, ServerConnection, State
from protocol.crypto import DirectionCipher, derive_frame_keys
from protocol.frames import Flags, FrameType, encode_frame, encode_header
from protocol.states import CLIENT_READS, SERVER_READS, Otherwise, StateRule, accepted
from protocol.token import parse_token
from tests.harness import RawClient, start_gateway

SECRET = bytes(range(32))
SERVER_NONCE = b"S" * 32
CLIENT_NONCE = b"C" * 32
C2S, S2C = derive_frame_keys(SECRET, SERVER_NONCE, CLIENT_NONCE)
PROTOCOL_MD = Path(__file__).resolve().parent.parent / "docs" / "PROTOCOL.md"

# A well-formed plaintext of each type (DISCONNECT's serves both directions: each side ignores the other's keys).
SUCCESS_CONNACK = {"code": 1, "time": 3_000, "keepalive": 60, "heads": {}}
BODIES: dict[FrameType, list[dict[str, Any] | None]] = {
    FrameType.HELLO: [{"nonce": SERVER_NONCE, "time": 1_000}],
    FrameType.CONNECT: [],  # filled in below: the real client's CONNECT
    FrameType.CONNACK: [SUCCESS_CONNACK, {"code": int(ConnectionStatus.TOKEN_INCORRECT)}],
    FrameType.REQUEST: [{"m": "echo", "p": {}}],
    FrameType.RESPONSE: [{"c": 0, "r": None}],
    FrameType.NOTIFY: [{"t": "msg", "d": {"seq": 1}}],
    FrameType.PING: [None],  # empty plaintext
    FrameType.PONG: [None],
    FrameType.DISCONNECT: [{"clear": False, "reason": "shutdown", "retry_ms": 1000, "redirect": ""}],
    FrameType.ERROR: [{"code": 2, "reason": "expected CONNECT"}],
}
#: A clear CONNACK is well-formed only with −6 (any other is tested as a violation in test_protocol_connection).
CLEAR_CONNACK = {"code": int(ConnectionStatus.SECRET_KEY_MISMATCH)}


def new_server() -> ServerConnection:
    return ServerConnection(server_nonce=SERVER_NONCE, server_time_ms=1_000)


def new_client() -> ClientConnection:
    return ClientConnection(
        user_id="alice", client_id="dev-1", platform=2, secret=SECRET, credential=b"c" * 28, client_nonce=CLIENT_NONCE
    )


def connect_frame() -> bytes:
    client = new_client()
    client.receive_data(new_server().hello())
    return client.connect(2_000)


CONNECT_BODY = codec.unpack_map(connect_frame()[14:]).raw


def server_in(state: State) -> ServerConnection:
    server = new_server()
    if state is State.AWAIT_CONNECT:
        return server
    server.receive_data(connect_frame())
    if state is State.AUTHENTICATING:
        return server
    if state is State.CLOSED:
        server.reject(ConnectionStatus.SECRET_KEY_MISMATCH)
        return server
    assert server.authenticate(SECRET) is not None
    server.accept(server_time_ms=3_000, keepalive_seconds=60, heads={})
    return server


def client_in(state: State) -> ClientConnection:
    client = new_client()
    if state is State.AWAIT_HELLO:
        return client
    client.receive_data(new_server().hello())
    client.connect(2_000)
    if state is State.AUTHENTICATING:
        return client
    [ack] = client.receive_data(sealed(S2C, 0, FrameType.CONNACK, SUCCESS_CONNACK))
    assert isinstance(ack, events.ConnAck) and client.state is State.OPEN
    if state is State.CLOSED:
        client.disconnect()
    return client


def plaintext(body: dict[str, Any] | None) -> bytes:
    return b"" if body is None else codec.pack(body)


def sealed(key: bytes, counter: int, frame_type: FrameType, body: dict[str, Any] | None) -> bytes:
    cipher = DirectionCipher(key)
    for _ in range(counter):
        cipher.seal(b"", b"")
    data = plaintext(body)
    request_id = 1 if frame_type in (FrameType.REQUEST, FrameType.RESPONSE) else 0
    header = encode_header(frame_type, Flags.ENCRYPTED, request_id, len(data) + 16)
    return header + cipher.seal(header, data)


def clear(frame_type: FrameType, body: dict[str, Any] | None) -> bytes:
    request_id = 1 if frame_type in (FrameType.REQUEST, FrameType.RESPONSE) else 0
    return encode_frame(frame_type, plaintext(body), request_id=request_id)


def cases() -> list[tuple[FrameType, bool, dict[str, Any] | None]]:
    """Every (frame type, sealed?, body) to feed in that state."""
    out = []
    for frame_type in FrameType:
        for is_sealed in (False, True):
            if frame_type is FrameType.CONNECT:
                bodies: list[dict[str, Any] | None] = [CONNECT_BODY]
            elif frame_type is FrameType.CONNACK and not is_sealed:
                bodies = [CLEAR_CONNACK]
            else:
                bodies = BODIES[frame_type]
            out += [(frame_type, is_sealed, body) for body in bodies]
    return out


def check(
    rule: StateRule, make: Callable[[], Any], frame: Callable[[], bytes], frame_type: FrameType, is_sealed: bool
) -> None:
    conn = make()
    before = conn.state
    out = conn.receive_data(frame())
    row = accepted(rule, frame_type, is_sealed)
    what = f"{frame_type.name} {'sealed' if is_sealed else 'clear'} in {before.name}"
    if row is not None:
        assert len(out) == 1 and isinstance(out[0], row.events), (what, out)
        assert conn.state in row.then, (what, conn.state)
    elif rule.otherwise is Otherwise.VIOLATION:
        assert len(out) == 1 and isinstance(out[0], events.ProtocolViolation), (what, out)
        assert conn.state is State.CLOSED, what
    elif rule.otherwise is Otherwise.IGNORED:
        assert out == [] and conn.state is State.CLOSED, (what, out)
    else:  # BUFFERED: nothing now; read as in OPEN once the success CONNACK is sent
        assert out == [] and conn.state is before, (what, out)
        conn.authenticate(SECRET)
        conn.accept(server_time_ms=3_000, keepalive_seconds=60, heads={})
        later = conn.receive_data(b"")
        open_row = accepted(SERVER_READS[State.OPEN], frame_type, is_sealed)
        if open_row is None:
            assert len(later) == 1 and isinstance(later[0], events.ProtocolViolation), (what, later)
        else:
            assert len(later) == 1 and isinstance(later[0], open_row.events), (what, later)


@pytest.mark.parametrize("state", list(SERVER_READS), ids=lambda s: s.name)
def test_the_server_reads_what_the_table_says(state: State) -> None:
    rule = SERVER_READS[state]
    for frame_type, is_sealed, body in cases():

        def frame(frame_type: FrameType = frame_type, is_sealed: bool = is_sealed, body: Any = body) -> bytes:
            return sealed(C2S, 0, frame_type, body) if is_sealed else clear(frame_type, body)

        check(rule, lambda: server_in(state), frame, frame_type, is_sealed)


@pytest.mark.parametrize("state", list(CLIENT_READS), ids=lambda s: s.name)
def test_the_client_reads_what_the_table_says(state: State) -> None:
    rule = CLIENT_READS[state]
    counter = 1 if state is State.OPEN or state is State.CLOSED else 0  # the success CONNACK was s→c frame 0
    for frame_type, is_sealed, body in cases():

        def frame(frame_type: FrameType = frame_type, is_sealed: bool = is_sealed, body: Any = body) -> bytes:
            return sealed(S2C, counter, frame_type, body) if is_sealed else clear(frame_type, body)

        check(rule, lambda: client_in(state), frame, frame_type, is_sealed)


def test_a_sealed_connack_decides_open_or_closed_by_its_code() -> None:
    for body, state in ((SUCCESS_CONNACK, State.OPEN), ({"code": int(ConnectionStatus.TOKEN_INCORRECT)}, State.CLOSED)):
        client = client_in(State.AUTHENTICATING)
        client.receive_data(sealed(S2C, 0, FrameType.CONNACK, body))
        assert client.state is state


def test_a_second_hello_is_a_violation() -> None:
    client = client_in(State.AWAIT_HELLO)
    client.receive_data(new_server().hello())
    assert client.state is State.AWAIT_HELLO  # HELLO read; CONNECT not yet sent
    [out] = client.receive_data(new_server().hello())
    assert isinstance(out, events.ProtocolViolation) and client.state is State.CLOSED


async def test_the_gateway_answers_each_frame_the_table_refuses_with_error_2_and_closes(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """The table's "violation: ERROR 2, close" over a real socket, for each refused type in AWAIT_CONNECT and OPEN."""
    gw = await start_gateway(nursery, tmp_path)
    await gw.user("alice")
    token = await gw.token("alice")
    secret = parse_token(token).secret

    async def refused(frame_type: FrameType, is_sealed: bool, body: dict[str, Any] | None, open_first: bool) -> None:
        nonce = os.urandom(32)
        client = await RawClient.open(gw, token, client_nonce=nonce)
        hello = await client.next_event()
        assert isinstance(hello, events.Hello)
        if open_first:
            await client.send(client.proto.connect(gw.clock.now_ms()))
            ack = await client.next_event()
            assert isinstance(ack, events.ConnAck) and ack.code == ConnectionStatus.CONNECTED
        c2s, _ = derive_frame_keys(secret, hello.server_nonce, nonce)
        await client.send(sealed(c2s, 0, frame_type, body) if is_sealed else clear(frame_type, body))
        error = await client.next_event()  # the client's state machine checks it is sealed once OPEN
        assert isinstance(error, events.ServerError) and error.code == ErrorCode.INVALID_DATA, error
        assert await client.closed_by_server()
        await client.aclose()

    with trio.fail_after(30):
        for frame_type, is_sealed, body in cases():
            if accepted(SERVER_READS[State.AWAIT_CONNECT], frame_type, is_sealed) is None:
                await refused(frame_type, is_sealed, body, open_first=False)
            if accepted(SERVER_READS[State.OPEN], frame_type, is_sealed) is None:
                await refused(frame_type, is_sealed, body, open_first=True)


def test_every_state_of_each_side_is_in_the_table() -> None:
    assert set(SERVER_READS) == {State.AWAIT_CONNECT, State.AUTHENTICATING, State.OPEN, State.CLOSED}
    assert set(CLIENT_READS) == {State.AWAIT_HELLO, State.AUTHENTICATING, State.OPEN, State.CLOSED}
    assert server_in(State.AWAIT_CONNECT).state is State.AWAIT_CONNECT  # where each side starts
    assert new_client().state is State.AWAIT_HELLO


# --- docs/PROTOCOL.md §2.1 prints the table -------------------------------------------------------------------

OTHERWISE_TEXT = {
    ("server", Otherwise.VIOLATION): f"violation: ERROR {int(ErrorCode.INVALID_DATA)}, close → CLOSED",
    ("client", Otherwise.VIOLATION): f"violation: close, status −{-int(ConnectionStatus.SERVER_DOWN)} → CLOSED",
    ("server", Otherwise.BUFFERED): "buffered: read as in OPEN after the success CONNACK, dropped after a failure",
    ("server", Otherwise.IGNORED): "ignored",
    ("client", Otherwise.IGNORED): "ignored",
}


def markdown(reader: str, table: dict[State, StateRule]) -> str:
    lines = [
        "| state | frame (type) | protection | event | then | notes |",
        "|---|---|---|---|---|---|",
    ]
    for state, rule in table.items():
        name = f"`{state.name}`"
        for i, row in enumerate(rule.reads):
            lines.append(
                f"| {name + ': ' + rule.meaning if i == 0 else name} | {row.frame.name} ({int(row.frame)}) | {row.protection.value} | "
                + " / ".join(f"`{event.__name__}`" for event in row.events)
                + " | "
                + " or ".join(s.name for s in row.then)
                + f" | {row.note} |"
            )
        other = "any other frame" if rule.reads else "any frame"
        lines.append(f"| {name if rule.reads else name + ': ' + rule.meaning} | {other} | | | | {OTHERWISE_TEXT[reader, rule.otherwise]} |")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("reader", "table"), [("server", SERVER_READS), ("client", CLIENT_READS)])
def test_protocol_md_prints_the_table(reader: str, table: dict[State, StateRule]) -> None:
    expected = markdown(reader, table)
    assert expected in PROTOCOL_MD.read_text(encoding="utf-8"), f"docs/PROTOCOL.md §2.1 should hold:\n{expected}"
