"""Admin endpoints for chatrooms (docs/ADMIN_API.md "Chatrooms")."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from protocol.codes import ErrorCode
from storage.records import ChatroomRecord

from . import models as m
from .answers import SIGNED_RESPONSES, answer

if TYPE_CHECKING:
    from gateway.clock import Clock
    from gateway.domain.chatrooms import ChatroomService


def routes(chatrooms: ChatroomService | None, clock: Clock) -> APIRouter:
    """Chatroom records; members and messages are in the gateway's memory only (docs/ARCHITECTURE.md)."""
    api = APIRouter(prefix="/admin", responses=SIGNED_RESPONSES)

    @api.post("/chatroom/create", response_model=m.Answer[m.ChatroomCreated])
    async def chatroom_create(req: m.ChatroomIn) -> dict[str, Any]:
        """Create a chatroom, or update the title, portrait, extra and state of an existing one."""
        if chatrooms is None:
            return answer(ErrorCode.NOT_IMPLEMENTED)
        now = clock.now_ms()
        _, created = await chatrooms.upsert(ChatroomRecord(created_at=now, updated_at=now, **req.model_dump()))
        return answer(result={"chatroom_id": req.chatroom_id, "created": created})

    @api.post("/chatroom/destroy", response_model=m.Answer[None])
    async def chatroom_destroy(req: m.ChatroomId) -> dict[str, Any]:
        """Delete a chatroom; its present members get ``chatroom_quit`` (reason ``destroyed``)."""
        if chatrooms is None:
            return answer(ErrorCode.NOT_IMPLEMENTED)
        return answer(ErrorCode.SUCCESS if await chatrooms.destroy(req.chatroom_id) else ErrorCode.NOT_EXIST)

    @api.post("/chatroom/info", response_model=m.Answer[m.ChatroomOut])
    async def chatroom_info(req: m.ChatroomId) -> dict[str, Any]:
        """A chatroom's record, how many users are in it now, and its delivery counters since start."""
        if chatrooms is None:
            return answer(ErrorCode.NOT_IMPLEMENTED)
        info = await chatrooms.room_info_everywhere(req.chatroom_id)
        stats = chatrooms.room_stats(req.chatroom_id)
        if info is None or stats is None:
            return answer(ErrorCode.NOT_EXIST)
        return answer(result={**info, "stats": dataclasses.asdict(stats)})

    return api
