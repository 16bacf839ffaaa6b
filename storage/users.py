"""User operations: plain ``fn(conn, ...)`` functions that run on the writer thread.

``Store`` wraps each of them; later services may also call them inside their
own ``Store.run`` operations to stay in one transaction.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from protocol.codes import UserStatus
from storage.engine import in_list
from storage.records import UserRecord
from storage.sessions import end_active_sessions

# Column order == UserRecord field order, so a row unpacks straight into a record.
_COLUMNS: Final = tuple(field.name for field in dataclasses.fields(UserRecord))
_SELECT: Final = f"SELECT {', '.join(_COLUMNS)} FROM users"
_INSERT: Final = (
    f"INSERT INTO users ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
    " ON CONFLICT (user_id) DO NOTHING"
)

# SQLite allows 32766 bound parameters per statement; stay far below it.
_IN_CHUNK: Final = 500


def create_user(conn: sqlite3.Connection, user: UserRecord) -> bool:
    """Insert ``user``; return False (and change nothing) if its id already exists."""
    cursor = conn.execute(_INSERT, dataclasses.astuple(user))
    return cursor.rowcount == 1


def update_user(conn: sqlite3.Connection, user_id: str, now_ms: int, fields: Mapping[str, Any]) -> bool:
    """Set the given info columns and ``updated_at``; return False if no such user.

    ``fields`` keys must already be checked against ``records.USER_INFO_FIELDS``
    (``Store.update_user`` does): they are formatted into the SQL as column names.
    """
    assignments = "".join(f"{column} = ?, " for column in fields)
    cursor = conn.execute(
        f"UPDATE users SET {assignments}updated_at = ? WHERE user_id = ?",
        (*fields.values(), now_ms, user_id),
    )
    return cursor.rowcount == 1


def get_user(conn: sqlite3.Connection, user_id: str) -> UserRecord | None:
    """The user, or None."""
    row = conn.execute(f"{_SELECT} WHERE user_id = ?", (user_id,)).fetchone()
    return None if row is None else UserRecord(*row)


def get_users(conn: sqlite3.Connection, user_ids: Sequence[str]) -> list[UserRecord]:
    """The users that exist among ``user_ids``, in the order asked (an id asked twice comes twice)."""
    found: dict[str, UserRecord] = {}
    unique = list(dict.fromkeys(user_ids))
    for start in range(0, len(unique), _IN_CHUNK):
        chunk = unique[start : start + _IN_CHUNK]
        marks = ", ".join("?" * len(chunk))
        for row in conn.execute(f"{_SELECT} WHERE user_id IN ({marks})", chunk):
            found[row[0]] = UserRecord(*row)
    return [found[user_id] for user_id in user_ids if user_id in found]


def set_user_status(
    conn: sqlite3.Connection, user_id: str, status: int, now_ms: int
) -> list[tuple[str, str]] | None:
    """Set the user's status (and ``updated_at``); forbidding also ends their active sessions.

    Returns:
        None if there is no such user; else the (user_id, client_id) of the
        sessions deleted with reason ``forbidden`` (empty unless ``status`` is
        FORBIDDEN).
    """
    cursor = conn.execute(
        "UPDATE users SET status = ?, updated_at = ? WHERE user_id = ?", (status, now_ms, user_id)
    )
    if cursor.rowcount == 0:
        return None
    if status != UserStatus.FORBIDDEN:
        return []
    return end_active_sessions(conn, user_id, "forbidden", now_ms)

def existing_users(conn: sqlite3.Connection, user_ids: Iterable[str]) -> set[str]:
    """Which of ``user_ids`` are users (one query for any number)."""
    among, values = in_list(conn, "user_id", list(user_ids))
    return {row[0] for row in conn.execute(f"SELECT user_id FROM users WHERE {among}", values)}
