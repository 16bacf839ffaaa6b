"""Admin endpoints for relations: friends, friend requests, blacklists, settings (docs/ADMIN_API.md "Relations")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from gateway.domain.relations import RelationService
from protocol.codes import ErrorCode
from storage import relations as rel

from . import models as m
from .answers import SIGNED_RESPONSES, answer

if TYPE_CHECKING:
    pass


def routes(relations: RelationService) -> APIRouter:
    """Friends, friend requests, blacklists and settings (SPEC §7, §9); each change pushes heads like a client's."""
    api = APIRouter(prefix="/admin", responses=SIGNED_RESPONSES)
    store = relations.store

    async def exists(*user_ids: str) -> bool:
        return len(await store.get_users(list(dict.fromkeys(user_ids)))) == len(set(user_ids))

    @api.post("/friend/send_request", response_model=m.Answer[None])
    async def friend_send_request(req: m.FriendRequestSend) -> dict[str, Any]:
        """A friend request from user_id to target, with the client's rules (16, 18, 23, 246, 253)."""
        if not await exists(req.user_id):
            return answer(ErrorCode.NOT_EXIST)
        return answer(await relations.send_request(req.user_id, req.target, req.reason, req.extra, None))

    @api.post("/friend/handle_request", response_model=m.Answer[None])
    async def friend_handle_request(req: m.FriendRequestHandle) -> dict[str, Any]:
        """user_id accepts or rejects the pending request from requester (19 expired, 253 none pending)."""
        return answer(await relations.handle_request(req.user_id, req.requester, req.accept, None))

    @api.post("/friend/add", response_model=m.Answer[None])
    async def friend_add(req: m.FriendsAdd) -> dict[str, Any]:
        """Make user_id friends with each of friend_ids at once, both sides, with no request."""
        if not await exists(req.user_id, *req.friend_ids):
            return answer(ErrorCode.NOT_EXIST)
        if req.user_id in req.friend_ids:
            return answer(ErrorCode.INVALID_PARAMETER, msg="friend_ids: a user is not its own friend")
        return answer(await relations.add_friends(req.user_id, req.friend_ids))

    @api.post("/friend/list", response_model=m.Answer[m.FriendList])
    async def friend_list(req: m.UserId) -> dict[str, Any]:
        """A user's friends with its aliases and extras, by friend id."""
        if not relations.hosting:
            return answer(ErrorCode.FUNCTION_DISABLED)
        if not await exists(req.user_id):
            return answer(ErrorCode.NOT_EXIST)
        friends = await store.read(rel.list_friends, req.user_id)
        for friend in friends:
            del friend["deleted"]
        return answer(result={"user_id": req.user_id, "friends": friends})

    @api.post("/friend/delete", response_model=m.Answer[None])
    async def friend_delete(req: m.FriendPair) -> dict[str, Any]:
        """End the friendship, both sides (messaging goes on: FAQ 2)."""
        return answer(await relations.delete_friend(req.user_id, req.friend_id, None))

    @api.post("/friend/set_alias", response_model=m.Answer[None])
    async def friend_set_alias(req: m.FriendSet) -> dict[str, Any]:
        """Set user_id's alias and/or extra of a friend (only user_id's view changes)."""
        if req.alias is None and req.extra is None:
            return answer(ErrorCode.INVALID_PARAMETER, msg="give alias or extra")
        return answer(await relations.set_friend(req.user_id, req.friend_id, None, alias=req.alias, extra=req.extra))

    @api.post("/friend/status", response_model=m.Answer[m.FriendStatus])
    async def friend_status(req: m.FriendPair) -> dict[str, Any]:
        """Are user_id and friend_id friends?"""
        if not relations.hosting:
            return answer(ErrorCode.FUNCTION_DISABLED)
        both = await store.read(_both_friends, req.user_id, req.friend_id)
        return answer(result={"user_id": req.user_id, "friend_id": req.friend_id, "friends": both})

    @api.post("/blacklist/set", response_model=m.Answer[None])
    async def blacklist_set(req: m.BlacklistSet) -> dict[str, Any]:
        """Block or unblock ``target`` for ``user_id`` (sends from target to user then answer 246)."""
        if not await exists(req.user_id):
            return answer(ErrorCode.NOT_EXIST)
        return answer(await relations.set_blacklist(req.user_id, req.target, req.blocked, None))

    async def blacklist(req: m.UserId) -> dict[str, Any]:
        if not relations.hosting:
            return answer(ErrorCode.FUNCTION_DISABLED)
        if not await exists(req.user_id):
            return answer(ErrorCode.NOT_EXIST)
        return answer(result={"user_id": req.user_id, "user_ids": await store.get_blacklist(req.user_id)})

    api.post("/blacklist/get", response_model=m.Answer[m.Blacklist], summary="Blacklist Get")(blacklist)
    api.post(
        "/blacklist/list", response_model=m.Answer[m.Blacklist], summary="Blacklist List",
        description="The user ids a user has blocked, sorted (``blacklist/get`` is the same).",
    )(blacklist)  # fmt: skip

    @api.post("/user/put_setting", response_model=m.Answer[m.SettingVersion])
    async def user_put_setting(req: m.SettingPut) -> dict[str, Any]:
        """Set one of a user's settings ("" removes it); the user's devices are told, like a client's put."""
        problem = relations.setting_problem(req.scope, req.key, req.value)
        if problem is not None:
            return answer(ErrorCode.INVALID_PARAMETER, msg=problem)
        if not await exists(req.user_id):
            return answer(ErrorCode.NOT_EXIST)
        code, result = await relations.put_setting(req.user_id, req.scope, req.key, req.value, None)
        return answer(code, {"user_id": req.user_id, **(result or {})})

    @api.post("/user/get_setting", response_model=m.Answer[m.SettingList])
    async def user_get_setting(req: m.SettingGet) -> dict[str, Any]:
        """A user's settings of one scope, or the one key given (an empty list when unset)."""
        if not await exists(req.user_id):
            return answer(ErrorCode.NOT_EXIST)
        found = await store.read(rel.list_settings, req.user_id, req.scope)
        settings = [
            {k: v for k, v in s.items() if k != "deleted"} for s in found if req.key is None or s["key"] == req.key
        ]
        return answer(result={"user_id": req.user_id, "settings": settings})

    return api


def _both_friends(conn: Any, a: str, b: str) -> bool:
    return rel.are_friends(conn, a, b) and rel.are_friends(conn, b, a)
