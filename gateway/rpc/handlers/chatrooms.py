"""Client methods for chatrooms (conversation type 2); docs/PROTOCOL.md §14 gives each one's shape.

Messages to a room go through ``send_message`` with ``conv.type`` 2 (``handlers/messages.py``). Everything
but a join reads only the service's memory, so those are immediate handlers (no task, answered in order);
a join reads the user's status from storage. On a cluster node, info, members and history are the
room's over every node (the relay's): those answers come from a task of the service (``*_nowait``).
"""

from __future__ import annotations

from typing import Any

from gateway.domain.chatrooms import MAX_HISTORY_PAGE, MAX_MEMBERS_PAGE, ChatroomService
from gateway.domain.messaging import RequestRejected
from gateway.rpc.dispatch import Caller, Reply, method
from gateway.services import Services
from protocol.codec import Fields
from protocol.codes import MESSAGE_ID_MAX, ErrorCode


def _service(services: Services) -> ChatroomService:
    if services.chatrooms is None:
        raise RequestRejected(ErrorCode.NOT_IMPLEMENTED)
    return services.chatrooms


@method("join_chatroom")
async def join_chatroom(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    chatroom_id = params.identifier("chatroom_id")
    return await _service(services).join(caller.user_id, caller.client_id, chatroom_id)


@method("quit_chatroom", immediate=True)
def quit_chatroom(services: Services, caller: Caller, params: Fields, reply: Reply) -> None:
    chatroom_id = params.identifier("chatroom_id")
    _service(services).quit_nowait(caller.user_id, caller.client_id, chatroom_id, reply)


@method("get_chatroom_info", immediate=True)
def get_chatroom_info(services: Services, caller: Caller, params: Fields, reply: Reply) -> None:
    chatroom_id = params.identifier("chatroom_id")
    _service(services).info_nowait(caller.user_id, caller.client_id, chatroom_id, reply)


@method("get_chatroom_members", immediate=True)
def get_chatroom_members(services: Services, caller: Caller, params: Fields, reply: Reply) -> None:
    chatroom_id = params.identifier("chatroom_id")
    offset = params.integer("offset", lo=0, hi=2**31 - 1, default=0)
    count = params.integer("count", lo=1, hi=MAX_MEMBERS_PAGE, default=100)
    _service(services).members_nowait(caller.user_id, caller.client_id, chatroom_id, offset, count, reply)


@method("load_chatroom_history", immediate=True)
def load_chatroom_history(services: Services, caller: Caller, params: Fields, reply: Reply) -> None:
    chatroom_id = params.identifier("chatroom_id")
    before_id = params.integer("before_id", lo=0, hi=MESSAGE_ID_MAX, default=0)
    count = params.integer("count", lo=1, hi=MAX_HISTORY_PAGE, default=20)
    _service(services).history_nowait(caller.user_id, caller.client_id, chatroom_id, before_id, count, reply)
