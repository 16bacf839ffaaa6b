"""Chatroom records: plain ``fn(conn, ...)`` functions (SPEC §5, conversation type 2).

Only the rooms live here (created, changed and destroyed by the admin API).
Membership and recent history are the gateway's, in memory (``gateway.domain.chatrooms``).
"""

from __future__ import annotations

import dataclasses
import sqlite3
from typing import Final

from storage.records import ChatroomRecord

_COLUMNS: Final = tuple(field.name for field in dataclasses.fields(ChatroomRecord))
_SELECT: Final = f"SELECT {', '.join(_COLUMNS)} FROM chatrooms"


def upsert_chatroom(conn: sqlite3.Connection, room: ChatroomRecord) -> tuple[ChatroomRecord, bool]:
    """Create the room, or update the title, portrait, extra and state of an existing one.

    Returns the stored record (an existing room keeps its ``created_at``) and whether it was created.
    """
    row = conn.execute(f"{_SELECT} WHERE chatroom_id = ?", (room.chatroom_id,)).fetchone()
    if row is None:
        conn.execute(
            f"INSERT INTO chatrooms ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
            dataclasses.astuple(room),
        )
        return room, True
    stored = dataclasses.replace(room, created_at=ChatroomRecord(*row).created_at)
    conn.execute(
        "UPDATE chatrooms SET title = ?, portrait = ?, extra = ?, state = ?, updated_at = ? WHERE chatroom_id = ?",
        (stored.title, stored.portrait, stored.extra, stored.state, stored.updated_at, stored.chatroom_id),
    )
    return stored, False


def delete_chatroom(conn: sqlite3.Connection, chatroom_id: str) -> bool:
    """Remove the room; False if there was none."""
    return conn.execute("DELETE FROM chatrooms WHERE chatroom_id = ?", (chatroom_id,)).rowcount == 1


def get_chatroom(conn: sqlite3.Connection, chatroom_id: str) -> ChatroomRecord | None:
    row = conn.execute(f"{_SELECT} WHERE chatroom_id = ?", (chatroom_id,)).fetchone()
    return None if row is None else ChatroomRecord(*row)


def list_chatrooms(conn: sqlite3.Connection) -> list[ChatroomRecord]:
    """Every room, by id."""
    return [ChatroomRecord(*row) for row in conn.execute(f"{_SELECT} ORDER BY chatroom_id")]
