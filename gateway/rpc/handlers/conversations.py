"""Client methods for conversations (SPEC §5, FAQ §13): read marks, clearing, the list; docs/PROTOCOL.md §16."""

from __future__ import annotations

from typing import Any

from gateway.domain.conversations import (
    LIST_BASE_COST,
    LIST_ROWS_PER_UNIT,
    MAX_CONVERSATIONS_PAGE,
    read_filter,
)
from gateway.domain.messaging import read_conversation
from gateway.rpc.dispatch import Caller, method
from gateway.services import Services
from protocol import codec
from protocol.codec import Fields
from protocol.codes import MESSAGE_ID_MAX, ErrorCode


@method("mark_read")
async def mark_read(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    """{conv, message_id} → {read_to}: the read mark moves forward to message_id (never back)."""
    conv = read_conversation(params)
    up_to = params.integer("message_id", lo=1, hi=MESSAGE_ID_MAX)
    origin = (caller.user_id, caller.client_id)
    return ErrorCode.SUCCESS, await services.conversations.mark_read(caller.user_id, conv, up_to, origin)


@method("clear_conversation")
async def clear_conversation(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    """{conv, message_id} → {deleted}: the conversation's messages up to message_id are deleted for the caller."""
    conv = read_conversation(params)
    up_to = params.integer("message_id", lo=1, hi=MESSAGE_ID_MAX)
    origin = (caller.user_id, caller.client_id)
    return ErrorCode.SUCCESS, await services.conversations.clear(caller.user_id, conv, up_to, origin)


def list_cost(code: int, result: Any) -> float:
    if code != ErrorCode.SUCCESS or not isinstance(result, codec.Packed):
        return 1.0
    return LIST_BASE_COST + result.items / LIST_ROWS_PER_UNIT


@method("get_conversations", cost=list_cost, serial=True)
async def get_conversations(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    """{before?, limit?, types?, lines?} → {conversations: [...], more}: newest last message first."""
    before = params.integer("before", lo=0, hi=MESSAGE_ID_MAX, default=0)
    limit = params.integer("limit", lo=1, hi=MAX_CONVERSATIONS_PAGE, default=50)
    only = read_filter(params)
    answer, scanned = await services.conversations.list(caller.user_id, before, limit, only)
    return ErrorCode.SUCCESS, codec.Packed(codec.pack(answer), scanned)
