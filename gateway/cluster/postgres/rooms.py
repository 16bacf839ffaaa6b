"""Chatrooms across nodes: ``RoomRelay`` (``gateway.cluster``) on the shared database and the notice bus.

A room's members may sit on any node. What is the room's lives in three UNLOGGED tables (``tables``):

- ``ember_cluster_rooms``: the room's message counter. Storing a message takes the room's row lock
  (``SELECT ... FOR UPDATE``, rooms in id order so two nodes never deadlock) and keeps it to COMMIT, so the room's messages commit in the order of
  their seq, whichever node stored them: a reader that sees seq n has seen every seq below it.
- ``ember_cluster_room_messages``: the room's last ``keep`` messages (the packed message map, its origin
  device, whether it belongs in the history). Not an inbox: no pull or push ever reads it; it is what the
  other nodes read to deliver, and the room's history.
- ``ember_cluster_room_members``: the devices present, and on which node; a row counts while its node's
  lease runs (as presence). Member counts and pages are queries over it.

A message's way: the sending node's ``publish`` queues it; one task writes what is queued in one
transaction (the counter, the row, the trim, the nodes with members) with one "room" notice per other
node per room (``notices``: room id and the highest seq, never the body) and commits, then answers the
sender. Every node, the sender's too, then hands its members the room's messages in seq order, each once,
from one task: its own from memory when it is the next seq, otherwise (a notice, or a gap) it reads those
past the last it delivered from the table. After a listener gap (``resync``) it reads every room it has
members in. A node that falls more than ``keep`` messages behind loses the older ones (``lost``).

Admin changes to a room's record and user statuses reach the other nodes as "roomrec" and "ustatus"
notices to every live node.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import trio

from gateway.cluster import RelayedMessage
from gateway.cluster.postgres.database import ClusterDatabase, LeaseClock, database_time
from gateway.cluster.postgres.nodes import NOW
from gateway.cluster.postgres.notices import (
    Notice,
    RoomChangedNotice,
    RoomNotice,
    UserStatusNotice,
    channel_name,
    encode,
)
from gateway.cluster.postgres.tables import NODES, ROOM_MEMBERS, ROOM_MESSAGES, ROOMS, Connection
from protocol import codec

log = logging.getLogger("ember.cluster.rooms")

_LIVE_MEMBERS = f"{ROOM_MEMBERS} m JOIN {NODES} n ON n.node_id = m.node_id AND n.lease_until > {NOW}"


@dataclass(slots=True)
class RoomMessage:
    seq: int
    packed: bytes
    origin: tuple[str, str] | None


@dataclass
class _Publish:
    chatroom_id: str
    message_id: int
    packed: bytes
    origin: tuple[str, str] | None
    in_history: bool
    done: Callable[[bool, dict[str, int] | None], None]
    client_msg_id: str | None = None
    seq: int = 0
    earlier: dict[str, int] | None = None  # a resend: the first send's ack (nothing stored, nothing sent)


@dataclass
class _Membership:
    chatroom_id: str
    user_id: str
    client_id: str
    present: bool  # joined (True) or left (False)
    written: trio.Event = field(default_factory=trio.Event)
    seen: int = 0  # the room's seq when it was written (under the room's lock): a first member starts after it


@dataclass
class _Broadcast:
    notice: Notice


_Write = _Publish | _Membership | _Broadcast



def _earlier_send(conn: Connection, room: str, sender: str, client_msg_id: str) -> dict[str, int] | None:
    """The ack of the sender's earlier message with this client_msg_id in the room's kept messages, if any
    (called under the room's row lock, so a resend racing on another node waits and finds it)."""
    row = conn.execute(
        f"""SELECT packed FROM {ROOM_MESSAGES}
            WHERE chatroom_id = %s AND origin_user = %s AND client_msg_id = %s LIMIT 1""",
        (room, sender, client_msg_id),
    ).fetchone()
    if row is None:
        return None
    wire = codec.unpack(bytes(row[0]))
    return {"message_id": wire["message_id"], "server_time": wire["server_time"], "seq": 0}

class ClusterRooms:
    """This node's ``RoomRelay``. ``run`` in a nursery; ``take`` gets the node's room notices."""

    def __init__(self, url: str, node_id: int, *, keep: int, clock: LeaseClock = database_time) -> None:
        self.node_id = node_id
        self.keep = max(1, keep)
        self._url = url
        self._clock = clock
        self._pending: list[_Write] = []
        self._wake = trio.Event()
        self._queued = self._done = 0
        self._progress = trio.Event()
        self._events_in, self._events = trio.open_memory_channel[tuple[str, int, RoomMessage | None]](4096)
        self._last: dict[str, int] = {}  # room → the last seq handed to this node's members
        self._reader: ClusterDatabase | None = None
        self._deliver: Callable[[str, list[RelayedMessage]], None] = lambda room, messages: None
        self._has_members: Callable[[str], bool] = lambda room: False
        self._room_changed: Callable[[str], None] = lambda room: None
        self._user_status: Callable[[str, int], None] = lambda user, status: None
        self.published = self.notices_sent = self.fetched = self.lost = self.failed = self.resyncs = 0
        self.resends = 0  # sends answered with an earlier send's ack (the same client_msg_id)

    def attach(
        self,
        deliver: Callable[[str, list[RelayedMessage]], None],
        has_members: Callable[[str], bool],
        room_changed: Callable[[str], None],
        user_status: Callable[[str, int], None],
    ) -> None:
        self._deliver, self._has_members = deliver, has_members
        self._room_changed, self._user_status = room_changed, user_status

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        writes = await ClusterDatabase.open(self._url)
        self._reader = await ClusterDatabase.open(self._url)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_forever, writes)
                nursery.start_soon(self._deliver_forever)
                task_status.started()
        finally:
            await writes.aclose()
            await self._reader.aclose()

    # --- RoomRelay ---------------------------------------------------------------------------------

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
        self._queue(_Publish(chatroom_id, message_id, packed, origin, in_history, done, client_msg_id))

    async def joined(self, chatroom_id: str, user_id: str, client_id: str) -> None:
        write = _Membership(chatroom_id, user_id, client_id, True)
        self._queue(write)
        await write.written.wait()

    def left(self, chatroom_id: str, user_id: str, client_id: str) -> None:
        self._queue(_Membership(chatroom_id, user_id, client_id, False))

    async def member_count(self, chatroom_id: str) -> int:
        return (await self.members(chatroom_id, 0, 0))[0]

    async def members(self, chatroom_id: str, offset: int, count: int) -> tuple[int, list[str]]:
        return await self._read(self._members, chatroom_id, offset, count)

    async def history(self, chatroom_id: str, before_id: int, count: int) -> list[dict[str, Any]]:
        rows = await self._read(self._history, chatroom_id, before_id, count)
        return [codec.unpack(packed) for packed in rows]

    def room_changed(self, chatroom_id: str) -> None:
        self._queue(_Broadcast(RoomChangedNotice(self.node_id, chatroom_id)))

    def user_status_changed(self, user_id: str, status: int) -> None:
        self._queue(_Broadcast(UserStatusNotice(self.node_id, user_id, status)))

    # --- notices in (ClusterNode.on_room_notice), on the trio loop --------------------------------------

    def take(self, notice: Notice) -> None:
        match notice:
            case RoomNotice(chatroom_id=room, seq=seq):
                self._event(room, seq, None)
            case RoomChangedNotice(chatroom_id=room):
                self._room_changed(room)
            case UserStatusNotice(user_id=user, status=status):
                self._user_status(user, status)

    def resync(self) -> None:
        """After a listener gap: read every room this node has members in past what it delivered."""
        self.resyncs += 1
        for room in list(self._last):
            self._event(room, 2**62, None)

    def _event(self, room: str, seq: int, message: RoomMessage | None) -> None:
        try:
            self._events_in.send_nowait((room, seq, message))
        except trio.WouldBlock:
            self.lost += 1  # the next message or resync of that room reads what is missing

    # --- delivery: one task, so each room's messages go out in order ------------------------------------

    async def _deliver_forever(self) -> None:
        async for room, seq, message in self._events:
            if not self._has_members(room):
                self._last.pop(room, None)
                continue
            last = self._last.get(room)
            if last is None:  # the first member's join is still being written: start with this one
                last = self._last[room] = (message.seq if message else seq) - 1
            if message is not None and message.seq == last + 1:
                self._last[room] = message.seq
                self._deliver(room, [message])
                continue
            if seq <= last:
                continue  # delivered already (the notice of a batch read earlier)
            try:
                found = await self._read(self._fetch, room, last, seq)
            except psycopg.Error:
                self.failed += 1  # the database is away; the next notice or resync reads them
                continue
            if not found:
                continue
            if found[0].seq != last + 1 and seq != 2**62:
                self.lost += found[0].seq - last - 1  # trimmed before this node read them
            self._last[room] = found[-1].seq
            self.fetched += len(found)
            if self._has_members(room):
                self._deliver(room, list(found))

    # --- the writes: one task, one transaction per round --------------------------------------------------

    def _queue(self, write: _Write) -> None:
        self._pending.append(write)
        self._queued += 1
        self._wake.set()

    async def written(self) -> None:
        target = self._queued
        while self._done < target:
            await self._progress.wait()

    def _written(self, count: int) -> None:
        self._done += count
        self._progress.set()
        self._progress = trio.Event()

    async def _write_forever(self, db: ClusterDatabase) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    notices = await db.run(self._write_batch, batch)
                except psycopg.Error as exc:
                    log.warning("cluster chatrooms: a write failed (%s: %s)", type(exc).__name__, exc.sqlstate)
                    # Messages are answered 250 (the sender sends again); joins, leaves and broadcasts
                    # are kept, in order, and written once the database answers again.
                    self.failed += 1
                    kept: list[_Write] = []
                    for write in batch:
                        if isinstance(write, _Publish):
                            write.done(False, None)
                        else:
                            kept.append(write)
                    self._pending[:0] = kept
                    self._written(len(batch) - len(kept))
                    await trio.sleep(0.5)
                    continue
                self.notices_sent += notices
                for write in batch:
                    if isinstance(write, _Publish):
                        if write.earlier is not None:
                            self.resends += 1
                            write.done(True, write.earlier)
                            continue
                        self.published += 1
                        write.done(True, None)
                        self._event(write.chatroom_id, write.seq, RoomMessage(write.seq, write.packed, write.origin))
                    elif isinstance(write, _Membership):
                        if write.present and write.chatroom_id not in self._last:
                            self._last[write.chatroom_id] = write.seen
                        write.written.set()
                self._written(len(batch))

    def _write_batch(self, conn: Connection, batch: list[_Write]) -> int:
        """One transaction for everything queued; how many notices it sent."""
        now = {"now": self._clock(), "me": self.node_id}
        notify: dict[tuple[int, str], int] = {}  # (node, room) → highest seq
        broadcasts: list[str] = []
        with conn.transaction():
            rooms = sorted({w.chatroom_id for w in batch if isinstance(w, _Publish | _Membership)})
            if rooms:
                # Every room's row exists and is locked, in id order (two nodes' batches never deadlock).
                conn.execute(
                    f"INSERT INTO {ROOMS} (chatroom_id, seq) SELECT unnest(%s::text[]), 0 ON CONFLICT DO NOTHING",
                    (rooms,),
                )
                seqs = dict(
                    conn.execute(
                        f"SELECT chatroom_id, seq FROM {ROOMS} WHERE chatroom_id = ANY(%s) ORDER BY chatroom_id FOR UPDATE",
                        (rooms,),
                    ).fetchall()
                )
            for write in batch:
                if isinstance(write, _Publish):
                    room = write.chatroom_id
                    sender = write.origin[0] if write.origin else None
                    if write.client_msg_id is not None and sender is not None:
                        write.earlier = _earlier_send(conn, room, sender, write.client_msg_id)
                        if write.earlier is not None:
                            continue  # a resend (through this node or another): answered, not sent again
                    seqs[room] += 1
                    write.seq = seqs[room]
                    conn.execute(
                        f"""INSERT INTO {ROOM_MESSAGES}
                            (chatroom_id, seq, message_id, in_history, origin_user, origin_client, packed,
                             client_msg_id)
                            VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
                        (
                            room, write.seq, write.message_id, write.in_history,
                            sender, write.origin[1] if write.origin else None,
                            write.packed, write.client_msg_id,
                        ),
                    )  # fmt: skip
                elif isinstance(write, _Membership):
                    write.seen = seqs[write.chatroom_id]
                    if write.present:
                        conn.execute(
                            f"""INSERT INTO {ROOM_MEMBERS} (user_id, client_id, chatroom_id, node_id, joined)
                                VALUES (%s, %s, %s, %s, nextval('{ROOM_MEMBERS}_joined'))
                                ON CONFLICT (user_id, client_id) DO UPDATE SET chatroom_id = EXCLUDED.chatroom_id,
                                    node_id = EXCLUDED.node_id, joined = EXCLUDED.joined""",
                            (write.user_id, write.client_id, write.chatroom_id, self.node_id),
                        )
                    else:
                        conn.execute(
                            f"""DELETE FROM {ROOM_MEMBERS}
                                WHERE user_id = %s AND client_id = %s AND chatroom_id = %s AND node_id = %s""",
                            (write.user_id, write.client_id, write.chatroom_id, self.node_id),
                        )
                else:
                    broadcasts.append(encode(write.notice))
            published = {w.chatroom_id for w in batch if isinstance(w, _Publish) and w.earlier is None}
            for room in sorted(published):
                conn.execute(f"UPDATE {ROOMS} SET seq = %s WHERE chatroom_id = %s", (seqs[room], room))
                conn.execute(
                    f"DELETE FROM {ROOM_MESSAGES} WHERE chatroom_id = %s AND seq <= %s", (room, seqs[room] - self.keep)
                )
                for (node,) in conn.execute(
                    f"SELECT DISTINCT m.node_id FROM {_LIVE_MEMBERS} WHERE m.chatroom_id = %(room)s AND m.node_id <> %(me)s",
                    {"room": room, **now},
                ):
                    notify[(node, room)] = seqs[room]
            # Record and status changes first: a node hears of a mute before a message sent after it.
            channels: list[str] = []
            payloads: list[str] = []
            if broadcasts:
                nodes = [
                    node
                    for (node,) in conn.execute(
                        f"SELECT node_id FROM {NODES} WHERE lease_until > {NOW} AND node_id <> %(me)s", now
                    )
                ]
                for payload in broadcasts:
                    channels.extend(channel_name(node) for node in nodes)
                    payloads.extend(payload for _ in nodes)
            channels.extend(channel_name(node) for node, _ in notify)
            payloads.extend(encode(RoomNotice(self.node_id, room, seq)) for (_, room), seq in notify.items())
            if payloads:
                conn.execute(
                    "SELECT pg_notify(c, p) FROM unnest(%s::text[], %s::text[]) AS t(c, p)", (channels, payloads)
                )
        return len(payloads)

    # --- reads -------------------------------------------------------------------------------------------

    async def _read(self, fn: Callable[..., Any], *args: object) -> Any:
        if self._reader is None:
            raise psycopg.OperationalError("the cluster's chatrooms are not running")
        return await self._reader.run(fn, *args)

    def _fetch(self, conn: Connection, room: str, after: int, upto: int) -> list[RoomMessage]:
        rows = conn.execute(
            f"""SELECT seq, packed, origin_user, origin_client FROM {ROOM_MESSAGES}
                WHERE chatroom_id = %s AND seq > %s AND seq <= %s ORDER BY seq""",
            (room, after, upto),
        ).fetchall()
        return [RoomMessage(seq, bytes(packed), (u, c) if u is not None else None) for seq, packed, u, c in rows]

    def _members(self, conn: Connection, room: str, offset: int, count: int) -> tuple[int, list[str]]:
        params = {"room": room, "now": self._clock(), "offset": offset, "count": count}
        row = conn.execute(
            f"SELECT count(DISTINCT m.user_id) FROM {_LIVE_MEMBERS} WHERE m.chatroom_id = %(room)s", params
        ).fetchone()
        total = 0 if row is None else row[0]
        if not count:
            return total, []
        page = conn.execute(
            f"""SELECT m.user_id FROM {_LIVE_MEMBERS} WHERE m.chatroom_id = %(room)s
                GROUP BY m.user_id ORDER BY min(m.joined) OFFSET %(offset)s LIMIT %(count)s""",
            params,
        ).fetchall()
        return total, [user_id for (user_id,) in page]

    def _history(self, conn: Connection, room: str, before_id: int, count: int) -> list[bytes]:
        rows = conn.execute(
            f"""SELECT packed FROM {ROOM_MESSAGES}
                WHERE chatroom_id = %s AND in_history AND (%s = 0 OR message_id < %s)
                ORDER BY seq DESC LIMIT %s""",
            (room, before_id, before_id, count),
        ).fetchall()
        return [bytes(packed) for (packed,) in rows]

