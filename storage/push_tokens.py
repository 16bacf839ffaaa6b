"""Device push tokens: plain ``fn(conn, ...)`` functions, one row per session (user_id, client_id).

A device uploads the token its platform's push service gave it (APNs, FCM, a vendor's) with
``set_push_token``; the push webhook reads the tokens of a user's *active* sessions, so a kicked or
logged-out device is never pushed to again, and a re-issued session keeps its device's token.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from storage.records import SESSION_ACTIVE


@dataclass(frozen=True, slots=True)
class PushDevice:
    client_id: str
    platform: int
    push_type: int
    token: str


def set_push_token(
    conn: sqlite3.Connection, user_id: str, client_id: str, push_type: int, token: str, now_ms: int
) -> None:
    """Store (or replace) the session's device token; an empty token removes it."""
    if not token:
        conn.execute("DELETE FROM push_tokens WHERE user_id = ? AND client_id = ?", (user_id, client_id))
        return
    conn.execute(
        "INSERT INTO push_tokens (user_id, client_id, push_type, token, updated_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (user_id, client_id) DO UPDATE SET push_type = excluded.push_type,"
        " token = excluded.token, updated_at = excluded.updated_at",
        (user_id, client_id, push_type, token, now_ms),
    )


def push_devices(conn: sqlite3.Connection, user_id: str) -> list[PushDevice]:
    """The user's active sessions that have a device token, by client_id."""
    rows = conn.execute(
        "SELECT t.client_id, s.platform, t.push_type, t.token FROM push_tokens AS t"
        " JOIN sessions AS s ON s.user_id = t.user_id AND s.client_id = t.client_id"
        f" WHERE t.user_id = ? AND s.state = '{SESSION_ACTIVE}' ORDER BY t.client_id",
        (user_id,),
    )
    return [PushDevice(*row) for row in rows]
