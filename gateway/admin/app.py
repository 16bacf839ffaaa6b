"""The admin HTTP API (SPEC §10): a FastAPI app behind a signature check, served by Hypercorn on trio.

Every endpoint is ``POST /admin/<subject>/<action>`` with a JSON body and
answers HTTP 200 ``{"code", "msg", "result"}``. Only authentication failures
change the HTTP status (401, see ``auth``). The API reference for app-server
developers is docs/ADMIN_API.md; the generated schema is at /openapi.json.

Nothing here logs request bodies or answers: they carry tokens.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from gateway.conversations import ConversationService
from gateway.messaging import RequestRejected
from gateway.relations import RelationService
from protocol.codec import Fields
from protocol.codes import ConversationType, ErrorCode, valid_id
from protocol.connection import encode_notify_body
from protocol.errors import FieldError
from storage import relations as rel
from storage.messages import Conversation
from storage.records import ChatroomRecord, UserRecord

from . import models as m
from .auth import NonceCache, SignatureMiddleware

if TYPE_CHECKING:

    from gateway.channels import ChannelService
    from gateway.chatrooms import ChatroomService
    from gateway.clock import Clock
    from gateway.config import Config
    from gateway.groups import GroupService
    from gateway.messaging import MessageService
    from gateway.router import Router
    from gateway.services import Services
    from gateway.sessions import SessionService
    from storage import Store

log = logging.getLogger("gateway.admin")

HEALTH_PATH = "/admin/health"
METRICS_PATH = "/metrics"
#: Probes and the Prometheus scrape are unsigned (they carry no user data); everything else is signed.
UNSIGNED_PATHS = frozenset(
    {HEALTH_PATH, "/health", METRICS_PATH, "/openapi.json", "/docs", "/docs/oauth2-redirect"}
)
#: How long /health waits for a storage write before it calls storage not writable.
HEALTH_WRITE_TIMEOUT_SECONDS = 2.0


def answer(code: int = ErrorCode.SUCCESS, result: Any = None, msg: str | None = None) -> dict[str, Any]:
    """The body of every answer; ``msg`` defaults to the code's name ("not exist")."""
    if msg is None:
        msg = ErrorCode(code).name.lower().replace("_", " ")
    return {"code": int(code), "msg": msg, "result": result if code == ErrorCode.SUCCESS else None}


def create_admin_app(
    *,
    config: Config,
    store: Store,
    sessions: SessionService,
    router: Router,
    clock: Clock,
    messages: MessageService,
    relations: RelationService | None = None,
    groups: GroupService | None = None,
    chatrooms: ChatroomService | None = None,
    conversations: ConversationService | None = None,
    channels: ChannelService | None = None,
    services: Services | None = None,
) -> FastAPI:
    """Build the admin app, wrapped in its signature check.

    Args:
        config: Gives the signing key and the timestamp window.
        store: Users and sessions.
        sessions: The session rules (tokens, kicks, blocking).
        router: Tells which sessions have a live connection.
        clock: Wall time for signatures and timestamps.
        messages: Sending, recalling and deleting messages (and the pushes that follow).
        relations: Friends, friend requests, blacklists and settings (and their head pushes);
            built from the others when not given.
        groups: Hosted groups (``/admin/group/...``); without it those endpoints are absent.
        chatrooms: Chatroom records and who is in them (None: the chatroom endpoints answer 254).
        conversations: Read marks, clearing and the list (``/admin/conversation/...``); built from
            the others when not given.
        channels: Channels (``/admin/channel/...``); without it those endpoints are absent.
        services: Everything, for ``/metrics`` (served only when given).
    """
    app = FastAPI(
        title="Ember admin API",
        version="1",
        description="Signed JSON API for app servers. See docs/ADMIN_API.md for signing.",
        redoc_url=None,
        # Every request is signed, so the CSRF guard this gives browsers is moot, and
        # app servers (curl) often omit Content-Type: read any body as JSON.
        strict_content_type=False,
    )
    app.include_router(_routes(store, sessions, router, clock, chatrooms))
    app.include_router(_operations_routes(store, services))
    app.include_router(_message_routes(messages, chatrooms))
    relations = relations or RelationService(config, store, router, clock)
    app.include_router(_relation_routes(relations))
    app.include_router(
        _conversation_routes(conversations or ConversationService(config, store, relations, clock), store)
    )
    if groups is not None:
        app.include_router(_group_routes(groups))
    app.include_router(_chatroom_routes(chatrooms, clock))
    if channels is not None:
        app.include_router(_channel_routes(channels))
    _install_error_answers(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.add_middleware(
        SignatureMiddleware,
        key=config.admin.key_bytes(),
        clock=clock,
        window_ms=config.admin.max_clock_skew_seconds * 1000,
        unsigned_paths=UNSIGNED_PATHS,
        nonces=NonceCache(),
    )
    return app


#: What the signature check (``auth``) may answer instead of the endpoint, documented on every signed one.
SIGNED_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": m.Answer[None], "description": "unsigned, stale, wrongly signed or replayed (code 242)"},
    413: {"model": m.Answer[None], "description": "body over 1 MiB (code 251)"},
    429: {"model": m.Answer[None], "description": "too many signed requests in the window (code 250)"},
}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document without its 422 answers: a validation error here is HTTP 200 with code 251."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for item in doc["paths"].values():
            for op in item.values():
                op.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            doc.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = doc
    return app.openapi_schema


def _routes(
    store: Store, sessions: SessionService, router: Router, clock: Clock, chatrooms: ChatroomService | None = None
) -> APIRouter:
    api = APIRouter(prefix="/admin", responses=SIGNED_RESPONSES)

    @api.post("/user/create", response_model=m.Answer[m.UserCreated])
    async def user_create(req: m.UserInfo) -> dict[str, Any]:
        """Create a user, or update the given fields of an existing one."""
        now = clock.now_ms()
        record = UserRecord(created_at=now, updated_at=now, **req.model_dump())
        if await store.create_user(record):
            return answer(result={"user_id": req.user_id, "created": True})
        if not await store.update_user(req.user_id, now, **req.given_fields()):
            return answer(ErrorCode.NOT_EXIST)  # removed between the two calls
        return answer(result={"user_id": req.user_id, "created": False})

    @api.post("/user/update", response_model=m.Answer[m.UserId])
    async def user_update(req: m.UserInfo) -> dict[str, Any]:
        """Change the given fields of an existing user; others keep their values."""
        fields = req.given_fields()
        if not fields:
            return answer(ErrorCode.INVALID_PARAMETER, msg="no field to update")
        if not await store.update_user(req.user_id, clock.now_ms(), **fields):
            return answer(ErrorCode.NOT_EXIST)
        return answer(result={"user_id": req.user_id})

    @api.post("/user/get", response_model=m.Answer[m.UserOut])
    async def user_get(req: m.UserId) -> dict[str, Any]:
        """A user's info and status."""
        user = await store.get_user(req.user_id)
        if user is None:
            return answer(ErrorCode.NOT_EXIST)
        return answer(result={name: getattr(user, name) for name in m.UserOut.model_fields})

    @api.post("/user/update_block_status", response_model=m.Answer[None])
    async def user_block(req: m.BlockStatus) -> dict[str, Any]:
        """Set normal (0), muted (1) or forbidden (2); forbidding ends sessions and closes connections."""
        code = await sessions.set_block_status(req.user_id, req.status)
        if code == ErrorCode.SUCCESS and chatrooms is not None:
            chatrooms.set_user_status(req.user_id, req.status)  # muted members may no longer send
        return answer(code)

    @api.post("/user/get_token", response_model=m.Answer[m.TokenOut])
    async def user_get_token(req: m.TokenRequest) -> dict[str, Any]:
        """Issue a token for (user, client, platform), kicking per the one-device rule."""
        code, token = await sessions.get_token(req.user_id, req.client_id, req.platform)
        return answer(code, {"user_id": req.user_id, "token": token})

    @api.post("/session/list", response_model=m.Answer[m.SessionList])
    async def session_list(req: m.UserId) -> dict[str, Any]:
        """A user's sessions, active and deleted, with whether each is online. Never the secrets."""
        if await store.get_user(req.user_id) is None:
            return answer(ErrorCode.NOT_EXIST)
        online = {client_id for client_id, _ in router.online_clients(req.user_id)}
        rows = [
            {
                "client_id": s.client_id,
                "platform": s.platform,
                "state": s.state,
                "deleted_reason": s.deleted_reason,
                "created_at": s.created_at,
                "issued_at": s.issued_at,
                "last_seen": s.last_seen,
                "online": s.client_id in online,
            }
            for s in await store.list_sessions(req.user_id)
        ]
        return answer(result={"user_id": req.user_id, "sessions": rows})

    @api.post("/session/kick", response_model=m.Answer[None])
    async def session_kick(req: m.SessionId) -> dict[str, Any]:
        """End an active session as kicked and close its connection."""
        return answer(await sessions.kick(req.user_id, req.client_id))

    @api.post("/session/destroy", response_model=m.Answer[None])
    async def session_destroy(req: m.SessionId) -> dict[str, Any]:
        """End an active session for good (the device must get a new token) and close its connection."""
        return answer(await sessions.destroy(req.user_id, req.client_id))

    return api


def _operations_routes(store: Store, services: Services | None) -> APIRouter:
    """Health and metrics: unsigned, for probes and Prometheus."""
    api = APIRouter()

    async def health() -> dict[str, Any]:
        """Liveness probe: ``storage_writable`` is whether a write operation commits within 2 s."""
        writable = False
        if not store.writer.closing:
            with trio.move_on_after(HEALTH_WRITE_TIMEOUT_SECONDS):
                try:
                    await store.run(_write_probe)
                    writable = True
                except Exception as exc:  # noqa: BLE001 - the answer is the point: storage is not writable
                    log.warning("health: storage write failed: %s", type(exc).__name__)
        return answer(result={"status": "ok" if writable else "degraded", "storage_writable": writable})

    api.add_api_route(HEALTH_PATH, health, methods=["GET"], response_model=m.Answer[m.Health])
    api.add_api_route("/health", health, methods=["GET"], response_model=m.Answer[m.Health])

    if services is not None:
        from gateway.metrics import CONTENT_TYPE, render

        @api.get(
            METRICS_PATH,
            response_class=PlainTextResponse,
            responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}},
        )
        async def metrics() -> PlainTextResponse:
            """Prometheus text exposition (format 0.0.4) of this process's counters; unsigned."""
            return PlainTextResponse(render(services), media_type=CONTENT_TYPE)

    return api


def _write_probe(conn: Any) -> None:
    """A write lock taken (the writer's batch runs BEGIN IMMEDIATE) and a commit: nothing changed."""
    conn.execute("SELECT 1")


def _message_routes(messages: MessageService, chatrooms: ChatroomService | None) -> APIRouter:
    """Messages. Message ids go in and out as decimal strings (see ``models``)."""
    api = APIRouter(prefix="/admin", responses=SIGNED_RESPONSES)
    store = messages.store

    @api.post("/message/send", response_model=m.Answer[m.MessageAck])
    async def message_send(req: m.MessageSend) -> dict[str, Any]:
        """Send as any user id (a system account needs no user row); pushed and stored like a client's send."""
        try:
            msg = messages.outgoing(req.sender, Fields(req.params()))
        except FieldError as exc:
            return answer(ErrorCode.INVALID_PARAMETER, msg=f"{exc.field}: {exc.problem}")
        except RequestRejected as exc:
            return answer(exc.code)
        if msg.conv.type == ConversationType.CHATROOM:  # to the members present; never stored
            if chatrooms is None:
                return answer(ErrorCode.NOT_IMPLEMENTED)
            code, ack = chatrooms.send(msg, None)
        else:
            code, ack = await messages.send(msg)
        if code != ErrorCode.SUCCESS or ack is None:
            return answer(code)
        return answer(result={**ack, "message_id": str(ack["message_id"])})

    @api.post("/message/recall", response_model=m.Answer[m.Recalled])
    async def message_recall(req: m.MessageRecall) -> dict[str, Any]:
        """Replace a message with a recall notice for everyone who has it; no time window."""
        message_id = int(req.message_id)
        operator = req.operator
        if operator is None:
            original = await store.get_message(message_id)
            if original is None:
                return answer(ErrorCode.NOT_EXIST)
            operator = original.from_user
        code, result = await messages.recall(operator, message_id, None, enforce_window=False)
        if code != ErrorCode.SUCCESS:
            return answer(code)
        return answer(result={"message_id": req.message_id, "notice_id": str(result["message_id"])})

    @api.post("/message/delete", response_model=m.Answer[m.Deleted])
    async def message_delete(req: m.MessageDelete) -> dict[str, Any]:
        """Delete from one user's inbox for good, or (no user_id) from everyone's and from storage."""
        message_id = int(req.message_id)
        if req.user_id is not None:
            code = await messages.delete(req.user_id, message_id, None)
            return answer(code, {"message_id": req.message_id, "user_ids": [req.user_id]})
        holders = await store.delete_message_for_everyone(message_id)
        if holders is None:
            return answer(ErrorCode.NOT_EXIST)
        body = encode_notify_body("message_deleted", {"message_id": message_id})
        for user_id in holders:
            for conn in messages.router.connections(user_id):
                conn.push_frame_body(body)
        return answer(result={"message_id": req.message_id, "user_ids": holders})

    return api


def _conversation_routes(conversations: ConversationService, store: Store) -> APIRouter:
    """Read marks, clearing and the list, as the user's own devices would (each change pushes heads)."""
    api = APIRouter(prefix="/admin/conversation", responses=SIGNED_RESPONSES)

    def conv_of(conv: m.ConversationIn) -> Conversation | None:
        if conv.type not in ConversationType._value2member_map_ or not valid_id(conv.target) or conv.line < 0:
            return None
        return Conversation(conv.type, conv.target, conv.line)

    @api.post("/mark_read", response_model=m.Answer[m.ReadMark])
    async def conversation_mark_read(req: m.ConversationMark) -> dict[str, Any]:
        """Move the user's read mark of a conversation forward (it never moves back); their devices sync it."""
        conv = conv_of(req.conv)
        if conv is None:
            return answer(ErrorCode.INVALID_PARAMETER, msg="conv: unknown type or bad target")
        if not await store.get_users([req.user_id]):
            return answer(ErrorCode.NOT_EXIST)
        mark = await conversations.mark_read(req.user_id, conv, int(req.message_id), None)
        return answer(result={"read_to": str(mark["read_to"])})

    @api.post("/clear", response_model=m.Answer[m.ConversationCleared])
    async def conversation_clear(req: m.ConversationMark) -> dict[str, Any]:
        """Delete the user's messages of a conversation up to message_id, for good, on every device."""
        conv = conv_of(req.conv)
        if conv is None:
            return answer(ErrorCode.INVALID_PARAMETER, msg="conv: unknown type or bad target")
        if not await store.get_users([req.user_id]):
            return answer(ErrorCode.NOT_EXIST)
        return answer(result=await conversations.clear(req.user_id, conv, int(req.message_id), None))

    @api.post("/list", response_model=m.Answer[m.ConversationList])
    async def conversation_list(req: m.ConversationListQuery) -> dict[str, Any]:
        """The user's conversations, newest last message first, with read marks and unread counts."""
        if not await store.get_users([req.user_id]):
            return answer(ErrorCode.NOT_EXIST)
        page, _ = await conversations.list(req.user_id, int(req.before or 0), req.limit)
        rows = [
            {
                "conv": row["conv"],
                "last_message_id": str(row["last_message"]["message_id"]),
                "last_from": row["last_message"]["from"],
                "last_server_time": row["last_message"]["server_time"],
                "last_content_type": row["last_message"]["content"].get("type", 0),
                "read_to": str(row["read_to"]),
                "unread": row["unread"],
                "unread_mentions": row["unread_mentions"],
            }
            for row in page["conversations"]
        ]
        return answer(result={"user_id": req.user_id, "conversations": rows, "more": page["more"]})

    return api


def _relation_routes(relations: RelationService) -> APIRouter:
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


def _group_routes(groups: GroupService) -> APIRouter:
    """Hosted groups: every operation with every right (only facts are checked), and the reads."""
    from gateway.messaging import read_content
    from storage import groups as db

    api = APIRouter(prefix="/admin/group", responses=SIGNED_RESPONSES)
    store = groups.store

    def notify(content: m.ContentIn | None) -> dict[str, Any] | None:
        if content is None:
            return None
        raw = content.model_dump(exclude_none=True)
        if "data" in raw:
            raw["data"] = base64.b64decode(raw["data"], validate=True)
        raw.setdefault("persist_flag", 1)
        return read_content(Fields({"content": raw}), groups.config, server_made=True)

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


def _chatroom_routes(chatrooms: ChatroomService | None, clock: Clock) -> APIRouter:
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
        info = chatrooms.room_info(req.chatroom_id)
        stats = chatrooms.room_stats(req.chatroom_id)
        if info is None or stats is None:
            return answer(ErrorCode.NOT_EXIST)
        return answer(result={**info, "stats": dataclasses.asdict(stats)})

    return api


def _channel_routes(channels: ChannelService) -> APIRouter:
    """Channels: create, destroy, info, a post as the owner, the listeners (every right: only facts checked)."""
    from storage import channels as db

    api = APIRouter(prefix="/admin/channel")
    messages = channels.messages

    @api.post("/create", response_model=m.Answer[m.ChannelCreated])
    async def channel_create(req: m.ChannelCreate) -> dict[str, Any]:
        """Create a channel owned by ``owner`` (251 if the id is taken, 253 if the owner is no user)."""
        fields = req.model_dump(exclude={"owner", "channel_id"})
        try:
            code, result = await channels.create(req.owner, req.channel_id, fields, admin=True)
        except FieldError as exc:
            return answer(ErrorCode.INVALID_PARAMETER, msg=f"{exc.field}: {exc.problem}")
        return answer(code, result)

    @api.post("/destroy", response_model=m.Answer[None])
    async def channel_destroy(req: m.ChannelId) -> dict[str, Any]:
        """Destroy the channel: its listeners stop listening (their scope 9 settings go); then 253."""
        channel = await channels.store.read(db.get_channel, req.channel_id)
        if channel is None or channel.destroyed:
            return answer(ErrorCode.NOT_EXIST)
        code, _ = await channels.destroy(channel.owner, req.channel_id, admin=True)
        return answer(code)

    @api.post("/info", response_model=m.Answer[m.ChannelOut])
    async def channel_info(req: m.ChannelId) -> dict[str, Any]:
        """The channel's info, its callback URL and how many listen (253 if unknown or destroyed)."""
        code, result = await channels.info(None, req.channel_id)
        return answer(code, result["channel"] if result else None)

    @api.post("/post", response_model=m.Answer[m.MessageAck])
    async def channel_post(req: m.ChannelPost) -> dict[str, Any]:
        """Post as the channel's owner; stored and pushed like the owner's own post."""
        channel = await channels.store.read(db.get_channel, req.channel_id)
        if channel is None or channel.destroyed:
            return answer(ErrorCode.NOT_EXIST)
        send = m.MessageSend(
            sender=channel.owner, conv=m.ConversationIn(type=int(ConversationType.CHANNEL), target=req.channel_id),
            content=req.content, to_users=req.to_users, client_msg_id=req.client_msg_id,
        )  # fmt: skip
        try:
            msg = messages.outgoing(channel.owner, Fields(send.params()))
        except FieldError as exc:
            return answer(ErrorCode.INVALID_PARAMETER, msg=f"{exc.field}: {exc.problem}")
        code, ack = await messages.send(msg)
        if code != ErrorCode.SUCCESS or ack is None:
            return answer(code)
        return answer(result={**ack, "message_id": str(ack["message_id"])})

    @api.post("/listeners", response_model=m.Answer[m.ChannelListenersOut])
    async def channel_listeners(req: m.ChannelListenersQuery) -> dict[str, Any]:
        """A page of the listeners, by user id (managers flagged)."""
        code, result = await channels.listeners(req.channel_id, req.after_user, req.limit)
        return answer(code, result)

    return api


def _install_error_answers(app: FastAPI) -> None:
    """Turn framework errors into the API's answer format."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Name the field and the rule; never echo the input (it may be a secret).
        problems = []
        for error in exc.errors()[:5]:
            where = ".".join(str(part) for part in error["loc"] if part != "body") or "body"
            what = error["msg"]
            if error["type"] == "json_invalid":  # its loc is a character offset, not a field
                where, what = "body", "not valid JSON"
            elif where == "body" and error["type"] != "missing":
                what = "must be a JSON object"
            problems.append(f"{where}: {what}")
        return JSONResponse(answer(ErrorCode.INVALID_PARAMETER, msg="; ".join(problems)))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400:  # a body FastAPI cannot decode (e.g. not UTF-8): as malformed JSON
            return JSONResponse(answer(ErrorCode.INVALID_PARAMETER, msg="body: not valid JSON"))
        msg = "no such endpoint" if exc.status_code == 404 else str(exc.detail).lower()
        return JSONResponse(answer(ErrorCode.NOT_IMPLEMENTED, msg=msg), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after this answer, so the traceback reaches the error log.
        return JSONResponse(answer(ErrorCode.SERVER_ERROR), status_code=500)


@dataclass(frozen=True)
class Endpoint:
    """One admin API operation, as the served app defines it (for ``ember admin``'s generated commands)."""

    path: str
    method: str
    body: type[BaseModel] | None
    summary: str


def endpoints() -> list[Endpoint]:
    """Every operation of the admin app, read off the OpenAPI document the gateway serves; request bodies
    are named there by their model (``#/components/schemas/UserInfo``), looked up in ``models``."""
    from gateway.config import Config

    class _NoStore:
        store = None

    app = create_admin_app(
        config=Config.default(), store=None, sessions=None, router=None, clock=None,  # type: ignore[arg-type]
        messages=_NoStore(), services=object(), groups=_NoStore(),  # type: ignore[arg-type]
    )  # fmt: skip
    out = []
    for path, item in app.openapi()["paths"].items():
        for method, op in item.items():
            ref = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            name = ref.get("$ref", "").rsplit("/", 1)[-1]
            body = getattr(m, name) if name else None
            summary = (op.get("description") or op.get("summary") or "").strip().splitlines()[0]
            out.append(Endpoint(path, method.upper(), body, summary))
    return out


async def serve_admin(
    app: Callable[..., Awaitable[None]],
    host: str,
    port: int,
    *,
    shutdown_trigger: Callable[[], Awaitable[Any]],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` with Hypercorn's trio worker until ``shutdown_trigger`` returns.

    Started with ``nursery.start``, it reports the bound URLs (port 0 picks a free one).
    """
    hc = HypercornConfig()
    hc.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    hc.accesslog = None  # paths only would be harmless, but the app's own logs are the record
    hc.errorlog = log
    await hypercorn_serve(app, hc, shutdown_trigger=shutdown_trigger, task_status=task_status)
