"""What a per-user conversation table would add to a private send: ``python -m bench.conv_upsert [--rounds N]``.

A prototype measurement for issue 20 point 8, not a feature: the table does not exist in the schema. Runs
``storage.sends.send_message_group`` on a temporary SQLite file (WAL, synchronous NORMAL, as the
gateway opens it) for 50 pairs of users, groups of 20 private sends per transaction (about what
``pairs --window 10`` hands the writer), and prints the process CPU per message three ways, alternating:

- ``base``: the send as it is;
- ``table``: the same plus one ``executemany`` upsert per send group into a table keyed by
  (user, conv type, target, line), one row per owner of each message, with a secondary index
  (user, conv type, last message id) for newest-first pages;
- ``table-noindex``: the same without the secondary index.

The rows are built in Python from the batch (no content decoding: the unread rule would add that). The
upsert's SQL is portable (``CASE`` rather than SQLite's two-argument ``MAX``).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from storage import sends
from storage.inboxes import InboxState
from storage.messages import Conversation, Outgoing
from storage.schema import migrate
from storage.sends import SendBatch, SendPolicy, send_message_group

_TABLE = (
    "CREATE TABLE conversation_list (user_id TEXT NOT NULL, conv_type INTEGER NOT NULL,"
    " conv_target TEXT NOT NULL, conv_line INTEGER NOT NULL, last_message_id INTEGER NOT NULL,"
    " last_seq INTEGER NOT NULL, last_time INTEGER NOT NULL, unread INTEGER, unread_mentions INTEGER,"
    " counted_to INTEGER NOT NULL, PRIMARY KEY (user_id, conv_type, conv_target, conv_line)) WITHOUT ROWID"
)
_INDEX = "CREATE INDEX conversation_list_page ON conversation_list (user_id, conv_type, last_message_id)"
_NEWER = "excluded.last_message_id > last_message_id"
_UPSERT = (
    "INSERT INTO conversation_list VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0) ON CONFLICT DO UPDATE SET"
    f" last_message_id = CASE WHEN {_NEWER} THEN excluded.last_message_id ELSE last_message_id END,"
    f" last_seq = CASE WHEN {_NEWER} THEN excluded.last_seq ELSE last_seq END,"
    f" last_time = CASE WHEN {_NEWER} THEN excluded.last_time ELSE last_time END,"
    " unread = unread + CASE WHEN excluded.last_message_id > counted_to THEN excluded.unread ELSE 0 END,"
    " unread_mentions = unread_mentions"
    " + CASE WHEN excluded.last_message_id > counted_to THEN excluded.unread_mentions ELSE 0 END"
)
PAIRS, GROUP = 50, 20


def _with_upsert(write: Callable[[SendBatch], None]) -> Callable[[SendBatch], None]:
    def write_and_upsert(batch: SendBatch) -> None:
        by_id = {row[0]: row for row in batch.message_rows}
        rows = []
        for owner, seq, message_id in batch.inbox_rows:
            row = by_id[message_id]  # storage.messages.message_row's columns
            conv_type, target, line, sender, server_time = row[1], row[2], row[3], row[5], row[7]
            view = sender if target == owner else target  # a private chat is named after the other side
            rows.append((owner, conv_type, view, line, message_id, seq, server_time, int(sender != owner), 0))
        write(batch)
        batch.conn.executemany(_UPSERT, rows)

    return write_and_upsert


def run(kind: str, count: int) -> float:
    """CPU µs per message of ``count`` private sends, ``kind`` one of base, table, table-noindex."""
    original = SendBatch.write
    with tempfile.TemporaryDirectory() as folder:
        conn = sqlite3.connect(Path(folder) / "ember.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        migrate(conn)
        if kind != "base":
            conn.execute(_TABLE)
            if kind == "table":
                conn.execute(_INDEX)
            sends.SendBatch.write = _with_upsert(original)  # type: ignore[method-assign, assignment]
        try:
            users = [f"u{i:03d}" for i in range(2 * PAIRS)]
            conn.executemany("INSERT INTO users (user_id, created_at, updated_at) VALUES (?, 0, 0)", [(u,) for u in users])
            inboxes, policy = InboxState(), SendPolicy()
            message_id = 7_000_000_000_000_000
            started = time.process_time()
            for start in range(0, count, GROUP):
                ops = []
                for n in range(GROUP):
                    pair = (start + n) % PAIRS
                    sender, recipient = users[2 * pair + n % 2], users[2 * pair + 1 - n % 2]
                    message_id += 1
                    content = {"type": 1, "searchable_content": "x" * 100}
                    msg = Outgoing(message_id, message_id, Conversation(0, recipient), sender, content, 3)
                    ops.append((inboxes, msg, policy))
                conn.execute("BEGIN")
                send_message_group(conn, ops)
                conn.execute("COMMIT")
            took = time.process_time() - started
            if kind != "base" and count >= GROUP * PAIRS:  # every user got one row: the upsert did its job
                assert conn.execute("SELECT COUNT(*) FROM conversation_list").fetchone()[0] == 2 * PAIRS
            conn.close()
        finally:
            sends.SendBatch.write = original  # type: ignore[method-assign]
    return took / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=40_000)
    args = parser.parse_args()
    found: dict[str, list[float]] = {"base": [], "table": [], "table-noindex": []}
    for _ in range(args.rounds):
        for kind, runs in found.items():
            runs.append(run(kind, args.messages))
    for kind, runs in found.items():
        print(f"{kind:14} µs/msg {', '.join(f'{r:.1f}' for r in runs)}; median {statistics.median(runs):.1f}")


if __name__ == "__main__":
    main()
