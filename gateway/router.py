"""Who is online on this node: user → live connections, and closing them on command.

The router is the only place that knows which connection belongs to which
session. Services call it to push to a user's devices or to end a session's
live connection; it never blocks (pushes go to each connection's outbox).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from protocol.codes import ConnectionStatus


class LiveConnection(Protocol):
    """What the router needs of a connection (``gateway.connection.GatewayConnection``)."""

    user_id: str
    client_id: str
    platform: int

    def push_frame_body(self, body: bytes) -> None: ...

    def kick(self, status: ConnectionStatus) -> None: ...

    def replace(self) -> None: ...

    def go_away(self, retry_ms: int, redirect: str) -> None: ...

    def release_idle_keys(self) -> None: ...

    @property
    def last_active(self) -> float: ...


class Router:
    def __init__(self) -> None:
        self._users: dict[str, dict[str, LiveConnection]] = {}

    def register(self, conn: LiveConnection) -> None:
        """Add a connection; an older live connection of the same session is closed quietly.

        The same device reconnecting while its old socket is half-dead is the
        usual cause, so the old one is simply dropped (no ``kicked`` push).
        """
        sessions = self._users.setdefault(conn.user_id, {})
        old = sessions.get(conn.client_id)
        sessions[conn.client_id] = conn
        if old is not None and old is not conn:
            old.replace()

    def unregister(self, conn: LiveConnection) -> None:
        sessions = self._users.get(conn.user_id)
        if sessions is not None and sessions.get(conn.client_id) is conn:
            del sessions[conn.client_id]
            if not sessions:
                del self._users[conn.user_id]

    def connections(self, user_id: str) -> tuple[LiveConnection, ...]:
        """A snapshot of the user's live connections (safe to iterate while they come and go)."""
        sessions = self._users.get(user_id)
        # A tuple, not a generator: this runs for every owner of every message, most often for none.
        return tuple(sessions.values()) if sessions else ()

    def connection(self, user_id: str, client_id: str) -> LiveConnection | None:
        return self._users.get(user_id, {}).get(client_id)

    def online_clients(self, user_id: str) -> list[tuple[str, int]]:
        """(client_id, platform) of the user's live connections on this node."""
        return [(c.client_id, c.platform) for c in self.connections(user_id)]

    def close_session(self, user_id: str, client_id: str, status: ConnectionStatus) -> None:
        """Push ``kicked`` {code: status} to that session's live connection, if any, and close it."""
        conn = self.connection(user_id, client_id)
        if conn is not None:
            conn.kick(status)

    def close_user(self, user_id: str, status: ConnectionStatus) -> None:
        for conn in self.connections(user_id):
            conn.kick(status)

    def all_connections(self) -> Iterator[LiveConnection]:
        for sessions in list(self._users.values()):
            yield from list(sessions.values())
