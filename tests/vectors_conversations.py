"""The conversation test vectors of docs/PROTOCOL.md §16: where they live in the doc and how our code makes them.

Fenced blocks labelled ``convvector``, each the MessagePack plaintext of one REQUEST or RESPONSE body. The
answer is made by the real code: a fresh SQLite database migrated by ``storage.schema`` holding a small story
(alice writes to bob twice, bob reads the first), listed by ``storage.conversations.list_conversations`` with
the gateway's rules and packed as the gateway packs it. ``tests/test_conversation_vectors.py`` checks the doc;
to rewrite it after a deliberate change::

    .venv/bin/python tests/vectors_conversations.py          # rewrites docs/PROTOCOL.md in place
    .venv/bin/python tests/vectors_conversations.py --check  # exit 1 if the doc is stale
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.domain.conversations import answer_of, classifier  # noqa: E402
from protocol import codec  # noqa: E402
from protocol.connection import encode_response_body  # noqa: E402
from storage import conversation_table, conversations  # noqa: E402
from storage.messages import Conversation  # noqa: E402
from storage.schema import migrate  # noqa: E402
from tests.vector_blocks import DOC as DOC  # noqa: E402 - re-exported: the tests read v.DOC
from tests.vector_blocks import Fence  # noqa: E402

FENCE = Fence("convvector", "conversation vectors")

T0 = 1767225600000  # 2026-01-01T00:00:00Z
FIRST, SECOND = 7_000_000_000_000_001, 7_000_000_000_000_002

REQUESTS: dict[str, tuple[str, dict[str, Any]]] = {
    "mark_read_plaintext": ("mark_read", {"conv": {"type": 0, "target": "alice", "line": 0}, "message_id": FIRST}),
    "clear_conversation_plaintext": (
        "clear_conversation",
        {"conv": {"type": 0, "target": "alice", "line": 0}, "message_id": SECOND},
    ),
    "get_conversations_plaintext": ("get_conversations", {"before": 0, "limit": 50}),
    "get_conversations_filtered_plaintext": (
        "get_conversations",
        {"before": 0, "limit": 50, "types": [0, 1], "lines": [0]},
    ),
}
NAMES = (*REQUESTS, "get_conversations_response_plaintext")


def _story() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn)
    for user in ("alice", "bob"):
        conn.execute("INSERT INTO users (user_id, created_at, updated_at) VALUES (?, ?, ?)", (user, T0, T0))
    for seq, (message_id, body) in enumerate(((FIRST, "hi"), (SECOND, "there")), start=1):
        content = codec.pack({"type": 1, "searchable_content": body})
        conn.execute(
            "INSERT INTO messages (message_id, conv_type, conv_target, conv_line, conv_key, from_user, content,"
            " server_time, to_users, persist_flag, only_for) VALUES (?, 0, 'bob', 0, ?, 'alice', ?, ?, NULL, 3, NULL)",
            (message_id, "alice\nbob", content, T0 + seq * 1000),
        )
        conn.execute("INSERT INTO inbox (user_id, seq, message_id) VALUES ('bob', ?, ?)", (seq, message_id))
    conversation_table.rebuild(conn)  # rows written straight into inbox: index them as a merge would
    conversations.advance_mark(conn, "bob", conversations.READ_SCOPE, Conversation(0, "alice"), FIRST, T0 + 5000)
    return conn


def compute() -> dict[str, bytes]:
    out = {name: codec.pack({"m": method, "p": params}) for name, (method, params) in REQUESTS.items()}
    page = conversations.list_conversations(_story(), "bob", 0, 50, 0, classifier("bob"))
    answer = answer_of(page)
    filtered = conversations.list_conversations(_story(), "bob", 0, 50, 0, classifier("bob"), frozenset({0, 1}),
                                                frozenset({0}))  # fmt: skip
    assert answer_of(filtered) == answer  # what the doc says of the filtered request in this story
    body = encode_response_body(0, codec.Packed(codec.pack(answer), page.scanned))
    assert body == encode_response_body(0, answer)
    out["get_conversations_response_plaintext"] = body
    return out


def read_blocks(text: str) -> dict[str, bytes]:
    return FENCE.hex_blocks(text)


def rewrite(text: str, values: dict[str, bytes]) -> str:
    return FENCE.rewrite(text, values)


if __name__ == "__main__":
    sys.exit(FENCE.main(sys.argv[1:], lambda text: compute()))
