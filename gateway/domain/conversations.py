"""Conversations (SPEC §5, FAQ §13): read and clear marks synced as settings, and the list a device rebuilds.

A read mark is a fact on the server, not a guess each device makes: ``mark_read`` moves the user's mark of
one conversation forward (never back), which is a setting change (scope 11), so the user's other live
devices get a ``head`` push and pull it like any setting, and a device that was off catches up from its
CONNACK heads. ``clear`` deletes a conversation's messages for the user up to a message id and leaves a
clear mark (scope 18) the same way. ``list`` answers the conversations of a fresh install (see
``storage.conversations``).

What counts as unread is decided here (``classify``): a message stored and counted by clients
(persist flag 3), not the user's own, not replaced by a recall; a mention when it mentions everyone or
names the user.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from gateway.clock import Clock
from gateway.config import Config
from gateway.domain.relations import Origin, RelationService
from protocol.codec import Fields
from protocol.codes import ContentType, ConversationType, PersistFlag
from protocol.errors import FieldError
from storage import Store
from storage import conversations as db
from storage.messages import Conversation

#: Most conversations in one ``get_conversations`` page.
MAX_CONVERSATIONS_PAGE: Final = 200
#: ``get_conversations`` is charged after it answers: this much, plus one unit per this many rows read.
LIST_BASE_COST: Final = 1.0
LIST_ROWS_PER_UNIT: Final = 1000

#: Most items of a ``types`` / ``lines`` filter (duplicates count; a bigger filter is 251).
MAX_FILTER_TYPES: Final = 16
MAX_FILTER_LINES: Final = 64
_LINE_MAX: Final = 2**31 - 1

_COUNTED: Final = int(PersistFlag.PERSIST_AND_COUNT)
_SHOWN: Final = frozenset({int(PersistFlag.PERSIST), _COUNTED})
_RECALL: Final = int(ContentType.RECALL)


def classifier(user_id: str) -> db.Classify:
    """The unread rules for ``user_id``'s list, as ``storage.conversations.list_conversations`` asks them."""

    def classify(content: dict[str, Any], from_user: str) -> int:
        flag = content.get("persist_flag", _COUNTED)
        if flag not in _SHOWN:
            return db.HIDDEN
        if flag != _COUNTED or from_user == user_id or content.get("type") == _RECALL:
            return db.SHOWN
        mentioned = content.get("mentioned_type", 0)
        if mentioned == 2 or (mentioned == 1 and user_id in content.get("mentioned_targets", ())):
            return db.MENTION
        return db.UNREAD

    return classify


@dataclass(frozen=True, slots=True)
class ListFilter:
    """Which conversations a list keeps (FAQ §13): None keeps every type / every line."""

    types: frozenset[int] | None = None
    lines: frozenset[int] | None = None


def read_filter(params: Fields) -> ListFilter:
    """``types`` and ``lines`` of a list request (absent or nil: no filter); FieldError (251) names the field.

    ``types``: 1..16 known conversation types (0 private, 1 group, 2 chatroom, 3 channel; chatrooms are never
    in the list, so ``[2]`` lists nothing). ``lines``: 1..64 ints 0..2^31-1. An empty array is refused rather
    than read as "all" or "none": either reading would surprise half the callers.
    """
    types = lines = None
    if params.raw.get("types") is not None:
        items = params.array("types", max_len=MAX_FILTER_TYPES)
        if not items:
            raise FieldError(params.path("types"), "at least 1 item")
        if not all(i.__class__ is int and i in ConversationType._value2member_map_ for i in items):
            raise FieldError(params.path("types"), "items must be conversation types 0..3")
        types = frozenset(items)
    if params.raw.get("lines") is not None:
        items = params.array("lines", max_len=MAX_FILTER_LINES)
        if not items:
            raise FieldError(params.path("lines"), "at least 1 item")
        if not all(i.__class__ is int and 0 <= i <= _LINE_MAX for i in items):
            raise FieldError(params.path("lines"), f"items must be integers 0..{_LINE_MAX}")
        lines = frozenset(items)
    return ListFilter(types, lines)


class ConversationService:
    def __init__(self, config: Config, store: Store, relations: RelationService, clock: Clock) -> None:
        self.config = config
        self.store = store
        self.relations = relations
        self.clock = clock

    async def mark_read(self, user_id: str, conv: Conversation, up_to: int, origin: Origin) -> dict[str, int]:
        """Move the read mark to ``up_to``; answers the mark now in force (a later one stays)."""
        changes, mark = await self.store.run(db.advance_mark, user_id, db.READ_SCOPE, conv, up_to, self.clock.now_ms())
        self.relations.notify(changes, origin)
        return {"read_to": mark}

    async def clear(self, user_id: str, conv: Conversation, up_to: int, origin: Origin) -> dict[str, int]:
        """Delete the conversation's messages up to ``up_to`` for the user, for good, and leave the clear mark.

        The ids are found on a reader (a scan of the user's inbox must not hold the writer): every message
        at or below ``up_to`` has committed by then, since ids are handed out in the order sends commit.
        """
        ids = await self.store.read(db.conversation_message_ids, user_id, conv, up_to)
        changes, _ = await self.store.run(db.clear, user_id, conv, up_to, ids, self.clock.now_ms())
        self.relations.notify(changes, origin)
        return {"deleted": len(ids)}

    async def list(
        self, user_id: str, before: int, limit: int, only: ListFilter | None = None
    ) -> tuple[dict[str, Any], int]:
        """A page of the user's conversations (``only`` those types and lines), and the rows it read
        (for the rate limit)."""
        only = only or ListFilter()
        min_time = 0
        if not self.config.message.roaming:
            min_time = self.clock.now_ms() - self.config.message.compensate_seconds * 1000
        page: db.ConversationList = await self.store.read(
            db.list_conversations, user_id, before, limit, min_time, classifier(user_id), only.types, only.lines
        )
        answer = answer_of(page)
        return answer, page.scanned


def answer_of(page: db.ConversationList) -> dict[str, Any]:
    """The ``get_conversations`` result map (docs/PROTOCOL.md §16.3), keys in this order."""
    return {
        "conversations": [
            {
                "conv": {"type": e.conv.type, "target": e.conv.target, "line": e.conv.line},
                "last_message": e.last.to_wire(),
                "read_to": e.read_to,
                "unread": e.unread,
                "unread_mentions": e.unread_mentions,
            }
            for e in page.entries
        ],
        "more": page.more,
    }
