"""The test vectors of docs/PROTOCOL.md: where they live in the doc and how our code makes them.

The doc holds every vector in a fenced block labelled with its name::

    ```vector name=hello_frame
    454d0101...
    ```

The ``inputs`` block is JSON (byte strings as lowercase hex). Every other block
is lowercase hex, wrapped at 64 digits (whitespace is not significant), except
``token``, which is the token string itself.

``tests/test_protocol_vectors.py`` checks that the protocol package turns the
documented inputs into exactly the documented bytes, and that the documented
bytes decode to the documented values. When a wire change is *intended*, refresh
the blocks from the code with::

    python tests/vectors.py          # rewrites docs/PROTOCOL.md in place
    python tests/vectors.py --check  # exit 1 if the doc is stale
"""

from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "PROTOCOL.md"

BLOCK = re.compile(r"^```vector name=(?P<name>[a-z0-9_]+)[ \t]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)

#: Inputs given as hex in the JSON block.
BYTE_INPUTS = ("token_key", "secret", "server_nonce", "client_nonce", "credential_nonce")

#: Every output block, in the order the doc shows them.
OUTPUTS = (
    "credential_plaintext",
    "credential",
    "token_body",
    "token",
    "hello_frame",
    "proof_key",
    "frame_key_c2s",
    "frame_key_s2c",
    "proof_plaintext",
    "proof",
    "connect_frame",
    "connack_plaintext",
    "connack_frame",
    "request_plaintext",
    "request_frame",
    "response_plaintext",
    "response_frame",
    "ping_frame",
    "pong_frame",
    "send_request_plaintext",
    "send_request_frame",
    "send_response_plaintext",
    "send_response_frame",
    "notify_plaintext",
    "notify_frame",
    "disconnect_plaintext",
    "disconnect_frame",
    "msg_notify_plaintext",
    "sealed_reject_plaintext",
    "sealed_reject_frame",
    "reject_frame",
    "error_frame",
    "busy_error_frame",
)

#: The ERROR in place of a CONNACK when the session's storage read is late (§5.2): code 4, this reason.
BUSY_ERROR = (4, "server busy")

#: Encrypted frames: (key direction, counter, plaintext block). The doc's table says the same.
SEALED_FRAMES = {
    "connack_frame": ("s2c", 0, "connack_plaintext"),
    "request_frame": ("c2s", 0, "request_plaintext"),
    "response_frame": ("s2c", 1, "response_plaintext"),
    "ping_frame": ("c2s", 1, None),
    "pong_frame": ("s2c", 2, None),
    "send_request_frame": ("c2s", 2, "send_request_plaintext"),
    "send_response_frame": ("s2c", 3, "send_response_plaintext"),
    "notify_frame": ("s2c", 4, "notify_plaintext"),
    "disconnect_frame": ("c2s", 3, "disconnect_plaintext"),
}


def read_blocks(text: str) -> dict[str, str]:
    """Name → raw block text. A name used twice is an error."""
    blocks: dict[str, str] = {}
    for match in BLOCK.finditer(text):
        name = match["name"]
        if name in blocks:
            raise ValueError(f"vector block {name!r} appears twice")
        blocks[name] = match["body"]
    return blocks


def block_bytes(blocks: dict[str, str], name: str) -> bytes:
    return bytes.fromhex("".join(blocks[name].split()))


def parse_inputs(blocks: dict[str, str]) -> dict[str, Any]:
    """The JSON inputs, with the byte inputs turned into bytes."""
    inputs = json.loads(blocks["inputs"])
    for key in BYTE_INPUTS:
        inputs[key] = bytes.fromhex(inputs[key])
    return inputs


def compute(inputs: dict[str, Any]) -> dict[str, bytes | str]:
    """Every output vector, made by the protocol package from ``inputs``."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from protocol import codec
    from protocol.codes import ConnectionStatus
    from protocol.connection import ClientConnection, ServerConnection, encode_notify_body
    from protocol.crypto import DirectionCipher, derive_frame_keys, derive_proof_key, open_proof
    from protocol.frames import HEADER_SIZE
    from protocol.token import CREDENTIAL_AAD, CREDENTIAL_NONCE_SIZE, issue_token, parse_token

    i = inputs
    out: dict[str, bytes | str] = {}

    token = issue_token(
        i["token_key"],
        user_id=i["user_id"],
        client_id=i["client_id"],
        platform=i["platform"],
        secret=i["secret"],
        issued_at_ms=i["issued_at_ms"],
        expires_at_ms=i["expires_at_ms"],
        nonce=i["credential_nonce"],
    )
    parts = parse_token(token)
    credential = parts.credential
    out["credential_plaintext"] = AESGCM(i["token_key"]).decrypt(
        credential[:CREDENTIAL_NONCE_SIZE], credential[CREDENTIAL_NONCE_SIZE:], CREDENTIAL_AAD
    )
    out["credential"] = credential
    encoded = token[len("em1.") :]
    out["token_body"] = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    out["token"] = token

    server = ServerConnection(server_nonce=i["server_nonce"], server_time_ms=i["hello_time_ms"])
    client = ClientConnection(
        user_id=parts.user_id,
        client_id=parts.client_id,
        platform=parts.platform,
        secret=parts.secret,
        credential=parts.credential,
        client_nonce=i["client_nonce"],
        keepalive_seconds=i["announced_keepalive"],
    )
    out["hello_frame"] = server.hello()
    client.receive_data(out["hello_frame"])

    proof_key = derive_proof_key(i["secret"], i["server_nonce"], i["client_nonce"])
    c2s, s2c = derive_frame_keys(i["secret"], i["server_nonce"], i["client_nonce"])
    out["proof_key"], out["frame_key_c2s"], out["frame_key_s2c"] = proof_key, c2s, s2c

    connect = client.connect(i["client_time_ms"])
    [connect_event] = server.receive_data(connect)
    out["proof"] = connect_event.proof
    out["proof_plaintext"] = open_proof(proof_key, connect_event.proof, out["hello_frame"])
    out["connect_frame"] = connect
    if server.authenticate(i["secret"]) is None:
        raise AssertionError("the proof did not open")

    out["connack_frame"] = server.accept(
        server_time_ms=i["connack_time_ms"], keepalive_seconds=i["connack_keepalive"], heads=i["heads"]
    )
    client.receive_data(out["connack_frame"])
    request_id, out["request_frame"] = client.request(i["request_method"], i["request_params"])
    server.receive_data(out["request_frame"])
    out["response_frame"] = server.response(request_id, i["response_code"], i["response_result"])
    out["ping_frame"] = client.ping()
    out["pong_frame"] = server.pong()
    send_id, out["send_request_frame"] = client.request("send_message", i["send_params"])
    server.receive_data(out["send_request_frame"])
    out["send_response_frame"] = server.response(send_id, 0, i["send_result"])
    out["notify_frame"] = server.notify(i["notify_topic"], i["notify_data"])
    out["disconnect_frame"] = client.disconnect(i["disconnect_clear"])
    # What the recipient's connection seals (with its own keys) when the message is pushed.
    out["msg_notify_plaintext"] = encode_notify_body("msg", i["msg_notify_data"])

    # The plaintexts, as the receiving side opens them (frames of one direction in counter order).
    openers = {"c2s": DirectionCipher(c2s), "s2c": DirectionCipher(s2c)}
    for frame_name, (direction, _counter, plaintext_name) in SEALED_FRAMES.items():
        frame = out[frame_name]
        assert isinstance(frame, bytes)
        plaintext = openers[direction].open(frame[:HEADER_SIZE], frame[HEADER_SIZE:])
        if plaintext_name is not None:
            out[plaintext_name] = plaintext

    # A failure decided after the proof opened, on another connection that had the same nonces.
    fresh = ServerConnection(server_nonce=i["server_nonce"], server_time_ms=i["hello_time_ms"])
    fresh.receive_data(out["connect_frame"])
    if fresh.authenticate(i["secret"]) is None:
        raise AssertionError("the proof did not open")
    out["sealed_reject_frame"] = fresh.reject(ConnectionStatus(i["sealed_reject_code"]))
    out["sealed_reject_plaintext"] = DirectionCipher(s2c).open(
        out["sealed_reject_frame"][:HEADER_SIZE], out["sealed_reject_frame"][HEADER_SIZE:]
    )
    # The clear failure: the server found no session (it opened no proof).
    fresh = ServerConnection(server_nonce=i["server_nonce"], server_time_ms=i["hello_time_ms"])
    fresh.receive_data(out["connect_frame"])
    out["reject_frame"] = fresh.reject(ConnectionStatus(i["reject_code"]))
    fresh = ServerConnection(server_nonce=i["server_nonce"], server_time_ms=i["hello_time_ms"])
    out["error_frame"] = fresh.error(i["error_code"], i["error_reason"])
    fresh = ServerConnection(server_nonce=i["server_nonce"], server_time_ms=i["hello_time_ms"])
    fresh.receive_data(out["connect_frame"])  # read CONNECT, opened no proof: it holds no key
    out["busy_error_frame"] = fresh.error(*BUSY_ERROR)

    assert codec.unpack(out["request_plaintext"]) == {"m": i["request_method"], "p": i["request_params"]}
    return {name: out[name] for name in OUTPUTS}


def render_value(value: bytes | str) -> str:
    if isinstance(value, str):
        return value + "\n"
    digits = value.hex()
    return "".join(digits[k : k + 64] + "\n" for k in range(0, len(digits), 64))


def rewrite(text: str, values: dict[str, bytes | str]) -> str:
    """``text`` with every output block's body replaced by the computed value."""

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in values:
            return match[0]
        return f"```vector name={name}\n{render_value(values[name])}```"

    return BLOCK.sub(replace, text)


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    text = DOC.read_text(encoding="utf-8")
    blocks = read_blocks(text)
    missing = [name for name in OUTPUTS if name not in blocks]
    if missing:
        print(f"{DOC}: no block for {', '.join(missing)}", file=sys.stderr)
        return 1
    new = rewrite(text, compute(parse_inputs(blocks)))
    if "--check" in argv:
        if new != text:
            print(f"{DOC}: vectors are stale", file=sys.stderr)
            return 1
        return 0
    if new != text:
        DOC.write_text(new, encoding="utf-8")
        print(f"{DOC}: vectors rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
