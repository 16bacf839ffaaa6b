"""protocol.connection: the handshake and the sealed session, as state machines fed bytes.

The contract under test: ``receive_data`` never raises on anything a peer can send; a broken rule becomes a
final ``ProtocolViolation`` after the events decoded before it, and the connection is CLOSED.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import codec, events
from protocol.codes import ConnectionStatus
from protocol.connection import MALFORMED_PROOF, ClientConnection, ServerConnection, State
from protocol.crypto import DirectionCipher, derive_frame_keys, derive_proof_key, seal_proof
from protocol.frames import HEADER_SIZE, MAX_REQUEST_ID, Flags, FrameType, encode_frame, encode_header

SECRET = bytes(range(32))
OTHER_SECRET = bytes(range(1, 33))
SERVER_NONCE = b"S" * 32
CLIENT_NONCE = b"C" * 32
CREDENTIAL = b"opaque credential bytes, 28+.."
FAST = settings(max_examples=120, deadline=None)


def new_server(nonce: bytes = SERVER_NONCE, **kw) -> ServerConnection:
    return ServerConnection(server_nonce=nonce, server_time_ms=1_000, **kw)


def new_client(secret: bytes = SECRET, nonce: bytes = CLIENT_NONCE, **kw) -> ClientConnection:
    return ClientConnection(
        user_id="alice",
        client_id="dev-1",
        platform=2,
        secret=secret,
        credential=CREDENTIAL,
        client_nonce=nonce,
        **kw,
    )


def handshake(
    server: ServerConnection | None = None, client: ClientConnection | None = None
) -> tuple[ServerConnection, ClientConnection]:
    """A server and a client, both OPEN."""
    server = server or new_server()
    client = client or new_client()
    assert client.receive_data(server.hello()) == [events.Hello(SERVER_NONCE, 1_000)]
    [connect] = server.receive_data(client.connect(2_000))
    assert isinstance(connect, events.ConnectRequested)
    assert server.authenticate(SECRET) == events.ConnectProof(CREDENTIAL, 2_000, 2, 0)
    connack = server.accept(server_time_ms=3_000, keepalive_seconds=60, heads={"msg": 5})
    assert client.receive_data(connack) == [events.ConnAck(1, 3_000, 60, {"msg": 5})]
    assert server.state is State.OPEN and client.state is State.OPEN
    return server, client


def violation(out: list) -> str:
    assert out, "expected a ProtocolViolation"
    assert isinstance(out[-1], events.ProtocolViolation), out
    return out[-1].reason


def sealed_frame(key: bytes, counter: int, frame_type: int, plaintext: bytes, request_id: int = 0) -> bytes:
    """An encrypted frame made by hand, for frames the state machines would never send."""
    cipher = DirectionCipher(key)
    for _ in range(counter):
        cipher.seal(b"", b"")
    header = encode_header(frame_type, Flags.ENCRYPTED, request_id, len(plaintext) + 16)
    return header + cipher.seal(header, plaintext)


C2S, S2C = derive_frame_keys(SECRET, SERVER_NONCE, CLIENT_NONCE)
HELLO = new_server().hello()  # deterministic: the proof's associated data in connect_frame()


def proof_plaintext(**fields) -> bytes:
    """A proof plaintext as a client seals it; ``...`` drops a key."""
    body = {"cred": CREDENTIAL, "time": 2_000, "platform": 2, "keepalive": 0, **fields}
    return codec.pack({k: v for k, v in body.items() if v is not ...})


def connect_frame(
    proof_plaintext: bytes, *, secret: bytes = SECRET, hello: bytes = HELLO, **overrides
) -> bytes:
    proof = seal_proof(derive_proof_key(secret, SERVER_NONCE, CLIENT_NONCE), proof_plaintext, hello)
    body = {
        "user": "alice",
        "client": "dev-1",
        "platform": 2,
        "keepalive": 0,
        "nonce": CLIENT_NONCE,
        "proof": proof,
    }
    body.update(overrides)
    return encode_frame(FrameType.CONNECT, codec.pack({k: v for k, v in body.items() if v is not ...}))


# --- the handshake ------------------------------------------------------------------------------


def test_full_handshake_and_traffic() -> None:
    server, client = handshake()
    request_id, frame = client.request("get_user_info", {"user_ids": ["bob"]})
    assert request_id == 1
    [request] = server.receive_data(frame)
    assert isinstance(request, events.Request)
    assert (request.request_id, request.method, request.params.text_list("user_ids")) == (
        1,
        "get_user_info",
        ["bob"],
    )
    assert client.receive_data(server.response(1, 0, {"users": []})) == [events.Response(1, 0, {"users": []})]
    assert server.receive_data(client.ping()) == [events.Ping()]
    assert client.receive_data(server.pong()) == [events.Pong()]
    assert client.receive_data(server.notify("kicked", {"code": -7})) == [
        events.Notify("kicked", {"code": -7})
    ]
    body = codec.pack({"t": "x", "d": [1]})
    assert client.receive_data(server.notify_body(body)) == [events.Notify("x", [1])]
    assert server.receive_data(client.disconnect(clear_session=True)) == [events.Disconnect(True)]
    assert server.state is State.CLOSED and client.state is State.CLOSED


def test_connect_event_carries_the_clear_fields() -> None:
    server, client = new_server(), new_client(keepalive_seconds=30)
    client.receive_data(server.hello())
    assert server.receive_data(client.connect(5)) == [
        events.ConnectRequested("alice", "dev-1", 2, 30, CLIENT_NONCE, server._connect.proof)
    ]


def test_wrong_secret_does_not_authenticate() -> None:
    server, client = new_server(), new_client()
    client.receive_data(server.hello())
    server.receive_data(client.connect(5))
    assert server.authenticate(OTHER_SECRET) is None
    assert server.authenticate(SECRET[:16]) is None  # wrong size: no exception
    assert server.state is State.AUTHENTICATING
    assert server.authenticate(SECRET) is not None  # the right one still works afterwards


def test_client_with_wrong_secret_is_not_authenticated() -> None:
    server, client = new_server(), new_client(secret=OTHER_SECRET)
    client.receive_data(server.hello())
    server.receive_data(client.connect(5))
    assert server.authenticate(SECRET) is None


@pytest.mark.parametrize(
    "plaintext",
    [
        b"",
        b"\xc1",
        codec.pack([1, 2]),
        codec.pack({"cred": "text, not bin", "time": 1}),
        codec.pack({"cred": b"x", "time": "1"}),
        codec.pack({"cred": b"x"}),
        codec.pack({"cred": b"x", "time": 2**64 - 1}),  # outside int64
        proof_plaintext(platform=...),  # the platform the server acts on is the sealed one
        proof_plaintext(platform=256),
        proof_plaintext(platform=True),
        proof_plaintext(keepalive=3601),
        proof_plaintext(keepalive=-1),
        proof_plaintext(keepalive="60"),
    ],
)
def test_malformed_proof_plaintext_gives_an_empty_credential(plaintext: bytes) -> None:
    server = new_server()
    [connect] = server.receive_data(connect_frame(plaintext))
    assert isinstance(connect, events.ConnectRequested)
    assert server.authenticate(SECRET) == MALFORMED_PROOF
    assert MALFORMED_PROOF.credential == b""


def test_proof_keepalive_defaults_to_zero() -> None:
    server = new_server()
    server.receive_data(connect_frame(proof_plaintext(keepalive=...)))
    assert server.authenticate(SECRET) == events.ConnectProof(CREDENTIAL, 2_000, 2, 0)


def test_replayed_connect_against_a_new_server_nonce_fails() -> None:
    server, client = new_server(), new_client()
    client.receive_data(server.hello())
    recorded = client.connect(5)
    fresh = new_server(nonce=b"N" * 32)
    [connect] = fresh.receive_data(recorded)
    assert isinstance(connect, events.ConnectRequested)
    assert fresh.authenticate(SECRET) is None


# --- the transcript: the proof covers the HELLO and carries what the server acts on --------------


def test_proof_is_bound_to_the_exact_hello_the_client_received() -> None:
    server, client = new_server(), new_client()
    # Same nonce, another time: what someone on the path would change (the time is not otherwise checked).
    hello = ServerConnection(server_nonce=SERVER_NONCE, server_time_ms=999).hello()
    assert client.receive_data(hello) == [events.Hello(SERVER_NONCE, 999)]
    server.receive_data(client.connect(5))
    assert server.authenticate(SECRET) is None  # the server sent another HELLO: the proof does not open


def test_proof_does_not_open_over_a_re_encoded_hello() -> None:
    # The same values in other (valid) MessagePack widths are other bytes: the AAD is the bytes as sent.
    wide_body = (
        b"\x82"
        + b"\xa5nonce"
        + b"\xc4\x20"
        + SERVER_NONCE
        + b"\xa4time"
        + b"\xcf"
        + (1_000).to_bytes(8, "big")
    )
    server = new_server()
    server.receive_data(connect_frame(proof_plaintext(), hello=encode_frame(FrameType.HELLO, wide_body)))
    assert server.authenticate(SECRET) is None
    server = new_server()
    server.receive_data(connect_frame(proof_plaintext()))
    assert server.authenticate(SECRET) is not None


def test_server_acts_on_the_sealed_platform_and_keepalive_not_the_clear_copies() -> None:
    server, client = new_server(), new_client(keepalive_seconds=30)
    client.receive_data(server.hello())
    frame = client.connect(5)
    body = codec.unpack(frame[HEADER_SIZE:])
    body.update(platform=7, keepalive=3600)  # changed on the path: the proof still opens
    [connect] = server.receive_data(encode_frame(FrameType.CONNECT, codec.pack(body)))
    assert (connect.platform, connect.keepalive_seconds) == (7, 3600)
    proof = server.authenticate(SECRET)
    assert proof == events.ConnectProof(CREDENTIAL, 5, 2, 30)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"user": ""}, "user"),
        ({"user": "a\nb"}, "user"),
        ({"user": "x" * 65}, "user"),
        ({"client": b"dev-1"}, "client"),
        ({"platform": 256}, "platform"),
        ({"platform": True}, "platform"),
        ({"keepalive": 3601}, "keepalive"),
        ({"keepalive": -1}, "keepalive"),
        ({"nonce": b"short"}, "nonce"),
        ({"nonce": ...}, "nonce"),
        ({"proof": b"x" * 15}, "proof"),
        ({"proof": b"x" * 1025}, "proof"),
    ],
)
def test_malformed_connect_is_a_violation_naming_the_field(overrides: dict, field: str) -> None:
    server = new_server()
    reason = violation(server.receive_data(connect_frame(codec.pack({}), **overrides)))
    assert field in reason
    assert server.state is State.CLOSED


def test_connect_ignores_unknown_keys_and_nil_keepalive() -> None:
    server = new_server()
    [connect] = server.receive_data(connect_frame(b"", keepalive=None, future={"x": 1}))
    assert isinstance(connect, events.ConnectRequested) and connect.keepalive_seconds == 0


@pytest.mark.parametrize(
    "frame",
    [
        encode_frame(FrameType.REQUEST, b""),
        encode_frame(FrameType.HELLO, b""),
        encode_header(FrameType.CONNECT, Flags.ENCRYPTED, 0, 16) + bytes(16),
        encode_frame(FrameType.CONNECT, codec.pack([1])),
    ],
)
def test_server_expects_a_clear_connect_first(frame: bytes) -> None:
    assert violation(new_server().receive_data(frame))


def test_client_expects_a_clear_hello_first() -> None:
    assert "HELLO" in violation(
        new_client().receive_data(encode_frame(FrameType.CONNACK, codec.pack({"code": -6})))
    )
    encrypted_hello = encode_header(FrameType.HELLO, Flags.ENCRYPTED, 0, 0)
    assert violation(new_client().receive_data(encrypted_hello))
    server, client = new_server(), new_client()
    assert violation(client.receive_data(server.hello() + server.hello()))


def test_clear_connack_claiming_success_is_refused() -> None:
    server, client = new_server(), new_client()
    client.receive_data(server.hello())
    client.connect(5)
    forged = encode_frame(FrameType.CONNACK, codec.pack({"code": 1, "time": 1, "keepalive": 60, "heads": {}}))
    assert "unauthenticated" in violation(client.receive_data(forged))
    assert client.state is State.CLOSED


@pytest.mark.parametrize(
    "code",
    [
        ConnectionStatus.REJECTED,
        ConnectionStatus.TOKEN_INCORRECT,
        ConnectionStatus.SECRET_KEY_MISMATCH,  # a deleted session, found after the proof opened
        ConnectionStatus.KICKED_OFF,
        ConnectionStatus.TIME_INCONSISTENT,
    ],
)
def test_failure_decided_after_the_proof_opened_is_sealed(code: ConnectionStatus) -> None:
    server, client = new_server(), new_client()
    client.receive_data(server.hello())
    server.receive_data(client.connect(5))
    assert server.authenticate(SECRET) is not None
    reject = server.reject(code)
    assert reject[4] == Flags.ENCRYPTED  # s→c frame 0, like the success CONNACK
    assert server.state is State.CLOSED
    assert client.receive_data(reject + server.hello()) == [events.ConnAck(code)]
    assert client.state is State.CLOSED


def test_failure_before_the_proof_opened_is_clear_and_only_secret_key_mismatch() -> None:
    server, client = new_server(), new_client()
    client.receive_data(server.hello())
    server.receive_data(client.connect(5))
    assert server.authenticate(OTHER_SECRET) is None
    for code in (ConnectionStatus.TOKEN_INCORRECT, ConnectionStatus.REJECTED, ConnectionStatus.KICKED_OFF):
        with pytest.raises(ValueError):
            server.reject(code)  # the server holds no key: it could only say it in clear
    reject = server.reject(ConnectionStatus.SECRET_KEY_MISMATCH)
    assert reject[4] == 0
    assert client.receive_data(reject) == [events.ConnAck(-6, sealed=False)]
    assert client.state is State.CLOSED
    with pytest.raises(ValueError):
        new_server().reject(ConnectionStatus.CONNECTED)
    with pytest.raises(RuntimeError):
        new_server().reject(ConnectionStatus.SECRET_KEY_MISMATCH)  # no CONNECT to answer


@pytest.mark.parametrize("code", [-3, -5, -7, -9, -8, -4, 0, 2, 127])
def test_clear_connack_other_than_secret_key_mismatch_is_a_violation(code: int) -> None:
    # Anyone on the path can send a clear frame: a terminal status in clear would stop the SDK for good.
    server, client = new_server(), new_client()
    client.receive_data(server.hello())
    client.connect(5)
    forged = encode_frame(FrameType.CONNACK, codec.pack({"code": code}))
    assert "unauthenticated" in violation(client.receive_data(forged))
    assert client.state is State.CLOSED


@pytest.mark.parametrize("code", [-129, 128, 2**40])
def test_connack_code_out_of_range_is_a_violation(code: int) -> None:
    for make in (
        lambda body: sealed_frame(S2C, 0, FrameType.CONNACK, body),
        lambda body: encode_frame(FrameType.CONNACK, body),
    ):
        server, client = new_server(), new_client()
        client.receive_data(server.hello())
        client.connect(5)
        assert "code" in violation(client.receive_data(make(codec.pack({"code": code}))))


def test_sealed_connack_under_another_key_is_a_violation() -> None:
    server, client = new_server(), new_client()
    client.receive_data(server.hello())
    client.connect(5)
    other_s2c = derive_frame_keys(OTHER_SECRET, SERVER_NONCE, CLIENT_NONCE)[1]
    frame = sealed_frame(other_s2c, 0, FrameType.CONNACK, codec.pack({"code": -5}))
    assert "authentication" in violation(client.receive_data(frame))


def test_connack_heads_with_a_bin_key_is_a_violation_not_a_crash() -> None:
    server, client = new_server(), new_client()
    client.receive_data(server.hello())
    client.connect(5)
    body = codec.pack({"code": 1, "time": 1, "keepalive": 60, "heads": {b"msg": "x"}})
    assert violation(client.receive_data(sealed_frame(S2C, 0, FrameType.CONNACK, body)))
    assert client.state is State.CLOSED


def test_buffered_requests_before_connack_are_read_after_accept() -> None:
    server, client = new_server(), new_client()
    client.receive_data(server.hello())
    pipelined = client.connect(5) + client.request("a")[1] + client.ping()
    second = client.request("b")[1]
    [connect] = server.receive_data(pipelined)  # CONNECT only: the rest waits for keys
    assert isinstance(connect, events.ConnectRequested)
    assert server.receive_data(second) == []
    assert server.authenticate(SECRET) is not None
    connack = server.accept(server_time_ms=1, keepalive_seconds=60, heads={})
    out = server.receive_data(b"")
    assert [type(e) for e in out] == [events.Request, events.Ping, events.Request]
    assert [e.method for e in out if isinstance(e, events.Request)] == ["a", "b"]
    assert client.receive_data(connack)[0].code == 1


def test_buffered_requests_are_dropped_after_a_reject() -> None:
    server, client = new_server(), new_client()
    client.receive_data(server.hello())
    server.receive_data(client.connect(5) + client.request("a")[1])
    server.authenticate(SECRET)
    server.reject(ConnectionStatus.TOKEN_INCORRECT)
    assert server.receive_data(b"") == []
    assert server.receive_data(client.ping()) == []


def test_state_errors_in_the_driver_are_runtime_errors() -> None:
    server = new_server()
    with pytest.raises(RuntimeError):
        server.authenticate(SECRET)
    with pytest.raises(RuntimeError):
        server.accept(server_time_ms=1, keepalive_seconds=1, heads={})
    server.receive_data(connect_frame(b""))
    assert server.authenticate(OTHER_SECRET) is None
    with pytest.raises(RuntimeError):
        server.accept(server_time_ms=1, keepalive_seconds=1, heads={})  # the proof never opened
    with pytest.raises(RuntimeError):
        new_client().connect(1)
    with pytest.raises(ValueError):
        new_server(nonce=b"short")
    with pytest.raises(ValueError):
        new_client(nonce=b"short")


# --- the sealed session: tampering, replay, reordering, reflection -----------------------------


def test_tampered_body_is_a_violation() -> None:
    server, client = handshake()
    frame = bytearray(client.request("m")[1])
    frame[-1] ^= 1
    assert "authentication" in violation(server.receive_data(bytes(frame)))
    assert server.state is State.CLOSED


def test_tampered_header_is_a_violation() -> None:
    server, client = handshake()
    frame = bytearray(client.request("m")[1])
    frame[9] ^= 1  # request id: covered by the AAD
    assert "authentication" in violation(server.receive_data(bytes(frame)))


def test_replayed_frame_is_a_violation() -> None:
    server, client = handshake()
    frame = client.request("m")[1]
    assert isinstance(server.receive_data(frame)[0], events.Request)
    assert violation(server.receive_data(frame))


def test_reordered_frames_are_a_violation() -> None:
    server, client = handshake()
    first, second = client.request("a")[1], client.request("b")[1]
    assert violation(server.receive_data(second + first))


def test_dropped_frame_is_a_violation() -> None:
    server, client = handshake()
    client.ping()  # lost
    assert violation(server.receive_data(client.ping()))


def test_reflected_frames_are_violations() -> None:
    server, client = handshake()
    assert violation(client.receive_data(client.request("m")[1]))
    server, client = handshake()
    assert violation(server.receive_data(server.response(1, 0)))
    # Same type a client accepts, but sealed with the client → server key at the right counter.
    server, client = handshake()
    assert "authentication" in violation(
        client.receive_data(sealed_frame(C2S, 1, FrameType.RESPONSE, codec.pack({"c": 0}), 1))
    )


@pytest.mark.parametrize("frame_type", [FrameType.REQUEST, FrameType.PING, FrameType.DISCONNECT])
def test_clear_frames_after_the_handshake_are_refused_by_the_server(frame_type: FrameType) -> None:
    server, _ = handshake()
    assert "encrypted" in violation(server.receive_data(encode_frame(frame_type, codec.pack({"m": "x"}))))


@pytest.mark.parametrize(
    "frame_type", [FrameType.RESPONSE, FrameType.NOTIFY, FrameType.PONG, FrameType.ERROR]
)
def test_clear_frames_after_the_handshake_are_refused_by_the_client(frame_type: FrameType) -> None:
    _, client = handshake()
    body = codec.pack({"c": 0, "t": "x", "code": 2, "reason": "forged"})
    assert "encrypted" in violation(client.receive_data(encode_frame(frame_type, body)))


@pytest.mark.parametrize(
    "frame_type", [FrameType.CONNECT, FrameType.CONNACK, FrameType.HELLO, FrameType.RESPONSE, FrameType.PONG]
)
def test_server_refuses_frames_a_client_never_sends_after_the_handshake(frame_type: FrameType) -> None:
    server, _ = handshake()
    assert violation(server.receive_data(sealed_frame(C2S, 0, frame_type, b"")))


@pytest.mark.parametrize(
    "frame_type",
    [FrameType.CONNACK, FrameType.HELLO, FrameType.REQUEST, FrameType.PING, FrameType.DISCONNECT],
)
# DISCONNECT from the server (docs/PROTOCOL.md §8.7) needs its three keys: {code} is a violation too.
def test_client_refuses_frames_a_server_never_sends_after_the_handshake(frame_type: FrameType) -> None:
    _, client = handshake()
    assert violation(client.receive_data(sealed_frame(S2C, 1, frame_type, codec.pack({"code": 1}))))


def test_oversize_length_is_refused_from_the_header_alone() -> None:
    server = new_server(max_frame_bytes=1024)
    header = encode_header(FrameType.CONNECT, 0, 0, 1025)
    assert "exceeds" in violation(server.receive_data(header))
    server, client = handshake(new_server(max_frame_bytes=1024))
    assert "exceeds" in violation(
        server.receive_data(encode_header(FrameType.REQUEST, Flags.ENCRYPTED, 1, 1025))
    )
    _, client = handshake(client=new_client(max_frame_bytes=1024))
    assert "exceeds" in violation(
        client.receive_data(encode_header(FrameType.NOTIFY, Flags.ENCRYPTED, 0, 2**31))
    )


def test_server_error_after_a_violation_is_sealed_and_readable_by_the_client() -> None:
    server, client = handshake()
    violation(server.receive_data(encode_frame(FrameType.PING, b"")))  # a clear PING: violation
    error = server.error(2, "PING must be encrypted")
    assert error[4] == Flags.ENCRYPTED
    assert client.receive_data(error) == [events.ServerError(2, "PING must be encrypted")]
    assert client.state is State.CLOSED


def test_server_error_while_open_is_sealed() -> None:
    server, client = handshake()
    assert client.receive_data(server.error(4, "internal error")) == [events.ServerError(4, "internal error")]


def test_server_error_before_the_handshake_is_clear_and_readable() -> None:
    server, client = new_server(), new_client()
    client.receive_data(server.hello())
    violation(server.receive_data(encode_frame(FrameType.PING, b"")))
    error = server.error(2, "expected CONNECT")
    assert error[4] == 0
    assert client.receive_data(error) == [events.ServerError(2, "expected CONNECT")]
    # Also while authenticating, once the proof opened but before CONNACK (e.g. a handshake timeout).
    server, client = new_server(), new_client()
    client.receive_data(server.hello())
    server.receive_data(client.connect(1))
    server.authenticate(SECRET)
    assert client.receive_data(server.error(2, "late"))[0] == events.ServerError(2, "late")


def test_error_reason_is_truncated() -> None:
    server, client = new_server(), new_client()
    client.receive_data(server.hello())
    [event] = client.receive_data(server.error(2, "x" * 500))
    assert event == events.ServerError(2, "x" * 200)


# --- request-level errors stay request-level ----------------------------------------------------


@pytest.mark.parametrize(
    ("plaintext", "reason"),
    [
        (codec.pack({}), "m: missing"),
        (codec.pack({"m": None, "p": {}}), "m: missing"),
        (codec.pack({"m": ""}), "m: length must be 1..64"),
        (codec.pack({"m": 5}), "m: must be a string"),
        (codec.pack({"m": True}), "m: must be a string"),
        (codec.pack({"m": b"ok"}), "m: must be a string"),
        (codec.pack({"m": "a\x00"}), "m: must be printable"),
        (codec.pack({"m": "x" * 65}), "m: length must be 1..64"),
        (codec.pack({"m": "ok", "p": [1]}), "p: must be a map"),
        (codec.pack({"m": "ok", "p": "x"}), "p: must be a map"),
        (codec.pack({"m": 5, "p": [1]}), "m: must be a string"),  # the method is read first
    ],
)
def test_bad_request_keeps_the_connection_open(plaintext: bytes, reason: str) -> None:
    server, _ = handshake()
    [event] = server.receive_data(sealed_frame(C2S, 0, FrameType.REQUEST, plaintext, 77))
    assert isinstance(event, events.BadRequest) and event.request_id == 77
    assert event.reason == reason
    assert server.state is State.OPEN


@pytest.mark.parametrize("method", ["x", "x" * 64, "send_message", "é"])
def test_a_request_with_a_good_method_and_params_is_read(method: str) -> None:
    server, _ = handshake()
    params = {"conv": {"type": 0, "target": "bob"}, "n": [1, {"k": None}]}
    [event] = server.receive_data(
        sealed_frame(C2S, 0, FrameType.REQUEST, codec.pack({"m": method, "p": params, "extra": 1}), 9)
    )
    assert event == events.Request(9, method, event.params) and dict(event.params.raw) == params
    assert event.params.path("conv") == "conv"  # unprefixed: a 251 names the field as the method's docs do


def test_request_whose_plaintext_is_not_a_map_is_a_violation() -> None:
    server, _ = handshake()
    assert violation(server.receive_data(sealed_frame(C2S, 0, FrameType.REQUEST, codec.pack([1]), 1)))


def test_request_params_default_to_an_empty_map() -> None:
    server, _ = handshake()
    [event] = server.receive_data(
        sealed_frame(C2S, 0, FrameType.REQUEST, codec.pack({"m": "x", "p": None}), 3)
    )
    assert isinstance(event, events.Request) and dict(event.params.raw) == {}


def test_ping_with_a_body_is_a_violation() -> None:
    server, _ = handshake()
    assert violation(server.receive_data(sealed_frame(C2S, 0, FrameType.PING, b"\x80")))


def test_disconnect_variants() -> None:
    server, _ = handshake()
    assert server.receive_data(sealed_frame(C2S, 0, FrameType.DISCONNECT, b"")) == [events.Disconnect(False)]
    server, client = handshake()
    frames = client.disconnect() + client._seal(FrameType.PING, b"")
    assert server.receive_data(frames) == [events.Disconnect(False)]  # nothing is read after DISCONNECT
    server, _ = handshake()
    assert violation(
        server.receive_data(sealed_frame(C2S, 0, FrameType.DISCONNECT, codec.pack({"clear": 1})))
    )


def test_request_ids_count_from_one_and_wrap_past_zero() -> None:
    _, client = handshake()
    assert [client.request("m")[0] for _ in range(3)] == [1, 2, 3]
    client._next_request_id = MAX_REQUEST_ID
    assert [client.request("m")[0] for _ in range(2)] == [MAX_REQUEST_ID, 1]


# --- chunking -----------------------------------------------------------------------------------


def test_frames_split_byte_by_byte() -> None:
    server, client = new_server(), new_client()
    hello = server.hello()
    got = [e for k in range(len(hello)) for e in client.receive_data(hello[k : k + 1])]
    assert got == [events.Hello(SERVER_NONCE, 1_000)]
    connect = client.connect(5)
    got = [e for k in range(len(connect)) for e in server.receive_data(connect[k : k + 1])]
    assert [type(e) for e in got] == [events.ConnectRequested]
    server.authenticate(SECRET)
    connack = server.accept(server_time_ms=1, keepalive_seconds=60, heads={})
    wire = connack + server.response(4, 0, "r") + server.pong()
    got = [e for k in range(len(wire)) for e in client.receive_data(wire[k : k + 1])]
    assert [type(e) for e in got] == [events.ConnAck, events.Response, events.Pong]


def test_two_frames_in_one_chunk() -> None:
    server, client = handshake()
    out = server.receive_data(client.request("a")[1] + client.request("b")[1])
    assert [e.method for e in out] == ["a", "b"]


def test_events_before_a_violation_are_kept() -> None:
    server, client = handshake()
    out = server.receive_data(client.request("a")[1] + client.ping() + b"garbage" + client.ping())
    assert [type(e) for e in out] == [events.Request, events.Ping, events.ProtocolViolation]
    assert server.state is State.CLOSED
    assert server.receive_data(client.ping()) == []  # CLOSED: nothing more is read


# --- nothing a peer sends makes receive_data raise ---------------------------------------------


def chunks_of(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def feed_all(conn, chunks: list[bytes]) -> list:
    out = []
    for chunk in chunks:
        out.extend(conn.receive_data(chunk))
    return out


def check_events(out: list) -> None:
    for event in out[:-1]:
        assert not isinstance(event, events.ProtocolViolation), "a violation must be the last event"


prefixes = st.sampled_from([b"", b"EM", b"EM\x01", b"EM\x01\x02\x00\x00", b"EM\x01\x04\x01\x00"])
cut_lists = st.lists(st.integers(min_value=0, max_value=500), max_size=8)


@FAST
@given(prefixes, st.binary(max_size=300), cut_lists)
def test_server_receive_data_never_raises_before_the_handshake(
    prefix: bytes, data: bytes, cuts: list
) -> None:
    server = new_server()
    check_events(feed_all(server, chunks_of(prefix + data, cuts)))


@FAST
@given(prefixes, st.binary(max_size=300), cut_lists)
def test_server_receive_data_never_raises_when_open(prefix: bytes, data: bytes, cuts: list) -> None:
    server, _ = handshake()
    check_events(feed_all(server, chunks_of(prefix + data, cuts)))


@FAST
@given(
    prefixes, st.binary(max_size=300), cut_lists, st.sampled_from(["await_hello", "authenticating", "open"])
)
def test_client_receive_data_never_raises(prefix: bytes, data: bytes, cuts: list, state: str) -> None:
    if state == "open":
        _, client = handshake()
    else:
        server, client = new_server(), new_client()
        if state == "authenticating":
            client.receive_data(server.hello())
            client.connect(5)
    check_events(feed_all(client, chunks_of(prefix + data, cuts)))


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=40)
)
values = st.recursive(
    scalars,
    lambda c: (
        st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6) | st.binary(max_size=3), c, max_size=3)
    ),
    max_leaves=12,
)
keys = st.sampled_from(
    ["m", "p", "c", "r", "t", "d", "code", "time", "keepalive", "heads", "clear", "reason", "nonce", "cred"]
)
plaintext_maps = st.dictionaries(keys | st.text(max_size=3), values, max_size=5).map(codec.pack)
bodies = plaintext_maps | st.binary(max_size=40)


@FAST
@given(st.sampled_from(list(FrameType)), bodies, st.integers(min_value=0, max_value=MAX_REQUEST_ID))
def test_server_never_raises_on_sealed_frames_with_any_plaintext(frame_type, plaintext, request_id) -> None:
    # A peer that holds the keys (an SDK with a bug) is still only a ProtocolViolation away.
    server, _ = handshake()
    out = server.receive_data(sealed_frame(C2S, 0, frame_type, plaintext, request_id))
    check_events(out)
    assert len(out) == 1


@FAST
@given(st.sampled_from(list(FrameType)), bodies, st.integers(min_value=0, max_value=MAX_REQUEST_ID))
def test_client_never_raises_on_sealed_frames_with_any_plaintext(frame_type, plaintext, request_id) -> None:
    _, client = handshake()
    out = client.receive_data(sealed_frame(S2C, 1, frame_type, plaintext, request_id))
    check_events(out)
    assert len(out) == 1


@FAST
@given(st.sampled_from(list(FrameType)), bodies)
def test_client_never_raises_on_any_connack_or_error_while_authenticating(frame_type, plaintext) -> None:
    server, client = new_server(), new_client()
    client.receive_data(server.hello())
    client.connect(5)
    clear = encode_frame(frame_type, plaintext)
    check_events(client.receive_data(clear))
    server, client = new_server(), new_client()
    client.receive_data(server.hello())
    client.connect(5)
    check_events(client.receive_data(sealed_frame(S2C, 0, frame_type, plaintext)))


@FAST
@given(st.dictionaries(keys | st.sampled_from(["user", "client", "platform", "proof"]), values, max_size=6))
def test_server_never_raises_on_any_connect_body(body: dict) -> None:
    server = new_server()
    out = server.receive_data(encode_frame(FrameType.CONNECT, codec.pack(body)))
    check_events(out)
    if out and isinstance(out[0], events.ConnectRequested):
        assert server.authenticate(SECRET) is None  # junk never opens as a proof


@FAST
@given(bodies)
def test_authenticate_never_raises_on_any_proof_plaintext(plaintext: bytes) -> None:
    server = new_server()
    server.receive_data(connect_frame(plaintext))
    proof = server.authenticate(SECRET)
    assert isinstance(proof, events.ConnectProof)
    assert isinstance(proof.credential, bytes) and isinstance(proof.client_time_ms, int)


def test_hello_header_bytes() -> None:
    hello = new_server().hello()
    assert hello[: HEADER_SIZE - 4] == bytes.fromhex("454d01010000 00000000")
