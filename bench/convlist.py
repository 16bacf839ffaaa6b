"""What one ``get_conversations`` page costs a heavy user: ``python -m bench.convlist [--messages N] [--convs N]``.

Fills a temporary SQLite database through the storage functions a gateway uses (``storage.messages``'
send group, on one connection, in transactions of ``BATCH`` sends): one user, ``me``, with ``--messages``
messages over ``--convs`` private conversations (a fifth of them on line 1), half sent by ``me``, half
received, in a shuffled order. Then times ``storage.conversations.list_conversations`` as a reader runs it,
with the gateway's unread rules: the first page, a page deep in the list, and the first page with a
``lines`` filter; the median of ``--repeat`` runs each, in ms. No gateway and no sockets.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from gateway.conversations import classifier
from storage import conversations
from storage.inboxes import InboxState
from storage.messages import Conversation, Outgoing
from storage.schema import migrate
from storage.sends import SendPolicy, send_message_group

T0 = 1767225600000  # 2026-01-01T00:00:00Z
FIRST_ID = 7_000_000_000_000_000
BATCH = 500  # sends per transaction while filling
ME = "me"


def fill(path: Path, messages: int, convs: int, seed: int = 7) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    migrate(conn)
    peers = [f"peer{i:05d}" for i in range(convs)]
    conn.executemany(
        "INSERT INTO users (user_id, created_at, updated_at) VALUES (?, ?, ?)",
        [(user, T0, T0) for user in (ME, *peers)],
    )
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
    conn: sqlite3.Connection, before: int, repeat: int, lines: frozenset[int] | None = None
) -> tuple[float, int]:
    """Median ms of one page of 50, and the inbox rows it read."""
    took, scanned = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        conn.execute("BEGIN")
        page = conversations.list_conversations(conn, ME, before, 50, 0, classifier(ME), None, lines)
        conn.execute("COMMIT")
        took.append((time.perf_counter() - started) * 1000)
        scanned = page.scanned
    return statistics.median(took), scanned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--convs", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ember.db"
        started = time.perf_counter()
        fill(path, args.messages, args.convs)
        print(f"filled {args.messages} messages over {args.convs} conversations in {time.perf_counter() - started:.1f} s")
        conn = sqlite3.connect(path, isolation_level=None)
        first, scanned = time_page(conn, 0, args.repeat)
        deep_before = FIRST_ID + args.messages // 2  # about the middle of the list
        deep, _ = time_page(conn, deep_before, args.repeat)
        filtered, _ = time_page(conn, 0, args.repeat, frozenset({1}))
        print(f"first page of 50: {first:.1f} ms ({scanned} inbox rows read)")
        print(f"a page of 50 in the middle: {deep:.1f} ms")
        print(f"first page of 50, lines=[1]: {filtered:.1f} ms")


if __name__ == "__main__":
    main()
