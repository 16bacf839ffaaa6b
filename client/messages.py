"""Messages for the app: sending that survives a dropped connection, and the inbox sync (SPEC §5).

``Client.messages`` is a ``Messages``. Its methods are thin typed wrappers over the
gateway's message methods, with one addition: ``send`` resends after a dropped
connection with the same ``client_msg_id``, so the app gets exactly one message.

With ``connect(..., sync_messages=True)`` it also keeps the user's inbox in sync
and hands the app each message once, in inbox order, through ``received()``:

- The server numbers each user's inbox with an increasing ``seq`` (with holes:
  deleted messages, failed writes). ``tail`` is the sync position: every seq up to
  it has been handed over, skipped as a duplicate, or does not exist.
- A pushed ``msg`` with seq == tail + 1 is taken at once; seq <= tail, or a
  ``message_id`` already seen, is dropped; a higher seq is a gap, healed by
  pulling. Seq 0 (transparent) is handed over at once and never counted.
- Pulls (``pull(after_seq=tail, limit)``) run one at a time, page after page,
  until a page shorter than its limit (and, when not empty, reaching the page's
  ``head``) says the inbox is caught up; the head then becomes the tail (the seqs
  in between are holes). They run after every (re)connect while the status is
  RECEIVING (only when the CONNACK's ``heads["msg"]`` is past the tail, or a gap
  is pending) and after a gap, with the status RECEIVING meanwhile.
  A push that arrives during a pull is taken if it is next, else it is left to
  the pull: the seq and the ``message_id`` decide, so nothing is handed over twice.
- A pull lost with its connection halves the next page (back to ``PULL_LIMIT``
  once caught up): a page of large messages can exceed the client's frame limit,
  and the same pull after the reconnect would fail the same way forever.
- A CONNACK head below the tail (a restored server database) is believed: the
  tail drops to it, so new messages cannot hide below the old position.
- The buffer between the connection and the app is bounded (``message_buffer``).
  When it is full, pushes are not buffered but noted as a gap, and pulls ask for
  no more than there is room for: a slow app makes the SDK pull later, never
  lose a message or hold the whole inbox in memory.
- ``last_seq`` is where the app is: the seq of the last message ``received()``
  gave it, or the tail when nothing is waiting. An app that persists it after
  handling each message passes it back to ``connect(last_seq=...)`` to resume;
  0 is a new install (with roaming off the server then sends only recent messages).
- A message this device sent is not handed back: its ack carries its
  ``message_id`` and seq, which the sync marks as seen. (If the connection dropped
  before the ack, a reconnect's pull can bring it before the resend's ack does;
  it then comes through ``received()`` with ``from_user`` == this user and the
  same ``message_id`` as the ack.)
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import msgpack
import trio

from protocol.codes import ConnectionStatus, ContentType, ErrorCode, PersistFlag

from .core import Core, LinkView, Signal
from .errors import ClientClosed, RequestFailed, RequestTimeout

log = logging.getLogger("ember.client.messages")

#: The NOTIFY topics of messages.
MSG_TOPIC = "msg"
MESSAGE_DELETED_TOPIC = "message_deleted"
#: An update notice (content type 81, docs/PROTOCOL.md §9.11): the ``msg`` shape, handed over like any message.
MESSAGE_UPDATED_TOPIC = "message_updated"

#: Messages asked for per pull (the server allows up to 500).
PULL_LIMIT = 100
#: Message ids remembered for dedup, newest first out last.
SEEN_IDS = 10_000
RECALL_CONTENT_TYPE = int(ContentType.RECALL)
UPDATE_CONTENT_TYPE = int(ContentType.UPDATE)
PERSIST_TRANSPARENT = int(PersistFlag.TRANSPARENT)
#: How long a pull refused with 250 waits before asking again (the server's window is 5 s).
PULL_RATE_LIMITED_WAIT_SECONDS = 1.0
#: Sends tried in all, the first included, when connections drop before the ack.
DEFAULT_SEND_ATTEMPTS = 3
#: A send answered 250 (not stored: the connection's rate limit, for a group or channel the server's fan-out
#: backlog, or the server's storage full or busy, docs/PROTOCOL.md §8.1) is sent again this many times, after the reconnect backoff doubling from its
#: first delay (with the default backoff 0.2, 0.4, 0.8, 1.6 s), before ``send`` reports it.
SEND_REFUSED_RETRIES = 4


@dataclass(frozen=True, slots=True)
class Conversation:
    """Where a message goes: ``Conversation(ConversationType.PRIVATE, "bob")``."""

    type: int
    target: str
    line: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {"type": int(self.type), "target": self.target, "line": self.line}


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A message ``Messages.search`` found; ``highlights`` are ``(start, end)`` character (code point)
    offsets into its ``content["searchable_content"]`` where the keyword's parts are."""

    message: Message
    highlights: tuple[tuple[int, int], ...]

    def marked(self, before: str = "[", after: str = "]") -> str:
        """The text with each highlighted stretch between ``before`` and ``after`` (for a snippet)."""
        text = self.message.content.get("searchable_content", "")
        parts: list[str] = []
        at = 0
        for start, end in self.highlights:
            parts += (text[at:start], before, text[start:end], after)
            at = end
        parts.append(text[at:])
        return "".join(parts)


@dataclass(frozen=True, slots=True)
class SearchPage:
    hits: tuple[SearchHit, ...]
    next_cursor: str | None  # pass it to ``search(cursor=...)`` for the older ones; None: no more


@dataclass(frozen=True, slots=True)
class Message:
    """A message as the server sent it.

    Attributes:
        seq: its seq in this user's inbox; 0 when it has none (transparent, or
            from ``history``).
        content: the content map of SPEC §5 (``type``, ``searchable_content``, …),
            as decoded; ``data`` is bytes.
    """

    seq: int
    message_id: int
    conv: Conversation
    from_user: str
    content: Mapping[str, Any]
    server_time: int
    to_users: tuple[str, ...] = ()

    @property
    def content_type(self) -> int:
        return self.content.get("type", 0)

    @property
    def transparent(self) -> bool:
        return self.content.get("persist_flag") == PERSIST_TRANSPARENT

    @property
    def recalled_message_id(self) -> int | None:
        """For a recall notice (content type 80): the id of the message it replaced."""
        return self._notice_target(RECALL_CONTENT_TYPE)

    @property
    def updated_message_id(self) -> int | None:
        """For an update notice (content type 81): the id of the message whose content changed."""
        return self._notice_target(UPDATE_CONTENT_TYPE)

    def _notice_target(self, notice_type: int) -> int | None:
        """The ``message_id`` a server notice of ``notice_type`` names in its JSON ``content``, if this is one."""
        if self.content_type != notice_type:
            return None
        try:
            return int(json.loads(self.content.get("content", ""))["message_id"])
        except (ValueError, KeyError, TypeError):
            return None

    @property
    def updated_content(self) -> Mapping[str, Any] | None:
        """For an update notice: the message's new content map, to show in place of the old one."""
        if self.content_type != UPDATE_CONTENT_TYPE or not isinstance(self.content.get("data"), bytes):
            return None
        try:
            content = msgpack.unpackb(self.content["data"])
        except (ValueError, msgpack.UnpackException):
            return None
        return content if isinstance(content, dict) else None


@dataclass(frozen=True, slots=True)
class SendAck:
    """The server's acknowledgement: the message is committed.

    Attributes:
        seq: its seq in the sender's own inbox (0 for a transparent message).
        client_msg_id: the idempotency id used (generated when not given).
    """

    message_id: int
    server_time: int
    seq: int
    client_msg_id: str


@dataclass(frozen=True, slots=True)
class RecallAck:
    """A recall's result: the notice (content type 80) that replaced the message everywhere."""

    message_id: int
    seq: int


def _is_int(value: object) -> TypeGuard[int]:
    """An int that is not a bool (msgpack gives both; True is no seq)."""
    return isinstance(value, int) and not isinstance(value, bool)


def parse_message(raw: Any, seq: int) -> Message | None:
    """A ``Message`` from the wire map, or None when the map is malformed."""
    if not isinstance(raw, dict):
        return None
    conv = raw.get("conv")
    content = raw.get("content")
    to_users = raw.get("to_users") or ()
    if not (
        _is_int(raw.get("message_id"))
        and isinstance(conv, dict)
        and _is_int(conv.get("type"))
        and isinstance(conv.get("target"), str)
        and _is_int(conv.get("line", 0))
        and isinstance(raw.get("from"), str)
        and isinstance(content, dict)
        and _is_int(raw.get("server_time"))
        and isinstance(to_users, list | tuple)
        and all(isinstance(u, str) for u in to_users)
    ):
        return None
    return Message(
        seq=seq,
        message_id=raw["message_id"],
        conv=Conversation(conv["type"], conv["target"], conv.get("line", 0)),
        from_user=raw["from"],
        content=content,
        server_time=raw["server_time"],
        to_users=tuple(to_users),
    )


@dataclass(slots=True)
class SeenIds:
    """The most recent message ids handed over (or sent from here): bounded dedup memory."""

    limit: int
    ids: set[int] = field(default_factory=set)
    order: deque[int] = field(default_factory=deque)

    def __contains__(self, message_id: int) -> bool:
        return message_id in self.ids

    def add(self, message_id: int) -> None:
        if message_id in self.ids:
            return
        self.ids.add(message_id)
        self.order.append(message_id)
        if len(self.order) > self.limit:
            self.ids.discard(self.order.popleft())


class Messages:
    """``Client.messages``: message methods, and the inbox sync when it is on.

    What it learns it publishes, for the client to route (``client.core``): ``handed_over`` (a message
    given to the app), ``sent`` (one this device sent and the server stored), ``deleted`` (a message id
    this device deleted). ``on_push``, ``serve_link``, ``catch_up`` and ``finish`` are the client's hooks.
    """

    def __init__(
        self,
        core: Core,
        *,
        sync: bool,
        last_seq: int,
        buffer: int,
        set_blacklist: Callable[[str, bool], Awaitable[None]],
        send_attempts: int = DEFAULT_SEND_ATTEMPTS,
    ) -> None:
        # last_seq and buffer are connect options, checked there (client.options).
        if send_attempts < 1:
            raise ValueError("send_attempts must be at least 1")
        self._core = core
        self._set_blacklist = set_blacklist
        self.handed_over: Signal[Message] = Signal()
        self.sent: Signal[Message] = Signal()
        self.deleted: Signal[int] = Signal()
        self._sync = sync
        self._capacity = buffer
        self._send_attempts = send_attempts
        self._tail = last_seq  # every seq <= tail is handed over, a duplicate, or a hole
        self._consumed = last_seq  # seq of the last counted message the app took
        self._buffer: deque[Message] = deque()
        self._counted = 0  # buffered messages with a seq
        self._seen = SeenIds(SEEN_IDS)
        self._want_pull = False
        self._pull_wakeup = trio.Event()
        self._pull_lock = trio.Lock()
        self._arrived = trio.Event()
        self._closed = False
        self._pulls = 0
        self._page = PULL_LIMIT  # shrinks when a page is lost with its connection (see _pull_pages)
        self._dropped_transparent = 0

    # --- the app's side of the sync ----------------------------------------------------------------

    @property
    def syncing(self) -> bool:
        """Whether the inbox sync is on (``connect(..., sync_messages=True)``)."""
        return self._sync

    @property
    def last_seq(self) -> int:
        """The inbox seq the app has reached; persist it and pass it to ``connect`` to resume."""
        return self._consumed if self._counted else self._tail

    @property
    def pulls(self) -> int:
        """How many pull requests the sync has made (for tests and metrics)."""
        return self._pulls

    @property
    def dropped_transparent(self) -> int:
        """Transparent messages discarded because the buffer was full (they are never stored)."""
        return self._dropped_transparent

    def received(self) -> AsyncIterator[Message]:
        """The messages for the app, each once, in inbox order (transparent ones as they come).

        One consumer. The iteration ends once the client has stopped for good and
        the buffer is empty.

        Raises:
            RuntimeError: the sync is off.
        """
        if not self._sync:
            raise RuntimeError("received() needs connect(..., sync_messages=True)")
        return _Received(self)

    def _take(self) -> Message:
        message = self._buffer.popleft()
        if message.seq:
            self._counted -= 1
            self._consumed = message.seq
        if self._want_pull and len(self._buffer) <= self._capacity // 2:
            self._pull_wakeup.set()
        return message

    # --- methods -----------------------------------------------------------------------------------

    async def send(
        self,
        conv: Conversation,
        content: Mapping[str, Any],
        *,
        client_msg_id: str | None = None,
        to_users: Iterable[str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - per attempt, as Client.request
    ) -> SendAck:
        """Send a message and return its ack; resend with the same id if the connection drops.

        The id (``client_msg_id``, a random one when not given) makes the server answer a
        resend with the original ack, so a send that reached the server before the drop
        is not stored twice. A dropped connection before the ack is retried, after the
        reconnect, up to ``send_attempts`` tries in all.

        Raises:
            RequestFailed: the server refused it (e.g. 246 blacklisted, 247 muted, 251). A 250 (the
                connection's rate limit, for a group or channel the server's fan-out backlog, or its storage
                full or busy: not stored) is retried first, ``SEND_REFUSED_RETRIES`` times with backoff, same id.
            ClientClosed: every attempt lost its connection, or the client stopped.
            RequestTimeout: no answer within ``timeout`` (per attempt). The message may
                have been stored: resend with the same ``client_msg_id`` to find out.
        """
        cmid = client_msg_id if client_msg_id is not None else uuid.uuid4().hex
        params: dict[str, Any] = {"conv": conv.to_wire(), "content": dict(content), "client_msg_id": cmid}
        if to_users is not None:
            params["to_users"] = list(to_users)
        attempt = 1
        refused = 0
        while True:
            try:
                response = await self._core.request("send_message", params, timeout=timeout)
            except ClientClosed:
                if attempt >= self._send_attempts or self._core.stopped:
                    raise
                attempt += 1
                log.info("connection dropped before the ack; resending (attempt %d)", attempt)
                continue
            if response.code != ErrorCode.OVER_FREQUENCY or refused >= SEND_REFUSED_RETRIES:
                break
            # Not stored; the server asks for a pause (§8.1). The same client_msg_id keeps a resend safe.
            first, most = self._core.backoff
            await trio.sleep(min(most, first * 2**refused))
            refused += 1
        if not response.ok:
            raise RequestFailed("send_message", response.code, response.result)
        result = response.result
        ack = SendAck(result["message_id"], result["server_time"], result["seq"], cmid)
        self._own(ack.message_id, ack.seq)
        if ack.seq:  # stored: it is this conversation's newest message on every device, this one included
            mine = Message(ack.seq, ack.message_id, conv, self._core.user_id, dict(content), ack.server_time,
                           tuple(params.get("to_users", ())))  # fmt: skip
            self.sent.publish(mine)
        return ack

    async def delete(self, message_id: int) -> None:
        """Delete a message for this user only, for good; other devices get ``message_deleted``."""
        await self._call("delete_message", message_id=message_id)
        self.deleted.publish(message_id)

    async def recall(self, message_id: int) -> RecallAck:
        """Replace a message for everyone with a recall notice (content type 80)."""
        result = await self._call("recall_message", message_id=message_id)
        ack = RecallAck(result["message_id"], result["seq"])
        self._own(ack.message_id, ack.seq)
        return ack

    async def update(self, message_id: int, content: Mapping[str, Any]) -> RecallAck:
        """Replace one of this user's messages' content for everyone (only the content types the server's
        ``message.client_update_types`` lists: else 248). Every holder gets an update notice (type 81)."""
        result = await self._call("update_message", message_id=message_id, content=dict(content))
        ack = RecallAck(result["message_id"], result["seq"])
        self._own(ack.message_id, ack.seq)
        return ack

    async def history(self, conv: Conversation, *, before_id: int = 0, count: int = 20) -> list[Message]:
        """Older messages of a conversation, newest first (needs ``message.remote_history``, else 220)."""
        result = await self._call(
            "load_remote_history", conv=conv.to_wire(), before_id=before_id, count=count
        )
        parsed = [parse_message(raw, 0) for raw in result["messages"]]
        return [m for m in parsed if m is not None]

    async def search(
        self,
        keyword: str,
        *,
        conv: Conversation | None = None,
        from_user: str | None = None,
        content_types: Iterable[int] = (),
        before: int | None = None,
        after: int | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> SearchPage:
        """This user's messages on the server that hold ``keyword``, newest first (docs/PROTOCOL.md
        "search_messages"): every word (by prefix) and every CJK run must be in ``searchable_content``.
        ``before``/``after`` are server times in ms (``after <= server_time < before``). For the next page,
        pass the page's ``next_cursor`` (None: there is no more). A bad keyword or filter raises
        ``RequestFailed`` with code 251 and the reason."""
        params: dict[str, Any] = {"keyword": keyword, "limit": limit}
        optional = {
            "conv": conv.to_wire() if conv is not None else None,
            "from_user": from_user,
            "content_types": list(content_types) or None,
            "before": before,
            "after": after,
            "cursor": cursor,
        }
        params.update({key: value for key, value in optional.items() if value is not None})
        result = await self._call("search_messages", **params)
        hits = []
        for raw in result["results"]:
            message = parse_message(raw["message"], 0)
            if message is not None:
                hits.append(SearchHit(message, tuple((start, end) for start, end in raw["highlights"])))
        return SearchPage(tuple(hits), result.get("next_cursor"))

    async def set_blacklist(self, user_id: str, blocked: bool) -> None:
        """The same as ``Client.relations.set_blacklist`` (which also updates the synced copy)."""
        await self._set_blacklist(user_id, blocked)

    async def get_blacklist(self) -> list[str]:
        return list((await self._call("get_blacklist"))["user_ids"])

    async def _call(self, method: str, **params: Any) -> Any:
        response = await self._core.request(method, params)
        if not response.ok:
            raise RequestFailed(method, response.code, response.result)
        return response.result

    # --- sync: the connection's side ---------------------------------------------------------------

    def _own(self, message_id: int, seq: int) -> None:
        """A message this device created: never hand it back; step over its seq if it is next."""
        if not self._sync:
            return
        self._seen.add(message_id)
        if seq == self._tail + 1:
            self._tail = seq
        elif seq > self._tail:
            self._gap()

    def on_push(self, data: Any) -> bool:
        """A ``msg`` (or ``message_updated``) NOTIFY with the sync on, called by the reader: the sync takes
        it (True); never blocks."""
        self._on_push(data)
        return True

    def _on_push(self, data: Any) -> None:
        seq = data.get("seq") if isinstance(data, dict) else None
        if not _is_int(seq) or seq < 0:
            log.warning("ignored a malformed msg push")
            return
        message = parse_message(data.get("message"), seq)
        if message is None:
            log.warning("malformed msg push (seq %d)", seq)
            if seq > self._tail:
                self._gap()  # the pull will bring it, well-formed or counted as seen
            return
        if seq == 0:
            if message.message_id in self._seen:
                return
            if len(self._buffer) >= self._capacity:
                self._dropped_transparent += 1
                return
            self._seen.add(message.message_id)
            self._hand_over(message)
            return
        if seq <= self._tail:
            return
        if seq == self._tail + 1 and len(self._buffer) < self._capacity:
            self._accept(message)
        else:
            self._gap()

    def _accept(self, message: Message) -> None:
        """Take the message right after the tail."""
        self._tail = message.seq
        if message.message_id in self._seen:
            return
        self._seen.add(message.message_id)
        self._counted += 1
        self._hand_over(message)

    def _hand_over(self, message: Message) -> None:
        self.handed_over.publish(message)  # the group cache first (a group notification), then the list
        self._buffer.append(message)
        self._arrived.set()

    def _gap(self) -> None:
        self._want_pull = True
        self._pull_wakeup.set()

    def finish(self) -> None:
        """The client stopped for good: ``received()`` ends once the buffer is empty."""
        self._closed = True
        self._arrived.set()

    @property
    def catches_up(self) -> bool:
        return self._sync

    async def catch_up(self, link: LinkView) -> None:
        """Run by the client after each successful handshake, while the status is RECEIVING."""
        head = link.connack.heads.get("msg")
        if not _is_int(head):
            head = 0
        elif head < self._tail:
            # The server's inbox is behind this device (a database restored from a backup, or
            # seqs given out again): take its word, or new messages would hide below the tail.
            # Dedup by message_id keeps the ones already handed over from coming twice.
            log.warning(
                "server inbox head %d is behind the sync position %d; resyncing from it", head, self._tail
            )
            self._tail = head
        if head > self._tail:
            self._want_pull = True
        if self._want_pull:
            await self._pull(link)

    async def serve_link(self, link: LinkView) -> None:
        """One per connection with the sync on: pulls when a gap is noted and there is room for what it brings."""
        if not self._sync:
            return
        try:
            while True:
                await self._pull_wakeup.wait()
                self._pull_wakeup = trio.Event()
                if self._want_pull and len(self._buffer) < self._capacity:
                    await self._pull(link)
        except ClientClosed:
            return  # the connection is gone; the next one catches up

    async def _pull(self, link: LinkView) -> None:
        """Pull (one pull at a time) until caught up or the buffer is full."""
        async with self._pull_lock:
            if not self._want_pull or len(self._buffer) >= self._capacity:
                return  # a pull that ran while this one waited did the work
            try:
                with self._core.receiving():
                    await self._pull_pages()
            except (RequestTimeout, RequestFailed) as exc:
                # Retrying on this connection could spin; a reconnect retries with backoff.
                log.warning("pull failed: %s; reconnecting to retry", exc)
                self._want_pull = True
                link.close(ConnectionStatus.SERVER_DOWN, "pull failed")

    async def _pull_pages(self) -> None:
        while self._want_pull:
            room = self._capacity - len(self._buffer)
            if room <= 0:
                return  # _take wakes the worker when the app has made room
            self._want_pull = False
            try:
                while True:
                    limit = min(self._page, room)
                    self._pulls += 1
                    try:
                        response = await self._core.request("pull", after_seq=self._tail, limit=limit)
                    except BaseException:
                        # Lost (usually with its connection, which cancels this task). One cause
                        # repeats forever: a page larger than the client's frame limit (a
                        # violation, so a reconnect, then the same pull). Halving the page size
                        # gets past it; it grows back once the sync has caught up.
                        self._page = max(1, self._page // 2)
                        raise
                    if response.code == ErrorCode.OVER_FREQUENCY:
                        # The connection spent its rate-limit window (a pull costs what it returns,
                        # docs/PROTOCOL.md §8.1): wait part of a window and ask again; nothing is lost.
                        self._pulls -= 1
                        await trio.sleep(PULL_RATE_LIMITED_WAIT_SECONDS)
                        continue
                    if not response.ok:
                        raise RequestFailed("pull", response.code, response.result)
                    if self._take_page(response.result, limit):
                        self._page = PULL_LIMIT
                        break  # caught up (a gap noted meanwhile loops again)
                    room = self._capacity - len(self._buffer)
                    if room <= 0:
                        self._want_pull = True
                        return
            except BaseException:
                self._want_pull = True
                raise

    def _take_page(self, result: Any, limit: int) -> bool:
        """Hand over a page's new messages in order; True when the page says we are caught up."""
        entries = result.get("messages") if isinstance(result, dict) else None
        head = result.get("head") if isinstance(result, dict) else None
        if not isinstance(entries, list) or not _is_int(head):
            raise RequestFailed("pull", ErrorCode.INVALID_DATA, "malformed pull result")
        for entry in entries:
            seq = entry.get("seq") if isinstance(entry, dict) else None
            if not _is_int(seq) or seq <= self._tail:
                continue  # had it already (pushed during the pull), or malformed
            message = parse_message(entry.get("message"), seq)
            if message is None:
                log.error("skipped a malformed message at seq %d", seq)
                self._tail = seq
                continue
            self._accept(message)
        # A short page means caught up. Its last seq must reach the head too, so that a server
        # that also caps a page by bytes is followed to the end; a trailing hole costs one
        # more (empty) pull.
        caught_up = len(entries) < limit and (not entries or self._tail >= head)
        if caught_up and head > self._tail:
            self._tail = head  # the seqs in between are holes (deleted, failed writes, too old)
        return caught_up


class _Received:
    """The async iterator of ``Messages.received()``."""

    __slots__ = ("_messages",)

    def __init__(self, messages: Messages) -> None:
        self._messages = messages

    def __aiter__(self) -> _Received:
        return self

    async def __anext__(self) -> Message:
        m = self._messages
        while not m._buffer:
            if m._closed:
                raise StopAsyncIteration
            m._arrived = trio.Event()
            await m._arrived.wait()
        return m._take()
