"""The message-update test vectors of docs/PROTOCOL.md §9.11: where they live in the doc and how our code makes them.

Fenced blocks labelled ``updatevector``, each a MessagePack plaintext: the ``update_message`` REQUEST, and the
``message_updated`` NOTIFY bob's device gets. The NOTIFY is made by the real code: a fresh SQLite database
migrated by ``storage.schema`` holding one message from alice to bob, updated by ``storage.messages.update``
with the notice ``MessageService.update`` builds, and packed by ``protocol.connection.encode_update_push``
as the gateway pushes it. ``tests/test_update_vectors.py`` checks the doc; to rewrite it after a
deliberate change::

    .venv/bin/python tests/vectors_updates.py          # rewrites docs/PROTOCOL.md in place
    .venv/bin/python tests/vectors_updates.py --check  # exit 1 if the doc is stale
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocol import codec  # noqa: E402
from protocol.codes import ContentType  # noqa: E402
from protocol.connection import encode_notify_body, encode_update_push  # noqa: E402
from storage import messages  # noqa: E402
from storage.inboxes import InboxState  # noqa: E402
from storage.messages import Conversation, Outgoing  # noqa: E402
from storage.schema import migrate  # noqa: E402
from tests.vector_blocks import DOC as DOC  # noqa: E402 - re-exported: the tests read v.DOC
from tests.vector_blocks import Fence  # noqa: E402

FENCE = Fence("updatevector", "message update vectors")

T0 = 1767225600000  # 2026-01-01T00:00:00Z
ORIGINAL, NOTICE = 7_000_000_000_000_001, 7_000_000_000_000_002
NEW_CONTENT: dict[str, Any] = {"type": 1, "searchable_content": "fixed", "persist_flag": 3}

NAMES = ("update_message_plaintext", "message_updated_plaintext")


def _story() -> tuple[sqlite3.Connection, InboxState]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn)
    for user in ("alice", "bob"):
        conn.execute("INSERT INTO users (user_id, created_at, updated_at) VALUES (?, ?, ?)", (user, T0, T0))
    conn.execute(
        "INSERT INTO messages (message_id, conv_type, conv_target, conv_line, conv_key, from_user, content,"
        " server_time, to_users, persist_flag, only_for) VALUES (?, 0, 'bob', 0, ?, 'alice', ?, ?, NULL, 3, NULL)",
        (ORIGINAL, "alice\nbob", codec.pack({"type": 1, "searchable_content": "tpyo", "persist_flag": 3}), T0 + 1000),
    )
    conn.execute("INSERT INTO inbox (user_id, seq, message_id) VALUES ('alice', 1, ?), ('bob', 1, ?)", (ORIGINAL, ORIGINAL))
    return conn, InboxState()


def compute() -> dict[str, bytes]:
    out = {
        "update_message_plaintext": codec.pack(
            {"m": "update_message", "p": {"message_id": ORIGINAL, "content": {"type": 1, "searchable_content": "fixed"}}}
        )
    }
    conn, inboxes = _story()
    notice_content = {
        "type": int(ContentType.UPDATE),
        "content": json.dumps({"operator": "alice", "message_id": str(ORIGINAL)}),
        "data": codec.pack(NEW_CONTENT),
        "persist_flag": 1,
    }
    notice = Outgoing(NOTICE, T0 + 2000, Conversation(0, ""), "alice", notice_content, 1)
    conn.execute("BEGIN")
    result = messages.update(conn, inboxes, "alice", ORIGINAL, NEW_CONTENT, notice)
    conn.execute("COMMIT")
    assert result.code == 0, result
    body = encode_update_push(result.seqs["bob"], codec.pack(notice.to_wire()))
    assert body == encode_notify_body("message_updated", {"seq": result.seqs["bob"], "message": notice.to_wire()})
    out["message_updated_plaintext"] = body
    return out


def read_blocks(text: str) -> dict[str, bytes]:
    return FENCE.hex_blocks(text)


def rewrite(text: str, values: dict[str, bytes]) -> str:
    return FENCE.rewrite(text, values)


if __name__ == "__main__":
    sys.exit(FENCE.main(sys.argv[1:], lambda text: compute()))
