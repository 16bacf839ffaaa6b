"""The channel test vectors of docs/PROTOCOL.md §15.8: how our code makes them, and where they live in the doc.

Each vector is a fenced block labelled ``channel-vector`` (a label of its own, so ``tests/vectors.py`` and the
other vector modules see none of these)::

    ```channel-vector name=post_notify_plaintext
    82a174a36d7367...
    ```

The ``channel_inputs`` block is the JSON of ``INPUTS``; every other block is lowercase hex wrapped at 64
digits, made by the gateway's own code from those inputs (``storage.channels.ChannelRecord``,
``gateway.channels.info_answer``, ``storage.messages.Outgoing``, ``protocol.connection``'s encoders).
``tests/test_vectors_channels.py`` checks that the doc matches; after an intended wire change refresh it with::

    .venv/bin/python tests/vectors_channels.py          # rewrites docs/PROTOCOL.md in place
    .venv/bin/python tests/vectors_channels.py --check  # exit 1 if the doc is stale
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

from gateway.channels import info_answer  # noqa: E402
from protocol import codec  # noqa: E402
from protocol.connection import encode_msg_push, encode_response_body  # noqa: E402
from storage.channels import ChannelRecord  # noqa: E402
from storage.messages import Conversation, Outgoing  # noqa: E402

DOC = ROOT / "docs" / "PROTOCOL.md"
BLOCK = re.compile(
    r"^```channel-vector name=(?P<name>[a-z0-9_]+)[ \t]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S
)

INPUTS: dict[str, Any] = {
    "channel_id": "news",
    "owner": "alice",
    "listener": "bob",
    "callback": "https://app.example/ch",
    "message_id": 264905950861721602,
    "server_time": 1765000000000,
    "seq": 9,
    "info_version": 2,
    "listener_count": 3,
}

OUTPUTS = (
    "create_request_plaintext",
    "info_response_plaintext",
    "listener_notify_plaintext",
    "my_channels_response_plaintext",
)


def channel(inputs: dict[str, Any] = INPUTS) -> ChannelRecord:
    t = inputs["server_time"]
    return ChannelRecord(
        inputs["channel_id"], "News", "", "daily news", "", inputs["owner"], True, inputs["callback"], False,
        inputs["info_version"], 0, t, t,
    )  # fmt: skip


def compute(inputs: dict[str, Any] = INPUTS) -> dict[str, bytes]:
    cid, owner = inputs["channel_id"], inputs["owner"]
    out: dict[str, bytes] = {}
    out["create_request_plaintext"] = codec.pack(
        {"m": "create_channel", "p": {"channel_id": cid, "name": "News", "desc": "daily news", "private": True}}
    )
    out["info_response_plaintext"] = encode_response_body(
        0, info_answer(channel(inputs), True, inputs["listener_count"], 0)
    )
    msg = Outgoing(
        inputs["message_id"], inputs["server_time"], Conversation(3, cid), inputs["listener"],
        {"type": 1, "searchable_content": "hi", "persist_flag": 3}, 3, to_users=[owner],
    )  # fmt: skip
    out["listener_notify_plaintext"] = encode_msg_push(inputs["seq"], codec.pack(msg.to_wire()))
    out["my_channels_response_plaintext"] = encode_response_body(
        0, {"owned": [{"channel_id": cid, "info_version": inputs["info_version"]}], "listened": []}
    )
    return out


def read_blocks(text: str) -> dict[str, str]:
    return {m.group("name"): m.group("body") for m in BLOCK.finditer(text)}


def _hex(data: bytes) -> str:
    digits = data.hex()
    return "".join(digits[i : i + 64] + "\n" for i in range(0, len(digits), 64))


def rewrite(text: str, computed: dict[str, bytes] | None = None) -> str:
    computed = compute() if computed is None else computed

    def body(name: str) -> str:
        if name == "channel_inputs":
            return json.dumps(INPUTS, indent=1) + "\n"
        return _hex(computed[name])

    return BLOCK.sub(lambda m: f"```channel-vector name={m.group('name')}\n{body(m.group('name'))}```", text)


def main(argv: list[str]) -> int:
    text = DOC.read_text(encoding="utf-8")
    new = rewrite(text)
    if "--check" in argv:
        if new != text:
            print("docs/PROTOCOL.md channel vectors are stale: run tests/vectors_channels.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
