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

from collections.abc import Iterable
from typing import Protocol

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
