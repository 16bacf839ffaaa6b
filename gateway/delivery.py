"""The one way services reach live devices: push, notify, kick, close a user, and who is online.

Messaging, relations, sessions, webhooks, chatrooms, the connection and the admin API ask a ``Delivery``;
only it (and ``gateway.cluster``) knows the presence and notice-bus implementations behind it. Today that
is this node's ``Router`` for both (``Delivery.single_node()``); several nodes would pass a presence
table and a LISTEN/NOTIFY bus instead, and keep the Router for what only this node can answer (its own
connections: the chatrooms' members, /metrics, the idle-key sweep, the shutdown). See docs/ARCHITECTURE.md,
"Delivery and the cluster seam".

The presence and bus methods are the implementation's own bound methods, stored on the instance: a push
is one call straight into the Router, no wrapper frame, no await, no task.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from gateway.cluster import BadgeCounter, LiveConnection, NoticeBus, Presence, RoomRelay
from gateway.cluster.local import ConnectionCensus, Router


class Delivery:
    """Presence and the notice bus for the services, and this node's connections for what stays local.

    Pushes (each returns the number of this node's connections handed the body):
        ``push(user_id, body, except_client=None)``: a NOTIFY body to the user's devices but one;
        ``push_message(user_id, seq, packed_message, except_client=None)``: a stored message's ``msg`` push;
        ``push_update(user_id, seq, packed_notice, except_client=None)``: ``message_updated``.
    Ending connections: ``kick(user_id, client_id, status)`` (one session), ``close_user(user_id, status)``,
        ``go_away(retry_ms, redirect)`` (every connection of this node, at shutdown).
    Who is online: ``offline(user_ids)`` (bulk: those with no live connection, in order),
        ``online_clients(user_id)`` ((client_id, platform) pairs), ``register(conn)`` / ``unregister(conn)``;
        synchronous, so this node's answer in a cluster; ``await offline_everywhere(user_ids)`` and
        ``await online_clients_everywhere(user_id)`` answer for every node.
    """

    def __init__(self, node: Router, presence: Presence | None = None, bus: NoticeBus | None = None) -> None:
        #: This node's live connections (tests reach in here; services use the methods below).
        self.node = node
        # Typed as the interfaces, so mypy checks that the Router is both.
        self.presence: Presence = presence or node
        self.bus: NoticeBus = bus or node
        presence, bus = self.presence, self.bus
        self.register = presence.register
        self.unregister = presence.unregister
        self.offline = presence.offline
        self.online_clients = presence.online_clients
        self.offline_everywhere = presence.offline_everywhere
        self.online_clients_everywhere = presence.online_clients_everywhere
        self.push = bus.push
        self.push_message = bus.push_message
        self.push_update = bus.push_update
        self.kick = bus.kick
        self.close_user = bus.close_user
        self.go_away = bus.go_away
        # A cluster's presence writes its rows in a thread: the handshake awaits them before CONNACK, so a
        # message stored on another node after the device's first pull finds the row and notifies this node.
        self.written = getattr(presence, "written", _nothing_to_wait_for)
        #: A cluster node's figures for /metrics (name → (kind, help, value)); None on one node.
        self.cluster_figures: Callable[[], dict[str, tuple[str, str, float]]] | None = None
        #: A cluster node's chatroom relay (the rooms' shared state); None on one node.
        self.room_relay: RoomRelay | None = None
        #: A cluster node's admin nonce store (``gateway.admin.auth.NonceStore``: shared by every node); None on one.
        self.admin_nonces: Any = None
        #: A cluster node's push badges (``gateway.cluster.BadgeCounter``, in the shared database); None on one
        #: node, where the webhooks keep them in memory.
        self.badges: BadgeCounter | None = None

    @classmethod
    def single_node(cls) -> Delivery:
        """One gateway process: its Router is presence and bus (what ``serve`` builds)."""
        return cls(Router())

    # --- built on the above -------------------------------------------------------------------------

    @property
    def clustered(self) -> bool:
        """Whether presence is a cluster's (another node may hold a user's devices)."""
        return self.presence is not self.node

    def is_online(self, user_id: str) -> bool:
        return not self.offline((user_id,))

    def session_online(self, user_id: str, client_id: str) -> bool:
        """Whether the session (user, client) has a live connection (e.g. a newer one took an ended one's place)."""
        return any(online == client_id for online, _ in self.online_clients(user_id))

    def push_to_each(self, user_ids: Iterable[str], body: bytes) -> int:
        """The same NOTIFY body to every live device of each user."""
        push = self.push
        return sum(push(user_id, body) for user_id in user_ids)

    # --- this node only -----------------------------------------------------------------------------

    def connection_here(self, user_id: str, client_id: str) -> LiveConnection | None:
        """The session's live connection on this node. Only for what holds a device's own connection while
        it is connected here: a chatroom member (a request comes over the device's connection, so its
        connection is on this node in a cluster too)."""
        return self.node.connection(user_id, client_id)

    def connected_here(self) -> int:
        """How many live connections this node holds."""
        return self.node.count()

    def release_idle_keys(self, quiet_since: float) -> None:
        """This node's connections quiet since ``quiet_since`` (trio's clock) drop their key schedules."""
        self.node.release_idle_keys(quiet_since)

    def census(self) -> ConnectionCensus:
        """Connections by platform, frames and queued outbox bytes of this node, for its /metrics."""
        return self.node.census()


async def _nothing_to_wait_for() -> None:
    """One node: registering is a dict entry, done when ``register`` returns."""
