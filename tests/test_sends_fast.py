"""The SQLite fast path of small private send groups (``storage.sends._send_private_small``) against the
general path (``_send_private_general``, through ``SendBatch``): the same sends on two fresh databases give
the same results, the same rows in every table a send writes, and the same inbox heads.

The sends are drawn at random (fixed seeds) over every rule a private send checks: an unknown recipient,
a muted and a forbidden sender, a blacklist under both strategies, friends-only mode with and without the
friendship, messages to oneself, transparent messages, and client_msg_id resends (inside one group and
across groups), in groups of one to ``SMALL_GROUP`` sends, enough of them that the inbox log merges.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from storage import sends
from storage.inboxes import InboxState
from storage.messages import Conversation, Outgoing
from storage.schema import migrate
from storage.sends import SendPolicy

pytestmark = pytest.mark.sqlite_only

USERS = ("a", "b", "c", "d", "e")  # d is muted, e forbidden; "ghost" does not exist
TABLES = (
    "SELECT * FROM messages ORDER BY message_id",
    "SELECT * FROM inbox_recent ORDER BY rowid",
    "SELECT * FROM inbox ORDER BY user_id, seq",
    "SELECT * FROM search_recent ORDER BY rowid",
    "SELECT rowid, bi, uni, words, content_type FROM message_search ORDER BY rowid",
    "SELECT * FROM client_message_ids ORDER BY from_user, client_msg_id",
    "SELECT * FROM conversation_index ORDER BY 1, 2, 3, 4",
)


def _database(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    migrate(conn)
    conn.execute("BEGIN")
    for user in USERS:
        conn.execute("INSERT INTO users (user_id, created_at, updated_at) VALUES (?, 0, 0)", (user,))
    conn.execute("UPDATE users SET status = 1 WHERE user_id = 'd'")
    conn.execute("UPDATE users SET status = 2 WHERE user_id = 'e'")
    conn.execute("INSERT INTO blacklist (user_id, target, created_at) VALUES ('b', 'a', 0)")
    conn.execute("INSERT INTO friends (user_id, friend_id, created_at, updated_at) VALUES ('c', 'a', 0, 0)")
    conn.execute("COMMIT")
    return conn


def _groups(seed: int, count: int) -> list[list[tuple[Outgoing, SendPolicy]]]:
    rng = random.Random(seed)
    policies = [SendPolicy(strategy, stranger) for strategy in (0, 1) for stranger in (False, True)]
    groups = []
    message_id = 1000
    for _ in range(count):
        group = []
        for _ in range(rng.randint(1, sends.SMALL_GROUP)):
            message_id += 1
            sender = rng.choice(USERS)
            target = rng.choice((*USERS, "ghost"))
            persist = rng.choice((3, 3, 3, 1, 4))
            text = rng.choice(("hello there", "明天见 meeting", "", "!!!"))
            content: dict[str, Any] = {"type": 1, "persist_flag": persist}
            if text:
                content["searchable_content"] = text
            client_msg_id = rng.choice((None, None, f"m{rng.randint(0, 30)}"))
            msg = Outgoing(message_id, 5000 + message_id, Conversation(0, target), sender, content, persist,
                           None, client_msg_id)  # fmt: skip
            group.append((msg, rng.choice(policies)))
        groups.append(group)
    return groups


def _run(conn: sqlite3.Connection, path: Any, groups: list[list[tuple[Outgoing, SendPolicy]]]) -> list[Any]:
    inboxes = InboxState()
    results = []
    for group in groups:
        conn.execute("BEGIN IMMEDIATE")
        results.append(path(conn, [(inboxes, msg, policy) for msg, policy in group]))
        conn.execute("COMMIT")
    heads = {user: inboxes.current(conn, user) for user in USERS}
    return [results, heads, [conn.execute(sql).fetchall() for sql in TABLES]]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fast_path_matches_the_general_one(tmp_path: Path, seed: int) -> None:
    groups = _groups(seed, 1500)
    fast = _run(_database(tmp_path / "fast.db"), sends._send_private_small, groups)
    general = _run(_database(tmp_path / "general.db"), sends._send_private_general, groups)
    assert fast[0] == general[0]
    assert fast[1] == general[1]
    for sql, fast_rows, general_rows in zip(TABLES, fast[2], general[2], strict=True):
        assert fast_rows == general_rows, sql
    codes = {result.code for batch in fast[0] for result in batch}
    assert codes >= {0, 247, 253, 246, 248}  # every rule was met
    assert any(result.duplicate for batch in fast[0] for result in batch)
    assert fast[2][2] and fast[2][4]  # the log merged: rows reached inbox and the FTS5 index


def test_small_sqlite_groups_take_the_fast_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer's sends reach it: a group of up to SMALL_GROUP, not one more."""
    taken: list[int] = []
    fast = sends._send_private_small
    monkeypatch.setattr(sends, "_send_private_small", lambda conn, ops: taken.append(len(ops)) or fast(conn, ops))
    conn = _database(tmp_path / "e.db")
    groups = [[(Outgoing(n * 10 + i, 1, Conversation(0, "b"), "c", {"type": 1}, 3), SendPolicy()) for i in range(n)]
              for n in (1, sends.SMALL_GROUP, sends.SMALL_GROUP + 1)]  # fmt: skip
    _run(conn, sends.send_message_group, groups)
    assert taken == [1, sends.SMALL_GROUP]
