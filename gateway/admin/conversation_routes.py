"""Admin endpoints for conversations: read marks, clearing, the list (docs/ADMIN_API.md "Conversations")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from gateway.domain.conversations import ConversationService, read_filter
from protocol.codec import Fields
from protocol.codes import ConversationType, ErrorCode, valid_id
from protocol.errors import FieldError
from storage.messages import Conversation

from . import models as m
from .answers import SIGNED_RESPONSES, answer

if TYPE_CHECKING:
    from storage import Store


def routes(conversations: ConversationService, store: Store) -> APIRouter:
    """Read marks, clearing and the list, as the user's own devices would (each change pushes heads)."""
    api = APIRouter(prefix="/admin/conversation", responses=SIGNED_RESPONSES)

    def conv_of(conv: m.ConversationIn) -> Conversation | None:
        if conv.type not in ConversationType._value2member_map_ or not valid_id(conv.target) or conv.line < 0:
            return None
        return Conversation(conv.type, conv.target, conv.line)

    @api.post("/mark_read", response_model=m.Answer[m.ReadMark])
    async def conversation_mark_read(req: m.ConversationMark) -> dict[str, Any]:
        """Move the user's read mark of a conversation forward (it never moves back); their devices sync it."""
        conv = conv_of(req.conv)
        if conv is None:
            return answer(ErrorCode.INVALID_PARAMETER, msg="conv: unknown type or bad target")
        if not await store.get_users([req.user_id]):
            return answer(ErrorCode.NOT_EXIST)
        mark = await conversations.mark_read(req.user_id, conv, int(req.message_id), None)
        return answer(result={"read_to": str(mark["read_to"])})

    @api.post("/clear", response_model=m.Answer[m.ConversationCleared])
    async def conversation_clear(req: m.ConversationMark) -> dict[str, Any]:
        """Delete the user's messages of a conversation up to message_id, for good, on every device."""
        conv = conv_of(req.conv)
        if conv is None:
            return answer(ErrorCode.INVALID_PARAMETER, msg="conv: unknown type or bad target")
        if not await store.get_users([req.user_id]):
            return answer(ErrorCode.NOT_EXIST)
        return answer(result=await conversations.clear(req.user_id, conv, int(req.message_id), None))

    @api.post("/list", response_model=m.Answer[m.ConversationList])
    async def conversation_list(req: m.ConversationListQuery) -> dict[str, Any]:
        """The user's conversations, newest last message first, with read marks and unread counts; ``types`` and
        ``lines`` keep only those (FAQ §13: the list without channels, then the channels)."""
        try:
            only = read_filter(Fields({"types": req.types, "lines": req.lines}))
        except FieldError as exc:
            return answer(ErrorCode.INVALID_PARAMETER, msg=f"{exc.field}: {exc.problem}")
        if not await store.get_users([req.user_id]):
            return answer(ErrorCode.NOT_EXIST)
        page, _ = await conversations.list(req.user_id, int(req.before or 0), req.limit, only)
        rows = [
            {
                "conv": row["conv"],
                "last_message_id": str(row["last_message"]["message_id"]),
                "last_from": row["last_message"]["from"],
                "last_server_time": row["last_message"]["server_time"],
                "last_content_type": row["last_message"]["content"].get("type", 0),
                "read_to": str(row["read_to"]),
                "unread": row["unread"],
                "unread_mentions": row["unread_mentions"],
            }
            for row in page["conversations"]
        ]
        return answer(result={"user_id": req.user_id, "conversations": rows, "more": page["more"]})

    return api
