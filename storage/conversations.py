"""A user's conversations as their inbox has them: the list with last messages, read and clear marks.

Two marks per conversation, both user settings (``storage.relations``) so that they sync to the user's other
devices like any setting: the read mark (scope ``READ_SCOPE``) and the clear mark (``CLEAR_SCOPE``), each the
decimal id of the newest message it covers. Both only move forward (``advance_mark``): two devices marking at
once can never move a mark back. Clearing also deletes the covered messages for the user, for good, as
delete-for-me does (``deleted_messages``).

The conversation list is computed from the inbox (``list_conversations``): one pass over the user's inbox
rows, newest message per conversation, the unread ones counted. It is meant for a device rebuilding its list
(a fresh install), not for every screen refresh: the SDK keeps its own list from what it syncs. The pass costs
O(inbox) on a reader connection; with roaming off only the young part of the inbox is read. A backend with
more room (PostgreSQL) would keep a per-user conversation table updated by the send, which costs a row
update per recipient per message that SQLite's single writer should not pay on the hot path (~7 µs per
private message measured, bench/RESULTS.md "Session 7", which also lists what such a table must handle
beyond the upsert).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgpack

from protocol.codes import SettingScope, conversation_setting_key
from storage import relations
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

#: What ``classify(content, from_user)`` says of a message (the rules are the gateway's: gateway.conversations).
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
    scanned: int = 0  # inbox rows read (what the request is charged by)


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
    connection runs it). A filter saves the decoding of the rows it drops, not their reading: ``scanned``
    still counts every inbox row read.
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
