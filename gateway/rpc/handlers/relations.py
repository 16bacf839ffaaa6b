"""Client methods for relations (SPEC §6, §7, §9): friend requests, friends, blacklist, settings.

See docs/PROTOCOL.md §12 for each one's params, result and codes. Every write answers when it has
committed; the user's other live devices (and the other user's, when both sides change) get a
``head`` NOTIFY and pull the stream with the matching ``sync_*`` method.
"""

from __future__ import annotations

from typing import Any

from gateway.domain.messaging import check_json
from gateway.domain.relations import MAX_SYNC
from gateway.rpc.dispatch import Caller, method
from gateway.services import Services
from protocol.codec import Fields
from protocol.codes import SERVER_SETTING_SCOPES, ErrorCode, valid_setting_scope
from protocol.errors import FieldError
from storage import relations

VERSION_MAX = 2**63 - 1
TIME_MAX = 2**63 - 1


def _text(params: Fields, key: str, max_bytes: int, *, required: bool = False) -> str:
    """A text field of at most ``max_bytes`` UTF-8 bytes; "" when absent unless ``required``."""
    value = (
        params.text(key, max_len=max_bytes) if required else params.text(key, max_len=max_bytes, default="")
    )
    if len(value) * 4 > max_bytes and len(value.encode()) > max_bytes:
        raise FieldError(params.path(key), f"at most {max_bytes} bytes")
    return value


def _extra(params: Fields, key: str, max_bytes: int, *, required: bool = False) -> str:
    value = _text(params, key, max_bytes, required=required)
    if value:
        check_json(params.path(key), value)
    return value


def _origin(caller: Caller) -> tuple[str, str]:
    return caller.user_id, caller.client_id


# --- friend requests -------------------------------------------------------------------------------


@method("send_friend_request")
async def send_friend_request(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    """{user_id, reason?, extra?} → nil."""
    friend = services.config.friend
    target = params.identifier("user_id")
    reason = _text(params, "reason", friend.max_reason_bytes)
    extra = _extra(params, "extra", friend.max_extra_bytes)
    code = await services.relations.send_request(caller.user_id, target, reason, extra, _origin(caller))
    return code, None


@method("handle_friend_request")
async def handle_friend_request(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    """{user_id: who sent it, accept} → nil."""
    sender = params.identifier("user_id")
    accept = params.boolean("accept")
    return await services.relations.handle_request(caller.user_id, sender, accept, _origin(caller)), None


@method("mark_friend_requests_read")
async def mark_friend_requests_read(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    """{until?: ms, default now} → {count}: received requests made at or before ``until`` become read."""
    until = params.integer("until", lo=0, hi=TIME_MAX, default=None)
    if until is None:
        until = services.clock.now_ms()
    return await services.relations.mark_requests_read(caller.user_id, until, _origin(caller))


@method("get_unread_friend_request_count")
async def get_unread_friend_request_count(
    services: Services, caller: Caller, params: Fields
) -> tuple[int, Any]:
    """{} → {count}: pending received requests not read."""
    return await services.relations.unread_request_count(caller.user_id)


# --- friends ---------------------------------------------------------------------------------------


@method("delete_friend")
async def delete_friend(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    """{user_id} → nil: both sides stop being friends; messaging goes on (FAQ 2)."""
    friend_id = params.identifier("user_id")
    return await services.relations.delete_friend(caller.user_id, friend_id, _origin(caller)), None


@method("set_friend_alias")
async def set_friend_alias(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    """{user_id, alias} → nil: the caller's own name for a friend ("" clears it)."""
    friend_id = params.identifier("user_id")
    alias = _text(params, "alias", services.config.friend.max_alias_bytes, required=True)
    code = await services.relations.set_friend(caller.user_id, friend_id, _origin(caller), alias=alias)
    return code, None


@method("set_friend_extra")
async def set_friend_extra(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    """{user_id, extra} → nil: the caller's own extra (JSON text or "") of a friend."""
    friend_id = params.identifier("user_id")
    extra = _extra(params, "extra", services.config.friend.max_extra_bytes, required=True)
    code = await services.relations.set_friend(caller.user_id, friend_id, _origin(caller), extra=extra)
    return code, None


# --- blacklist -------------------------------------------------------------------------------------


@method("set_blacklist")
async def set_blacklist(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    """{user_id, blocked} → nil."""
    target = params.identifier("user_id")
    blocked = params.boolean("blocked")
    return await services.relations.set_blacklist(caller.user_id, target, blocked, _origin(caller)), None


@method("get_blacklist")
async def get_blacklist(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    """{} → {user_ids}: the whole list, sorted (``sync_blacklist`` is the paged, versioned way)."""
    if not services.relations.hosting:
        return ErrorCode.FUNCTION_DISABLED, None
    return ErrorCode.SUCCESS, {"user_ids": await services.store.get_blacklist(caller.user_id)}


# --- settings --------------------------------------------------------------------------------------


def _scope_and_key(services: Services, params: Fields) -> tuple[int, str]:
    scope = params.integer("scope", lo=0, hi=2**31 - 1)
    if not valid_setting_scope(scope):
        raise FieldError("scope", "unknown scope (1, 3, 6, 8, 9, 11, 14, 17, 19, or 1000 and above)")
    key = _text(params, "key", services.config.setting.max_key_bytes, required=True)
    return scope, key


@method("put_setting")
async def put_setting(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    """{scope, key, value} → {version}: "" removes the setting."""
    scope, key = _scope_and_key(services, params)
    if scope in SERVER_SETTING_SCOPES:
        raise FieldError("scope", "8 and 9 are written by the server (channels)")
    value = _text(params, "value", services.config.setting.max_value_bytes, required=True)
    return await services.relations.put_setting(caller.user_id, scope, key, value, _origin(caller))


@method("get_setting")
async def get_setting(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    """{scope, key} → the setting {scope, key, value, updated_at, version, deleted}, or 253."""
    scope, key = _scope_and_key(services, params)
    found = await services.store.read(relations.get_setting, caller.user_id, scope, key)
    return (ErrorCode.SUCCESS, found) if found is not None else (ErrorCode.NOT_EXIST, None)


# --- sync ------------------------------------------------------------------------------------------


def _sync(stream: str) -> Any:
    async def handler(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
        after = params.integer("after", lo=0, hi=VERSION_MAX, default=0)
        limit = params.integer("limit", lo=1, hi=MAX_SYNC, default=MAX_SYNC)
        full_sync_head = params.integer("full_sync_head", lo=0, hi=VERSION_MAX, default=0)
        return await services.relations.sync(caller.user_id, stream, after, limit, full_sync_head)

    handler.__doc__ = (
        f"{{after?, limit?, full_sync_head?}} → {{items, head, reset?}}: the {stream} stream's changes after"
        " ``after`` (from 0 with ``reset`` when ``after`` is below the purge horizon)."
    )
    return handler


# Module attributes, not a loop: the method registry takes the marked functions a module defines by name
# (gateway.rpc.dispatch.MethodRegistry); handlers made in a loop and bound to nothing would be skipped.
sync_friends = method("sync_friends")(_sync(relations.FRIEND))
sync_friend_requests = method("sync_friend_requests")(_sync(relations.FRIEND_REQUEST))
sync_blacklist = method("sync_blacklist")(_sync(relations.BLACKLIST))
sync_settings = method("sync_settings")(_sync(relations.SETTING))
