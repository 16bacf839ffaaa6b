"""This node's live connections: user → client → connection, and the in-process Presence and NoticeBus.

The router is the only place that knows which connection object belongs to which session. It is both
``Presence`` and ``NoticeBus`` (``gateway.cluster``) for a single node: every answer comes from the dict,
every notice is a direct call on the connection, which never blocks (pushes go to its outbox). In a cluster
each node keeps one of these for its own connections, with ``gateway.cluster.postgres.node.ClusterNode``
(the presence table and the LISTEN/NOTIFY bus) in front of it. Only ``gateway.delivery`` (and the tests) use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from gateway.cluster import LiveConnection
from protocol.codes import ConnectionStatus
from protocol.connection import encode_msg_push, encode_update_push


@dataclass
class ConnectionCensus:
    """What this node's live connections add up to, for /metrics (read when scraped)."""

    by_platform: dict[int, int] = field(default_factory=dict)
    frames_in: int = 0  # sealed frames received so far
    frames_out: int = 0  # sealed frames sent so far
    outbox_bytes: int = 0  # bytes waiting for the sockets


class Router:
    def __init__(self) -> None:
        self._users: dict[str, dict[str, LiveConnection]] = {}

    # --- Presence ---------------------------------------------------------------------------------

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

    def offline(self, user_ids: Iterable[str]) -> list[str]:
        users = self._users  # a user with no connection left has no entry (see unregister)
        return [user_id for user_id in user_ids if user_id not in users]

    def online_clients(self, user_id: str) -> list[tuple[str, int]]:
        """(client_id, platform) of the user's live connections on this node."""
        return [(c.client_id, c.platform) for c in self.connections(user_id)]

    async def offline_everywhere(self, user_ids: Iterable[str]) -> list[str]:
        """One node: ``offline``, already the whole answer."""
        return self.offline(user_ids)

    async def online_clients_everywhere(self, user_id: str) -> list[tuple[str, int]]:
        """One node: ``online_clients``, by client id as a cluster answers."""
        return sorted(self.online_clients(user_id))

    # --- NoticeBus --------------------------------------------------------------------------------
    # The push methods walk the user's dict itself, not a snapshot: nothing they call changes it (a push
    # that overflows an outbox only cancels that connection's task; it unregisters later, in its own task).

    def push(self, user_id: str, body: bytes, except_client: str | None = None) -> int:
        sessions = self._users.get(user_id)
        if not sessions:
            return 0
        pushed = 0
        for conn in sessions.values():
            if conn.client_id != except_client:
                conn.push_frame_body(body)
                pushed += 1
        return pushed

    def push_message(self, user_id: str, seq: int, packed_message: bytes, except_client: str | None = None) -> int:
        return self._push_encoded(user_id, encode_msg_push, seq, packed_message, except_client)

    def push_update(self, user_id: str, seq: int, packed_notice: bytes, except_client: str | None = None) -> int:
        return self._push_encoded(user_id, encode_update_push, seq, packed_notice, except_client)

    def _push_encoded(
        self,
        user_id: str,
        encode: Callable[[int, bytes], bytes],
        seq: int,
        packed: bytes,
        except_client: str | None,
    ) -> int:
        # Runs for every owner of every message, most often for one device or none: no generator, no copy,
        # and the body is encoded only once a device is to get it.
        sessions = self._users.get(user_id)
        if not sessions:
            return 0
        body = None
        pushed = 0
        for conn in sessions.values():
            if conn.client_id == except_client:
                continue
            if body is None:
                body = encode(seq, packed)
            conn.push_frame_body(body)
            pushed += 1
        return pushed

    def kick(self, user_id: str, client_id: str, status: ConnectionStatus) -> None:
        """Push ``kicked`` {code: status} to that session's live connection, if any, and close it."""
        conn = self.connection(user_id, client_id)
        if conn is not None:
            conn.kick(status)

    def close_user(self, user_id: str, status: ConnectionStatus) -> None:
        for conn in self.connections(user_id):
            conn.kick(status)

    def go_away(self, retry_ms: int, redirect: str) -> int:
        live = list(self.all_connections())
        for conn in live:
            conn.go_away(retry_ms, redirect)
        return len(live)

    # --- this node only -----------------------------------------------------------------------------

    def connections(self, user_id: str) -> tuple[LiveConnection, ...]:
        """A snapshot of the user's live connections (safe to iterate while they come and go)."""
        sessions = self._users.get(user_id)
        return tuple(sessions.values()) if sessions else ()

    def connection(self, user_id: str, client_id: str) -> LiveConnection | None:
        return self._users.get(user_id, {}).get(client_id)

    def all_connections(self) -> Iterator[LiveConnection]:
        for sessions in list(self._users.values()):
            yield from list(sessions.values())

    def count(self) -> int:
        """How many live connections this node holds."""
        return sum(len(sessions) for sessions in self._users.values())

    def release_idle_keys(self, quiet_since: float) -> None:
        """Connections that sent nothing since ``quiet_since`` (trio's clock) drop their key schedules."""
        for conn in self.all_connections():
            if conn.last_active < quiet_since:
                conn.release_idle_keys()

    def census(self) -> ConnectionCensus:
        census = ConnectionCensus()
        by_platform = census.by_platform
        for conn in self.all_connections():
            by_platform[conn.platform] = by_platform.get(conn.platform, 0) + 1
            counts = getattr(conn, "frame_counts", None)  # test doubles have none
            if counts is not None:
                sent, received = counts()
                census.frames_out += sent
                census.frames_in += received
            census.outbox_bytes += getattr(conn, "outbox_queued_bytes", 0)
        return census


class LocalBadges:
    """``BadgeCounter`` of one process: in memory, for at most ``max_users`` users, least recently pushed
    forgotten first (the dict's order): users who never come back online would otherwise each keep an entry
    for as long as the process runs (``push.max_badge_users``)."""

    def __init__(self, max_users: int) -> None:
        self.max_users = max_users
        self._badges: dict[str, int] = {}

    async def bump(self, user_id: str) -> int:
        badge = self._badges.pop(user_id, 0) + 1  # re-inserted: the most recently pushed is last
        self._badges[user_id] = badge
        if len(self._badges) > self.max_users:
            del self._badges[next(iter(self._badges))]
        return badge

    def clear(self, user_id: str) -> None:
        self._badges.pop(user_id, None)

    def users(self) -> int:
        return len(self._badges)
