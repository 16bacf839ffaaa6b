"""One gateway's part in the cluster, run by trio: the parts of this package put together around its Router.

``ClusterNode.run`` (a nursery task) creates the tables, claims the node id (``NodeIdTaken`` ends the start),
then keeps the lease, listens for notices and writes presence until cancelled; at a clean stop it gives the
id back. Meanwhile, on the trio loop:

- ``register(conn)`` / ``unregister(conn)`` (``Presence``'s, synchronous as the seam wants): the Router is
  updated at once, the presence row is queued and written by a task in a thread, in order, several per
  thread call; ``await written()`` returns once everything queued before it is in the table (the handshake
  should await it before CONNACK, so that no message stored elsewhere after the client's first pull can
  miss its notice);
- ``kick`` / ``close_user`` (``NoticeBus``'s): this node's connections at once; the nodes holding the others
  get a notice (found and sent in a thread, fire and forget);
- ``await offline(user_ids)`` / ``await online_clients(user_id)``: the whole cluster's answer, one query.
  Awaitable, unlike the seam's (a database cannot answer on the event loop): see docs/ARCHITECTURE.md for
  how the push decision gets it without an await (``notify.notify_holders`` in the writer's transaction);
- ``relay_push(user_id, body, except_client)``: a live-only push (no inbox row behind it, so no writer's
  notice) for the user's devices on other nodes: rows in ``ember_cluster_pushes`` and a "push" notice to
  each node holding one, batched per written batch; the holder reads and deletes its rows in id order;
- notices in: "replace", "kick", "close" reach the Router; "inbox" goes to ``on_inbox`` (the wiring decides:
  read and push, or tell the devices to pull); "push" reads this node's relayed pushes; after a gap
  ``on_resync`` (tell every device to pull) and the relayed pushes are read again.

Wired into ``gateway.server`` with ``server.cluster`` (``wiring``); docs/ARCHITECTURE.md, "Delivery and the
cluster seam", lists what is still per node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import psycopg
import trio

from gateway.cluster import LiveConnection
from gateway.cluster.local import Router
from gateway.cluster.postgres.database import ClusterDatabase, LeaseClock, database_time
from gateway.cluster.postgres.listener import NoticeListener
from gateway.cluster.postgres.nodes import HEARTBEAT_SECONDS, LEASE_SECONDS, NodeLease
from gateway.cluster.postgres.notices import (
    CloseUserNotice,
    InboxNotice,
    KickNotice,
    Notice,
    PushNotice,
    ReplaceNotice,
    RoomChangedNotice,
    RoomNotice,
    UserStatusNotice,
    send_notice,
)
from gateway.cluster.postgres.presence import PresenceTable
from gateway.cluster.postgres.tables import PUSHES, Connection, ensure_tables
from protocol.codes import ConnectionStatus

T = TypeVar("T")
_STATUSES = frozenset(int(status) for status in ConnectionStatus)

#: A relayed push older than this when its node reads it is dropped: it was a live word (a typing
#: indicator, a head), and a device connected that long has synced since (docs/ARCHITECTURE.md).
PUSH_STALE_SECONDS = 30
#: Rows for a node id that nobody has read for this long (its node died) are removed at any node's start.
PUSH_ORPHAN_SECONDS = 300


@dataclass
class _Registered:
    conn: LiveConnection
    generation: int | None = None  # None until its row is written


class ClusterNode:
    """This node's presence, lease and notices. ``router`` holds this node's connections.

    ``kick_platforms(platform)``: the platform class the one-device rule applies to at a login (None in
    multi-endpoint mode); ``kick_status``: what a kicked device is told (-7 with kickoff events, else -6).
    """

    def __init__(
        self,
        url: str,
        node_id: int,
        router: Router,
        *,
        on_inbox: Callable[..., None],
        on_resync: Callable[[], None],
        on_lease_lost: Callable[[], None],
        kick_platforms: Callable[[int], frozenset[int] | None] = lambda platform: None,
        kick_status: ConnectionStatus = ConnectionStatus.SECRET_KEY_MISMATCH,
        clock: LeaseClock = database_time,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        lease_seconds: float = LEASE_SECONDS,
        claim_wait_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.node_id = node_id
        self.router = router
        self.lease = NodeLease(node_id, lease_seconds=lease_seconds, clock=clock)
        self.presence = PresenceTable(node_id, clock=clock)
        self.listener = NoticeListener(url, node_id, self._resynced)
        self._on_resync = on_resync
        self._url = url
        self._on_inbox = on_inbox
        self._on_lease_lost = on_lease_lost
        self._kick_platforms = kick_platforms
        self._kick_status = kick_status
        self._heartbeat_seconds = heartbeat_seconds
        self._claim_wait_seconds = claim_wait_seconds
        self._sessions: dict[tuple[str, str], _Registered] = {}
        # Presence writes and outgoing notices, in order; one task drains them in a thread.
        self._pending: list[Callable[[Connection], None]] = []
        self._queued = self._done = 0
        self._wake = trio.Event()
        self._progress = trio.Event()
        self._reader: ClusterDatabase | None = None
        self.write_failures = 0
        self.unknown_statuses = 0
        #: Where the chatroom notices go ("room", "roomrec", "ustatus"): ``rooms.ClusterRooms.take``.
        self.on_room_notice: Callable[[Notice], None] | None = None
        # Live-only pushes for other nodes: the batch the next queued write will send (None: start one).
        self._relay_batch: list[tuple[str, str | None, bytes]] | None = None
        self._pushes_wake = trio.Event()
        self.pushes_relayed = self.pushes_received = self.push_read_failures = 0

    # --- lifetime ----------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Join the cluster (``started`` once the id is ours and the listener hears), serve until cancelled."""
        beat = await ClusterDatabase.open(self._url)  # the heartbeat's own: never behind presence writes
        writes = await ClusterDatabase.open(self._url)
        self._reader = await ClusterDatabase.open(self._url)
        try:
            await beat.run(ensure_tables)
            await beat.run(self.lease.claim, self._claim_wait_seconds)
            await beat.run(self._purge_pushes)
            async with trio.open_nursery() as nursery:
                await nursery.start(self.listener.run)
                nursery.start_soon(self.lease.keep, beat, self._on_lease_lost, self._heartbeat_seconds)
                nursery.start_soon(self._write_forever, writes)
                nursery.start_soon(self._take_notices)
                nursery.start_soon(self._read_pushes_forever)
                task_status.started()
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await beat.run(self.lease.release)
                except psycopg.Error:
                    pass  # the lease runs out by itself
                await beat.aclose()
                await writes.aclose()
                await self._reader.aclose()
                self._reader = None

    # --- Presence (sync, as the seam's) -----------------------------------------------------------------

    def register(self, conn: LiveConnection) -> None:
        self.router.register(conn)
        entry = self._sessions[(conn.user_id, conn.client_id)] = _Registered(conn)
        user_id, client_id, platform = conn.user_id, conn.client_id, conn.platform
        kick_class = self._kick_platforms(platform)

        def write(db: Connection) -> None:
            done = self.presence.register(
                db, user_id, client_id, platform, kick_platforms=kick_class, kick_status=self._kick_status
            )
            entry.generation = done.generation
            if done.kick_here:
                trio.from_thread.run_sync(self._kick_here, user_id, done.kick_here)

        self._queue(write)

    def unregister(self, conn: LiveConnection) -> None:
        self.router.unregister(conn)
        key = (conn.user_id, conn.client_id)
        entry = self._sessions.get(key)
        if entry is None or entry.conn is not conn:
            return  # a newer connection of the session here took over: its row stays
        del self._sessions[key]

        def write(db: Connection) -> None:
            if entry.generation is not None:  # written (the queue is in order, so it is by now unless that failed)
                self.presence.unregister(db, conn.user_id, conn.client_id, entry.generation)

        self._queue(write)

    async def written(self) -> None:
        """Return once every presence write queued before this call is in the table."""
        target = self._queued
        while self._done < target:
            await self._progress.wait()

    async def offline(self, user_ids: Iterable[str]) -> list[str]:
        """Those of ``user_ids`` with no live connection on any node, in order (one query)."""
        return await self._read(self.presence.offline, user_ids)

    async def online_clients(self, user_id: str) -> list[tuple[str, int]]:
        return await self._read(self.presence.online_clients, user_id)

    async def query(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(connection, *args)`` on the node's reader connection, in a thread (one at a time)."""
        return await self._read(fn, *args)

    def queue_write(self, write: Callable[[Connection], None]) -> None:
        """``write(connection)`` after every presence write and notice queued before it (fire and forget)."""
        self._queue(write)

    async def _read(self, fn: Callable[..., T], *args: object) -> T:
        if self._reader is None:
            raise RuntimeError("the cluster node is not running")
        return await self._reader.run(fn, *args)  # one at a time: a pool of readers when it is wired

    # --- NoticeBus: kicks and closes reach the connection wherever it is -------------------------------

    def kick(self, user_id: str, client_id: str, status: ConnectionStatus) -> None:
        if self.router.connection(user_id, client_id) is not None:
            self.router.kick(user_id, client_id, status)
            return

        def write(db: Connection) -> None:
            with db.transaction():
                node = self.presence.session_node(db, user_id, client_id)
                if node is not None and node != self.node_id:
                    send_notice(db, node, KickNotice(self.node_id, user_id, client_id, int(status)))

        self._queue(write)

    def close_user(self, user_id: str, status: ConnectionStatus) -> None:
        self.router.close_user(user_id, status)

        def write(db: Connection) -> None:
            with db.transaction():
                for node in self.presence.holders(db, [user_id]):
                    if node != self.node_id:
                        send_notice(db, node, CloseUserNotice(self.node_id, user_id, int(status)))

        self._queue(write)

    # --- live-only pushes for devices on other nodes ------------------------------------------------

    def relay_push(self, user_id: str, body: bytes, except_client: str | None = None) -> None:
        """``body`` (a NOTIFY body) to the user's devices on the other nodes, but ``except_client``; the
        caller pushed it to this node's. Fire and forget: queued, and written with the pushes queued
        beside it in one transaction (which nodes hold the users: one query; the rows: one statement; a
        "push" notice per node)."""
        batch = self._relay_batch
        if batch is None:
            batch = self._relay_batch = []
            self._queue(lambda db: self._write_pushes(db, batch))
        batch.append((user_id, except_client, body))

    def _write_pushes(self, db: Connection, batch: list[tuple[str, str | None, bytes]]) -> None:
        with db.transaction():
            holders = self.presence.holders(db, {user_id for user_id, _, _ in batch})
            nodes: list[int] = []
            users: list[str] = []
            excepts: list[str | None] = []
            bodies: list[bytes] = []
            for node, here in sorted(holders.items()):
                if node == self.node_id:
                    continue
                for user_id, except_client, body in batch:
                    if user_id in here:
                        nodes.append(node)
                        users.append(user_id)
                        excepts.append(except_client)
                        bodies.append(body)
            if not nodes:
                return
            db.execute(
                f"""INSERT INTO {PUSHES} (node_id, user_id, except_client, body)
                    SELECT n, u, e, b FROM unnest(%s::integer[], %s::text[], %s::text[], %s::bytea[])
                        WITH ORDINALITY AS t(n, u, e, b, i) ORDER BY i""",
                (nodes, users, excepts, bodies),
            )
            for node in sorted(set(nodes)):
                send_notice(db, node, PushNotice(self.node_id))
        self.pushes_relayed += len(nodes)

    def _take_pushes(self, db: Connection) -> list[tuple[str, str | None, bytes]]:
        """This node's relayed pushes, oldest first, deleted as they are read (stale ones dropped)."""
        with db.transaction():
            rows = db.execute(
                f"""WITH taken AS (
                        DELETE FROM {PUSHES} WHERE node_id = %s
                        RETURNING id, user_id, except_client, body,
                                  created_at > now() - make_interval(secs => %s) AS fresh)
                    SELECT user_id, except_client, body FROM taken WHERE fresh ORDER BY id""",
                (self.node_id, PUSH_STALE_SECONDS),
            ).fetchall()
        return [(user_id, except_client, bytes(body)) for user_id, except_client, body in rows]

    def _purge_pushes(self, db: Connection) -> None:
        """At start: rows left for this id by an earlier start, and any node's long unread ones."""
        with db.transaction():
            db.execute(
                f"DELETE FROM {PUSHES} WHERE node_id = %s OR created_at < now() - make_interval(secs => %s)",
                (self.node_id, PUSH_ORPHAN_SECONDS),
            )

    async def _read_pushes_forever(self) -> None:
        while True:
            await self._pushes_wake.wait()
            self._pushes_wake = trio.Event()  # a notice arriving during the read wakes the next one
            try:
                rows = await self._read(self._take_pushes)
            except psycopg.Error:
                self.push_read_failures += 1  # the database is away: read again shortly
                await trio.sleep(0.5)
                self._pushes_wake.set()
                continue
            for user_id, except_client, body in rows:
                self.pushes_received += self.router.push(user_id, body, except_client)

    def _resynced(self) -> None:
        """After a listener gap: a "push" notice may have been missed; then the wiring's own resync."""
        self._pushes_wake.set()
        self._on_resync()

    # --- the queue ---------------------------------------------------------------------------------

    def _queue(self, write: Callable[[Connection], None]) -> None:
        self._pending.append(write)
        self._queued += 1
        self._wake.set()

    async def _write_forever(self, db: ClusterDatabase) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._pending:
                batch = self._pending
                self._pending = []
                self._relay_batch = None  # the pushes relayed from now on go in a write of their own
                size = len(batch)  # _write_batch empties it as it goes
                try:
                    await db.run(self._write_batch, batch)
                except psycopg.Error:
                    # The database is out of reach: keep the writes, in order, and try again shortly (the
                    # lease gives up on this node if that lasts; a write done twice is harmless).
                    self.write_failures += 1
                    self._done += size - len(batch)
                    self._pending[:0] = batch
                    await trio.sleep(0.5)
                    continue
                self._done += size
                self._progress.set()
                self._progress = trio.Event()

    def _write_batch(self, db: Connection, batch: list[Callable[[Connection], None]]) -> None:
        while batch:
            batch[0](db)
            del batch[0]  # done: a failure after this retries only what is left

    # --- notices in ----------------------------------------------------------------------------------

    async def _take_notices(self) -> None:
        async for notice in self.listener.notices:
            self._take(notice)

    def _take(self, notice: Notice) -> None:
        match notice:
            case InboxNotice(seqs=seqs, firsts=firsts):
                if firsts:  # ``on_inbox(seqs, firsts)``: push each message of the batch, lowest first
                    self._on_inbox(seqs, firsts)
                else:
                    self._on_inbox(seqs)
            case ReplaceNotice(user_id=u, client_id=c, generation=g):
                entry = self._sessions.get((u, c))
                # Only a connection whose row is older than the one that replaced it (a row still being
                # written here will be newer: it is written after the notice's).
                if entry is not None and entry.generation is not None and entry.generation < g:
                    entry.conn.replace()
            case KickNotice(user_id=u, client_id=c, status=s) if s in _STATUSES:
                self.router.kick(u, c, ConnectionStatus(s))
            case CloseUserNotice(user_id=u, status=s) if s in _STATUSES:
                self.router.close_user(u, ConnectionStatus(s))
            case PushNotice():
                self._pushes_wake.set()
            case RoomNotice() | RoomChangedNotice() | UserStatusNotice():
                if self.on_room_notice is not None:
                    self.on_room_notice(notice)
            case _:
                self.unknown_statuses += 1  # a status this version does not know: nothing to tell the device

    def _kick_here(self, user_id: str, client_ids: list[str]) -> None:
        for client_id in client_ids:
            self.router.kick(user_id, client_id, self._kick_status)
