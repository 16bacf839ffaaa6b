"""Admin endpoints for hosted groups (docs/ADMIN_API.md "Groups")."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from protocol.codes import ErrorCode
from protocol.errors import FieldError

from . import models as m
from .answers import SIGNED_RESPONSES, answer

if TYPE_CHECKING:
    from gateway.domain.groups import GroupService


def routes(groups: GroupService) -> APIRouter:
    """Hosted groups: every operation with every right (only facts are checked), and the reads."""
    from gateway.domain.messaging import read_notify_content
    from storage import groups as db

    api = APIRouter(prefix="/admin/group", responses=SIGNED_RESPONSES)
    store = groups.store

    def notify(content: m.NotifyContentIn | None) -> dict[str, Any] | None:
        if content is None:
            return None
        raw = content.model_dump(exclude_none=True)
        if "data" in raw:
            raw["data"] = base64.b64decode(raw["data"], validate=True)
        return read_notify_content(raw, groups.config)

    async def run(req: m.GroupOp, call: Callable[[str, dict[str, Any] | None], Awaitable[tuple[int, Any]]]) -> dict[str, Any]:
        try:
            content = notify(req.notify_content)
            operator = req.operator
            if operator is None:
                group = await store.read(db.get_group, req.group_id)
                if group is None or group.dismissed:
                    return answer(ErrorCode.NOT_EXIST)
                operator = group.owner
            code, result = await call(operator, content)
        except FieldError as exc:
            return answer(ErrorCode.INVALID_PARAMETER, msg=f"{exc.field}: {exc.problem}")
        return answer(code, result)

    @api.post("/create", response_model=m.Answer[m.GroupCreated])
    async def group_create(req: m.GroupCreate) -> dict[str, Any]:
        """Create a group owned by ``owner`` with its initial members (any type, organization included)."""
        fields = req.model_dump(include={"name", "portrait", "extra", "type", "join_type"})
        try:
            code, result = await groups.create(
                req.owner, req.group_id, fields, req.members, admin=True, notify_content=notify(req.notify_content)
            )
        except FieldError as exc:
            return answer(ErrorCode.INVALID_PARAMETER, msg=f"{exc.field}: {exc.problem}")
        return answer(code, result)

    @api.post("/add", response_model=m.Answer[None])
    async def group_add(req: m.GroupMembersChange) -> dict[str, Any]:
        """Add members (12 if one already is, 240 past group.max_members)."""
        return await run(req, lambda o, n: groups.add(o, req.group_id, req.user_ids, admin=True, notify_content=n))

    @api.post("/kick", response_model=m.Answer[None])
    async def group_kick(req: m.GroupMembersChange) -> dict[str, Any]:
        """Remove members (never the owner: 248); they get the kick notification and nothing after."""
        return await run(req, lambda o, n: groups.kick(o, req.group_id, req.user_ids, admin=True, notify_content=n))

    @api.post("/quit", response_model=m.Answer[None])
    async def group_quit(req: m.GroupQuit) -> dict[str, Any]:
        """Make ``user_id`` leave (the owner cannot: transfer first, 248)."""
        req = req.model_copy(update={"operator": req.user_id})
        return await run(req, lambda o, n: groups.quit(o, req.group_id, admin=True, notify_content=n))

    @api.post("/dismiss", response_model=m.Answer[None])
    async def group_dismiss(req: m.GroupOp) -> dict[str, Any]:
        """Dismiss the group: every member gets the notification; then the group is gone (253)."""
        return await run(req, lambda o, n: groups.dismiss(o, req.group_id, admin=True, notify_content=n))

    @api.post("/transfer", response_model=m.Answer[None])
    async def group_transfer(req: m.GroupTransfer) -> dict[str, Any]:
        """Make a member the owner; the old owner becomes a normal member."""
        return await run(
            req, lambda o, n: groups.transfer(o, req.group_id, req.new_owner, admin=True, notify_content=n)
        )

    @api.post("/modify", response_model=m.Answer[None])
    async def group_modify(req: m.GroupModify) -> dict[str, Any]:
        """Set one field: name, portrait, extra (JSON), mute (0/1), join_type (0-2) or type (0, 2, 3)."""
        return await run(
            req, lambda o, n: groups.modify(o, req.group_id, req.field, req.value, admin=True, notify_content=n)
        )

    @api.post("/set_managers", response_model=m.Answer[None])
    async def group_set_managers(req: m.GroupManagers) -> dict[str, Any]:
        """Make members managers, or normal members again."""
        return await run(
            req,
            lambda o, n: groups.set_managers(o, req.group_id, req.user_ids, req.is_manager, admin=True, notify_content=n),
        )

    @api.post("/silence", response_model=m.Answer[None])
    async def group_silence(req: m.GroupSilence) -> dict[str, Any]:
        """Silence members (they may not send: 248), or lift it."""
        return await run(
            req, lambda o, n: groups.silence(o, req.group_id, req.user_ids, req.silenced, admin=True, notify_content=n)
        )

    @api.post("/allow", response_model=m.Answer[None])
    async def group_allow(req: m.GroupAllow) -> dict[str, Any]:
        """Let members send while the group is muted, or take it back."""
        return await run(
            req, lambda o, n: groups.allow(o, req.group_id, req.user_ids, req.allowed, admin=True, notify_content=n)
        )

    @api.post("/member_alias", response_model=m.Answer[None])
    async def group_member_alias(req: m.GroupMemberAlias) -> dict[str, Any]:
        """Set a member's alias in the group."""
        return await run(
            req, lambda o, n: groups.member_alias(o, req.group_id, req.member, req.alias, admin=True, notify_content=n)
        )

    @api.post("/member_extra", response_model=m.Answer[None])
    async def group_member_extra(req: m.GroupMemberExtra) -> dict[str, Any]:
        """Set a member's extra (JSON text) in the group."""
        return await run(
            req, lambda o, n: groups.member_extra(o, req.group_id, req.member, req.extra, admin=True, notify_content=n)
        )

    @api.post("/get", response_model=m.Answer[m.GroupOut])
    async def group_get(req: m.GroupId) -> dict[str, Any]:
        """The group's info (253 if unknown or dismissed)."""
        code, result = await groups.info(req.group_id)
        return answer(code, result["group"] if result else None)

    @api.post("/members", response_model=m.Answer[m.GroupMembersOut])
    async def group_members(req: m.GroupMembersQuery) -> dict[str, Any]:
        """A page of the member rows changed after ``since_version`` (tombstones: type 4)."""
        code, result = await groups.members(
            None, req.group_id, req.since_version, (req.after_version, req.after_user), req.limit
        )
        return answer(code, result)

    @api.post("/user_groups", response_model=m.Answer[m.UserGroups])
    async def group_user_groups(req: m.UserId) -> dict[str, Any]:
        """The groups a user is a member of, with their versions."""
        return answer(result={"user_id": req.user_id, "groups": await groups.my_groups(req.user_id)})

    @api.post("/common", response_model=m.Answer[m.CommonGroups])
    async def group_common(req: m.CommonGroupsQuery) -> dict[str, Any]:
        """The groups both users are members of."""
        return answer(result={"group_ids": await groups.common(req.user_id, req.other)})

    return api
