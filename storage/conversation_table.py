"""Where each of a user's conversations has its newest listed message: the table a list page walks.

Two tables (schema v13), both filled from the merged inbox only (``inbox``, never the log ``inbox_recent``:
a page reads the user's log rows itself, as today, and they are at most a merge's worth):

- ``conversation_inbox (user_id, conv_type, conv_key, conv_line, message_id)``: the user's merged inbox rows
  by conversation, so one conversation's messages of one user are an indexed range (its unread count after a
  read mark, its newest message). Written by the log merge (``storage.inboxes``), sorted, as ``inbox`` is:
  the send path is untouched. Rows of deleted messages stay, as holes (reads skip them, as they skip
  ``deleted_messages``).
- ``conversations (user_id, conv_type, conv_key, conv_line, last_id)``: per conversation, the id of the
  user's newest merged message in it that is listed (not deleted for the user, not hidden by its persist
  flag: ``listed``). Nothing derived from read marks or counts, so the doors that move a read mark need not
  touch it. A conversation with no such message has no row.

``last_id`` can only go down when a message goes for the user (delete-for-me, delete-for-everyone,
``clear``) or a content change hides it (``update``, ``recall``), and up when a content change shows a hidden
one; each of those calls ``refresh`` for the users concerned, which recomputes the row with one indexed walk
down the conversation (usually one row). The merge only moves it up (``merged``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any, Final

import msgpack

#: Persist flags of messages a client stores and lists (1 persist, 3 persist and count); the others are hidden.
LISTED_FLAGS: Final = frozenset({1, 3})
#: A content map without a persist flag counts as 3 (as the gateway's unread rule reads it).
DEFAULT_FLAG: Final = 3

#: A conversation as a user's rows key it: (conv_type, conv_key, conv_line).
Key = tuple[int, str, int]

_UPSERT_MAX: Final = (
    "INSERT INTO conversations (user_id, conv_type, conv_key, conv_line, last_id) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (user_id, conv_type, conv_key, conv_line) DO UPDATE SET last_id ="
    " CASE WHEN excluded.last_id > conversations.last_id THEN excluded.last_id ELSE conversations.last_id END"
)
_UPSERT_SET: Final = (
    "INSERT INTO conversations (user_id, conv_type, conv_key, conv_line, last_id) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (user_id, conv_type, conv_key, conv_line) DO UPDATE SET last_id = excluded.last_id"
)
_NOT_DELETED: Final = (
    "NOT EXISTS (SELECT 1 FROM deleted_messages d WHERE d.user_id = ci.user_id AND d.message_id = ci.message_id)"
)


def listed(content: dict[str, Any]) -> bool:
    """Is a message with this content in the list (a client stores it)? The gateway's unread rule starts here."""
    return content.get("persist_flag", DEFAULT_FLAG) in LISTED_FLAGS


def create(conn: sqlite3.Connection) -> None:
    """The two tables and the page's index (schema v13), filled from the merged inboxes."""
    conn.execute(
        "CREATE TABLE conversation_inbox (user_id TEXT NOT NULL, conv_type INTEGER NOT NULL, conv_key TEXT NOT NULL,"
        " conv_line INTEGER NOT NULL, message_id INTEGER NOT NULL,"
        " PRIMARY KEY (user_id, conv_type, conv_key, conv_line, message_id)) WITHOUT ROWID"
    )
    conn.execute(
        "CREATE TABLE conversations (user_id TEXT NOT NULL, conv_type INTEGER NOT NULL, conv_key TEXT NOT NULL,"
        " conv_line INTEGER NOT NULL, last_id INTEGER NOT NULL,"
        " PRIMARY KEY (user_id, conv_type, conv_key, conv_line)) WITHOUT ROWID"
    )
    conn.execute("CREATE INDEX conversations_by_last ON conversations (user_id, last_id)")
    # Who has a message as their last (a delete-for-everyone or a content change refreshes them).
    conn.execute("CREATE INDEX conversations_by_message ON conversations (last_id)")
    rebuild(conn)


def rebuild(conn: sqlite3.Connection) -> None:
    """Fill both tables from ``inbox`` (the migration; tests that write inbox rows directly)."""
    conn.execute("DELETE FROM conversation_inbox")
    conn.execute("DELETE FROM conversations")
    conn.execute(
        "INSERT OR IGNORE INTO conversation_inbox (user_id, conv_type, conv_key, conv_line, message_id)"
        " SELECT i.user_id, m.conv_type, m.conv_key, m.conv_line, m.message_id"
        " FROM inbox i JOIN messages m ON m.message_id = i.message_id ORDER BY 1, 2, 3, 4, 5"
    )
    keys = conn.execute(
        "SELECT DISTINCT user_id, conv_type, conv_key, conv_line FROM conversation_inbox"
    ).fetchall()
    for user_id, conv_type, conv_key, conv_line in keys:
        refresh(conn, user_id, (conv_type, conv_key, conv_line))


def merged(conn: sqlite3.Connection) -> None:
    """Index the log's rows by conversation and move each conversation's last up; called by the merge,
    before it empties ``inbox_recent``, inside the writer's transaction."""
    conn.execute(
        "INSERT OR IGNORE INTO conversation_inbox (user_id, conv_type, conv_key, conv_line, message_id)"
        " SELECT r.user_id, m.conv_type, m.conv_key, m.conv_line, m.message_id"
        " FROM inbox_recent r JOIN messages m ON m.message_id = r.message_id ORDER BY 1, 2, 3, 4, 5"
    )
    # Each conversation's newest message of the batch, per user; its content decides (decoded once per
    # message). When it is hidden, the conversation is recomputed (rare: a hidden message on top).
    tops = conn.execute(
        "SELECT r.user_id, m.conv_type, m.conv_key, m.conv_line, MAX(m.message_id)"
        " FROM inbox_recent r JOIN messages m ON m.message_id = r.message_id WHERE NOT EXISTS"
        " (SELECT 1 FROM deleted_messages d WHERE d.user_id = r.user_id AND d.message_id = r.message_id)"
        " GROUP BY 1, 2, 3, 4"
    ).fetchall()
    shown: dict[int, bool] = {}
    rows, hidden_tops = [], []
    for user_id, conv_type, conv_key, conv_line, message_id in tops:
        is_listed = shown.get(message_id)
        if is_listed is None:
            (raw,) = conn.execute("SELECT content FROM messages WHERE message_id = ?", (message_id,)).fetchone()
            is_listed = shown[message_id] = listed(msgpack.unpackb(raw))
        if is_listed:
            rows.append((user_id, conv_type, conv_key, conv_line, message_id))
        else:
            hidden_tops.append((user_id, (conv_type, conv_key, conv_line)))
    conn.executemany(_UPSERT_MAX, rows)
    for user_id, key in hidden_tops:
        refresh(conn, user_id, key)


def refresh(conn: sqlite3.Connection, user_id: str, key: Key) -> None:
    """Recompute one conversation's row of one user from ``conversation_inbox`` (after a delete or a change)."""
    newest = newest_listed(conn, user_id, key)
    if newest:
        conn.execute(_UPSERT_SET, (user_id, *key, newest))
    else:
        conn.execute(
            "DELETE FROM conversations WHERE user_id = ? AND conv_type = ? AND conv_key = ? AND conv_line = ?",
            (user_id, *key),
        )


def refresh_message(conn: sqlite3.Connection, key: Key, message_id: int, holders: Iterable[str]) -> None:
    """A message of conversation ``key`` changed or went for everyone: refresh its holders' rows, and the rows of
    anyone whose last it was (a group's former member still holds it)."""
    users = set(holders)
    users.update(
        row[0]
        for row in conn.execute(
            "SELECT user_id FROM conversations WHERE last_id = ? AND conv_type = ? AND conv_key = ? AND conv_line = ?",
            (message_id, *key),
        )
    )
    for user_id in sorted(users):
        refresh(conn, user_id, key)


def newest_listed(conn: sqlite3.Connection, user_id: str, key: Key) -> int:
    """The id of the user's newest merged, listed message of the conversation (0: none)."""
    rows = conn.execute(
        "SELECT m.message_id, m.content FROM conversation_inbox ci JOIN messages m ON m.message_id = ci.message_id"
        " WHERE ci.user_id = ? AND ci.conv_type = ? AND ci.conv_key = ? AND ci.conv_line = ?"
        f" AND {_NOT_DELETED} ORDER BY ci.message_id DESC",
        (user_id, *key),
    )
    for message_id, raw in rows:
        if listed(msgpack.unpackb(raw)):
            return int(message_id)
    return 0
