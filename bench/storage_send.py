"""The writer's send path alone: ``python -m bench.storage_send [--kind private|group] ...``.

Stores sends through ``storage.sends.send_message_group`` on one SQLite connection (WAL, ``synchronous =
NORMAL``), ``--per-commit`` sends per transaction as the writer groups them (about 64 at ``pairs --window 10``,
1-2 at ``--window 1``), merges of the inbox log included. ``private``: ``--pairs`` sender → receiver pairs;
``group``: ``--groups`` groups of ``--members`` members. Prints the process CPU per send and per inbox row,
and the merges' share of it: the part of the send path the conversation table (schema v12) adds to. No
gateway, no sockets: run it alternately on two worktrees to compare them.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from storage import groups
from storage.inboxes import InboxState
from storage.messages import Conversation, Outgoing
from storage.schema import migrate
from storage.sends import SendPolicy, send_message_group

T0 = 1767225600000  # 2026-01-01T00:00:00Z
FIRST_ID = 7_000_000_000_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("private", "group"), default="private")
    parser.add_argument("--sends", type=int, default=100_000)
    parser.add_argument("--per-commit", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--members", type=int, default=100)
    args = parser.parse_args()
    merge_cpu = 0.0
    merge = InboxState.merge

    def timed_merge(self: InboxState, conn: sqlite3.Connection) -> None:
        nonlocal merge_cpu
        started = time.process_time()
        merge(self, conn)
        merge_cpu += time.process_time() - started

    InboxState.merge = timed_merge  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as folder:
        conn = sqlite3.connect(Path(folder) / "ember.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        migrate(conn)
        conn.execute("BEGIN")
        if args.kind == "private":
            users = [f"u{i:05d}" for i in range(2 * args.pairs)]
            conn.executemany(
                "INSERT INTO users (user_id, created_at, updated_at) VALUES (?, ?, ?)", [(u, T0, T0) for u in users]
            )
            rows_per_send = 2
        else:
            for g in range(args.groups):
                members = [f"g{g}u{i}" for i in range(args.members)]
                groups.bulk_create_for_tests_and_bench(conn, f"g{g}", members[0], members, T0)
            rows_per_send = args.members
        conn.execute("COMMIT")
        inboxes, policy = InboxState(), SendPolicy()
        started = time.process_time()
        for start in range(0, args.sends, args.per_commit):
            ops = []
            for n in range(start, min(start + args.per_commit, args.sends)):
                content = {"type": 1, "searchable_content": "x" * 100, "persist_flag": 3}
                if args.kind == "private":
                    p = n % args.pairs
                    conv, sender = Conversation(0, users[2 * p + 1]), users[2 * p]
                else:
                    g = n % args.groups
                    conv, sender = Conversation(1, f"g{g}"), f"g{g}u{n % args.members}"
                ops.append((inboxes, Outgoing(FIRST_ID + n, T0 + n, conv, sender, content, 3), policy))
            conn.execute("BEGIN")
            send_message_group(conn, ops)
            conn.execute("COMMIT")
        cpu = time.process_time() - started
        conn.close()
    rows = args.sends * rows_per_send
    print(
        f"{args.kind}: {args.sends} sends, {args.per_commit} per commit: {cpu * 1e6 / args.sends:.2f} us per send,"
        f" {cpu * 1e6 / rows:.2f} us per inbox row; merges {merge_cpu * 1e6 / args.sends:.2f} us per send,"
        f" {merge_cpu * 1e6 / rows:.2f} us per inbox row"
    )


if __name__ == "__main__":
    main()
