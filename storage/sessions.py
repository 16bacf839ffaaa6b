"""Session operations: plain ``fn(conn, ...)`` functions that run on the writer thread.

A session is the row behind a token: one per (user_id, client_id). Ending a
session marks it ``deleted`` with a reason and keeps its secret, so the gateway
can still check a client's proof and tell "you were kicked" (-7) from "no such
session" (-6).

The ``secret`` column holds the secret sealed (``storage.sealing``): the functions that write or read it
take the store's ``SecretSeal``, and the records they return carry the secret in clear, or None when it
does not open with this server's key.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any, Final

from storage.engine import engine_of
from storage.records import SESSION_ACTIVE, SESSION_DELETED, IssueResult, SessionRecord
from storage.relations import heads as relation_heads
from storage.sealing import SecretSeal

if TYPE_CHECKING:
    from storage.inboxes import InboxState

# Column order == SessionRecord field order, so a row unpacks straight into a record.
_COLUMNS: Final = ", ".join(field.name for field in dataclasses.fields(SessionRecord))
_SELECT: Final = f"SELECT {_COLUMNS} FROM sessions"

# Insert a new active session, or re-activate the existing row with a fresh
# secret. created_at survives a re-issue; everything else is the new token's.
_UPSERT: Final = f"""
INSERT INTO sessions (user_id, client_id, platform, secret, state, deleted_reason,
                      created_at, issued_at, last_seen, deleted_at)
VALUES (?, ?, ?, ?, '{SESSION_ACTIVE}', NULL, ?, ?, ?, NULL)
ON CONFLICT (user_id, client_id) DO UPDATE SET
    platform = excluded.platform, secret = excluded.secret, state = excluded.state,
    deleted_reason = NULL, issued_at = excluded.issued_at, last_seen = excluded.last_seen,
    deleted_at = NULL
RETURNING {_COLUMNS}
"""

_DELETE_SET: Final = f"UPDATE sessions SET state = '{SESSION_DELETED}', deleted_reason = ?, deleted_at = ?"
_ACTIVE: Final = f"state = '{SESSION_ACTIVE}'"


def _keys(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # RETURNING yields rows in no promised order; sort so callers and tests see a stable one.
    return sorted((user_id, client_id) for user_id, client_id in rows)


def _record(seal: SecretSeal, row: Any) -> SessionRecord:
    """A row (secret sealed) as a record (secret in clear, or None if it does not open)."""
    record = SessionRecord(*row)
    return dataclasses.replace(record, secret=seal.open(record.user_id, record.client_id, row[3]))


def issue_session(
    conn: sqlite3.Connection,
    seal: SecretSeal,
    user_id: str,
    client_id: str,
    platform: int,
    secret: bytes,
    now_ms: int,
    kick_platforms: Collection[int] | None,
) -> IssueResult:
    """Make (user_id, client_id) an active session with ``secret``; end the ones it displaces.

    Displaced: every other user's active session on the same client_id (reason
    ``replaced``: one device, one user) and, if ``kick_platforms`` is given, this
    user's other active sessions whose platform is in it (reason ``kicked``).
    """
    ended = conn.execute(
        f"{_DELETE_SET} WHERE client_id = ? AND user_id <> ? AND {_ACTIVE} RETURNING user_id, client_id",
        ("replaced", now_ms, client_id, user_id),
    ).fetchall()
    if kick_platforms:
        platforms = list(kick_platforms)
        marks = ", ".join("?" * len(platforms))
        ended += conn.execute(
            f"{_DELETE_SET} WHERE user_id = ? AND client_id <> ? AND {_ACTIVE} AND platform IN ({marks})"
            " RETURNING user_id, client_id",
            ("kicked", now_ms, user_id, client_id, *platforms),
        ).fetchall()
    sealed = seal.seal(user_id, client_id, secret)
    row = conn.execute(_UPSERT, (user_id, client_id, platform, sealed, now_ms, now_ms, now_ms)).fetchone()
    session = dataclasses.replace(SessionRecord(*row), secret=secret)
    return IssueResult(session=session, ended=_keys(ended))


def get_session(conn: sqlite3.Connection, seal: SecretSeal, user_id: str, client_id: str) -> SessionRecord | None:
    """The session in any state, or None."""
    row = conn.execute(f"{_SELECT} WHERE user_id = ? AND client_id = ?", (user_id, client_id)).fetchone()
    return None if row is None else _record(seal, row)


def list_sessions(conn: sqlite3.Connection, seal: SecretSeal, user_id: str) -> list[SessionRecord]:
    """All of the user's sessions, any state, newest issued first."""
    rows = conn.execute(f"{_SELECT} WHERE user_id = ? ORDER BY issued_at DESC, client_id", (user_id,))
    return [_record(seal, row) for row in rows]


def end_session(conn: sqlite3.Connection, user_id: str, client_id: str, reason: str, now_ms: int) -> bool:
    """Mark the active session deleted with ``reason``; False if there was no active one."""
    cursor = conn.execute(
        f"{_DELETE_SET} WHERE user_id = ? AND client_id = ? AND {_ACTIVE}",
        (reason, now_ms, user_id, client_id),
    )
    return cursor.rowcount == 1


def end_active_sessions(
    conn: sqlite3.Connection, user_id: str, reason: str, now_ms: int
) -> list[tuple[str, str]]:
    """Mark every active session of the user deleted with ``reason``; return their keys."""
    rows = conn.execute(
        f"{_DELETE_SET} WHERE user_id = ? AND {_ACTIVE} RETURNING user_id, client_id",
        (reason, now_ms, user_id),
    ).fetchall()
    return _keys(rows)


def touch_sessions(conn: sqlite3.Connection, items: Sequence[tuple[str, str]], now_ms: int) -> None:
    """Move ``last_seen`` forward to ``now_ms`` for each (user_id, client_id), any state."""
    # "last_seen < ?" keeps the value monotonic and skips rows already this fresh,
    # which spares writing a page for nothing.
    conn.executemany(
        "UPDATE sessions SET last_seen = ? WHERE user_id = ? AND client_id = ? AND last_seen < ?",
        [(now_ms, user_id, client_id, now_ms) for user_id, client_id in items],
    )


def touch_sessions_each(conn: sqlite3.Connection, items: Sequence[tuple[str, str, int]]) -> None:
    """``touch_sessions`` with a time per session: move ``last_seen`` forward for each (user_id, client_id, ms)."""
    conn.executemany(
        "UPDATE sessions SET last_seen = ? WHERE user_id = ? AND client_id = ? AND last_seen < ?",
        [(ms, user_id, client_id, ms) for user_id, client_id, ms in items],
    )


def connect_read(
    conn: sqlite3.Connection, seal: SecretSeal, inboxes: InboxState, user_id: str, client_id: str
) -> tuple[SessionRecord | None, int | None, dict[str, int]]:
    """What a CONNECT needs to know, in one read: the session (any state), the user's status, the sync heads.

    The heads (``msg``: the inbox head; ``friend``, ``friend_request``, ``blacklist``, ``setting``: see
    ``storage.relations``) are read only when the session exists (otherwise empty): nobody can connect
    without one, so made-up user ids do not fill the heads cache.
    """
    row = conn.execute("SELECT status FROM users WHERE user_id = ?", (user_id,)).fetchone()
    session = get_session(conn, seal, user_id, client_id)
    heads = {} if session is None else {"msg": inboxes.current(conn, user_id), **relation_heads(conn, user_id)}
    return session, None if row is None else row[0], heads


# --- at open: sealing what older versions wrote in clear -----------------------------------------


def seal_unsealed(conn: sqlite3.Connection, seal: SecretSeal) -> int:
    """Seal the secrets that migration v9 listed in ``unsealed_sessions`` (written in clear before v9).

    Runs once at open, on the writer's connection before any operation (its own transaction, so a crash
    leaves every row either sealed and unlisted or clear and listed). ``secure_delete`` zeroes the clear
    bytes the updates free, and the WAL is truncated afterwards, so no copy of them stays in the files.

    Returns:
        How many secrets were sealed (0: nothing was listed, nothing was written).
    """
    if conn.execute("SELECT 1 FROM unsealed_sessions LIMIT 1").fetchone() is None:
        return 0
    engine = engine_of(conn)
    on_sqlite = engine.name == "sqlite"  # PostgreSQL has no secure_delete nor a WAL file of ours to truncate
    if on_sqlite:
        conn.execute("PRAGMA secure_delete = ON")
    try:
        engine.begin(conn)
        try:
            rows = conn.execute(
                "SELECT s.user_id, s.client_id, s.secret FROM unsealed_sessions u"
                " JOIN sessions s ON s.user_id = u.user_id AND s.client_id = u.client_id"
            ).fetchall()
            conn.executemany(
                "UPDATE sessions SET secret = ? WHERE user_id = ? AND client_id = ?",
                [(seal.seal(user_id, client_id, bytes(secret)), user_id, client_id) for user_id, client_id, secret in rows],
            )
            conn.execute("DELETE FROM unsealed_sessions")
            engine.commit(conn)
        except BaseException:
            engine.rollback(conn)
            raise
    finally:
        if on_sqlite:
            conn.execute("PRAGMA secure_delete = OFF")
    if on_sqlite:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the clear pages' old frames leave the WAL file
    return len(rows)


def opens_with(conn: sqlite3.Connection, seal: SecretSeal) -> bool:
    """Whether a stored secret (any one; True when there is none) opens with ``seal``: False means the
    database was sealed under another server key."""
    row = conn.execute("SELECT user_id, client_id, secret FROM sessions LIMIT 1").fetchone()
    return row is None or seal.open(row[0], row[1], row[2]) is not None
