"""Messages (SPEC §5): validate at the edge, store with group commit, then reply and push.

The send path is the hot path, so it has no task and no await: the reader
validates the request, queues one storage operation, and when that
operation's batch has committed, the storage callback (on the trio thread,
in queue order) sends the ack and the pushes. Everything else here is
ordinary async code.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import trio
import trio.lowlevel

from gateway.clock import Clock
from gateway.config import Config
from gateway.ids import MessageIdGenerator
from gateway.metrics import Metrics
from gateway.outbox import cork
from protocol import codec
from protocol.codec import Fields
from protocol.codes import (
    DEFAULT_PERSIST_FLAG,
    MAX_ID_LEN,
    MESSAGE_ID_MAX,
    NOTIFICATION_CONTENT_TYPES,
    ContentType,
    ConversationType,
    ErrorCode,
    GroupMemberType,
    PersistFlag,
    valid_id,
)
from protocol.connection import encode_notify_body
from protocol.errors import FieldError
from protocol.limits import json_text_problem
from storage import StorageError, StorageRetryLater, Store
from storage.messages import (
    Conversation,
    Outgoing,
    PulledRows,
    SendResult,
    StoredMessage,
)
from storage.sends import ChannelRoute, SendPolicy

if TYPE_CHECKING:
    from gateway.delivery import Delivery
    from gateway.webhooks import Webhooks

log = logging.getLogger("ember.messaging")

# Plain ints on the hot path (an IntEnum compares slower); their meaning lives in protocol.codes.
PRIVATE = int(ConversationType.PRIVATE)
GROUP = int(ConversationType.GROUP)
CHATROOM = int(ConversationType.CHATROOM)
CHANNEL = int(ConversationType.CHANNEL)
PERSIST_FLAGS = frozenset(int(f) for f in PersistFlag)
RECALL_CONTENT_TYPE = int(ContentType.RECALL)
UPDATE_CONTENT_TYPE = int(ContentType.UPDATE)
PERSIST_TRANSPARENT = int(PersistFlag.TRANSPARENT)
MAX_PULL = 500
MAX_HISTORY = 100
MAX_MENTIONS = 1000
SILENCED = int(GroupMemberType.SILENCED)
PRIVILEGED = frozenset({int(GroupMemberType.OWNER), int(GroupMemberType.MANAGER)})
MAY_SEND_WHEN_MUTED = PRIVILEGED | {int(GroupMemberType.ALLOWED)}

Reply = Callable[[int, Any], None]


class RequestRejected(Exception):
    """A request that is well-formed but refused with a code (e.g. 254 for a type not built yet)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


#: Every conversation type's number (``ConversationType``), for a plain set lookup.
_CONV_TYPES = frozenset(int(t) for t in ConversationType)
_LINE_MAX = 2**31 - 1
_CONTENT_TYPE_MAX = 2**31 - 1


def read_conversation(fields: Fields) -> Conversation:
    # The common case read straight from the map: a map of a known type, an id and a line in range. Anything
    # else (a missing or ill-typed field) goes the way below, which names the field in its 251; both ways
    # accept exactly the same values (tests/test_messaging.py checks them side by side).
    conv_raw = fields.raw.get("conv")
    if conv_raw.__class__ is dict:
        kind = conv_raw.get("type")
        target: Any = conv_raw.get("target")
        line = conv_raw.get("line")
        if line is None:
            line = 0
        if (
            kind.__class__ is int
            and kind in _CONV_TYPES
            and line.__class__ is int
            and 0 <= line <= _LINE_MAX
            and valid_id(target)
        ):
            return Conversation(kind, target, line)
    return _read_conversation(fields)


def _read_conversation(fields: Fields) -> Conversation:
    conv = fields.mapping("conv")
    kind = conv.integer("type", lo=-(2**31), hi=2**31)
    if kind not in ConversationType._value2member_map_:
        raise FieldError("conv.type", "unknown conversation type")
    return Conversation(
        kind,
        conv.identifier("target"),
        conv.integer("line", lo=0, hi=2**31 - 1, default=0),
    )


def _text(fields: Fields, key: str, max_bytes: int) -> str | None:
    value = fields.text(key, max_len=max_bytes, default=None)
    # A str of n characters is at most 4n UTF-8 bytes: only long ones need encoding to check.
    if value is not None and len(value) * 4 > max_bytes and len(value.encode()) > max_bytes:
        raise FieldError(fields.path(key), f"at most {max_bytes} bytes")
    return value


#: Optional content fields. read_content visits only those present, since a typical message sets two or
#: three of them: asking for all twelve one by one was a measurable share of the send path.
_CONTENT_TEXT = frozenset({"searchable_content", "push_content", "content"})
_CONTENT_OPTIONAL = _CONTENT_TEXT | {
    "data", "media_type", "remote_media_url", "persist_flag", "expire_duration", "mentioned_type", "extra",
}  # fmt: skip


def read_content(fields: Fields, config: Config, *, key: str = "content", server_made: bool = False) -> dict[str, Any]:
    """The content map, checked field by field; absent (or empty) fields are left out (SPEC §5).

    ``server_made``: a content the server itself will send (a group operation's ``notify_content``),
    which may carry a notification type.
    """
    # The map and its text fields are read straight from the decoded dict when they are plainly right (the
    # send path's case); anything else goes through ``Fields``, whose 251 names the field.
    raw = fields.raw.get(key)
    c = Fields(raw, fields.path(key) + ".") if raw.__class__ is dict else fields.mapping(key)
    raw = c.raw
    limit = config.message.max_text_bytes
    kind = raw.get("type")
    if not (kind.__class__ is int and 0 <= kind <= _CONTENT_TYPE_MAX):
        kind = c.integer("type", lo=0, hi=_CONTENT_TYPE_MAX)
    content: dict[str, Any] = {"type": kind}
    if kind == RECALL_CONTENT_TYPE or kind == UPDATE_CONTENT_TYPE:
        # Only the server makes recall and update notices: a sent one could make SDKs rewrite any message.
        raise FieldError(c.path("type"), f"{kind} is reserved for recall and update notices")
    if kind in NOTIFICATION_CONTENT_TYPES and not server_made:
        # Group notifications too: a forged one would make SDKs rewrite their group caches.
        raise FieldError(c.path("type"), "100..199 are reserved for server notifications")
    persist = DEFAULT_PERSIST_FLAG
    for key in _CONTENT_OPTIONAL.intersection(raw):
        if key in _CONTENT_TEXT:
            value: Any = raw[key]
            # A str of n characters is at most 4n UTF-8 bytes: only long ones need encoding to check.
            if value is not None and not (value.__class__ is str and len(value) * 4 <= limit):
                value = _text(c, key, limit)
        elif key == "data":
            value = c.binary("data", max_len=config.message.max_data_bytes, default=None)
        elif key == "media_type":
            value = c.integer("media_type", lo=0, hi=2**31 - 1, default=0)
        elif key == "remote_media_url":
            value = c.text("remote_media_url", max_len=2048, default=None)
        elif key == "persist_flag":
            persist = c.integer("persist_flag", lo=0, hi=255, default=DEFAULT_PERSIST_FLAG)
            if persist not in PERSIST_FLAGS:
                raise FieldError(c.path("persist_flag"), "must be 0, 1, 3 or 4")
            continue
        elif key == "expire_duration":
            value = c.integer("expire_duration", lo=0, hi=2**53, default=0)
        elif key == "mentioned_type":
            value = c.integer("mentioned_type", lo=0, hi=2, default=0)
            if value:
                targets = c.identifier_list("mentioned_targets", max_items=MAX_MENTIONS, default=[])
                if targets:
                    content["mentioned_targets"] = targets
        else:  # extra
            value = _text(c, "extra", limit)
            if value:
                check_json(c.path("extra"), value)
        if value:
            content[key] = value
    content["persist_flag"] = persist
    return content


def check_json(field: str, text: str) -> None:
    """``extra`` fields are the customer's extension point and must be JSON text (else 251), nested at
    most ``protocol.limits.MAX_JSON_DEPTH`` deep: the one JSON-text check of both edges."""
    problem = json_text_problem(text)
    if problem is not None:
        raise FieldError(field, problem)


def read_notify_content(raw: dict[str, Any], config: Config) -> dict[str, Any]:
    """A group operation's ``notify_content`` (client method or admin endpoint): a content map read by
    ``read_content``'s rules, errors named ``notify_content.<field>``. Its ``type`` is ignored and may be
    missing (the operation's own replaces it); ``persist_flag`` defaults to 1, as the default notification's."""
    content = dict(raw)
    content.setdefault("type", 0)  # checked for shape only
    content.setdefault("persist_flag", 1)
    return read_content(Fields({"notify_content": content}), config, key="notify_content", server_made=True)


# The keys of a pull answer and of its message maps, packed once. The order is message_wire's, so the
# bytes are exactly what packing {"messages": [{"seq", "message": message_wire(m)}, ...], "head"} gives.
_K = {key: codec.pack(key) for key in (
    "messages", "head", "seq", "message", "message_id", "conv", "from", "content", "server_time", "to_users",
)}  # fmt: skip
_PULL_HEAD = codec.map_header(2) + _K["messages"]
_ENTRY_HEAD = codec.map_header(2) + _K["seq"]


def pack_pull_answer(page: PulledRows) -> PulledPage:
    """The ``pull`` result, packed from the stored rows: each message's stored content goes in as it is.

    Decoding every message's content and encoding it again cost about two thirds of a pull's CPU
    (~14 of ~20 us per message for 500-message pages); the stored content is the very MessagePack a
    push carries, so a pull only adds the few fields around it.
    """
    pack = codec.pack
    parts = [_PULL_HEAD, codec.array_header(len(page.rows))]
    for seq, message_id, conv_type, conv_target, conv_line, from_user, content, server_time, to_users, _ in page.rows:
        parts += (
            _ENTRY_HEAD, pack(seq), _K["message"], codec.map_header(6 if to_users else 5),
            _K["message_id"], pack(message_id),
            _K["conv"], pack({"type": conv_type, "target": conv_target, "line": conv_line}),
            _K["from"], pack(from_user), _K["content"], content, _K["server_time"], pack(server_time),
        )  # fmt: skip
        if to_users:
            parts += (_K["to_users"], pack(json.loads(to_users)))
    parts += (_K["head"], pack(page.head))
    return PulledPage(b"".join(parts), len(page.rows), page.rows[-1][0] if page.rows else 0)


class PulledPage(codec.Packed):
    """A packed ``pull`` answer, with what the rate limit prices it by (``handlers.messages.pull_cost``)."""

    __slots__ = ("last_seq", "rereads")

    def __init__(self, data: bytes, items: int, last_seq: int) -> None:
        super().__init__(data, items)
        self.last_seq = last_seq  # the highest seq in the page (0: none)
        self.rereads = 0  # how many of ``items`` this connection had been answered before


#: Most pushes (plus owners looked up, at 1/8 each) sealed in one go before the fan-out yields to the loop.
FANOUT_CHUNK = 128


class FanOut:
    """Pushes of big deliveries, sealed a chunk per pass of trio's loop, in delivery order.

    A commit batch's callbacks run in one go on the trio thread (``Writer._wake``);
    sealing a 2,000-member group message for every live device there would stall
    every other connection for the whole fan-out. So a delivery seals its first
    queues its pushes here, and ``run`` seals one chunk (corked: one write per
    socket) and yields, until the queue is empty (sealing a first chunk inside the
    callback made that callback the loop's longest pause: the chunk's writes go out
    at the callback's cork exit, together with the batch's acks). Once anything is queued, every later delivery queues behind it, so a
    connection still gets its pushes in commit order. The connections are looked
    up as each chunk goes out: one that registered meanwhile gets the push (its
    CONNACK head may count it too; the SDK dedups by message id), one that left
    pulls it on reconnect. Without ``run`` running (a service not inside
    ``serve``), deliveries are sealed at once.
    """

    def __init__(self) -> None:
        self._queue: deque[tuple[Iterator[None], int]] = deque()  # (pushes, owners)
        self._wake = trio.Event()
        self.running = False
        #: Chunks sealed outside the callback that made them (for tests and metrics).
        self.deferred_chunks = 0
        #: Owners of the queued deliveries (each finished delivery's leave at once): the backlog that
        #: ``MessageService.fanout_backlogged`` bounds. Counted per process, like the queue itself.
        self.queued_owners = 0

    def add(self, pushes: Iterator[None], owners: int) -> None:
        """Queue one delivery; ``owners``: how many owners it pushes to (the backlog it adds)."""
        if not self.running:
            for _ in pushes:
                pass
            return
        self._queue.append((pushes, owners))
        self.queued_owners += owners
        self._wake.set()

    def _finished(self) -> None:
        _, owners = self._queue.popleft()
        self.queued_owners -= owners

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def run(self) -> None:
        self.running = True
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                while self._queue:
                    pushes = self._queue[0][0]
                    self.deferred_chunks += 1
                    with cork():
                        try:
                            done = next(pushes, StopIteration) is StopIteration
                        except Exception:  # noqa: BLE001 - a bug in one delivery must not stop every other
                            log.exception("fan-out of a delivery failed; its devices will pull")
                            done = True
                        if done:
                            self._finished()
                    await trio.lowlevel.checkpoint()
        finally:
            self.running = False
            while self._queue:  # cancelled (the server stops): what is left goes out now
                pushes = self._queue[0][0]
                self._finished()
                try:
                    for _ in pushes:
                        pass
                except Exception:  # noqa: BLE001 - as above
                    log.exception("fan-out of a delivery failed while stopping")


def group_send_check(member_type: int, muted: bool) -> int:
    """Who may send into a group (SPEC §8): silenced members never (248); in a muted group only
    the owner, managers and allowed members (241)."""
    if member_type == SILENCED:
        return ErrorCode.NOT_RIGHT
    if muted and member_type not in MAY_SEND_WHEN_MUTED:
        return ErrorCode.GROUP_MUTED
    return 0


def group_recall_check(member_type: int) -> bool:
    """Another member's group message may be recalled by the owner or a manager."""
    return member_type in PRIVILEGED


def _send_failed(error: BaseException | None) -> int:
    """The answer to a send that did not commit, logged as it deserves (never with the message itself)."""
    if isinstance(error, StorageRetryLater):
        return ErrorCode.OVER_FREQUENCY  # nothing stored; the writer logs a full disk itself, every 10 s at most
    if isinstance(error, StorageError):  # the batch failed: the writer has logged why
        log.error("send failed to commit: %s", error)
    else:  # the send's own code raised: a bug, so the traceback (it holds code, not the message)
        log.error("send failed: its storage operation raised", exc_info=error)
    return ErrorCode.SERVER_ERROR


class ChannelSends(Protocol):
    """What the send path asks of the channel service (``gateway.domain.channels.ChannelService``), which
    depends on this module: typed here so that this module need not import it back."""

    @property
    def callbacks(self) -> Callable[[Outgoing, str], None]:
        """Takes a channel message stored for its callback URL (``SendResult.callback``)."""
        ...

    async def history(
        self, user_id: str, conv: Conversation, before_id: int, count: int
    ) -> tuple[int, list[StoredMessage]]: ...


class MessageService:
    def __init__(self, config: Config, store: Store, delivery: Delivery, clock: Clock) -> None:
        self.config = config
        self.store = store
        self.delivery = delivery
        self.clock = clock
        self.ids = MessageIdGenerator(clock, config.server.node_id)
        self.policy = SendPolicy(
            config.message.blacklist_strategy, config.message.disable_stranger_chat, group_send_check
        )
        self.fanout = FanOut()
        #: Set by ``enable_channels``: without it channel sends and history answer 254.
        self.channels: ChannelSends | None = None
        # Set by the server once built (gateway/server.py): counters for /metrics, and the webhooks told
        # of stored messages (None while no forward or push URL is configured: then nothing is looked at).
        self.metrics = Metrics()
        self.webhooks: Webhooks | None = None
        #: Set by ``RobotService.load``: told of every stored delivery, hands robots' copies to their callbacks.
        self.robot_hook: Callable[[Outgoing, SendResult], None] | None = None

    def enable_channels(self, channels: ChannelSends, channel_route: ChannelRoute) -> None:
        """Channel sends follow ``channel_route`` (``gateway.domain.channels``'); callback-only ones go to its hook."""
        self.channels = channels
        self.policy = dataclasses.replace(self.policy, channel_route=channel_route)

    def _handed_to_callback(self, msg: Outgoing, result: SendResult) -> None:
        if result.callback is not None and self.channels is not None and not result.duplicate:
            self.channels.callbacks(msg, result.callback)

    # --- building ---------------------------------------------------------------------------------

    def outgoing(self, from_user: str, params: Fields) -> Outgoing:
        """A validated message from request params. Raises FieldError (251) or RequestRejected."""
        conv = read_conversation(params)
        if conv.type == CHANNEL and self.channels is None:
            raise RequestRejected(ErrorCode.NOT_IMPLEMENTED)  # a service built without channels
        content = read_content(params, self.config)
        raw = params.raw
        client_msg_id = None
        if raw.get("client_msg_id") is not None:  # (absent or nil: None, as the getter's default gives)
            client_msg_id = params.text("client_msg_id", min_len=1, max_len=MAX_ID_LEN, printable=True)
        to_users = None
        if raw.get("to_users") is not None:
            to_users = params.identifier_list("to_users", max_items=MAX_MENTIONS) or None
        # Positional, in Outgoing's field order: message_id, server_time, conv, from_user, content,
        # persist_flag, to_users, client_msg_id. One clock reading for both (the id's millisecond is
        # then the server_time's, or later if the generator is ahead of the clock).
        now = self.clock.now_ms()
        return Outgoing(
            self.ids.next_id(now), now, conv, from_user, content, content["persist_flag"], to_users, client_msg_id,
        )  # fmt: skip

    # --- sending ----------------------------------------------------------------------------------

    @property
    def fanout_backlogged(self) -> bool:
        """Deliveries to ``group.max_fanout_backlog`` owners or more wait in ``FanOut``: group and channel
        sends are refused (250) until it drains. Acks come at commit, before the pushes, so without this
        bound senders in big groups could queue pushes faster than they go out: memory and every push's
        delay (private ones queue behind) would grow without limit."""
        return self.fanout.queued_owners >= self.config.group.max_fanout_backlog

    def send_nowait(self, msg: Outgoing, reply: Reply, origin_client: str | None) -> None:
        """Queue the send; ``reply(code, result)`` and the pushes follow the commit."""

        def committed(result: SendResult | None, error: BaseException | None) -> None:
            if error is not None or result is None:
                reply(_send_failed(error), None)
                return
            reply(result.code, self._ack(result, msg.from_user))
            if result.code == ErrorCode.SUCCESS and not result.duplicate:
                self.deliver(msg, result, origin_client)
                if result.callback is not None:
                    self._handed_to_callback(msg, result)

        try:
            self.store.send_private_nowait(msg, self.policy, committed)
        except StorageError as exc:  # refused before queueing: the writer is backlogged, closing or dead
            reply(ErrorCode.OVER_FREQUENCY if isinstance(exc, StorageRetryLater) else ErrorCode.SERVER_ERROR, None)

    async def send(self, msg: Outgoing) -> tuple[int, Any]:
        """The same, awaited (admin API): returns (code, ack)."""
        result = await self.store.send_private(msg, self.policy)
        if result.code == ErrorCode.SUCCESS and not result.duplicate:
            self.deliver(msg, result, None)
            self._handed_to_callback(msg, result)
        return result.code, self._ack(result, msg.from_user)

    @staticmethod
    def _ack(result: SendResult, sender: str) -> dict[str, int] | None:
        if result.code != ErrorCode.SUCCESS:
            return None
        return {
            "message_id": result.message_id,
            "server_time": result.server_time,
            "seq": result.seqs.get(sender, 0),
        }

    def deliver(self, msg: Outgoing, result: SendResult, origin_client: str | None) -> None:
        """Push to every live device of every owner, except the device that sent it.

        One NOTIFY body per owner (the seq differs per inbox; the message map is
        encoded once), sealed per connection. Transparent messages carry seq 0:
        they are in no inbox. A private message goes out at once; a group
        message's pushes go through ``FanOut``, a chunk per pass of the loop.
        """
        if self.robot_hook is not None:
            self.robot_hook(msg, result)
        if msg.conv.type != PRIVATE or self.fanout.pending:
            owners = len(result.seqs) if msg.persist_flag != PERSIST_TRANSPARENT else len(result.live_only)
            self.fanout.add(self._pushes(msg, result, origin_client), owners)
            return
        # A private message has one or two owners: pushed here, with no generator in between.
        packed = codec.pack(msg.to_wire())  # the message map, encoded once for all its owners
        targets = (
            result.seqs.items()
            if msg.persist_flag != PERSIST_TRANSPARENT
            else ((u, 0) for u in result.live_only)
        )
        webhooks = self.webhooks
        recipients: list[str] | None = [] if webhooks is not None else None
        push = self.delivery.push_message
        sender = msg.from_user
        pushed = 0
        for owner, seq in targets:
            if owner == sender:
                pushed += push(owner, seq, packed, origin_client)
            else:
                pushed += push(owner, seq, packed)
                if recipients is not None:
                    recipients.append(owner)
        metrics = self.metrics
        metrics.messages_stored += msg.persist_flag != PERSIST_TRANSPARENT
        metrics.messages_delivered += pushed
        if webhooks is not None:
            assert recipients is not None
            # Asked in the same step as the pushes (no await between): the same answer they saw.
            webhooks.message_stored(msg, result, self._offline(result, recipients))

    def _pushes(self, msg: Outgoing, result: SendResult, origin_client: str | None) -> Iterator[None]:
        """Seal the pushes of one delivery, yielding after every ``FANOUT_CHUNK`` or so."""
        packed = codec.pack(msg.to_wire())  # the message map, encoded once for all its owners
        targets = (
            result.seqs.items()
            if msg.persist_flag != PERSIST_TRANSPARENT
            else ((u, 0) for u in result.live_only)
        )
        push = self.delivery.push_message
        offline_of = self.delivery.offline
        if result.cluster_offline is not None:  # the cluster's answer, found when the batch committed
            offline_of = functools.partial(_among, result.cluster_offline)
        webhooks = self.webhooks
        sender = msg.from_user
        recipients: list[str] = []  # this chunk's owners but the sender, when webhooks want the offline ones
        offline: list[str] = []
        work = pushed = 0
        for owner, seq in targets:
            work += 1
            if owner == sender:
                sent = push(owner, seq, packed, origin_client)
            else:
                sent = push(owner, seq, packed)
                if webhooks is not None:
                    recipients.append(owner)
            work += 8 * sent
            pushed += sent
            if work >= FANOUT_CHUNK * 8:
                work = 0
                if recipients:  # asked before the yield: in the same step as this chunk's pushes
                    offline += offline_of(recipients)
                    recipients.clear()
                yield
        if recipients:
            offline += offline_of(recipients)
        self.metrics.messages_stored += msg.persist_flag != PERSIST_TRANSPARENT
        self.metrics.messages_delivered += pushed
        if webhooks is not None:
            webhooks.message_stored(msg, result, offline)

    def _offline(self, result: SendResult, recipients: list[str]) -> list[str]:
        """Those of ``recipients`` to push to: the cluster's answer when the store found it, else this node's."""
        if result.cluster_offline is not None:
            return _among(result.cluster_offline, recipients)
        return self.delivery.offline(recipients)

    # --- the rest ---------------------------------------------------------------------------------

    async def pull(self, user_id: str, after_seq: int, limit: int) -> PulledPage:
        min_time = 0
        if after_seq == 0 and not self.config.message.roaming:
            min_time = self.clock.now_ms() - self.config.message.compensate_seconds * 1000
        # A page must fit one RESPONSE frame (the SDK uses the same default limit as the server).
        max_bytes = self.config.server.max_frame_bytes * 3 // 4
        page = await self.store.pull_rows(user_id, after_seq, limit, min_time, max_bytes)
        return pack_pull_answer(page)

    async def delete(self, user_id: str, message_id: int, origin_client: str | None) -> int:
        if not await self.store.delete_message(user_id, message_id, self.clock.now_ms()):
            return ErrorCode.NOT_EXIST
        body = encode_notify_body("message_deleted", {"message_id": message_id})
        self.delivery.push(user_id, body, origin_client)
        return ErrorCode.SUCCESS

    async def recall(
        self, operator: str, message_id: int, origin_client: str | None, *, enforce_window: bool = True
    ) -> tuple[int, Any]:
        """Replace the message with a recall notice (type 80) for everyone who has it."""
        now = self.clock.now_ms()
        content = {
            "type": RECALL_CONTENT_TYPE,
            # message_id as a string: JSON numbers lose precision past 2**53 in JavaScript.
            "content": json.dumps({"operator": operator, "message_id": str(message_id)}),
            "persist_flag": 1,
        }
        notice = Outgoing(self.ids.next_id(), now, Conversation(PRIVATE, ""), operator, content, 1)
        window_ms = self.config.message.recall_seconds * 1000 if enforce_window else 2**62
        result, stored = await self.store.recall_message(operator, message_id, window_ms, notice, group_recall_check)
        if stored is None:
            return result.code, None
        self.deliver(stored, result, origin_client)
        return ErrorCode.SUCCESS, {"message_id": notice.message_id, "seq": result.seqs.get(operator, 0)}

    async def update(
        self, operator: str | None, message_id: int, content: dict[str, Any], origin_client: str | None, *,
        any_type: bool = False, distribute: bool = True,
    ) -> tuple[int, Any]:  # fmt: skip
        """Replace a message's content for everyone who has it (docs/PROTOCOL.md §9.11).

        ``operator`` None: the admin API, any message. Otherwise only its sender, and (unless ``any_type``,
        a robot's own message) only from and to content types in ``message.client_update_types`` (248). With
        ``distribute`` an update notice (type 81) goes to every holder's inbox and to their live devices as
        ``message_updated``; without, only the stored content changes (pulls and history show it).
        """
        now = self.clock.now_ms()
        allowed = self.config.message.client_update_type_set
        notice_content = {
            "type": UPDATE_CONTENT_TYPE,
            "content": json.dumps({"operator": operator or "", "message_id": str(message_id)}),
            "data": codec.pack(content),
            "persist_flag": 1,
        }
        notice = Outgoing(self.ids.next_id(), now, Conversation(PRIVATE, ""), operator or "", notice_content, 1)

        def may_update(message: StoredMessage) -> bool:  # a user: the old type and the new one are listed
            return any_type or (message.content.get("type") in allowed and content["type"] in allowed)

        result = await self.store.update_message(
            operator, message_id, content, notice if distribute else None, None if operator is None else may_update
        )
        if result.code != ErrorCode.SUCCESS:
            return result.code, None
        if not distribute:
            return ErrorCode.SUCCESS, {"message_id": 0, "seq": 0}
        if self.robot_hook is not None:
            self.robot_hook(notice, result)
        self.fanout.add(self._update_pushes(notice, result, origin_client), len(result.seqs))
        return ErrorCode.SUCCESS, {"message_id": notice.message_id, "seq": result.seqs.get(operator or "", 0)}

    def _update_pushes(self, notice: Outgoing, result: SendResult, origin_client: str | None) -> Iterator[None]:
        """``message_updated`` to every live device of every holder but the calling one, a chunk at a time."""
        packed = codec.pack(notice.to_wire())
        push = self.delivery.push_update
        work = 0
        for owner, seq in result.seqs.items():
            if owner == notice.from_user:
                work += 8 * push(owner, seq, packed, origin_client)
            else:
                work += 8 * push(owner, seq, packed)
            work += 1
            if work >= FANOUT_CHUNK * 8:
                work = 0
                yield

    async def remote_history(
        self, user_id: str, conv: Conversation, before_id: int, count: int
    ) -> tuple[int, Any]:
        if not self.config.message.remote_history:
            return ErrorCode.FUNCTION_DISABLED, None
        if conv.type == GROUP:
            found = await self.store.group_history(user_id, conv, before_id or MESSAGE_ID_MAX, count)
            if found is None:
                return ErrorCode.NOT_IN_GROUP, None
            return ErrorCode.SUCCESS, {"messages": [m.to_wire() for m in found]}
        if conv.type == CHANNEL:
            if self.channels is None:
                return ErrorCode.NOT_IMPLEMENTED, None
            code, posts = await self.channels.history(user_id, conv, before_id or MESSAGE_ID_MAX, count)
            if code != ErrorCode.SUCCESS:
                return code, None
            return ErrorCode.SUCCESS, {"messages": [m.to_wire() for m in posts]}
        messages: list[StoredMessage] = await self.store.remote_history(
            user_id, conv, before_id or MESSAGE_ID_MAX, count
        )
        return ErrorCode.SUCCESS, {"messages": [m.to_wire() for m in messages]}


def _among(offline: frozenset[str], user_ids: list[str]) -> list[str]:
    return [user_id for user_id in user_ids if user_id in offline]
