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
import re
import sys
from pathlib import Path
from typing import Any

from protocol import codec
from protocol.connection import encode_msg_push, encode_notify_body, encode_response_body

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "PROTOCOL.md"
FENCE = "chatroom-vector"
BLOCK = re.compile(rf"^```{FENCE} name=(?P<name>[a-z0-9_]+)[ \t]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)


def read_blocks(text: str) -> dict[str, str]:
    blocks: dict[str, str] = {}
    for match in BLOCK.finditer(text):
        if match["name"] in blocks:
            raise ValueError(f"chatroom vector block {match['name']!r} appears twice")
        blocks[match["name"]] = match["body"]
    return blocks


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


def render(value: bytes) -> str:
    digits = value.hex()
    return "".join(digits[k : k + 64] + "\n" for k in range(0, len(digits), 64))


def rewrite(text: str, values: dict[str, bytes]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in values:
            return match[0]
        return f"```{FENCE} name={name}\n{render(values[name])}```"

    return BLOCK.sub(replace, text)


def main(argv: list[str]) -> int:
    text = DOC.read_text(encoding="utf-8")
    blocks = read_blocks(text)
    values = inputs(blocks)
    missing = [name for name in values if name not in blocks]
    if missing:
        print(f"{DOC}: no chatroom-vector block for {', '.join(missing)}", file=sys.stderr)
        return 1
    new = rewrite(text, compute(values))
    if "--check" in argv:
        if new != text:
            print(f"{DOC}: chatroom vectors are stale", file=sys.stderr)
            return 1
        return 0
    if new != text:
        DOC.write_text(new, encoding="utf-8")
        print(f"{DOC}: chatroom vectors rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
