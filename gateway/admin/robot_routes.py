"""Robot endpoints (docs/ADMIN_API.md "Robots"): the admin API's ``/admin/robot/...`` and
``/admin/message/update``, and the robot API, ``/robot/...``, where the caller is the robot whose secret
signed the request (``auth.SignatureMiddleware`` puts its id in the scope). A robot has a normal user's
rights: every rule is the one a client meets (``MessageService``, ``GroupService`` with the robot as
operator), refusals answer the same codes (248 for what it may not do)."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request

from gateway.domain.messaging import RequestRejected
from protocol.codec import Fields
from protocol.codes import ErrorCode
from protocol.errors import FieldError

from . import models as m
from . import robot_models as rm
from .answers import SIGNED_RESPONSES, answer
from .auth import ROBOT_SCOPE_KEY

if TYPE_CHECKING:
    from gateway.domain.groups import GroupService
    from gateway.domain.robots import RobotService

_ROBOT_RESPONSES: dict[int | str, dict[str, Any]] = {
    **SIGNED_RESPONSES,
    401: {"model": m.Answer[None], "description": "no X-Robot-Id, no such robot, or not signed with its secret (242)"},
}


def _content(content: m.ContentIn, robots: RobotService) -> dict[str, Any]:
    """A ContentIn as the client protocol's checked content map (FieldError: 251)."""
    from gateway.domain.messaging import read_content

    raw = content.model_dump(exclude_none=True)
    if "data" in raw:
        raw["data"] = base64.b64decode(raw["data"], validate=True)
    return read_content(Fields({"content": raw}), robots.config)


def _failed(exc: FieldError) -> dict[str, Any]:
    return answer(ErrorCode.INVALID_PARAMETER, msg=f"{exc.field}: {exc.problem}")


def _ack(code: int, ack: Any) -> dict[str, Any]:
    if code != ErrorCode.SUCCESS or not isinstance(ack, dict):
        return answer(code, msg=ack if isinstance(ack, str) else None)
    return answer(result={**ack, "message_id": str(ack["message_id"])})


def admin_routes(robots: RobotService) -> APIRouter:
    """``/admin/robot/...`` and ``/admin/message/update``: every right (only facts are checked)."""
    api = APIRouter(prefix="/admin", responses=SIGNED_RESPONSES)

    @api.post("/robot/create", response_model=m.Answer[rm.RobotSecret])
    async def robot_create(req: rm.RobotCreate) -> dict[str, Any]:
        """Create a robot (a user of type robot) owned by ``owner``; the answer shows its secret, once."""
        info = req.model_dump(include={"name", "display_name", "portrait"})
        try:
            code, result = await robots.create(req.owner, req.robot_id, req.secret, req.callback, req.robot_extra, info)
        except FieldError as exc:
            return _failed(exc)
        if isinstance(result, str):
            return answer(code, msg=result)
        return answer(code, result)

    @api.post("/robot/update", response_model=m.Answer[rm.RobotSecret])
    async def robot_update(req: rm.RobotUpdate) -> dict[str, Any]:
        """Change the given fields; a new secret (given or rotated) is in force at once and shown once."""
        fields = {k: getattr(req, k) for k in ("owner", "callback", "robot_extra", "secret") if getattr(req, k) is not None}
        try:
            code, result = await robots.update(req.robot_id, fields, req.rotate_secret)
        except FieldError as exc:
            return _failed(exc)
        return answer(code, result)

    @api.post("/robot/destroy", response_model=m.Answer[None])
    async def robot_destroy(req: rm.RobotId) -> dict[str, Any]:
        """End the robot's API access at once and forbid its user (the user row stays, for its messages)."""
        return answer(await robots.destroy(req.robot_id))

    @api.post("/robot/info", response_model=m.Answer[rm.RobotOut])
    async def robot_info(req: rm.RobotId) -> dict[str, Any]:
        """A robot: owner, callback URL, robot_extra (never the secret)."""
        info = await robots.info(req.robot_id)
        return answer(ErrorCode.NOT_EXIST) if info is None else answer(result=info)

    @api.post("/robot/list", response_model=m.Answer[rm.RobotList])
    async def robot_list(req: rm.RobotOwner) -> dict[str, Any]:
        """The robots a user owns, by id."""
        return answer(result={"owner": req.owner, "robots": await robots.of_owner(req.owner)})

    @api.post("/message/update", response_model=m.Answer[rm.Updated])
    async def message_update(req: rm.MessageUpdate) -> dict[str, Any]:
        """Replace a message's content for everyone who has it (any message, any type; 253 unknown or recalled)."""
        try:
            content = _content(req.content, robots)
        except FieldError as exc:
            return _failed(exc)
        code, result = await robots.messages.update(
            None, int(req.message_id), content, None, distribute=req.distribute
        )
        if code != ErrorCode.SUCCESS:
            return answer(code)
        return answer(result={"message_id": req.message_id, "notice_id": str(result["message_id"])})

    return api


def robot_api(robots: RobotService, groups: GroupService | None) -> APIRouter:
    """``/robot/...``: the robot acts as itself, with a normal user's rights."""
    api = APIRouter(prefix="/robot", responses=_ROBOT_RESPONSES)
    messages = robots.messages
    store = robots.store

    def me(request: Request) -> str:
        return str(request.scope[ROBOT_SCOPE_KEY])

    @api.post("/message/send", response_model=m.Answer[m.MessageAck])
    async def robot_send(req: rm.RobotSend, request: Request) -> dict[str, Any]:
        """Send as the robot: private, or to a group or channel it belongs to (a client's rules)."""
        params = m.MessageSend(sender=me(request), **req.model_dump(exclude_none=True)).params()
        try:
            code, ack = await robots.send(me(request), params)
        except FieldError as exc:
            return _failed(exc)
        except RequestRejected as exc:
            return answer(exc.code)
        return _ack(code, ack)

    @api.post("/message/reply", response_model=m.Answer[m.MessageAck])
    async def robot_reply(req: rm.RobotReply, request: Request) -> dict[str, Any]:
        """Reply to a message the robot holds: into its conversation, or (``to_sender_only``) to its sender."""
        content = req.content.model_dump(exclude_none=True)
        code, ack = await robots.reply(me(request), int(req.message_id), content, req.to_sender_only, req.client_msg_id)
        return _ack(code, ack)

    @api.post("/message/recall", response_model=m.Answer[m.Recalled])
    async def robot_recall(req: rm.RobotMessageId, request: Request) -> dict[str, Any]:
        """Recall: its own message within message.recall_seconds, or another's where it owns or manages the group."""
        code, result = await messages.recall(me(request), int(req.message_id), None)
        if code != ErrorCode.SUCCESS:
            return answer(code)
        return answer(result={"message_id": req.message_id, "notice_id": str(result["message_id"])})

    @api.post("/message/update", response_model=m.Answer[rm.Updated])
    async def robot_update_message(req: rm.RobotUpdateMessage, request: Request) -> dict[str, Any]:
        """Replace the content of one of its own messages for everyone who has it (248 for another's)."""
        try:
            content = _content(req.content, robots)
        except FieldError as exc:
            return _failed(exc)
        code, result = await messages.update(me(request), int(req.message_id), content, None, any_type=True)
        if code != ErrorCode.SUCCESS:
            return answer(code)
        return answer(result={"message_id": req.message_id, "notice_id": str(result["message_id"])})

    @api.post("/user_info", response_model=m.Answer[dict[str, Any]])
    async def robot_user_info(req: rm.RobotUserInfo) -> dict[str, Any]:
        """Users' public info, as a client sees another user's (``type`` 1 marks a robot)."""
        public = ("user_id", *robots.config.user.public_field_names, "updated_at")
        users = []
        for record in await store.get_users(list(dict.fromkeys(req.user_ids))):
            entry = {f: getattr(record, f) for f in public}
            if record.type:
                entry["type"] = record.type
            users.append(entry)
        return answer(result={"users": users})

    @api.post("/profile", response_model=m.Answer[dict[str, Any]])
    async def robot_profile(request: Request) -> dict[str, Any]:
        """The robot's own user info and robot record (never its secret)."""
        robot_id = me(request)
        user = await store.get_user(robot_id)
        info = await robots.info(robot_id)
        if user is None or info is None:
            return answer(ErrorCode.NOT_EXIST)
        return answer(result={**{name: getattr(user, name) for name in m.UserOut.model_fields}, **info})

    @api.post("/update_profile", response_model=m.Answer[None])
    async def robot_update_profile(req: rm.RobotProfileUpdate, request: Request) -> dict[str, Any]:
        """Change the given fields of the robot's own user info."""
        fields = {name: getattr(req, name) for name in req.model_fields_set if getattr(req, name) is not None}
        if not fields:
            return answer(ErrorCode.INVALID_PARAMETER, msg="no field to update")
        ok = await store.update_user(me(request), robots.clock.now_ms(), **fields)
        return answer(ErrorCode.SUCCESS if ok else ErrorCode.NOT_EXIST)

    @api.post("/set_callback", response_model=m.Answer[None])
    async def robot_set_callback(req: rm.RobotCallback, request: Request) -> dict[str, Any]:
        """Set the callback URL (only hosts in callback.robot_hosts are ever called)."""
        try:
            return answer(await robots.set_callback(me(request), req.url))
        except FieldError as exc:
            return _failed(exc)

    @api.post("/get_callback", response_model=m.Answer[rm.RobotCallbackOut])
    async def robot_get_callback(request: Request) -> dict[str, Any]:
        """The callback URL ("" for none)."""
        robot = robots.robots.get(me(request))
        return answer(ErrorCode.NOT_EXIST) if robot is None else answer(result={"url": robot.callback})

    @api.post("/delete_callback", response_model=m.Answer[None])
    async def robot_delete_callback(request: Request) -> dict[str, Any]:
        """Remove the callback URL: messages are no longer posted."""
        return answer(await robots.set_callback(me(request), ""))

    if groups is None:
        return api

    async def group_call(call: Any) -> dict[str, Any]:
        try:
            code, result = await call
        except FieldError as exc:
            return _failed(exc)
        return answer(code, result)

    @api.post("/group/create", response_model=m.Answer[m.GroupCreated])
    async def robot_group_create(req: rm.RobotGroupCreate, request: Request) -> dict[str, Any]:
        """Create a group the robot owns, with its initial members (§13's rules: no organization, 248)."""
        fields = req.model_dump(include={"name", "portrait", "extra", "type", "join_type"})
        return await group_call(groups.create(me(request), req.group_id, fields, req.members))

    @api.post("/group/add", response_model=m.Answer[None])
    async def robot_group_add(req: rm.RobotGroupMembers, request: Request) -> dict[str, Any]:
        """Add members, as a member of the group may by its join_type (248 otherwise)."""
        return await group_call(groups.add(me(request), req.group_id, req.user_ids))

    @api.post("/group/kick", response_model=m.Answer[None])
    async def robot_group_kick(req: rm.RobotGroupMembers, request: Request) -> dict[str, Any]:
        """Remove members: the robot must own or manage the group (248)."""
        return await group_call(groups.kick(me(request), req.group_id, req.user_ids))

    @api.post("/group/quit", response_model=m.Answer[None])
    async def robot_group_quit(req: rm.RobotGroupId, request: Request) -> dict[str, Any]:
        """Leave the group (an owner cannot: 248)."""
        return await group_call(groups.quit(me(request), req.group_id))

    @api.post("/group/info", response_model=m.Answer[dict[str, Any]])
    async def robot_group_info(req: rm.RobotGroupId) -> dict[str, Any]:
        """The group's info, as get_group_info gives it."""
        return await group_call(groups.info(req.group_id))

    @api.post("/group/members", response_model=m.Answer[dict[str, Any]])
    async def robot_group_members(req: rm.RobotGroupMembersQuery, request: Request) -> dict[str, Any]:
        """A page of members, for a current member (9 otherwise), as get_group_members gives it."""
        return await group_call(
            groups.members(me(request), req.group_id, req.since_version, (req.after_version, req.after_user), req.limit)
        )

    return api
