"""Client methods for messages (SPEC §5); see docs/PROTOCOL.md "Methods" for each one's shape."""

from __future__ import annotations

from typing import Any

from gateway.domain import search
from gateway.domain.messaging import (
    CHANNEL,
    CHATROOM,
    GROUP,
    MAX_HISTORY,
    MAX_PULL,
    PulledPage,
    RequestRejected,
    read_content,
    read_conversation,
)
from gateway.rpc.dispatch import Caller, Reply, method
from gateway.services import Services
from protocol.codec import Fields
from protocol.codes import MESSAGE_ID_MAX, ErrorCode


@method("send_message", immediate=True)
def send_message(services: Services, caller: Caller, params: Fields, reply: Reply) -> None:
    """Acknowledged with {message_id, server_time, seq} once committed; pushed to the recipients."""
    msg = services.messages.outgoing(caller.user_id, params)
    if msg.conv.type == CHATROOM:  # never stored: answered at once (a cluster: once relayed), pushed to the members
        if services.chatrooms is None:
            raise RequestRejected(ErrorCode.NOT_IMPLEMENTED)
        services.chatrooms.send_nowait(msg, caller.client_id, reply)
        return
    if (msg.conv.type == GROUP or msg.conv.type == CHANNEL) and services.messages.fanout_backlogged:
        raise RequestRejected(ErrorCode.OVER_FREQUENCY)  # not stored; the SDK sends it again later
    services.messages.send_nowait(msg, reply, caller.client_id)


#: A pull is charged ``PULL_BASE_COST``, plus one unit per ``PULL_MESSAGES_PER_UNIT`` messages it returned that
#: this connection had not been answered before, plus one unit per ``PULL_REREADS_PER_UNIT`` it had (a seq at or
#: below the highest one pull has answered on this connection). Catching up stays cheap: a pull that finds
#: nothing new costs a tenth of a request, a first full 500-message page 5.1; at the default limit (100 per 5 s)
#: a connection catches up ~10,000 messages per 5 s. Looping over what it already has is not: the same page again
#: costs 50.1, two per window. Past the limit the connection gets 250 and is not read until its window ends.
PULL_BASE_COST = 0.1
PULL_MESSAGES_PER_UNIT = 100
PULL_REREADS_PER_UNIT = 10


def pull_cost(code: int, result: Any) -> float:
    if code != ErrorCode.SUCCESS or not isinstance(result, PulledPage):
        return 1.0
    fresh = result.items - result.rereads
    return PULL_BASE_COST + fresh / PULL_MESSAGES_PER_UNIT + result.rereads / PULL_REREADS_PER_UNIT


@method("pull", cost=pull_cost, serial=True)
async def pull(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    after_seq = params.integer("after_seq", lo=0, hi=MESSAGE_ID_MAX)
    limit = params.integer("limit", lo=1, hi=MAX_PULL, default=100)
    page = await services.messages.pull(caller.user_id, after_seq, limit)
    # Pulls run one at a time per connection (serial), so the mark moves in order. Seqs of one inbox are
    # dense save for deleted messages, so the overlap with what was answered before is at most this.
    mark = caller.pulled
    page.rereads = min(page.items, max(0, mark.seq - after_seq))
    mark.seq = max(mark.seq, page.last_seq)
    return ErrorCode.SUCCESS, page


@method("delete_message")
async def delete_message(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    message_id = params.integer("message_id", lo=1, hi=MESSAGE_ID_MAX)
    return await services.messages.delete(caller.user_id, message_id, caller.client_id), None


@method("recall_message")
async def recall_message(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    message_id = params.integer("message_id", lo=1, hi=MESSAGE_ID_MAX)
    return await services.messages.recall(caller.user_id, message_id, caller.client_id)


@method("update_message")
async def update_message(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    """Replace one of the caller's messages' content, for the types ``message.client_update_types`` lists."""
    message_id = params.integer("message_id", lo=1, hi=MESSAGE_ID_MAX)
    content = read_content(params, services.config)
    return await services.messages.update(caller.user_id, message_id, content, caller.client_id)


@method("load_remote_history")
async def load_remote_history(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    conv = read_conversation(params)
    before_id = params.integer("before_id", lo=0, hi=MESSAGE_ID_MAX, default=0)
    count = params.integer("count", lo=1, hi=MAX_HISTORY, default=20)
    return await services.messages.remote_history(caller.user_id, conv, before_id, count)



@method("search_messages")
async def search_messages(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    """The caller's messages that hold a keyword, newest first (docs/PROTOCOL.md "search_messages")."""
    if not services.config.message.search:
        return ErrorCode.FUNCTION_DISABLED, None
    query = search.read_search(params, caller.user_id)
    return ErrorCode.SUCCESS, search.client_answer(await search.search(services.store, query))
