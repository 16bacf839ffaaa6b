"""Chatrooms (conversation type 2, SPEC §5): who is in a room now, and their messages, all in memory.

A chatroom is a room record (created and destroyed by the admin API, stored in
``storage.chatrooms``) plus the devices present in it now. Presence is a
(user, client) pair bound to that device's live connection:

- a device is in at most one room: joining another quits the first
  (``chatroom.one_per_user = "quit"``) or is refused with 225 (``"reject"``);
- a member that made no chatroom request (join, info, members, history, send) for
  ``chatroom.idle_seconds`` is dropped by a sweep every ``chatroom.sweep_seconds``
  (the SDK re-joins every third of that while it stays in a room);
- a member whose connection ends leaves at once.

A message to a room is never stored and never reaches an inbox, a pull or an
offline push: it is acknowledged at once with seq 0 and pushed (``msg`` with
seq 0) to the members present now, except the device that sent it. Each member
has a bounded queue: while its connection's socket is backed up (bytes waiting
in its outbox) its room messages wait in the queue instead of the outbox, and
the oldest are dropped past ``chatroom.member_queue`` messages or
``chatroom.member_queue_bytes`` (counted in ``stats.dropped``); a flush task,
one per backed-up member only, waits for the socket to drain and pushes what is
queued. A member whose socket has not drained for ``chatroom.stall_seconds`` is
dropped from the room (``stats.cut_off``). Nobody else waits for a slow member:
the fan-out only ever appends to a deque or writes to a socket that has room.

With ``message.chatroom_history`` each room keeps its last
``chatroom.history_size`` messages (not transparent ones) for present members
to page back through.

On one node, membership, queues and history live in this gateway's memory. In a cluster
(``server.cluster``) the service has a ``RoomRelay`` (``gateway.cluster``): a message goes to the relay,
which orders it among the room's messages from every node and hands each node's service the room's
messages in that order (``_relayed``); member counts, member pages and history are the relay's answers
(the room's, over every node), and admin changes to a room or a user's status reach the other nodes.
This node keeps its own members' connections and queues only (docs/ARCHITECTURE.md, "Chatrooms").
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import trio

from gateway.clock import Clock
from gateway.cluster import LiveConnection, RelayedMessage, RoomRelay
from gateway.config import Config
from protocol import codec
from protocol.codes import ErrorCode, PersistFlag, UserStatus
from protocol.connection import encode_msg_push, encode_notify_body
from storage import Store
from storage.messages import Outgoing
from storage.records import ChatroomRecord

if TYPE_CHECKING:
    from gateway.delivery import Delivery

log = logging.getLogger("ember.chatrooms")

#: Most members one ``get_chatroom_members`` page lists.
MAX_MEMBERS_PAGE = 500
#: Most messages one ``load_chatroom_history`` page returns.
MAX_HISTORY_PAGE = 100
#: The NOTIFY topic telling a device it is no longer in a room, and why.
QUIT_TOPIC = "chatroom_quit"
#: Why a device left a room without asking (``chatroom_quit`` ``reason``).
REASON_IDLE = "idle"
REASON_STALLED = "stalled"
REASON_DESTROYED = "destroyed"

PERSIST_TRANSPARENT = int(PersistFlag.TRANSPARENT)
MUTED_STATUSES = frozenset({int(UserStatus.MUTED), int(UserStatus.FORBIDDEN)})

Reply = Callable[[int, Any], None]


class ChatroomConnection(LiveConnection, Protocol):
    """What the service needs of a member's connection (``gateway.connection.GatewayConnection``)."""

    @property
    def backlogged(self) -> bool: ...

    async def wait_drained(self) -> None: ...


@dataclass(slots=True)
class ChatroomStats:
    """Counters since start, over every room (each room also keeps its own)."""

    sent: int = 0  # messages accepted into a room
    delivered: int = 0  # pushes handed to members' connections
    dropped: int = 0  # queued messages slow members lost (oldest first)
    swept: int = 0  # members dropped as idle
    cut_off: int = 0  # members dropped because their socket did not drain for stall_seconds


class Member:
    """One device present in one room."""

    __slots__ = (
        "client_id", "conn", "dropped", "flush_scope", "flushing", "last_active_ms", "muted",
        "present", "queue", "queued_bytes", "room", "user_id",
    )  # fmt: skip

    def __init__(self, conn: ChatroomConnection, room: Room, now_ms: int, muted: bool) -> None:
        self.conn = conn
        self.user_id = conn.user_id
        self.client_id = conn.client_id
        self.room = room
        self.last_active_ms = now_ms
        self.muted = muted
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self.dropped = 0
        self.flushing = False
        self.flush_scope: trio.CancelScope | None = None
        self.present = True


class Room:
    __slots__ = ("history", "members", "record", "recent_ids", "stats", "users")

    def __init__(self, record: ChatroomRecord, history_size: int) -> None:
        self.record = record
        self.members: dict[tuple[str, str], Member] = {}
        #: user → devices present; insertion order is the order users joined (the members' page order).
        self.users: dict[str, int] = {}
        self.history: deque[dict[str, Any]] = deque(maxlen=history_size)
        #: (user, client_msg_id) → ack of recent sends, so a resend is answered, not sent twice.
        self.recent_ids: OrderedDict[tuple[str, str], dict[str, int]] = OrderedDict()
        self.stats = ChatroomStats()

    def info(self) -> dict[str, Any]:
        r = self.record
        return {
            "chatroom_id": r.chatroom_id, "title": r.title, "portrait": r.portrait, "extra": r.extra,
            "state": r.state, "member_count": len(self.users), "created_at": r.created_at,
            "updated_at": r.updated_at,
        }  # fmt: skip


class ChatroomService:
    def __init__(self, config: Config, store: Store, delivery: Delivery, clock: Clock) -> None:
        self.config = config
        self.settings = config.chatroom
        self.store = store
        self.delivery = delivery
        self.clock = clock
        self.rooms: dict[str, Room] = {}
        self.stats = ChatroomStats()
        #: (user, client) → the one room membership of that device.
        self._by_device: dict[tuple[str, str], Member] = {}
        self._nursery: trio.Nursery | None = None
        self.relay: RoomRelay | None = None

    def use_relay(self, relay: RoomRelay) -> None:
        """Serve rooms whose members may sit on any node (a cluster node; module docstring)."""
        self.relay = relay
        relay.attach(self._relayed, self._has_members, self._room_changed_elsewhere, self._status_elsewhere)

    # --- lifecycle ----------------------------------------------------------------------------

    async def load(self) -> None:
        """Read the room records (a few, made by the admin API): joins then need no storage read."""
        for record in await self.store.list_chatrooms():
            self.rooms[record.chatroom_id] = Room(record, self.settings.history_size)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The idle sweep, and the nursery of the flush tasks of backed-up members; until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                await trio.sleep(self.settings.sweep_seconds)
                self.sweep()

    def sweep(self) -> int:
        """Drop members idle longer than ``chatroom.idle_seconds`` (by the injectable clock); how many."""
        deadline = self.clock.now_ms() - self.settings.idle_seconds * 1000
        idle = [m for m in self._by_device.values() if m.last_active_ms < deadline]
        for member in idle:
            self._remove(member, REASON_IDLE)
            member.room.stats.swept += 1
        self.stats.swept += len(idle)
        if idle:
            log.info("dropped %d idle chatroom members", len(idle))
        return len(idle)

    # --- rooms (admin API) --------------------------------------------------------------------

    async def upsert(self, record: ChatroomRecord) -> tuple[ChatroomRecord, bool]:
        stored, created = await self.store.upsert_chatroom(record)
        room = self.rooms.get(stored.chatroom_id)
        if room is None:
            self.rooms[stored.chatroom_id] = Room(stored, self.settings.history_size)
        else:
            room.record = stored
        if self.relay is not None:
            self.relay.room_changed(stored.chatroom_id)
        return stored, created

    async def destroy(self, chatroom_id: str) -> bool:
        """Delete the room; its members are told (``chatroom_quit``, reason ``destroyed``) and leave."""
        deleted = await self.store.delete_chatroom(chatroom_id)
        room = self._drop_room(chatroom_id)
        if self.relay is not None:
            self.relay.room_changed(chatroom_id)
        return deleted or room is not None

    def _drop_room(self, chatroom_id: str) -> Room | None:
        room = self.rooms.pop(chatroom_id, None)
        if room is not None:
            for member in list(room.members.values()):
                self._remove(member, REASON_DESTROYED)
        return room

    def room_info(self, chatroom_id: str) -> dict[str, Any] | None:
        room = self.rooms.get(chatroom_id)
        return None if room is None else room.info()

    async def room_info_everywhere(self, chatroom_id: str) -> dict[str, Any] | None:
        """``room_info`` with the room's member count over every node (a cluster's relay's)."""
        info = self.room_info(chatroom_id)
        if info is not None and self.relay is not None:
            info["member_count"] = await self.relay.member_count(chatroom_id)
        return info

    def room_stats(self, chatroom_id: str) -> ChatroomStats | None:
        room = self.rooms.get(chatroom_id)
        return None if room is None else room.stats

    def set_user_status(self, user_id: str, status: int) -> None:
        """The admin API changed a user's status: muted members may no longer send (247)."""
        self._status_elsewhere(user_id, status)
        if self.relay is not None:
            self.relay.user_status_changed(user_id, status)

    def _status_elsewhere(self, user_id: str, status: int) -> None:
        for member in self._by_device.values():
            if member.user_id == user_id:
                member.muted = status in MUTED_STATUSES

    # --- a device's requests ------------------------------------------------------------------

    def member(self, user_id: str, client_id: str, chatroom_id: str) -> Member | None:
        """The device's membership of that room (touched: it counts as activity), or None."""
        member = self._by_device.get((user_id, client_id))
        if member is None or member.room.record.chatroom_id != chatroom_id:
            return None
        member.last_active_ms = self.clock.now_ms()
        return member

    async def join(self, user_id: str, client_id: str, chatroom_id: str) -> tuple[int, Any]:
        room = self.rooms.get(chatroom_id)
        if room is None:
            return ErrorCode.NOT_EXIST, None
        conn = self.delivery.connection_here(user_id, client_id)  # the request came over it: on this node
        if conn is None:  # the connection ended while the request ran
            return ErrorCode.SERVER_ERROR, None
        current = self._by_device.get((user_id, client_id))
        result: dict[str, Any] = {"chatroom_id": chatroom_id}
        if current is not None and current.room is room and current.conn is conn:
            current.last_active_ms = self.clock.now_ms()  # joining again: a heartbeat
        else:
            if current is not None and current.room is not room:
                if self.settings.one_per_user == "reject":
                    return ErrorCode.IN_OTHER_CHATROOM, {"chatroom_id": current.room.record.chatroom_id}
                result["quit"] = current.room.record.chatroom_id
            user = await self.store.get_user(user_id)  # muted users may listen, not send
            muted = user is not None and user.status in MUTED_STATUSES
            # The awaits above let the world move: check again on the trio thread, with no await until done.
            room = self.rooms.get(chatroom_id)
            if room is None:
                return ErrorCode.NOT_EXIST, None
            if self.delivery.connection_here(user_id, client_id) is not conn:
                return ErrorCode.SERVER_ERROR, None
            current = self._by_device.get((user_id, client_id))
            if current is not None:
                if current.room is not room and self.settings.one_per_user == "reject":
                    return ErrorCode.IN_OTHER_CHATROOM, {"chatroom_id": current.room.record.chatroom_id}
                self._remove(current, None)
            self._add(Member(cast(ChatroomConnection, conn), room, self.clock.now_ms(), muted))
            if self.relay is not None:
                await self.relay.joined(chatroom_id, user_id, client_id)
        if self.relay is not None:
            result["member_count"] = await self.relay.member_count(chatroom_id)
        else:
            result["member_count"] = len(room.users)
        result["idle_seconds"] = self.settings.idle_seconds
        return ErrorCode.SUCCESS, result

    def quit(self, user_id: str, client_id: str, chatroom_id: str) -> int:
        if chatroom_id not in self.rooms:
            return ErrorCode.NOT_EXIST
        member = self.member(user_id, client_id, chatroom_id)
        if member is None:
            return ErrorCode.NOT_IN_CHATROOM
        self._remove(member, None)
        return ErrorCode.SUCCESS

    def info(self, user_id: str, client_id: str, chatroom_id: str) -> tuple[int, Any]:
        """Anyone may read a room's info; for a member it also counts as activity."""
        room = self.rooms.get(chatroom_id)
        if room is None:
            return ErrorCode.NOT_EXIST, None
        self.member(user_id, client_id, chatroom_id)
        return ErrorCode.SUCCESS, room.info()

    def members(
        self, user_id: str, client_id: str, chatroom_id: str, offset: int, count: int
    ) -> tuple[int, Any]:
        room = self.rooms.get(chatroom_id)
        if room is None:
            return ErrorCode.NOT_EXIST, None
        if self.member(user_id, client_id, chatroom_id) is None:
            return ErrorCode.NOT_IN_CHATROOM, None
        page = list(itertools.islice(room.users, offset, offset + count))
        return ErrorCode.SUCCESS, {"member_count": len(room.users), "members": page}

    def history(
        self, user_id: str, client_id: str, chatroom_id: str, before_id: int, count: int
    ) -> tuple[int, Any]:
        if not self.config.message.chatroom_history:
            return ErrorCode.FUNCTION_DISABLED, None
        room = self.rooms.get(chatroom_id)
        if room is None:
            return ErrorCode.NOT_EXIST, None
        if self.member(user_id, client_id, chatroom_id) is None:
            return ErrorCode.NOT_IN_CHATROOM, None
        page: list[dict[str, Any]] = []
        for message in reversed(room.history):
            if before_id and message["message_id"] >= before_id:
                continue
            page.append(message)
            if len(page) == count:
                break
        return ErrorCode.SUCCESS, {"messages": page}

    # On a cluster node the room's figures are the relay's: the same checks, then a task asks it.

    def quit_nowait(self, user_id: str, client_id: str, chatroom_id: str, reply: Reply) -> None:
        """``quit``; on a cluster node answered once the leave is written (every node's count then has it)."""
        code = self.quit(user_id, client_id, chatroom_id)
        relay = self.relay
        if relay is None or code != ErrorCode.SUCCESS:
            reply(code, None)
            return

        async def wait() -> tuple[int, Any]:
            await relay.written()
            return code, None

        self._answer_later(wait, reply)

    def info_nowait(self, user_id: str, client_id: str, chatroom_id: str, reply: Reply) -> None:
        code, result = self.info(user_id, client_id, chatroom_id)
        relay = self.relay
        if relay is None or code != ErrorCode.SUCCESS:
            reply(code, result)
            return

        async def ask() -> tuple[int, Any]:
            return ErrorCode.SUCCESS, {**result, "member_count": await relay.member_count(chatroom_id)}

        self._answer_later(ask, reply)

    def members_nowait(
        self, user_id: str, client_id: str, chatroom_id: str, offset: int, count: int, reply: Reply
    ) -> None:
        code, result = self.members(user_id, client_id, chatroom_id, offset, count)
        relay = self.relay
        if relay is None or code != ErrorCode.SUCCESS:
            reply(code, result)
            return

        async def ask() -> tuple[int, Any]:
            total, page = await relay.members(chatroom_id, offset, count)
            return ErrorCode.SUCCESS, {"member_count": total, "members": page}

        self._answer_later(ask, reply)

    def history_nowait(
        self, user_id: str, client_id: str, chatroom_id: str, before_id: int, count: int, reply: Reply
    ) -> None:
        code, result = self.history(user_id, client_id, chatroom_id, before_id, count)
        relay = self.relay
        if relay is None or code != ErrorCode.SUCCESS:
            reply(code, result)
            return

        async def ask() -> tuple[int, Any]:
            return ErrorCode.SUCCESS, {"messages": await relay.history(chatroom_id, before_id, count)}

        self._answer_later(ask, reply)

    def _answer_later(self, ask: Callable[[], Any], reply: Reply) -> None:
        async def answer() -> None:
            try:
                code, result = await ask()
            except Exception:  # noqa: BLE001 - the database is away: retryable
                reply(ErrorCode.OVER_FREQUENCY, None)
                return
            reply(code, result)

        assert self._nursery is not None, "run() the service first"
        self._nursery.start_soon(answer)

    # --- messages -----------------------------------------------------------------------------

    def send_nowait(self, msg: Outgoing, origin_client: str | None, reply: Reply) -> None:
        """``send``, answered by ``reply``: at once on one node, once the relay committed it in a cluster."""
        relay = self.relay
        if relay is None:
            reply(*self.send(msg, origin_client))
            return
        code, room, origin = self._check_send(msg, origin_client)
        if room is None:
            reply(code, None)
            return
        key = (msg.from_user, msg.client_msg_id) if msg.client_msg_id is not None else None
        if key is not None and (earlier := room.recent_ids.get(key)) is not None:
            reply(ErrorCode.SUCCESS, earlier)
            return
        ack = {"message_id": msg.message_id, "server_time": msg.server_time, "seq": 0}

        def done(committed: bool, earlier: dict[str, int] | None) -> None:
            if not committed:
                reply(ErrorCode.OVER_FREQUENCY, None)  # the database is away: the SDK sends it again
                return
            if earlier is not None:  # a resend of what went through another node (or this one) before
                if key is not None:
                    room.recent_ids[key] = earlier
                reply(ErrorCode.SUCCESS, earlier)
                return
            if key is not None:
                room.recent_ids[key] = ack
                if len(room.recent_ids) > self.settings.history_size:
                    room.recent_ids.popitem(last=False)
            room.stats.sent += 1
            self.stats.sent += 1
            reply(ErrorCode.SUCCESS, ack)

        in_history = self.config.message.chatroom_history and msg.persist_flag != PERSIST_TRANSPARENT
        sender = None if origin is None else (origin.user_id, origin.client_id)
        relay.publish(
            room.record.chatroom_id, msg.message_id, codec.pack(msg.to_wire()), sender, in_history, done,
            msg.client_msg_id,
        )  # fmt: skip

    async def send_async(self, msg: Outgoing, origin_client: str | None) -> tuple[int, Any]:
        """``send_nowait``, awaited (the admin API's send)."""
        answered = trio.Event()
        answer: list[Any] = []

        def reply(code: int, result: Any) -> None:
            answer[:] = [code, result]
            answered.set()

        self.send_nowait(msg, origin_client, reply)
        await answered.wait()
        return answer[0], answer[1]

    def _check_send(self, msg: Outgoing, origin_client: str | None) -> tuple[int, Room | None, LiveConnection | None]:
        room = self.rooms.get(msg.conv.target)
        if room is None:
            return ErrorCode.NOT_EXIST, None, None
        if origin_client is None:
            return ErrorCode.SUCCESS, room, None
        member = self.member(msg.from_user, origin_client, msg.conv.target)
        if member is None:
            return ErrorCode.NOT_IN_CHATROOM, None, None
        if member.muted:
            return ErrorCode.FORBIDDEN_TO_SEND, None, None
        return ErrorCode.SUCCESS, room, member.conn

    def _relayed(self, chatroom_id: str, messages: list[RelayedMessage]) -> None:
        """The relay's next messages of a room, in its order, for this node's members."""
        room = self.rooms.get(chatroom_id)
        if room is None:
            return
        for message in messages:
            origin = room.members.get(message.origin) if message.origin is not None else None
            self._deliver(room, encode_msg_push(0, message.packed), origin.conn if origin else None, count=False)

    def _has_members(self, chatroom_id: str) -> bool:
        room = self.rooms.get(chatroom_id)
        return room is not None and bool(room.members)

    def _room_changed_elsewhere(self, chatroom_id: str) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self._reload_room, chatroom_id)

    async def _reload_room(self, chatroom_id: str) -> None:
        try:
            record = await self.store.get_chatroom(chatroom_id)
        except Exception:  # noqa: BLE001 - the database is away; the next change or a restart reads it
            log.warning("could not read chatroom %s changed on another node", chatroom_id)
            return
        if record is None:
            self._drop_room(chatroom_id)
        elif (room := self.rooms.get(chatroom_id)) is None:
            self.rooms[chatroom_id] = Room(record, self.settings.history_size)
        else:
            room.record = record

    def send(self, msg: Outgoing, origin_client: str | None) -> tuple[int, Any]:
        """A member's message to its room (``origin_client`` None: the admin API, as any user)."""
        room = self.rooms.get(msg.conv.target)
        if room is None:
            return ErrorCode.NOT_EXIST, None
        origin: LiveConnection | None = None
        if origin_client is not None:
            member = self.member(msg.from_user, origin_client, msg.conv.target)
            if member is None:
                return ErrorCode.NOT_IN_CHATROOM, None
            if member.muted:
                return ErrorCode.FORBIDDEN_TO_SEND, None
            origin = member.conn
        key = (msg.from_user, msg.client_msg_id) if msg.client_msg_id is not None else None
        if key is not None:
            earlier = room.recent_ids.get(key)
            if earlier is not None:
                return ErrorCode.SUCCESS, earlier
        ack = {"message_id": msg.message_id, "server_time": msg.server_time, "seq": 0}
        wire = msg.to_wire()
        if self.config.message.chatroom_history and msg.persist_flag != PERSIST_TRANSPARENT:
            room.history.append(wire)
        if key is not None:
            room.recent_ids[key] = ack
            if len(room.recent_ids) > self.settings.history_size:
                room.recent_ids.popitem(last=False)
        self._deliver(room, encode_msg_push(0, codec.pack(wire)), origin)
        return ErrorCode.SUCCESS, ack

    def _deliver(self, room: Room, body: bytes, origin: LiveConnection | None, count: bool = True) -> None:
        """Push to every present member but the sending device: now when its socket has room, else queue."""
        delivered = queued = 0
        for member in room.members.values():
            conn = member.conn
            if conn is origin:
                continue
            if member.queue or conn.backlogged:
                self._enqueue(member, body)
                queued += 1
            else:
                conn.push_frame_body(body)
                delivered += 1
        if count:  # a relayed message was counted by the node that sent it (send_nowait)
            room.stats.sent += 1
            self.stats.sent += 1
        room.stats.delivered += delivered
        self.stats.delivered += delivered

    def _enqueue(self, member: Member, body: bytes) -> None:
        queue = member.queue
        queue.append(body)
        member.queued_bytes += len(body)
        dropped = 0
        while len(queue) > self.settings.member_queue or (
            member.queued_bytes > self.settings.member_queue_bytes and len(queue) > 1
        ):
            member.queued_bytes -= len(queue.popleft())
            dropped += 1
        if dropped:
            member.dropped += dropped
            member.room.stats.dropped += dropped
            self.stats.dropped += dropped
        if not member.flushing:
            member.flushing = True
            assert self._nursery is not None, "run() the service first"
            self._nursery.start_soon(self._flush, member)

    async def _flush(self, member: Member) -> None:
        """Push a backed-up member's queue as its socket drains; drop it if it stays stalled."""
        conn = member.conn
        try:
            with trio.CancelScope() as member.flush_scope:
                while member.present and member.queue:
                    with trio.move_on_after(self.settings.stall_seconds) as waited:
                        await conn.wait_drained()
                    if waited.cancelled_caught:
                        if member.present:
                            log.info(
                                "chatroom member stalled user=%s client=%s", member.user_id, member.client_id
                            )
                            self._remove(member, REASON_STALLED)
                            self.stats.cut_off += 1
                            member.room.stats.cut_off += 1
                        return
                    delivered = 0
                    while member.present and member.queue and not conn.backlogged:
                        body = member.queue.popleft()
                        member.queued_bytes -= len(body)
                        conn.push_frame_body(body)
                        delivered += 1
                    member.room.stats.delivered += delivered
                    self.stats.delivered += delivered
        finally:
            member.flushing = False
            member.flush_scope = None

    # --- membership ---------------------------------------------------------------------------

    def _add(self, member: Member) -> None:
        room = member.room
        room.members[(member.user_id, member.client_id)] = member
        room.users[member.user_id] = room.users.get(member.user_id, 0) + 1
        self._by_device[(member.user_id, member.client_id)] = member

    def _remove(self, member: Member, reason: str | None) -> None:
        """Take the member out of its room; with a ``reason`` its device is told (``chatroom_quit``)."""
        if not member.present:
            return
        member.present = False
        room = member.room
        key = (member.user_id, member.client_id)
        if room.members.get(key) is member:
            del room.members[key]
            left = room.users[member.user_id] - 1
            if left:
                room.users[member.user_id] = left
            else:
                del room.users[member.user_id]
        if self._by_device.get(key) is member:
            del self._by_device[key]
        member.queue.clear()
        member.queued_bytes = 0
        if self.relay is not None:
            self.relay.left(room.record.chatroom_id, member.user_id, member.client_id)
        if member.flush_scope is not None:
            member.flush_scope.cancel()
        if reason is not None:
            member.conn.push_frame_body(
                encode_notify_body(QUIT_TOPIC, {"chatroom_id": room.record.chatroom_id, "reason": reason})
            )

    def leave(self, conn: LiveConnection) -> None:
        """A connection ended: its device leaves its room (if this very connection had joined it)."""
        member = self._by_device.get((conn.user_id, conn.client_id))
        if member is not None and member.conn is conn:
            self._remove(member, None)

    def where(self, user_id: str, client_id: str) -> str | None:
        """The room the device is in, if any (for tests and the admin API)."""
        member = self._by_device.get((user_id, client_id))
        return None if member is None else member.room.record.chatroom_id
