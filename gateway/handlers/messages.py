"""Client methods for messages (SPEC §5); see docs/PROTOCOL.md "Methods" for each one's shape."""

from __future__ import annotations

from typing import Any

from gateway.dispatch import Caller, Reply, method
from gateway.messaging import MAX_HISTORY, MAX_PULL, read_conversation
from gateway.services import Services
from protocol.codec import Fields, Packed
from protocol.codes import ErrorCode

MESSAGE_ID_MAX = 2**63 - 1


@method("send_message", immediate=True)
def send_message(services: Services, caller: Caller, params: Fields, reply: Reply) -> None:
    """Acknowledged with {message_id, server_time, seq} once committed; pushed to the recipients."""
    msg = services.messages.outgoing(caller.user_id, params)
    services.messages.send_nowait(msg, reply, caller.client_id)


#: A pull is charged this much, plus one unit per ``PULL_MESSAGES_PER_UNIT`` messages it returned: a pull that
#: finds nothing new costs a tenth of a request, a full 500-message page five. At the default limit (100 per
#: 5 s) a connection can pull ~10,000 messages per 5 s; past that it gets 250 and the SDK waits (docs/PROTOCOL.md).
PULL_BASE_COST = 0.1
PULL_MESSAGES_PER_UNIT = 100


def pull_cost(code: int, result: Any) -> float:
    if code != ErrorCode.SUCCESS or not isinstance(result, Packed):
        return 1.0
    return PULL_BASE_COST + result.items / PULL_MESSAGES_PER_UNIT


@method("pull", cost=pull_cost, serial=True)
async def pull(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    after_seq = params.integer("after_seq", lo=0, hi=MESSAGE_ID_MAX)
    limit = params.integer("limit", lo=1, hi=MAX_PULL, default=100)
    return ErrorCode.SUCCESS, await services.messages.pull(caller.user_id, after_seq, limit)


@method("delete_message")
async def delete_message(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    message_id = params.integer("message_id", lo=1, hi=MESSAGE_ID_MAX)
    return await services.messages.delete(caller.user_id, message_id, caller.client_id), None


@method("recall_message")
async def recall_message(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    message_id = params.integer("message_id", lo=1, hi=MESSAGE_ID_MAX)
    return await services.messages.recall(caller.user_id, message_id, caller.client_id)


@method("load_remote_history")
async def load_remote_history(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    conv = read_conversation(params)
    before_id = params.integer("before_id", lo=0, hi=MESSAGE_ID_MAX, default=0)
    count = params.integer("count", lo=1, hi=MAX_HISTORY, default=20)
    return await services.messages.remote_history(caller.user_id, conv, before_id, count)


@method("set_blacklist")
async def set_blacklist(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    target = params.identifier("user_id")
    blocked = params.boolean("blocked")
    await services.store.set_blacklist(caller.user_id, target, blocked, services.clock.now_ms())
    return ErrorCode.SUCCESS, None


@method("get_blacklist")
async def get_blacklist(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    return ErrorCode.SUCCESS, {"user_ids": await services.store.get_blacklist(caller.user_id)}
