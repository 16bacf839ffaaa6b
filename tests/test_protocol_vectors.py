"""docs/PROTOCOL.md's test vectors stay true: if the code or the doc drifts, a test here fails.

Three independent checks of the vectors the doc prints:
- the protocol package, fed the documented inputs, produces exactly the documented bytes;
- the documented bytes, fed to the protocol package, decode to the documented values;
- the documented bytes follow the rules the doc writes in prose (header layout, HKDF, nonces, AAD), checked
  here with a from-scratch HKDF and bare AES-GCM / msgpack, not with the protocol package.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct

import msgpack
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from protocol import events
from protocol.codes import ConnectionStatus
from protocol.connection import ClientConnection, ServerConnection, State
from protocol.token import Credential, open_credential, parse_token
from tests import vectors

TEXT = vectors.DOC.read_text(encoding="utf-8")
BLOCKS = vectors.read_blocks(TEXT)
INPUTS = vectors.parse_inputs(BLOCKS)
HEX_OUTPUTS = [name for name in vectors.OUTPUTS if name != "token"]


def doc(name: str) -> bytes:
    return vectors.block_bytes(BLOCKS, name)


@pytest.fixture(scope="module")
def computed() -> dict[str, bytes | str]:
    return vectors.compute(INPUTS)


# --- the doc is complete and well-formed ------------------------------------------------------


def test_doc_has_exactly_the_known_vector_blocks() -> None:
    assert set(BLOCKS) == {"inputs", *vectors.OUTPUTS}


@pytest.mark.parametrize("name", HEX_OUTPUTS)
def test_hex_blocks_are_lowercase_hex(name: str) -> None:
    digits = "".join(BLOCKS[name].split())
    assert digits and len(digits) % 2 == 0
    assert all(c in "0123456789abcdef" for c in digits)


def test_the_rewriter_would_change_nothing(computed: dict[str, bytes | str]) -> None:
    # The same check as `python tests/vectors.py --check`, including the hex layout.
    assert vectors.rewrite(TEXT, computed) == TEXT


# --- code → bytes: the package makes exactly the documented bytes -----------------------------


@pytest.mark.parametrize("name", HEX_OUTPUTS)
def test_package_produces_documented_bytes(name: str, computed: dict[str, bytes | str]) -> None:
    assert computed[name].hex() == doc(name).hex()


def test_package_produces_documented_token(computed: dict[str, bytes | str]) -> None:
    assert computed["token"] == BLOCKS["token"].strip()


# --- bytes → values: the package decodes the documented bytes to the documented values ----------


def test_token_decodes_to_inputs() -> None:
    i = INPUTS
    parts = parse_token(BLOCKS["token"].strip())
    assert (parts.user_id, parts.client_id, parts.platform, parts.secret, parts.credential) == (
        i["user_id"],
        i["client_id"],
        i["platform"],
        i["secret"],
        doc("credential"),
    )
    assert open_credential(i["token_key"], doc("credential")) == Credential(
        i["user_id"], i["client_id"], i["platform"], i["issued_at_ms"], i["expires_at_ms"]
    )


def test_documented_conversation_decodes_to_inputs() -> None:
    """Play the documented frames through both state machines."""
    i = INPUTS
    # The server must send the documented HELLO: the proof covers its bytes.
    server = ServerConnection(server_nonce=i["server_nonce"], server_time_ms=i["hello_time_ms"])
    assert server.hello() == doc("hello_frame")
    client = ClientConnection(
        user_id=i["user_id"],
        client_id=i["client_id"],
        platform=i["platform"],
        secret=i["secret"],
        credential=doc("credential"),
        client_nonce=i["client_nonce"],
    )

    assert client.receive_data(doc("hello_frame")) == [events.Hello(i["server_nonce"], i["hello_time_ms"])]
    client.connect(0)  # derives the client's keys; its own CONNECT bytes are not used

    [connect] = server.receive_data(doc("connect_frame"))
    assert connect == events.ConnectRequested(
        i["user_id"], i["client_id"], i["platform"], i["announced_keepalive"], i["client_nonce"], doc("proof")
    )
    assert server.authenticate(i["secret"]) == events.ConnectProof(
        doc("credential"), i["client_time_ms"], i["platform"], i["announced_keepalive"]
    )
    server.accept(server_time_ms=0, keepalive_seconds=0, heads={})  # the server's side is OPEN now

    assert client.receive_data(doc("connack_frame")) == [
        events.ConnAck(ConnectionStatus.CONNECTED, i["connack_time_ms"], i["connack_keepalive"], i["heads"])
    ]
    [request] = server.receive_data(doc("request_frame"))
    assert isinstance(request, events.Request)
    assert (request.request_id, request.method, dict(request.params.raw)) == (
        1,
        i["request_method"],
        i["request_params"],
    )
    assert client.receive_data(doc("response_frame")) == [
        events.Response(1, i["response_code"], i["response_result"])
    ]
    assert server.receive_data(doc("ping_frame")) == [events.Ping()]
    assert client.receive_data(doc("pong_frame")) == [events.Pong()]
    client.request("send_message")  # the client's counter and request ids move on as they did
    [send] = server.receive_data(doc("send_request_frame"))
    assert isinstance(send, events.Request)
    assert (send.request_id, send.method, dict(send.params.raw)) == (2, "send_message", i["send_params"])
    assert client.receive_data(doc("send_response_frame")) == [events.Response(2, 0, i["send_result"])]
    assert client.receive_data(doc("notify_frame")) == [events.Notify(i["notify_topic"], i["notify_data"])]
    assert server.receive_data(doc("disconnect_frame")) == [events.Disconnect(i["disconnect_clear"])]
    assert server.state is State.CLOSED


def _client_after_connect() -> ClientConnection:
    i = INPUTS
    client = ClientConnection(
        user_id=i["user_id"],
        client_id=i["client_id"],
        platform=i["platform"],
        secret=i["secret"],
        credential=doc("credential"),
        client_nonce=i["client_nonce"],
    )
    client.receive_data(doc("hello_frame"))
    client.connect(i["client_time_ms"])
    return client


def test_reject_frame_decodes_to_inputs() -> None:
    client = _client_after_connect()
    assert client.receive_data(doc("reject_frame")) == [events.ConnAck(INPUTS["reject_code"], sealed=False)]
    assert client.state is State.CLOSED


def test_sealed_reject_frame_decodes_to_inputs() -> None:
    client = _client_after_connect()
    assert client.receive_data(doc("sealed_reject_frame")) == [events.ConnAck(INPUTS["sealed_reject_code"])]
    assert client.state is State.CLOSED


def test_a_clear_copy_of_the_sealed_reject_is_refused() -> None:
    # The same code in clear is what someone on the path could send: the client does not believe it.
    body = doc("sealed_reject_plaintext")
    forged = struct.pack(">2sBBBBII", b"EM", 1, 3, 0, 0, 0, len(body)) + body
    [event] = _client_after_connect().receive_data(forged)
    assert isinstance(event, events.ProtocolViolation)


def test_error_frame_decodes_to_inputs() -> None:
    client = _client_after_connect()
    assert client.receive_data(doc("error_frame")) == [
        events.ServerError(INPUTS["error_code"], INPUTS["error_reason"])
    ]


def test_busy_error_frame_decodes_to_the_servers_busy_answer() -> None:
    # The gateway sends exactly this event (tests/test_handshake.py, a late storage read).
    assert _client_after_connect().receive_data(doc("busy_error_frame")) == [events.ServerError(*vectors.BUSY_ERROR)]


# --- bytes ↔ prose: the vectors follow the rules the doc states, checked from scratch ------------


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869, written out: the doc's construction without the protocol package."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def split_frame(frame: bytes) -> tuple[tuple[bytes, int, int, int, int, int, int], bytes]:
    fields = struct.unpack(">2sBBBBII", frame[:14])
    assert fields[0] == b"EM" and fields[1] == 1 and fields[4] == 0
    assert fields[6] == len(frame) - 14, "length counts exactly the body bytes"
    return fields, frame[14:]


def test_keys_follow_the_documented_hkdf() -> None:
    i = INPUTS
    salt = i["server_nonce"] + i["client_nonce"]
    assert hkdf_sha256(i["secret"], salt, b"ember/1 connect proof", 32) == doc("proof_key")
    okm = hkdf_sha256(i["secret"], salt, b"ember/1 frame keys", 64)
    assert okm[:32] == doc("frame_key_c2s")
    assert okm[32:] == doc("frame_key_s2c")


def test_credential_and_token_follow_the_documented_layout() -> None:
    i = INPUTS
    credential = doc("credential")
    assert credential[:12] == i["credential_nonce"]
    plaintext = AESGCM(i["token_key"]).decrypt(credential[:12], credential[12:], b"ember/1 credential")
    assert plaintext == doc("credential_plaintext")
    assert msgpack.unpackb(plaintext) == [
        i["user_id"],
        i["client_id"],
        i["platform"],
        i["issued_at_ms"],
        i["expires_at_ms"],
    ]
    body = doc("token_body")
    assert msgpack.unpackb(body) == [i["user_id"], i["client_id"], i["platform"], i["secret"], credential]
    token = BLOCKS["token"].strip()
    assert token == "em1." + base64.urlsafe_b64encode(body).decode().rstrip("=")
    assert len(token) <= 1024 and "=" not in token


def test_clear_handshake_frames_follow_the_documented_layout() -> None:
    i = INPUTS
    (_, _, ftype, flags, _, request_id, _), body = split_frame(doc("hello_frame"))
    assert (ftype, flags, request_id) == (1, 0, 0)
    assert msgpack.unpackb(body) == {"nonce": i["server_nonce"], "time": i["hello_time_ms"]}

    (_, _, ftype, flags, _, request_id, _), body = split_frame(doc("connect_frame"))
    assert (ftype, flags, request_id) == (2, 0, 0)
    assert msgpack.unpackb(body) == {
        "user": i["user_id"],
        "client": i["client_id"],
        "platform": i["platform"],
        "keepalive": i["announced_keepalive"],
        "nonce": i["client_nonce"],
        "proof": doc("proof"),
    }
    # The proof: AES-256-GCM under the proof key, the all-zero nonce, the whole HELLO frame as AAD.
    plaintext = AESGCM(doc("proof_key")).decrypt(bytes(12), doc("proof"), doc("hello_frame"))
    assert plaintext == doc("proof_plaintext")
    assert msgpack.unpackb(plaintext) == {
        "cred": doc("credential"),
        "time": i["client_time_ms"],
        "platform": i["platform"],
        "keepalive": i["announced_keepalive"],
    }
    with pytest.raises(InvalidTag):  # the HELLO's body alone is not the AAD
        AESGCM(doc("proof_key")).decrypt(bytes(12), doc("proof"), doc("hello_frame")[14:])

    (_, _, ftype, flags, _, _, _), body = split_frame(doc("reject_frame"))
    assert (ftype, flags) == (3, 0)
    assert msgpack.unpackb(body) == {"code": i["reject_code"]}

    (_, _, ftype, flags, _, _, _), body = split_frame(doc("error_frame"))
    assert (ftype, flags) == (10, 0)
    assert msgpack.unpackb(body) == {"code": i["error_code"], "reason": i["error_reason"]}


EXPECTED_SEALED = {
    # frame: (type, request id, decoded plaintext or None for an empty one)
    "connack_frame": (
        3,
        0,
        lambda i: {
            "code": 1,
            "time": i["connack_time_ms"],
            "keepalive": i["connack_keepalive"],
            "heads": i["heads"],
        },
    ),
    "request_frame": (4, 1, lambda i: {"m": i["request_method"], "p": i["request_params"]}),
    "response_frame": (5, 1, lambda i: {"c": i["response_code"], "r": i["response_result"]}),
    "ping_frame": (7, 0, None),
    "pong_frame": (8, 0, None),
    "send_request_frame": (4, 2, lambda i: {"m": "send_message", "p": i["send_params"]}),
    "send_response_frame": (5, 2, lambda i: {"c": 0, "r": i["send_result"]}),
    "notify_frame": (6, 0, lambda i: {"t": i["notify_topic"], "d": i["notify_data"]}),
    "disconnect_frame": (9, 0, lambda i: {"clear": i["disconnect_clear"]}),
}


@pytest.mark.parametrize("name", sorted(vectors.SEALED_FRAMES))
def test_sealed_frames_follow_the_documented_nonce_and_aad(name: str) -> None:
    direction, counter, plaintext_name = vectors.SEALED_FRAMES[name]
    ftype, request_id, expected = EXPECTED_SEALED[name]
    frame = doc(name)
    (_, _, got_type, flags, _, got_request_id, length), body = split_frame(frame)
    assert (got_type, flags, got_request_id) == (ftype, 1, request_id)
    key = doc(f"frame_key_{direction}")
    nonce = bytes(4) + counter.to_bytes(8, "big")
    plaintext = AESGCM(key).decrypt(nonce, body, frame[:14])
    assert length == len(plaintext) + 16
    if expected is None:
        assert plaintext == b""
    else:
        assert plaintext == doc(plaintext_name)
        assert msgpack.unpackb(plaintext) == expected(INPUTS)


def test_sealed_reject_follows_the_documented_nonce_and_aad() -> None:
    frame = doc("sealed_reject_frame")
    (_, _, ftype, flags, _, request_id, _), body = split_frame(frame)
    assert (ftype, flags, request_id) == (3, 1, 0)
    plaintext = AESGCM(doc("frame_key_s2c")).decrypt(bytes(12), body, frame[:14])  # counter 0
    assert plaintext == doc("sealed_reject_plaintext")
    assert msgpack.unpackb(plaintext) == {"code": INPUTS["sealed_reject_code"]}


def test_msg_push_is_what_the_gateway_makes_of_the_send_request() -> None:
    """The worked send_message example agrees with the gateway's reading of the params."""
    from gateway.config import Config
    from gateway.domain.messaging import read_content, read_conversation
    from gateway.ids import id_time_ms
    from protocol.codec import Fields

    i = INPUTS
    pushed = msgpack.unpackb(doc("msg_notify_plaintext"))
    assert pushed == {"t": "msg", "d": i["msg_notify_data"]}
    message = pushed["d"]["message"]
    params = Fields(i["send_params"])
    conv = read_conversation(params)
    assert message["conv"] == {"type": conv.type, "target": conv.target, "line": conv.line}
    assert message["content"] == read_content(params, Config.default())
    assert message["from"] == i["user_id"]
    ack = i["send_result"]
    assert (message["message_id"], message["server_time"]) == (ack["message_id"], ack["server_time"])
    assert ack["seq"] == i["heads"]["msg"] + 1
    # Past 2**53 (hence BigInt in JavaScript), a uint64 on the wire, made at server_time.
    assert 2**53 < ack["message_id"] < 2**63
    assert b"\xcf" + ack["message_id"].to_bytes(8, "big") in doc("send_response_plaintext")
    assert id_time_ms(ack["message_id"]) == ack["server_time"]
    assert str(ack["message_id"]) in TEXT  # the id §9.1 quotes


def test_the_doc_table_of_counters_matches_the_vectors_module() -> None:
    rows = {}
    for line in TEXT.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in vectors.SEALED_FRAMES:
            rows[cells[0]] = (cells[2].removeprefix("key_"), int(cells[3]))
    assert rows == {name: (d, c) for name, (d, c, _) in vectors.SEALED_FRAMES.items()}
