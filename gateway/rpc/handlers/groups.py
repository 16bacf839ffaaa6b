"""Client methods for hosted groups (SPEC §8); docs/PROTOCOL.md §13 gives each one's shape.

Every operation answers once its change and its notification message have
committed; the notification is pushed to the members it concerns (the caller's
devices included). Rules and codes: ``gateway.domain.groups``.
"""

from __future__ import annotations

from typing import Any

from gateway.domain.groups import GroupService
from gateway.domain.messaging import read_notify_content
from gateway.rpc.dispatch import Caller, method
from gateway.services import Services
from protocol.codec import Fields
from protocol.codes import ErrorCode

MAX_IDS = 2000
MAX_MEMBERS_PAGE = 500


def _notify(services: Services, params: Fields) -> dict[str, Any] | None:
    """``notify_content``: a content map replacing the default notification's (its type is kept)."""
    if params.raw.get("notify_content") is None:
        return None
    return read_notify_content(dict(params.mapping("notify_content").raw), services.config)


def _svc(services: Services) -> GroupService:
    return services.group_service


@method("create_group")
async def create_group(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    fields: dict[str, Any] = {}
    for name in ("name", "portrait", "extra"):
        if params.raw.get(name) is not None:
            fields[name] = params.raw[name]
    for name in ("type", "join_type"):
        if params.raw.get(name) is not None:
            fields[name] = params.raw[name]
    members = params.identifier_list("members", max_items=MAX_IDS, default=[])
    group_id = params.identifier("group_id", default=None)
    return await _svc(services).create(
        caller.user_id, group_id, fields, members, notify_content=_notify(services, params)
    )


@method("add_group_members")
async def add_group_members(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    return await _svc(services).add(
        caller.user_id, params.identifier("group_id"), params.identifier_list("user_ids", max_items=MAX_IDS),
        notify_content=_notify(services, params),
    )  # fmt: skip


@method("kick_group_members")
async def kick_group_members(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    return await _svc(services).kick(
        caller.user_id, params.identifier("group_id"), params.identifier_list("user_ids", max_items=MAX_IDS),
        notify_content=_notify(services, params),
    )  # fmt: skip


@method("quit_group")
async def quit_group(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    return await _svc(services).quit(
        caller.user_id, params.identifier("group_id"), notify_content=_notify(services, params)
    )


@method("dismiss_group")
async def dismiss_group(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    return await _svc(services).dismiss(
        caller.user_id, params.identifier("group_id"), notify_content=_notify(services, params)
    )


@method("transfer_group")
async def transfer_group(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    return await _svc(services).transfer(
        caller.user_id, params.identifier("group_id"), params.identifier("new_owner"),
        notify_content=_notify(services, params),
    )  # fmt: skip


@method("modify_group_info")
async def modify_group_info(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    if "value" not in params:
        params.text("value")  # raises: missing
    return await _svc(services).modify(
        caller.user_id, params.identifier("group_id"), params.text("field", max_len=32), params.raw["value"],
        notify_content=_notify(services, params),
    )  # fmt: skip


@method("set_group_managers")
async def set_group_managers(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    return await _svc(services).set_managers(
        caller.user_id, params.identifier("group_id"), params.identifier_list("user_ids", max_items=MAX_IDS),
        params.boolean("is_manager"), notify_content=_notify(services, params),
    )  # fmt: skip


@method("silence_group_members")
async def silence_group_members(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    return await _svc(services).silence(
        caller.user_id, params.identifier("group_id"), params.identifier_list("user_ids", max_items=MAX_IDS),
        params.boolean("silenced"), notify_content=_notify(services, params),
    )  # fmt: skip


@method("allow_group_members")
async def allow_group_members(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    return await _svc(services).allow(
        caller.user_id, params.identifier("group_id"), params.identifier_list("user_ids", max_items=MAX_IDS),
        params.boolean("allowed"), notify_content=_notify(services, params),
    )  # fmt: skip


@method("set_group_member_alias")
async def set_group_member_alias(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    return await _svc(services).member_alias(
        caller.user_id, params.identifier("group_id"), params.identifier("member", default=caller.user_id),
        params.text("alias", max_len=256), notify_content=_notify(services, params),
    )  # fmt: skip


@method("set_group_member_extra")
async def set_group_member_extra(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    return await _svc(services).member_extra(
        caller.user_id, params.identifier("group_id"), params.identifier("member", default=caller.user_id),
        params.text("extra", max_len=services.config.message.max_text_bytes),
        notify_content=_notify(services, params),
    )  # fmt: skip


@method("get_group_info")
async def get_group_info(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    return await _svc(services).info(
        params.identifier("group_id"), params.integer("info_version", lo=0, hi=2**53, default=0)
    )


@method("get_group_members")
async def get_group_members(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    return await _svc(services).members(
        caller.user_id,
        params.identifier("group_id"),
        params.integer("since_version", lo=0, hi=2**53, default=0),
        (params.integer("after_version", lo=0, hi=2**53, default=0), params.text("after_user", max_len=64, default="")),
        params.integer("limit", lo=1, hi=MAX_MEMBERS_PAGE, default=200),
    )


@method("get_my_groups")
async def get_my_groups(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    return ErrorCode.SUCCESS, {"groups": await _svc(services).my_groups(caller.user_id)}


@method("get_common_groups")
async def get_common_groups(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    other = params.identifier("user_id")
    return ErrorCode.SUCCESS, {"group_ids": await _svc(services).common(caller.user_id, other)}
