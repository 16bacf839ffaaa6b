"""The message-search test vectors of docs/PROTOCOL.md §9.12: where they live in the doc and how our code makes them.

Fenced blocks labelled ``searchvector``, each a MessagePack plaintext: the ``search_messages`` REQUEST and the
RESPONSE body bob's device gets. The RESPONSE is made by the real code: a fresh SQLite database migrated by
``storage.schema``, two messages from alice to bob stored by ``storage.sends`` (which indexes them), the
request read by ``gateway.domain.search.read_search``, run by ``storage.messages.search`` and answered by
``gateway.domain.search.client_answer``, packed by ``protocol.connection.encode_response_body``.
``tests/test_search_vectors.py`` checks the doc; to rewrite it after a deliberate change::

    .venv/bin/python tests/vectors_search.py          # rewrites docs/PROTOCOL.md in place
    .venv/bin/python tests/vectors_search.py --check  # exit 1 if the doc is stale
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.domain import search  # noqa: E402
from protocol import codec  # noqa: E402
from protocol.codec import Fields  # noqa: E402
from protocol.connection import encode_response_body  # noqa: E402
from storage import messages  # noqa: E402
from storage.inboxes import InboxState  # noqa: E402
from storage.messages import Conversation, Outgoing  # noqa: E402
from storage.schema import migrate  # noqa: E402
from storage.sends import SendPolicy, send_message  # noqa: E402
from tests.vector_blocks import DOC as DOC  # noqa: E402 - re-exported: the tests read v.DOC
from tests.vector_blocks import Fence  # noqa: E402

FENCE = Fence("searchvector", "message search vectors")

T0 = 1767225600000  # 2026-01-01T00:00:00Z
FIRST, SECOND = 7_000_000_000_000_001, 7_000_000_000_000_002
TEXTS = {FIRST: "明天 Meeting 3点", SECOND: "meeting 改到4点"}
PARAMS: dict[str, Any] = {"keyword": "明天 meeting", "limit": 1}

NAMES = ("search_messages_plaintext", "search_messages_response_plaintext")


def compute() -> dict[str, bytes]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn)
    for user in ("alice", "bob"):
        conn.execute("INSERT INTO users (user_id, created_at, updated_at) VALUES (?, ?, ?)", (user, T0, T0))
    inboxes = InboxState()
    for n, (message_id, text) in enumerate(TEXTS.items(), 1):
        content = {"type": 1, "searchable_content": text, "persist_flag": 3}
        msg = Outgoing(message_id, T0 + 1000 * n, Conversation(0, "bob"), "alice", content, 3)
        conn.execute("BEGIN")
        assert send_message(conn, inboxes, msg, SendPolicy()).code == 0
        conn.execute("COMMIT")
    query = search.read_search(Fields(PARAMS), "bob")
    page = search.page_of(messages.search(conn, query), query)
    return {
        "search_messages_plaintext": codec.pack({"m": "search_messages", "p": PARAMS}),
        "search_messages_response_plaintext": encode_response_body(0, search.client_answer(page)),
    }


def read_blocks(text: str) -> dict[str, bytes]:
    return FENCE.hex_blocks(text)


if __name__ == "__main__":
    sys.exit(FENCE.main(sys.argv[1:], lambda text: compute()))
