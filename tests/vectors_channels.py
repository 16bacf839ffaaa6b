"""The channel test vectors of docs/PROTOCOL.md §15.8: how our code makes them, and where they live in the doc.

Each vector is a fenced block labelled ``channel-vector`` (a label of its own, so ``tests/vectors.py`` and the
other vector modules see none of these)::

    ```channel-vector name=post_notify_plaintext
    82a174a36d7367...
    ```

The ``channel_inputs`` block is the JSON of ``INPUTS``; every other block is lowercase hex wrapped at 64
digits, made by the gateway's own code from those inputs (``storage.channels.ChannelRecord``,
``gateway.domain.channels.info_answer``, ``storage.messages.Outgoing``, ``protocol.connection``'s encoders).
``tests/test_vectors_channels.py`` checks that the doc matches; after an intended wire change refresh it with::

    .venv/bin/python tests/vectors_channels.py          # rewrites docs/PROTOCOL.md in place
    .venv/bin/python tests/vectors_channels.py --check  # exit 1 if the doc is stale
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

from gateway.domain.channels import info_answer  # noqa: E402
from protocol import codec  # noqa: E402
from protocol.connection import encode_msg_push, encode_response_body  # noqa: E402
from storage.channels import ChannelRecord  # noqa: E402
from storage.messages import Conversation, Outgoing  # noqa: E402
from tests.vector_blocks import DOC as DOC  # noqa: E402 - re-exported: the tests read v.DOC
from tests.vector_blocks import Fence  # noqa: E402

FENCE = Fence("channel-vector", "channel vectors")

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
    return FENCE.bodies(text)


def values(computed: dict[str, bytes] | None = None) -> dict[str, bytes | str]:
    found: dict[str, bytes | str] = dict(compute() if computed is None else computed)
    found["channel_inputs"] = json.dumps(INPUTS, indent=1)
    return found


def rewrite(text: str, computed: dict[str, bytes] | None = None) -> str:
    return FENCE.rewrite(text, values(computed))


if __name__ == "__main__":
    sys.exit(FENCE.main(sys.argv[1:], lambda text: values()))
