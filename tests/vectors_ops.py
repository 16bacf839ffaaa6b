"""Test vectors of docs/PROTOCOL.md §8.7 (the server's DISCONNECT) and §9.10 (``set_push_token``), in blocks
of their own kind.

Blocks are fenced ```` ```vector-ops name=NAME ````, so tests/vectors.py (which owns ``vector`` blocks)
ignores them. The inputs are §10's ``inputs`` block plus the GoAway fields below; the frame is the first
the server seals after the §10.2 CONNACK (server→client counter 1), on the §10 handshake.

    python tests/vectors_ops.py          # rewrite the blocks from the code
    python tests/vectors_ops.py --check  # exit 1 if the doc differs
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.vector_blocks import DOC as DOC  # noqa: E402 - re-exported: the tests read vectors_ops.DOC
from tests.vector_blocks import Fence  # noqa: E402

FENCE = Fence("vector-ops", "operations vectors")
OUTPUTS = ("goaway_plaintext", "goaway_frame", "set_push_token_plaintext", "set_push_token_frame")
GOAWAY = {"reason": "shutdown", "retry_ms": 1000, "redirect": "gw2.example.com:7600"}
PUSH_TOKEN = {"push_type": 1, "token": "9f3c...e1"}


def read_blocks(text: str) -> dict[str, str]:
    return FENCE.bodies(text)


def handshake(inputs: dict[str, Any]) -> tuple[Any, Any]:
    """The §10 handshake, up to and including the CONNACK: (server, client) connections."""
    from protocol.connection import ClientConnection, ServerConnection
    from protocol.token import issue_token, parse_token

    i = inputs
    token = issue_token(
        i["token_key"], user_id=i["user_id"], client_id=i["client_id"], platform=i["platform"],
        secret=i["secret"], issued_at_ms=i["issued_at_ms"], expires_at_ms=i["expires_at_ms"],
        nonce=i["credential_nonce"],
    )  # fmt: skip
    parts = parse_token(token)
    server = ServerConnection(server_nonce=i["server_nonce"], server_time_ms=i["hello_time_ms"])
    client = ClientConnection(
        user_id=parts.user_id, client_id=parts.client_id, platform=parts.platform, secret=parts.secret,
        credential=parts.credential, client_nonce=i["client_nonce"], keepalive_seconds=i["announced_keepalive"],
    )  # fmt: skip
    client.receive_data(server.hello())
    server.receive_data(client.connect(i["client_time_ms"]))
    assert server.authenticate(i["secret"]) is not None
    client.receive_data(
        server.accept(server_time_ms=i["connack_time_ms"], keepalive_seconds=i["connack_keepalive"], heads=i["heads"])
    )
    return server, client


def compute(inputs: dict[str, Any]) -> dict[str, bytes]:
    from protocol import codec

    server, client = handshake(inputs)
    request_id, request = client.request("set_push_token", PUSH_TOKEN)
    assert request_id == 1
    return {
        "goaway_plaintext": codec.pack(GOAWAY),
        "goaway_frame": server.goaway(GOAWAY["reason"], GOAWAY["retry_ms"], GOAWAY["redirect"]),
        "set_push_token_plaintext": codec.pack({"m": "set_push_token", "p": PUSH_TOKEN}),
        "set_push_token_frame": request,
    }


def rewrite(text: str, values: dict[str, bytes]) -> str:
    return FENCE.rewrite(text, values)


def doc_inputs(text: str) -> dict[str, Any]:
    from tests import vectors

    return vectors.parse_inputs(vectors.read_blocks(text))


if __name__ == "__main__":
    sys.exit(FENCE.main(sys.argv[1:], lambda text: compute(doc_inputs(text))))
