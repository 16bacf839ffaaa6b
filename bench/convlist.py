"""What one ``get_conversations`` page costs a heavy user: ``python -m bench.convlist [--messages N] [--convs N]``.

Fills a temporary SQLite database through the storage functions a gateway uses (``storage.messages``'
send group, on one connection, in transactions of ``BATCH`` sends): one user, ``me``, with ``--messages``
messages over ``--convs`` private conversations (a fifth of them on line 1), half sent by ``me``, half
received, in a shuffled order. Then times ``storage.conversations.list_conversations`` (the per-user table,
schema v12) and ``list_by_scan`` (the one pass over the inbox it replaced) as a reader runs them, with the
gateway's unread rules: the first page, the page after the middle of the list (its cursor the last id of
the page before), and the first page with a ``lines`` filter; the median of ``--repeat`` runs each, in ms,
both on the same database in the same run. No gateway and no sockets.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gateway.domain.conversations import classifier
from storage import conversations
from storage.inboxes import InboxState
from storage.messages import Conversation, Outgoing
from storage.schema import migrate
from storage.sends import SendPolicy, send_message_group

T0 = 1767225600000  # 2026-01-01T00:00:00Z
FIRST_ID = 7_000_000_000_000_000
BATCH = 500  # sends per transaction while filling
ME = "me"

Lister = Callable[..., conversations.ConversationList]


def fill(path: Path, messages: int, convs: int, seed: int = 7) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    migrate(conn)
    peers = [f"peer{i:05d}" for i in range(convs)]
    conn.execute("BEGIN")  # one transaction: in autocommit each user was a commit (and an fsync) of its own
    conn.executemany(
        "INSERT INTO users (user_id, created_at, updated_at) VALUES (?, ?, ?)",
        [(user, T0, T0) for user in (ME, *peers)],
    )
    conn.execute("COMMIT")
    order = [i % convs for i in range(messages)]
    random.Random(seed).shuffle(order)
    inboxes, policy = InboxState(), SendPolicy()
    for start in range(0, messages, BATCH):
        ops = []
        for n in range(start, min(start + BATCH, messages)):
            peer = peers[order[n]]
            line = 1 if order[n] % 5 == 0 else 0
            sender, recipient = (ME, peer) if n % 2 else (peer, ME)
            content = {"type": 1, "searchable_content": f"message {n}", "persist_flag": 3}
            msg = Outgoing(FIRST_ID + n, T0 + n, Conversation(0, recipient, line), sender, content, 3)
            ops.append((inboxes, msg, policy))
        conn.execute("BEGIN")
        send_message_group(conn, ops)
        conn.execute("COMMIT")
    conn.close()


def time_page(
    conn: sqlite3.Connection, lister: Lister, before: int, repeat: int, lines: frozenset[int] | None = None
) -> tuple[float, int, int]:
    """Median ms of one page of 50, the rows it read, and its last entry's id (the next page's cursor)."""
    took, scanned, last = [], 0, 0
    for _ in range(repeat):
        started = time.perf_counter()
        conn.execute("BEGIN")
        page = lister(conn, ME, before, 50, 0, classifier(ME), None, lines)
        conn.execute("COMMIT")
        took.append((time.perf_counter() - started) * 1000)
        scanned = page.scanned
        last = page.entries[-1].last.message_id if page.entries else 0
    return statistics.median(took), scanned, last


def middle_cursor(conn: sqlite3.Connection, convs: int) -> int:
    """The ``before`` of the page that starts halfway down the list: walked page by page, on the table."""
    before = 0
    for _ in range(convs // 2 // 50):
        page = conversations.list_conversations(conn, ME, before, 50, 0, classifier(ME))
        before = page.entries[-1].last.message_id
    return before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--convs", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ember.db"
        started, cpu = time.perf_counter(), time.process_time()
        fill(path, args.messages, args.convs)
        print(
            f"filled {args.messages} messages over {args.convs} conversations in {time.perf_counter() - started:.1f} s"
            f" ({time.process_time() - cpu:.1f} s CPU)"
        )
        conn = sqlite3.connect(path, isolation_level=None)
        middle = middle_cursor(conn, args.convs)
        for name, lister in (("table", conversations.list_conversations), ("scan", conversations.list_by_scan)):
            first, scanned, _ = time_page(conn, lister, 0, args.repeat)
            deep, deep_scanned, _ = time_page(conn, lister, middle, args.repeat)
            filtered, filtered_scanned, _ = time_page(conn, lister, 0, args.repeat, frozenset({1}))
            print(f"{name}: first page of 50: {first:.1f} ms ({scanned} rows read)")
            print(f"{name}: the page after the middle of the list: {deep:.1f} ms ({deep_scanned} rows read)")
            print(f"{name}: first page of 50, lines=[1]: {filtered:.1f} ms ({filtered_scanned} rows read)")


if __name__ == "__main__":
    main()
