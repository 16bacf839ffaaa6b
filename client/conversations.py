"""The SDK's conversation list: last message, unread counts, top / silent / draft, kept from what it syncs.

The list is built from the messages this client hands over (``Client.messages``: pushes and pulls, and what it
sends itself) and from the user's settings (``Client.relations`` with ``sync_relations=True``): the read mark
(scope 11) and clear mark (scope 18) of each conversation, top (3), silent (1) and draft (19). A mark is a
setting, so when one device reads a conversation, the server pushes a ``head`` to the others, they pull the
setting, and their unread count drops: every device shows the same number (docs/PROTOCOL.md §16).

A fresh install has no messages to count from: ``rebuild()`` asks the server (``get_conversations``) for the
list with each conversation's last message, read mark and unread counts, and messages that arrive later add
to those counts.

What counts as unread is the server's rule: a message stored and counted (persist flag 3), not one's own,
not recalled, after the read mark; a mention when it mentions everyone (``mentioned_type`` 2) or names the
user (1). Chatroom messages (type 2) are not part of the list.

Events: ``ConversationsChanged`` on ``Client.events()`` when marks, settings, a rebuild, a deletion or a clear
change the list. A new message changes it too, without an event (the app gets the message itself from
``messages.received()``); ``wait_until(predicate)`` waits for any change.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from protocol.codes import (
    ContentType,
    ConversationType,
    PersistFlag,
    SettingScope,
    conversation_setting_key,
    parse_conversation_setting_key,
)

from .core import Core
from .errors import RequestFailed
from .messages import Conversation, Message, parse_message

#: Most recent messages kept per conversation: what the last message falls back to when the newest is deleted.
RECENT_PER_CONVERSATION: Final = 20
#: Conversations per ``get_conversations`` page that ``rebuild`` asks for.
REBUILD_PAGE: Final = 100

_CLEAR_SCOPE: Final = int(SettingScope.CONVERSATION_CLEAR)
_COUNTED: Final = int(PersistFlag.PERSIST_AND_COUNT)
_SHOWN: Final = frozenset({int(PersistFlag.PERSIST), _COUNTED})
_RECALL: Final = int(ContentType.RECALL)
_CHATROOM: Final = int(ConversationType.CHATROOM)


def mark_key(conv: Conversation) -> str:
    """A conversation's key in settings (docs/PROTOCOL.md §16.1): ``"type-target-line"``."""
    return conversation_setting_key(conv.type, conv.target, conv.line)


def parse_mark_key(key: str) -> Conversation | None:
    parts = parse_conversation_setting_key(key)
    return None if parts is None else Conversation(*parts)


@dataclass(frozen=True, slots=True)
class ConversationInfo:
    """One entry of the list, as the app shows it."""

    conv: Conversation
    last_message: Message | None
    unread: int
    unread_mentions: int
    read_to: int  # the read mark: a message id (0: none)
    top: bool
    silent: bool
    draft: str


@dataclass(frozen=True, slots=True)
class ConversationsChanged:
    """Put on ``Client.events()`` when marks, settings, a rebuild, a deletion or a clear changed the list."""

    conversations: tuple[Conversation, ...]


@dataclass(slots=True)
class _Entry:
    conv: Conversation
    last: Message | None = None
    recent: deque[Message] = field(default_factory=lambda: deque(maxlen=RECENT_PER_CONVERSATION))
    unread_ids: set[int] = field(default_factory=set)  # counted messages after the read mark, known here
    mention_ids: set[int] = field(default_factory=set)
    # From a rebuild: what the server counted among messages up to ``remote_floor`` (not held here).
    remote_unread: int = 0
    remote_mentions: int = 0
    remote_floor: int = 0
    read_to: int = 0
    clear_to: int = 0
    top: bool = False
    silent: bool = False
    draft: str = ""

    def unread(self) -> int:
        return self.remote_unread + sum(1 for i in self.unread_ids if i > self.remote_floor)

    def mentions(self) -> int:
        return self.remote_mentions + sum(1 for i in self.mention_ids if i > self.remote_floor)

    def info(self) -> ConversationInfo:
        return ConversationInfo(
            self.conv, self.last, self.unread(), self.mentions(), self.read_to, self.top, self.silent, self.draft
        )

    def visible(self) -> bool:
        return self.last is not None or self.top or bool(self.draft)

    def drop_through(self, message_id: int) -> None:
        """Nothing at or below ``message_id`` is unread any more (a read mark)."""
        self.unread_ids = {i for i in self.unread_ids if i > message_id}
        self.mention_ids = {i for i in self.mention_ids if i > message_id}
        if message_id >= self.remote_floor:
            self.remote_unread = self.remote_mentions = 0

    def forget(self, message_ids: Callable[[int], bool]) -> None:
        """Messages are gone (deleted, cleared): out of the counts, the recent list and the last message."""
        self.unread_ids = {i for i in self.unread_ids if not message_ids(i)}
        self.mention_ids = {i for i in self.mention_ids if not message_ids(i)}
        kept = [m for m in self.recent if not message_ids(m.message_id)]
        self.recent = deque(kept, maxlen=RECENT_PER_CONVERSATION)
        if self.last is not None and message_ids(self.last.message_id):
            # The newest kept one (a rebuild may have added an older message after newer ones).
            self.last = max(kept, key=lambda m: m.message_id) if kept else None


class Conversations:
    """The local conversation list (see the module docstring).

    The client feeds it (``client.core``): ``observe`` every message handed over or sent here,
    ``on_setting`` every setting the relation sync brings, ``on_deleted`` each ``message_deleted`` push and
    each delete from here.
    """

    def __init__(self, core: Core) -> None:
        self._core = core
        self._entries: dict[Conversation, _Entry] = {}
        self._changed = trio.Event()
        #: get_conversations pages fetched by ``rebuild`` (for tests and metrics)
        self.pages = 0

    # --- reading the list ----------------------------------------------------------------------

    def get(self, conv: Conversation) -> ConversationInfo | None:
        entry = self._entries.get(conv)
        return entry.info() if entry is not None and entry.visible() else None

    def conversations(
        self, types: Iterable[int] | None = None, lines: Iterable[int] | None = None
    ) -> list[ConversationInfo]:
        """The list: top ones first, then by last message, newest first; ``types``/``lines`` filter it.

        For FAQ §13's folding (all channels as one entry), call it twice: once without channels
        (``types=[0, 1]``) for the main list, once with ``types=[3]`` for the folder's contents.
        """
        want_types = None if types is None else {int(t) for t in types}
        want_lines = None if lines is None else {int(line) for line in lines}
        chosen = [
            e.info()
            for e in self._entries.values()
            if e.visible()
            and (want_types is None or e.conv.type in want_types)
            and (want_lines is None or e.conv.line in want_lines)
        ]
        chosen.sort(
            key=lambda c: (not c.top, -(c.last_message.server_time if c.last_message else 0),
                           -(c.last_message.message_id if c.last_message else 0)),
        )  # fmt: skip
        return chosen

    def unread_total(self, types: Iterable[int] | None = None) -> int:
        """Unread messages over the list (silent conversations included: the app decides)."""
        return sum(c.unread for c in self.conversations(types))

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, checking after every change to the list (bound it yourself)."""
        while not predicate():
            await self._changed.wait()

    # --- calls -----------------------------------------------------------------------------------

    async def mark_read(self, conv: Conversation, up_to: int | None = None) -> int:
        """Mark the conversation read up to a message id (default: its last message); returns the mark.

        The mark never moves back; the user's other devices drop their unread count for it too.
        """
        if up_to is None:
            entry = self._entries.get(conv)
            if entry is None or entry.last is None:
                return entry.read_to if entry is not None else 0
            up_to = entry.last.message_id
        result = await self._call("mark_read", conv=conv.to_wire(), message_id=up_to)
        read_to = int(result["read_to"])
        self.on_setting(SettingScope.CONVERSATION_READ, mark_key(conv), str(read_to))
        return read_to

    async def clear(self, conv: Conversation, up_to: int | None = None) -> int:
        """Delete the conversation's messages for this user, for good, up to a message id (default: all
        known here); every device drops them. Returns how many the server deleted."""
        if up_to is None:
            entry = self._entries.get(conv)
            if entry is None or entry.last is None:
                return 0
            up_to = entry.last.message_id
        result = await self._call("clear_conversation", conv=conv.to_wire(), message_id=up_to)
        self.on_setting(_CLEAR_SCOPE, mark_key(conv), str(up_to))
        return int(result["deleted"])

    async def rebuild(self, types: Iterable[int] | None = None, lines: Iterable[int] | None = None) -> None:
        """Fill the list from the server (a fresh install): every conversation, its last message, unread counts.

        ``types`` / ``lines`` ask the server for only those conversations (``get_conversations``' filters,
        docs/PROTOCOL.md §16.3), e.g. ``types=[0, 1]`` first and the channels (``[3]``) later (FAQ §13).
        """
        before = 0
        changed: list[Conversation] = []
        only: dict[str, list[int]] = {}
        if types is not None:
            only["types"] = [int(t) for t in types]
        if lines is not None:
            only["lines"] = [int(line) for line in lines]
        while True:
            result = await self._call("get_conversations", before=before, limit=REBUILD_PAGE, **only)
            self.pages += 1
            rows = result["conversations"]
            for row in rows:
                conv = Conversation(row["conv"]["type"], row["conv"]["target"], row["conv"].get("line", 0))
                last = parse_message(row["last_message"], 0)
                if last is None:
                    continue
                entry = self._entry(conv)
                if entry.last is None or last.message_id >= entry.last.message_id:
                    entry.last = last
                entry.recent.append(last)
                entry.read_to = max(entry.read_to, int(row["read_to"]))
                entry.unread_ids = {i for i in entry.unread_ids if i > last.message_id}
                entry.mention_ids = {i for i in entry.mention_ids if i > last.message_id}
                entry.remote_unread, entry.remote_mentions = int(row["unread"]), int(row["unread_mentions"])
                entry.remote_floor = last.message_id
                changed.append(conv)
                before = last.message_id
            if not result.get("more") or not rows:
                break
        self._report(changed)

    async def _call(self, method: str, **params: Any) -> Any:
        response = await self._core.request(method, params)
        if not response.ok:
            raise RequestFailed(method, response.code, response.result)
        return response.result

    # --- what the rest of the SDK tells the list ----------------------------------------------------

    def _view(self, message: Message) -> Conversation:
        """A private chat is named after the other side (the server stores the recipient as the target)."""
        conv = message.conv
        if conv.type == ConversationType.PRIVATE and conv.target == self._core.user_id:
            return Conversation(conv.type, message.from_user, conv.line)
        return conv

    def observe(self, message: Message) -> None:
        """A message handed over or sent here; never blocks."""
        if message.conv.type == _CHATROOM:
            return
        flag = message.content.get("persist_flag", _COUNTED)
        if flag not in _SHOWN:
            return
        entry = self._entry(self._view(message))
        if message.message_id <= entry.clear_to:
            return
        recalled = message.recalled_message_id
        if recalled is not None:
            entry.unread_ids.discard(recalled)
            entry.mention_ids.discard(recalled)
        entry.recent.append(message)
        if entry.last is None or message.message_id > entry.last.message_id:
            entry.last = message
        me = self._core.user_id
        if (
            flag == _COUNTED
            and message.from_user != me
            and message.content_type != _RECALL
            and message.message_id > entry.read_to
        ):
            entry.unread_ids.add(message.message_id)
            mentioned = message.content.get("mentioned_type", 0)
            if mentioned == 2 or (mentioned == 1 and me in message.content.get("mentioned_targets", ())):
                entry.mention_ids.add(message.message_id)
        self._wake()

    def on_setting(self, scope: int, key: str, value: str | None) -> None:
        """A setting arrived from the sync (``value`` None: removed), or this device moved a mark."""
        if scope not in _SCOPES:
            return
        conv = parse_mark_key(key)
        if conv is None:
            return
        entry = self._entry(conv)
        if scope == SettingScope.CONVERSATION_READ:
            mark = _as_id(value)
            if mark <= entry.read_to:
                return
            entry.read_to = mark
            entry.drop_through(mark)
        elif scope == _CLEAR_SCOPE:
            mark = _as_id(value)
            if mark <= entry.clear_to:
                return
            entry.clear_to = mark
            entry.forget(lambda i: i <= mark)
            if mark >= entry.remote_floor:
                entry.remote_unread = entry.remote_mentions = 0
        elif scope == SettingScope.CONVERSATION_TOP:
            entry.top = value == "1"
        elif scope == SettingScope.CONVERSATION_SILENT:
            entry.silent = value == "1"
        else:
            entry.draft = value or ""
        self._report([conv])

    def on_deleted(self, data: Any) -> None:
        """``message_deleted`` (another device of this user deleted it), or a delete from here."""
        message_id = data.get("message_id") if isinstance(data, Mapping) else data
        if not isinstance(message_id, int) or isinstance(message_id, bool):
            return
        touched = []
        for entry in self._entries.values():
            known = message_id in entry.unread_ids or any(m.message_id == message_id for m in entry.recent)
            if known:
                entry.forget(lambda i: i == message_id)
                touched.append(entry.conv)
        self._report(touched)

    def _entry(self, conv: Conversation) -> _Entry:
        entry = self._entries.get(conv)
        if entry is None:
            entry = self._entries[conv] = _Entry(conv)
        return entry

    def _report(self, convs: list[Conversation]) -> None:
        if convs:
            self._core.emit(ConversationsChanged(tuple(dict.fromkeys(convs))))
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


_SCOPES: Final = frozenset(
    {
        int(SettingScope.CONVERSATION_READ),
        _CLEAR_SCOPE,
        int(SettingScope.CONVERSATION_TOP),
        int(SettingScope.CONVERSATION_SILENT),
        int(SettingScope.CONVERSATION_DRAFT),
    }
)


def _as_id(value: str | None) -> int:
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0
