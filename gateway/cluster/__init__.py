"""Who is online, and how a word reaches their connections: the two seams a multi-node gateway plugs into.

Every "who is online / push to them / kick them" decision of the services goes through
``gateway.delivery.Delivery``, and Delivery through these two interfaces only:

- ``Presence``: which sessions have a live connection. The push decision ("which recipients have no live
  connection", for offline pushes) is one bulk call over a collection of users: in a cluster it asks every
  node at once (one query), never once per user.
- ``NoticeBus``: "deliver this body to user U's devices (except device X)", "kick session (U, C) with status
  S", "close user U with status S", "go away". Fire and forget, never blocking: each returns at once.

Today both are one in-process object, ``gateway.cluster.local.Router``: a dict of this node's live
connections, and a notice is a direct call on the connection (no task, no await, no copy). The cluster's
parts are built in ``gateway.cluster.postgres`` (a presence table whose rows live by their node's lease,
notices by PostgreSQL LISTEN/NOTIFY to the node that holds the connection, which hands them to its own
``Router``), wired into ``serve`` with ``server.cluster`` (``gateway.cluster.postgres.wiring``):
docs/ARCHITECTURE.md, "Delivery and the cluster seam", says what is still per node. Nothing outside ``gateway.delivery`` and this package holds the
answer to "which connection object is that?", so nothing else needs to change then.

What each method means for several nodes is written on it; "this node" marks what stays node-local.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from protocol.codes import ConnectionStatus


class LiveConnection(Protocol):
    """What presence and the bus need of a connection (``gateway.connection.GatewayConnection``)."""

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


class Presence(Protocol):
    """Which sessions (user, client) have a live connection, on any node."""

    def register(self, conn: LiveConnection) -> None:
        """``conn`` passed its handshake on this node: its session is online.

        An older live connection of the same session is closed quietly (the same device reconnecting while
        its old socket is half-dead). A cluster writes the session's row (node, platform, lease) and tells
        the node of an older row, if another, to replace it.
        """
        ...

    def unregister(self, conn: LiveConnection) -> None:
        """``conn`` ended: its session is offline, unless a newer connection took the session over."""
        ...

    def offline(self, user_ids: Iterable[str]) -> list[str]:
        """Those of ``user_ids`` with no live connection anywhere, in the order given (duplicates kept)."""
        ...

    def online_clients(self, user_id: str) -> list[tuple[str, int]]:
        """(client_id, platform) of each of the user's live connections."""
        ...

    # ``offline`` and ``online_clients`` are synchronous: the hot path's push decision cannot await. A
    # cluster node answers them for itself (the push decision of a stored message is the cluster's by
    # another way: docs/ARCHITECTURE.md); callers that can wait, and must be right for the whole cluster
    # (the push sender's "online meanwhile?", the admin API's session list, the online-status webhook's
    # device list), await these:

    async def offline_everywhere(self, user_ids: Iterable[str]) -> list[str]:
        """``offline`` over every node (one query in a cluster)."""
        ...

    async def online_clients_everywhere(self, user_id: str) -> list[tuple[str, int]]:
        """``online_clients`` over every node, by client id."""
        ...


class NoticeBus(Protocol):
    """Words for live connections, carried to whichever node holds them. None blocks or waits.

    The push methods return how many connections on this node were handed the body (for the delivered
    counter of this node's /metrics); other nodes count their own.
    """

    def push(self, user_id: str, body: bytes, except_client: str | None = None) -> int:
        """A NOTIFY body (``encode_notify_body``) to every live device of the user but ``except_client``."""
        ...

    def push_message(self, user_id: str, seq: int, packed_message: bytes, except_client: str | None = None) -> int:
        """``msg`` {seq, message} to the user's live devices but ``except_client``; ``packed_message`` is the
        message map packed once for all its owners. The body (``encode_msg_push``) is built only if a device
        gets it, on the node that holds it: the hot path of every message."""
        ...

    def push_update(self, user_id: str, seq: int, packed_notice: bytes, except_client: str | None = None) -> int:
        """``message_updated`` {seq, message} (``encode_update_push``), as ``push_message``."""
        ...

    def kick(self, user_id: str, client_id: str, status: ConnectionStatus) -> None:
        """Push ``kicked`` {code: status} to that session's live connection, if any, and close it."""
        ...

    def close_user(self, user_id: str, status: ConnectionStatus) -> None:
        """``kick`` every live connection of the user."""
        ...

    def go_away(self, retry_ms: int, redirect: str) -> int:
        """Every connection of this node: answer what it has read, send DISCONNECT (retry in ``retry_ms``,
        at ``redirect``), close. How many were told. (A cluster may add the node to drain as an argument.)"""
        ...


class BadgeCounter(Protocol):
    """Each offline user's push badge: pushes sent to it since it was last online (on any node)."""

    async def bump(self, user_id: str) -> int:
        """One more push request goes to the user: its badge, counting this one."""
        ...

    def clear(self, user_id: str) -> None:
        """The user came online (or will pull anyway): the next push counts from 1. Never blocks."""
        ...

    def users(self) -> int:
        """How many users' counts this process keeps in memory (0 where they live in a database)."""
        ...


class RelayedMessage(Protocol):
    """One chatroom message as the relay hands it over, in the room's order."""

    seq: int  # the room's own counter, cluster-wide
    packed: bytes  # the message map (``Outgoing.to_wire``) packed
    origin: tuple[str, str] | None  # the sending device (user, client), which does not get it back


class RoomRelay(Protocol):
    """A chatroom's state that is the room's, not a node's, when several nodes serve its members.

    ``gateway.domain.chatrooms.ChatroomService`` keeps its own members' connections and queues (this node); with
    a relay (``gateway.cluster.postgres.rooms.ClusterRooms``) a room's message goes to the relay, which
    orders it among the room's messages from every node and hands each node its room's messages in that
    order (``deliver``, set by the service); member counts, member pages and history are the relay's
    answers; room record and user status changes made on one node are told to the others.
    """

    def attach(
        self,
        deliver: Callable[[str, list[RelayedMessage]], None],
        has_members: Callable[[str], bool],
        room_changed: Callable[[str], None],
        user_status: Callable[[str, int], None],
    ) -> None:
        """The service's side: ``deliver`` a room's next messages to this node's members (in order, each
        once); whether this node has members in a room; another node changed a room's record; another node
        set a user's status."""
        ...

    def publish(
        self,
        chatroom_id: str,
        message_id: int,
        packed: bytes,
        origin: tuple[str, str] | None,
        in_history: bool,
        done: Callable[[bool, dict[str, int] | None], None],
        client_msg_id: str | None = None,
    ) -> None:
        """Queue the message for the room; ``done(True, None)`` once it is committed (every node will
        deliver it), ``done(True, ack)`` if the sender's ``client_msg_id`` was sent to the room before,
        through any node (``ack`` is that send's; nothing is sent again), ``done(False, None)`` if it could
        not be (the database is away: answer 250). Never blocks."""
        ...

    async def joined(self, chatroom_id: str, user_id: str, client_id: str) -> None:
        """The device is present in the room on this node (written before this returns)."""
        ...

    def left(self, chatroom_id: str, user_id: str, client_id: str) -> None:
        """The device left the room on this node (written in order after its join; never blocks)."""
        ...

    async def written(self) -> None:
        """Return once every join and leave queued before this call is written (a quit's answer waits)."""
        ...

    async def member_count(self, chatroom_id: str) -> int:
        """Users present in the room on any node."""
        ...

    async def members(self, chatroom_id: str, offset: int, count: int) -> tuple[int, list[str]]:
        """(member count, a page of user ids in the order they joined), over every node."""
        ...

    async def history(self, chatroom_id: str, before_id: int, count: int) -> list[dict[str, Any]]:
        """The room's last messages (newest first, message ids below ``before_id`` unless 0), from every node."""
        ...

    def room_changed(self, chatroom_id: str) -> None:
        """The admin API changed the room's record here: the other nodes read it again."""
        ...

    def user_status_changed(self, user_id: str, status: int) -> None:
        """The admin API set the user's status here: the other nodes' members of that user hear of it."""
        ...
