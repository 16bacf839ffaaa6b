"""Chatrooms for the app (conversation type 2): join, quit, info, members, history, send, and their events.

``Client.chatrooms`` is a ``Chatrooms``. A device is in at most one room at a time;
the server keeps that membership only while the connection lives and the device
stays active, so this class keeps it up:

- while in a room it joins it again every third of the ``idle_seconds`` the
  server announced at join (a join of the room one is in is the heartbeat), and
  right after every reconnect (the server forgot the membership with the old
  connection);
- room messages are pushed as ``msg`` with ``seq`` 0: they are in no inbox, so
  they never reach the inbox sync (``messages.received()``), never start a pull,
  and go to ``events()`` instead, with a ``ChatroomLeft`` when the server drops
  the device (idle, stalled socket, room destroyed) or a re-join fails.

``events()`` is bounded (``chatroom_buffer`` of ``connect``); when full, the oldest
event is discarded and ``dropped`` counts it. Use ``history()`` to page back.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import trio

from protocol.codes import ConversationType

from .core import Core, LinkView
from .errors import ClientClosed, RequestFailed, RequestTimeout
from .messages import Conversation, Message, SendAck, parse_message

log = logging.getLogger("ember.client.chatrooms")

CHATROOM = int(ConversationType.CHATROOM)
#: The NOTIFY topic of a device dropped from its room.
CHATROOM_QUIT_TOPIC = "chatroom_quit"
#: The fewest seconds between two heartbeats, whatever the server announces.
MIN_HEARTBEAT_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Joined:
    """The answer to ``join``. ``quit`` is the room the device left to join this one, if any."""

    chatroom_id: str
    member_count: int
    idle_seconds: int
    quit: str | None = None


@dataclass(frozen=True, slots=True)
class ChatroomInfo:
    chatroom_id: str
    title: str
    portrait: str
    extra: str
    state: int
    member_count: int
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class MembersPage:
    member_count: int
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ChatroomLeft:
    """The device is no longer in ``chatroom_id``: ``reason`` is the server's (``idle``, ``stalled``,
    ``destroyed``) or ``rejoin_failed`` (the room was gone after a reconnect)."""

    chatroom_id: str
    reason: str


ChatroomEvent = Message | ChatroomLeft


class Chatrooms:
    """``Client.chatrooms``."""

    def __init__(self, core: Core, *, buffer: int = 1000) -> None:
        # buffer is a connect option (chatroom_buffer), checked there (client.options).
        self._core = core
        self._tx, self._rx = trio.open_memory_channel[ChatroomEvent](buffer)
        self._current: str | None = None
        self._idle_seconds = 0
        self._joined_on: LinkView | None = None  # the connection the server knows the membership with
        self._changed = trio.Event()
        # One membership request at a time: a heartbeat join of the old room must not overtake the app's
        # join of a new one (or its quit) and put the device back where it was.
        self._lock = trio.Lock()
        self.dropped = 0

    @property
    def current(self) -> str | None:
        """The room this device is in, as far as it knows."""
        return self._current

    def events(self) -> trio.MemoryReceiveChannel[ChatroomEvent]:
        """Room messages (``Message`` with seq 0) and ``ChatroomLeft``; one consumer."""
        return self._rx

    # --- methods -----------------------------------------------------------------------------

    async def join(self, chatroom_id: str) -> Joined:
        """Enter a room (leaving the one this device is in, unless the server answers 225)."""
        async with self._lock:
            result = await self._call("join_chatroom", chatroom_id=chatroom_id)
            self._current = chatroom_id
            self._idle_seconds = result["idle_seconds"]
            self._joined_on = self._core.link
        self._wake()
        return Joined(chatroom_id, result["member_count"], result["idle_seconds"], result.get("quit"))

    async def quit(self) -> None:
        """Leave the room this device is in (nothing to do when in none)."""
        room, self._current = self._current, None
        self._wake()
        if room is not None:
            async with self._lock:
                try:
                    await self._call("quit_chatroom", chatroom_id=room)
                except RequestFailed as exc:
                    if exc.code != 20:  # not in it any more: the goal is reached
                        raise

    async def info(self, chatroom_id: str) -> ChatroomInfo:
        r = await self._call("get_chatroom_info", chatroom_id=chatroom_id)
        return ChatroomInfo(**{name: r[name] for name in ChatroomInfo.__slots__})

    async def members(self, chatroom_id: str, *, offset: int = 0, count: int = 100) -> MembersPage:
        r = await self._call("get_chatroom_members", chatroom_id=chatroom_id, offset=offset, count=count)
        return MembersPage(r["member_count"], tuple(r["members"]))

    async def history(self, *, before_id: int = 0, count: int = 20) -> list[Message]:
        """The current room's recent messages before ``before_id`` (0: the newest), newest first."""
        room = self._require_room()
        r = await self._call("load_chatroom_history", chatroom_id=room, before_id=before_id, count=count)
        parsed = [parse_message(raw, 0) for raw in r["messages"]]
        return [m for m in parsed if m is not None]

    async def send(self, content: Mapping[str, Any], *, client_msg_id: str | None = None) -> SendAck:
        """Send to the current room; the ack's seq is 0 (no inbox holds it). Not resent after a drop."""
        room = self._require_room()
        params: dict[str, Any] = {"conv": Conversation(CHATROOM, room).to_wire(), "content": dict(content)}
        if client_msg_id is not None:
            params["client_msg_id"] = client_msg_id
        r = await self._call("send_message", **params)
        return SendAck(r["message_id"], r["server_time"], r["seq"], client_msg_id or "")

    def _require_room(self) -> str:
        if self._current is None:
            raise RuntimeError("join a chatroom first")
        return self._current

    async def _call(self, method: str, **params: Any) -> Any:
        response = await self._core.request(method, params)
        if not response.ok:
            raise RequestFailed(method, response.code, response.result)
        return response.result

    # --- the connection's side -----------------------------------------------------------------

    def on_push(self, data: Any) -> bool:
        """A ``msg`` NOTIFY: True when it was a room message (taken here), False for inbox messages."""
        if not isinstance(data, dict) or data.get("seq") != 0:
            return False
        raw = data.get("message")
        conv = raw.get("conv") if isinstance(raw, dict) else None
        if not isinstance(conv, dict) or conv.get("type") != CHATROOM:
            return False
        message = parse_message(raw, 0)
        if message is None:
            log.warning("ignored a malformed chatroom message")
        else:
            self._put(message)
        return True

    def on_quit(self, data: Any) -> None:
        room = data.get("chatroom_id") if isinstance(data, dict) else None
        reason = data.get("reason") if isinstance(data, dict) else None
        if isinstance(room, str) and room == self._current:
            self._current = None
            self._wake()
            self._put(ChatroomLeft(room, reason if isinstance(reason, str) else ""))

    def _put(self, event: ChatroomEvent) -> None:
        try:
            self._tx.send_nowait(event)
            return
        except trio.WouldBlock:
            pass
        try:
            self._rx.receive_nowait()  # drop the oldest
            self.dropped += 1
            self._tx.send_nowait(event)
        except (trio.WouldBlock, trio.EndOfChannel, trio.BrokenResourceError, trio.ClosedResourceError):
            self.dropped += 1

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    catches_up = False  # the re-join runs in serve_link, without holding the status at RECEIVING

    async def catch_up(self, link: LinkView) -> None:
        return None

    async def serve_link(self, link: LinkView) -> None:
        """One per connection: re-join after a reconnect, then join again every idle_seconds / 3."""
        try:
            while True:
                room = self._current
                if room is None:
                    await self._changed.wait()
                    continue
                if self._joined_on is not link:
                    await self._rejoin(room, link)
                    continue
                changed = self._changed
                with trio.move_on_after(max(MIN_HEARTBEAT_SECONDS, self._idle_seconds / 3)):
                    await changed.wait()
                    continue
                if self._current == room:
                    await self._rejoin(room, link)
        except (ClientClosed, RequestTimeout):
            return  # the connection is gone; the next one re-joins

    async def _rejoin(self, room: str, link: LinkView) -> None:
        async with self._lock:
            if self._current != room:
                return  # the app moved on meanwhile
            response = await self._core.request("join_chatroom", chatroom_id=room)
        if self._current != room:
            return
        if response.ok:
            self._joined_on = link
            self._idle_seconds = response.result["idle_seconds"]
        else:
            log.info("re-joining chatroom failed with code %d", response.code)
            self._current = None
            self._put(ChatroomLeft(room, "rejoin_failed"))
