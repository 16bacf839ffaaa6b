"""A user's conversations as their inbox has them: the list with last messages, read and clear marks.

Two marks per conversation, both user settings (``storage.relations``) so that they sync to the user's other
devices like any setting: the read mark (scope ``READ_SCOPE``) and the clear mark (``CLEAR_SCOPE``), each the
decimal id of the newest message it covers. Both only move forward (``advance_mark``): two devices marking at
once can never move a mark back. Clearing also deletes the covered messages for the user, for good, as
delete-for-me does (``deleted_messages``).

The conversation list (``list_conversations``) walks ``storage.conversation_table`` (schema v12: each
conversation's newest listed message per user, kept by the log merge and by the deletes and content
changes) newest first, and reads only the answered conversations' messages after the read mark, plus the
user's rows still in the inbox log: O(page + unread + log) on a reader connection, roaming on or off.
``list_by_scan`` is the one-pass computation it replaced, kept as the reference the table is tested against.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgpack

from protocol.codes import SettingScope, conversation_setting_key
from storage import conversation_table, relations
from storage.engine import in_list
from storage.messages import (
    PRIVATE,
    Conversation,
    StoredMessage,
    conversation_key,
    first_seq_since,
)

#: The setting scopes of the two marks: WildfireChat's ConversationReaded (11) and ConversationClearMessage (18).
READ_SCOPE: Final = int(SettingScope.CONVERSATION_READ)
CLEAR_SCOPE: Final = int(SettingScope.CONVERSATION_CLEAR)

#: What ``classify(content, from_user)`` says of a message (the rules are the gateway's: gateway.domain.conversations).
HIDDEN: Final = 0  # not in the list (clients do not store it)
SHOWN: Final = 1  # may be the last message, not counted
UNREAD: Final = 2  # counted unread when after the read mark
MENTION: Final = 3  # counted, and a mention of the user

Classify = Callable[[dict[str, Any], str], int]


def mark_key(conv: Conversation) -> str:
    """A conversation's key in settings (``protocol.codes.conversation_setting_key``)."""
    return conversation_setting_key(conv.type, conv.target, conv.line)


def mark_of(conn: sqlite3.Connection, user_id: str, scope: int, conv: Conversation) -> int:
    """The user's mark (read or clear) of a conversation: a message id, 0 when there is none."""
    found = relations.get_setting(conn, user_id, scope, mark_key(conv))
    return _as_id(found["value"]) if found else 0


def advance_mark(
    conn: sqlite3.Connection, user_id: str, scope: int, conv: Conversation, message_id: int, now_ms: int
) -> tuple[tuple[relations.Change, ...], int]:
    """Move a mark forward to ``message_id`` (a setting change, synced); a mark already past it stays.

    Returns the setting changes to push (none when the mark stayed) and the mark now in force.
    """
    moved, mark = _advance(conn, user_id, scope, mark_key(conv), message_id, now_ms)
    return (moved.changes if moved is not None else ()), mark


def advance_mark_setting(
    conn: sqlite3.Connection, user_id: str, scope: int, key: str, message_id: int, now_ms: int
) -> relations.Result:
    """``relations.put_setting`` for a mark written as a setting (a device's ``put_setting`` on scope 11):
    the same rule as ``advance_mark``. Value: the setting head."""
    moved, _ = _advance(conn, user_id, scope, key, message_id, now_ms)
    return moved if moved is not None else relations.Result(relations.Outcome.OK, (), relations.setting_head(conn, user_id))


def _advance(
    conn: sqlite3.Connection, user_id: str, scope: int, key: str, message_id: int, now_ms: int
) -> tuple[relations.Result | None, int]:
    """The one rule of both marks, only forward: the put's result (None when the mark stayed), the mark in force."""
    found = relations.get_setting(conn, user_id, scope, key)
    current = _as_id(found["value"]) if found is not None else 0
    if message_id <= current:
        return None, current
    return relations.put_setting(conn, user_id, scope, key, str(message_id), now_ms), message_id


def conversation_message_ids(
    conn: sqlite3.Connection, user_id: str, conv: Conversation, up_to: int
) -> list[int]:
    """The ids of the user's inbox messages in ``conv`` up to ``up_to``, not deleted (a reader's query)."""
    key = conversation_key(conv, user_id)
    ids: list[int] = []
    for table in ("inbox", "inbox_recent"):
        ids += (
            row[0]
            for row in conn.execute(
                f"SELECT m.message_id FROM {table} i JOIN messages m ON m.message_id = i.message_id"
                " WHERE i.user_id = ? AND i.message_id <= ? AND m.conv_type = ? AND m.conv_key = ?"
                " AND m.conv_line = ? AND NOT EXISTS (SELECT 1 FROM deleted_messages d"
                " WHERE d.user_id = i.user_id AND d.message_id = i.message_id)",
                (user_id, up_to, conv.type, key, conv.line),
            )
        )
    return ids


def clear(
    conn: sqlite3.Connection,
    user_id: str,
    conv: Conversation,
    up_to: int,
    message_ids: Sequence[int],
    now_ms: int,
) -> tuple[tuple[relations.Change, ...], int]:
    """Delete ``message_ids`` (found by ``conversation_message_ids``) for the user and move the clear mark."""
    conn.executemany(
        "INSERT INTO deleted_messages (user_id, message_id, deleted_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        [(user_id, message_id, now_ms) for message_id in message_ids],
    )
    conversation_table.refresh(conn, user_id, (conv.type, conversation_key(conv, user_id), conv.line))
    return advance_mark(conn, user_id, CLEAR_SCOPE, conv, up_to, now_ms)


@dataclass(slots=True)
class ConversationEntry:
    """One conversation of a user's list: its newest shown message and what is unread after the read mark."""

    conv: Conversation
    last: StoredMessage
    read_to: int = 0
    unread: int = 0
    unread_mentions: int = 0


@dataclass(slots=True)
class ConversationList:
    entries: list[ConversationEntry] = field(default_factory=list)
    more: bool = False
    scanned: int = 0  # rows read: table, unread and log rows, or inbox rows by the scan (what the request is charged by)


def list_conversations(
    conn: sqlite3.Connection,
    user_id: str,
    before: int,
    limit: int,
    min_time: int,
    classify: Classify,
    types: frozenset[int] | None = None,
    lines: frozenset[int] | None = None,
) -> ConversationList:
    """The user's conversations, newest last message first, those whose last message is older than ``before``.

    ``before`` 0: from the newest. With ``min_time`` (roaming off) only messages at least that young count, as
    a new device's pull sees them. ``types`` / ``lines`` (None: all) keep only conversations of those types
    and lines (FAQ §13: the list without channels, then the channels). Reads committed tables only (a reader
    connection runs it).

    A page walks ``storage.conversation_table``'s ``conversations`` newest first and reads, for the
    conversations it answers only, their unread messages after the read mark, plus the user's rows still in
    the inbox log: O(page + unread + log). With roaming off the same walk stops at the first conversation
    whose last message is older than ``min_time`` (message ids and times grow together, ``gateway.ids``, as
    ``first_seq_since`` also assumes) and counts only messages at least that young: a conversation is listed
    when its newest listed message is in the window, which is when a window-bounded scan finds one at all.
    ``list_by_scan`` computes the same in one pass over the inbox: the reference the tests hold this to.
    """
    scanned = 0
    # The user's rows in the log, not yet in the table: by conversation, newest listed message each.
    log: dict[conversation_table.Key, list[Sequence[Any]]] = {}
    log_last: dict[conversation_table.Key, int] = {}
    for row in conn.execute(_LOG_ROWS, (user_id, min_time)):
        scanned += 1
        if (types is None or row[1] in types) and (lines is None or row[3] in lines):
            key = (row[1], row[9], row[3])
            log.setdefault(key, []).append(row)
            if row[0] > log_last.get(key, 0) and conversation_table.is_listed(row[8]):
                log_last[key] = row[0]
    last_of: dict[conversation_table.Key, int] = {}
    for key in log:
        found = conn.execute(_TABLE_ROW, (user_id, *key)).fetchone()
        table_last = found[0] if found and found[1] is not None and found[1] >= min_time else 0
        last = max(table_last, log_last.get(key, 0))
        if last and (not before or last < before):
            last_of[key] = last
    where, args = ["c.user_id = ?", "c.last_id > 0"], list[Any]([user_id])
    if before:
        where.append("c.last_id < ?")
        args.append(before)
    for column, only in (("c.conv_type", types), ("c.conv_line", lines)):
        if only is not None:
            condition, params = in_list(conn, column, sorted(only))  # one parameter for any count
            where.append(condition)
            args += params
    args.append(limit + 1 + len(log))  # rows of conversations in the log are skipped: they are counted above
    for conv_type, conv_key, conv_line, last_id, server_time in conn.execute(
        "SELECT c.conv_type, c.conv_key, c.conv_line, c.last_id, m.server_time FROM conversations c"
        f" JOIN messages m ON m.message_id = c.last_id WHERE {' AND '.join(where)} ORDER BY c.last_id DESC LIMIT ?",
        args,
    ):
        scanned += 1
        if server_time < min_time:
            break  # roaming off: this one and every older one are out of the window
        key = (conv_type, conv_key, conv_line)
        if key not in log:
            last_of[key] = last_id
    chosen = sorted(last_of.items(), key=lambda item: item[1], reverse=True)
    entries = []
    for key, last_id in chosen[:limit]:
        entry, read = _entry(conn, user_id, key, last_id, log.get(key, ()), min_time, classify)
        scanned += read
        if entry is not None:
            entries.append(entry)
    return ConversationList(entries, len(chosen) > limit, scanned)


_MESSAGE_ROW = (
    "m.message_id, m.conv_type, m.conv_target, m.conv_line, m.from_user, m.content, m.server_time,"
    " m.to_users, m.persist_flag"
)
_LOG_ROWS = (
    f"SELECT {_MESSAGE_ROW}, m.conv_key FROM inbox_recent i JOIN messages m ON m.message_id = i.message_id"
    " WHERE i.user_id = ? AND m.server_time >= ? AND NOT EXISTS (SELECT 1 FROM deleted_messages d"
    " WHERE d.user_id = i.user_id AND d.message_id = i.message_id)"
)
_TABLE_ROW = (
    "SELECT c.last_id, m.server_time FROM conversations c LEFT JOIN messages m ON m.message_id = c.last_id"
    " WHERE c.user_id = ? AND c.conv_type = ? AND c.conv_key = ? AND c.conv_line = ?"
)
# Per conversation type (private, or not): the user's merged messages after the read mark, young enough.
_UNREAD_ROWS = {
    kind: conversation_table.user_messages(kind, _MESSAGE_ROW) + " AND m.message_id > ? AND m.server_time >= ?"
    for kind in (PRIVATE, PRIVATE + 1)
}


def _entry(
    conn: sqlite3.Connection,
    user_id: str,
    key: conversation_table.Key,
    last_id: int,
    log_rows: Iterable[Sequence[Any]],
    min_time: int,
    classify: Classify,
) -> tuple[ConversationEntry | None, int]:
    """One conversation's entry, as ``_take`` builds it from every row: its last message, the messages after
    the read mark (merged ones at least ``min_time`` young, and the log's), and how many rows that read.

    None if the row's last message is gone or hidden after all: the table and the messages disagree, which
    the tests say never happens; a page then leaves that conversation out rather than fail."""
    last_row = conn.execute(f"SELECT {_MESSAGE_ROW} FROM messages m WHERE m.message_id = ?", (last_id,)).fetchone()
    by_conv: dict[tuple[int, str, int], ConversationEntry] = {}
    if last_row is not None:
        _take(by_conv, {}, user_id, last_row, classify)  # the last message names the conversation, as in a scan
    if not by_conv:
        return None, 1
    (entry,) = by_conv.values()
    entry.unread = entry.unread_mentions = 0
    entry.read_to = mark_of(conn, user_id, READ_SCOPE, entry.conv)
    read = 1
    unread_rows = _UNREAD_ROWS[PRIVATE if key[0] == PRIVATE else PRIVATE + 1]
    after = [*conn.execute(unread_rows, (*conversation_table.user_args(key, user_id), entry.read_to, min_time))]
    after += (row for row in log_rows if row[0] > entry.read_to)
    for row in after:
        read += 1
        kind = classify(msgpack.unpackb(row[5]), row[4])
        if kind >= UNREAD:
            entry.unread += 1
            if kind == MENTION:
                entry.unread_mentions += 1
    return entry, read


def list_by_scan(
    conn: sqlite3.Connection,
    user_id: str,
    before: int,
    limit: int,
    min_time: int,
    classify: Classify,
    types: frozenset[int] | None = None,
    lines: frozenset[int] | None = None,
) -> ConversationList:
    """``list_conversations`` by one pass over the user's inbox (O(inbox), or the young part of it with
    ``min_time``): how the list was computed before the table (schema v12), kept as the reference the table's
    page is tested against (tests/test_conversation_table.py) and measured against (``bench.convlist``).

    A filter saves the decoding of the rows it drops, not their reading: ``scanned`` counts every row read.
    """
    start = first_seq_since(conn, user_id, min_time) if min_time > 0 else 1
    marks = {
        (row["key"]): _as_id(row["value"]) for row in relations.list_settings(conn, user_id, READ_SCOPE)
    }
    by_conv: dict[tuple[int, str, int], ConversationEntry] = {}
    scanned = 0
    for table in ("inbox", "inbox_recent"):
        rows = conn.execute(
            "SELECT m.message_id, m.conv_type, m.conv_target, m.conv_line, m.from_user, m.content, m.server_time,"
            f" m.to_users, m.persist_flag FROM {table} i JOIN messages m ON m.message_id = i.message_id"
            " WHERE i.user_id = ? AND i.seq >= ? AND m.server_time >= ? AND NOT EXISTS (SELECT 1 FROM"
            " deleted_messages d WHERE d.user_id = i.user_id AND d.message_id = i.message_id)",
            (user_id, start, min_time),
        )
        for row in rows:
            scanned += 1
            if (types is None or row[1] in types) and (lines is None or row[3] in lines):
                _take(by_conv, marks, user_id, row, classify)
    entries = sorted(by_conv.values(), key=lambda e: e.last.message_id, reverse=True)
    if before:
        entries = [e for e in entries if e.last.message_id < before]
    return ConversationList(entries[:limit], len(entries) > limit, scanned)


def _take(
    by_conv: dict[tuple[int, str, int], ConversationEntry],
    marks: dict[str, int],
    user_id: str,
    row: Sequence[Any],
    classify: Classify,
) -> None:
    message_id, conv_type, target, line, from_user, raw, server_time, to_users, stored_flag = row
    content = msgpack.unpackb(raw)
    kind = classify(content, from_user)
    if kind == HIDDEN:
        return
    stored = Conversation(conv_type, target, line)  # the message keeps its conversation as sent
    if conv_type == PRIVATE and target == user_id:
        target = from_user  # the list names a private chat after the other side (oneself, for a note to self)
    conv = Conversation(conv_type, target, line)
    slot = (conv_type, target, line)
    entry = by_conv.get(slot)
    flag = content.get("persist_flag", stored_flag)
    message = StoredMessage(message_id, stored, from_user, content, server_time, _users(to_users), flag)
    if entry is None:
        entry = by_conv[slot] = ConversationEntry(conv, message, marks.get(mark_key(conv), 0))
    elif message_id > entry.last.message_id:
        entry.last = message
    if kind >= UNREAD and message_id > entry.read_to:
        entry.unread += 1
        if kind == MENTION:
            entry.unread_mentions += 1


def _users(to_users: str | None) -> list[str] | None:
    return json.loads(to_users) if to_users else None


def _as_id(value: str) -> int:
    try:
        return max(0, int(value))
    except ValueError:
        return 0
