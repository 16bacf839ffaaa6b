"""docs/PROTOCOL.md §14's chatroom vectors: generate them from the code, or check the doc against it.

    python -m tests.vectors_chatrooms          # rewrite the doc's ```chatroom-vector``` output blocks
    python -m tests.vectors_chatrooms --check  # exit 1 if they are stale

The ``inputs`` block holds, per vector, the plaintext as a JSON value (a REQUEST's ``{m, p}``, a RESPONSE's
``{c, r}``, a NOTIFY's ``{t, d}``); every other block is the MessagePack the reference code makes of it, in
hex, with the encoders the gateway and the SDK use. The blocks are fenced ``chatroom-vector`` (not
``vector``) so that tests/vectors.py, which owns the ``vector`` blocks of §10, never sees them. Sealing is
§6's and §10's, the same for every frame, so only plaintexts are given here.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from protocol import codec
from protocol.connection import encode_msg_push, encode_notify_body, encode_response_body
from tests.vector_blocks import DOC as DOC  # re-exported: the tests read v.DOC
from tests.vector_blocks import Fence

FENCE = Fence("chatroom-vector", "chatroom vectors")


def read_blocks(text: str) -> dict[str, str]:
    return FENCE.bodies(text)


def inputs(blocks: dict[str, str]) -> dict[str, Any]:
    return json.loads(blocks["inputs"])


def encode(value: dict[str, Any]) -> bytes:
    """The plaintext the reference code makes of one vector, by the encoder each frame kind uses."""
    if "m" in value:  # REQUEST: ClientConnection.request
        return codec.pack({"m": value["m"], "p": value["p"]})
    if "c" in value:  # RESPONSE: ServerConnection.response
        return encode_response_body(value["c"], value["r"])
    if value["t"] == "msg":  # the fan-out packs the message once, then wraps it per push
        data = value["d"]
        return encode_msg_push(data["seq"], codec.pack(data["message"]))
    return encode_notify_body(value["t"], value["d"])


def compute(values: dict[str, Any]) -> dict[str, bytes]:
    return {name: encode(value) for name, value in values.items()}


def rewrite(text: str, values: dict[str, bytes]) -> str:
    return FENCE.rewrite(text, values)


def _compute_checked(text: str) -> dict[str, bytes]:
    blocks = read_blocks(text)
    values = inputs(blocks)
    missing = [name for name in values if name not in blocks]
    if missing:
        raise SystemExit(f"{DOC}: no chatroom-vector block for {', '.join(missing)}")
    return compute(values)


if __name__ == "__main__":
    raise SystemExit(FENCE.main(sys.argv[1:], _compute_checked))
