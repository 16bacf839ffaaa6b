"""Where each of a user's conversations has its newest listed message: the table a list page walks.

Two tables (schema v12), both filled from the merged inbox only (``inbox``, never the log ``inbox_recent``:
a page reads the user's log rows itself, and they are at most a merge's worth):

- ``conversation_inbox (user_id, conv_type, conv_key, conv_line, message_id)``: the user's merged inbox rows
  of group and channel conversations, by conversation, so one conversation's messages of one user are an
  indexed range (its unread count after a read mark, its newest listed message after a delete). Rows of
  messages deleted for everyone stay, as holes (reads join ``messages``, and skip ``deleted_messages``).
  Private conversations need no such copy: both sides hold every message of one, except one whose
  ``only_for`` names one side, so ``conversation_index`` (by conversation, already kept by the merge) with
  that rule is the user's range (``user_messages``). Private messages are two inbox rows each, most of the
  rows of a private-heavy load, and copying them was most of what the table cost the merge.
- ``conversations (user_id, conv_type, conv_key, conv_line, last_id)``: a row for every conversation the user
  has a merged message in, ``last_id`` the id of the newest one that is listed (not deleted for the user, its
  persist flag 1 or 3: ``LISTED_FLAGS``), 0 when none is. Nothing derived from read marks or counts, so the
  doors that move a read mark need not touch it. A row with ``last_id`` 0 is not in the list, but it says the
  user holds messages there: a content change that shows one of them finds the user by it (``changed``).

Both are written by the log merge (``merged``), in two statements for the whole log: one sorted insert, and
one upsert per (user, conversation) the log touches, however many messages it brought; the send groups write
nothing here. Whether a message is listed is read from ``messages.persist_flag``, which ``storage.messages``
keeps equal to the content's flag (update and recall write both), so neither the merge nor a refresh decodes
a message. ``last_id`` goes down only when a message goes for the user (delete-for-me, delete-for-everyone,
``clear``) or a content change hides it, and up when a content change shows one; each calls ``refresh`` or
``changed`` for the users concerned, which recompute a row with one indexed statement.

The functions take the seam's transaction handle (``storage.engine.Tx``). The SQL is plain, with ``?``
placeholders: ``INSERT ... SELECT``, ``ON CONFLICT (...) DO UPDATE`` with ``excluded`` and ``CASE`` (not
SQLite's two-argument ``max``), a derived table with ``AS``, ``COALESCE``, so it runs on PostgreSQL as it is;
SQLite's own, with the portable form a PostgreSQL schema would use: ``WITHOUT ROWID`` in ``create`` (a
plain table there; storage/postgres/schema.py's v12), ``ON CONFLICT DO NOTHING`` where a set is filled (both
databases spell it so), and the ``WHERE true``
the upsert's SELECT needs in SQLite (harmless there).
"""

from __future__ import annotations

from typing import Final

from protocol.codes import ConversationType
from storage.engine import Tx

#: Persist flags of messages a client stores and lists (1 persist, 3 persist and count); 0 is stored, not listed.
LISTED_FLAGS: Final = (1, 3)
#: A content map without a persist flag counts as 3 (as the gateway's unread rule reads it).
DEFAULT_FLAG: Final = 3

#: A conversation as a user's rows key it: (conv_type, conv_key, conv_line).
Key = tuple[int, str, int]

#: Conversation type 0: read from ``conversation_index`` rather than ``conversation_inbox``.
PRIVATE: Final = int(ConversationType.PRIVATE)

_LISTED: Final = f"m.persist_flag IN ({', '.join(str(f) for f in LISTED_FLAGS)})"
_NOT_DELETED: Final = (
    "NOT EXISTS (SELECT 1 FROM deleted_messages d WHERE d.user_id = {user} AND d.message_id = {message})"
)

# The log's rows, by conversation: sorted so that each page of the index is found once (as storage.inboxes
# merges ``inbox``). OR IGNORE: the index is a set, and a merge that failed on a duplicate would stop every send.
_MERGE_ROWS: Final = (
    "INSERT INTO conversation_inbox (user_id, conv_type, conv_key, conv_line, message_id)"
    " SELECT r.user_id, m.conv_type, m.conv_key, m.conv_line, m.message_id"
    f" FROM inbox_recent r JOIN messages m ON m.message_id = r.message_id WHERE m.conv_type <> {PRIVATE}"
    " ORDER BY 1, 2, 3, 4, 5 ON CONFLICT DO NOTHING"
)
# One row per (user, conversation) of the log: its newest listed message not deleted for the user (0: none),
# and last_id only moves up (a conversation whose log rows are all hidden keeps its last). Deletion is checked
# for each conversation's newest listed message only, not for every row: when that one was deleted while still
# in the log (rare), the conversation's log rows are walked again with the check.
_MERGE_LAST: Final = (
    "INSERT INTO conversations (user_id, conv_type, conv_key, conv_line, last_id)"
    " SELECT t.user_id, t.conv_type, t.conv_key, t.conv_line,"
    f" CASE WHEN t.top = 0 OR {_NOT_DELETED.format(user='t.user_id', message='t.top')} THEN t.top ELSE"
    " (SELECT COALESCE(MAX(m.message_id), 0) FROM inbox_recent r JOIN messages m ON m.message_id = r.message_id"
    " WHERE r.user_id = t.user_id AND m.conv_type = t.conv_type AND m.conv_key = t.conv_key"
    f" AND m.conv_line = t.conv_line AND {_LISTED} AND {_NOT_DELETED.format(user='r.user_id', message='r.message_id')})"
    " END"
    " FROM (SELECT r.user_id AS user_id, m.conv_type AS conv_type, m.conv_key AS conv_key, m.conv_line AS conv_line,"
    f" MAX(CASE WHEN {_LISTED} THEN m.message_id ELSE 0 END) AS top"
    " FROM inbox_recent r JOIN messages m ON m.message_id = r.message_id"
    " GROUP BY r.user_id, m.conv_type, m.conv_key, m.conv_line) AS t"
    " WHERE true"  # SQLite: an upsert's SELECT needs a WHERE, or ON reads as a join's
    " ON CONFLICT (user_id, conv_type, conv_key, conv_line) DO UPDATE SET last_id ="
    " CASE WHEN excluded.last_id > conversations.last_id THEN excluded.last_id ELSE conversations.last_id END"
)


def user_messages(conv_type: int, columns: str) -> str:
    """``SELECT columns`` of one user's merged messages of one conversation, not deleted for the user: the
    query, with ``m`` the messages row; parameters ``user_args(key, user_id)``. A private conversation's from
    ``conversation_index`` (see the module docstring), any other's from ``conversation_inbox``."""
    not_deleted = _NOT_DELETED.format(user="?", message="m.message_id")
    if conv_type == PRIVATE:
        return (
            f"SELECT {columns} FROM conversation_index ci JOIN messages m ON m.message_id = ci.message_id"
            " WHERE ci.conv_type = ? AND ci.conv_key = ? AND ci.conv_line = ?"
            f" AND (m.only_for IS NULL OR m.only_for = ?) AND {not_deleted}"
        )
    return (
        f"SELECT {columns} FROM conversation_inbox ci JOIN messages m ON m.message_id = ci.message_id"
        " WHERE ci.conv_type = ? AND ci.conv_key = ? AND ci.conv_line = ? AND ci.user_id = ?"
        f" AND {not_deleted}"
    )


def user_args(key: Key, user_id: str) -> tuple[int, str, int, str, str]:
    """The parameters of a ``user_messages`` query."""
    return (*key, user_id, user_id)


# The newest listed message of one user's conversation, from scratch (a refresh), by conversation type.
_NEWEST_LISTED: Final = {
    kind: user_messages(kind, "MAX(m.message_id)") + f" AND {_LISTED}" for kind in (PRIVATE, PRIVATE + 1)
}
_SET_LAST: Final = (
    "UPDATE conversations SET last_id = ? WHERE user_id = ? AND conv_type = ? AND conv_key = ? AND conv_line = ?"
)


def create(conn: Tx) -> None:
    """The two tables and their indexes (schema v12), filled from the merged inboxes."""
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
    # The page: a user's conversations, newest last message first.
    conn.execute("CREATE INDEX conversations_by_last ON conversations (user_id, last_id)")
    # A conversation's users: whose last a message is (a delete or hide), who may lack it (a show). Without
    # last_id, so that the merge's upsert, which moves last_id, leaves this index alone (~15 % of the upsert);
    # the rare delete or show walks the conversation's users (a group's, former members included).
    conn.execute("CREATE INDEX conversations_by_conversation ON conversations (conv_type, conv_key, conv_line, user_id)")
    rebuild(conn)


def rebuild(conn: Tx) -> None:
    """Fill both tables from ``inbox`` (the migration; tests that write inbox rows directly)."""
    conn.execute("DELETE FROM conversation_inbox")
    conn.execute("DELETE FROM conversations")
    conn.execute(
        "INSERT INTO conversation_inbox (user_id, conv_type, conv_key, conv_line, message_id)"
        " SELECT i.user_id, m.conv_type, m.conv_key, m.conv_line, m.message_id"
        f" FROM inbox i JOIN messages m ON m.message_id = i.message_id WHERE m.conv_type <> {PRIVATE}"
        " ORDER BY 1, 2, 3, 4, 5 ON CONFLICT DO NOTHING"
    )
    # Already complete in a database the merge kept; tests write inbox rows without it.
    conn.execute(
        "INSERT INTO conversation_index (conv_type, conv_key, conv_line, message_id)"
        " SELECT m.conv_type, m.conv_key, m.conv_line, m.message_id FROM messages m"
        " WHERE m.message_id IN (SELECT message_id FROM inbox) ORDER BY 1, 2, 3, 4 ON CONFLICT DO NOTHING"
    )
    conn.execute(
        "INSERT INTO conversations (user_id, conv_type, conv_key, conv_line, last_id)"
        " SELECT i.user_id, m.conv_type, m.conv_key, m.conv_line,"
        f" MAX(CASE WHEN {_LISTED} AND {_NOT_DELETED.format(user='i.user_id', message='i.message_id')}"
        " THEN i.message_id ELSE 0 END)"
        " FROM inbox i JOIN messages m ON m.message_id = i.message_id"
        " GROUP BY i.user_id, m.conv_type, m.conv_key, m.conv_line"
    )


def merged(conn: Tx) -> None:
    """Index the log's rows by conversation and move each touched conversation's last up; called by the
    merge, before it empties ``inbox_recent``, inside the writer's transaction."""
    conn.execute(_MERGE_ROWS)
    conn.execute(_MERGE_LAST)


def refresh(conn: Tx, user_id: str, key: Key) -> None:
    """Recompute one conversation's row of one user (after a delete for the user, or a clear)."""
    (newest,) = conn.execute(_NEWEST_LISTED[PRIVATE if key[0] == PRIVATE else PRIVATE + 1], user_args(key, user_id)).fetchone()
    conn.execute(_SET_LAST, (newest or 0, user_id, *key))


def changed(conn: Tx, key: Key, message_id: int, listed_before: bool, listed_now: bool) -> None:
    """Message ``message_id`` of conversation ``key`` went for everyone (``listed_now`` False) or had its
    persist flag changed by a content change: refresh the rows it can move.

    Going (or hidden), it moves only the rows whose last it is; shown, only the rows of its holders that are
    below it (every holder has a row: ``merged`` writes one for hidden messages too). A holder whose rows of
    it are still in the log has no row to move: the next merge counts it with its new flag.
    """
    if listed_before and not listed_now:
        users = conn.execute(
            "SELECT user_id FROM conversations WHERE conv_type = ? AND conv_key = ? AND conv_line = ? AND last_id = ?",
            (*key, message_id),
        ).fetchall()
        for (user_id,) in users:
            refresh(conn, user_id, key)
    elif listed_now and not listed_before and key[0] == PRIVATE:
        users = conn.execute(
            "SELECT user_id FROM conversations WHERE conv_type = ? AND conv_key = ? AND conv_line = ? AND last_id < ?",
            (*key, message_id),
        ).fetchall()
        for (user_id,) in users:  # the two sides at most: each recomputed
            refresh(conn, user_id, key)
    elif listed_now and not listed_before:
        conn.execute(
            "UPDATE conversations SET last_id = ? WHERE conv_type = ? AND conv_key = ? AND conv_line = ?"
            " AND last_id < ? AND EXISTS (SELECT 1 FROM conversation_inbox ci WHERE ci.user_id = conversations.user_id"
            " AND ci.conv_type = conversations.conv_type AND ci.conv_key = conversations.conv_key"
            " AND ci.conv_line = conversations.conv_line AND ci.message_id = ?)"
            f" AND {_NOT_DELETED.format(user='conversations.user_id', message='?')}",
            (message_id, *key, message_id, message_id, message_id),
        )


def is_listed(persist_flag: int) -> bool:
    """Is a message with this (content's) persist flag in the list?"""
    return persist_flag in LISTED_FLAGS
