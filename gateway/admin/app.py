"""The admin HTTP API (SPEC §10): a FastAPI app behind a signature check, served by Hypercorn on trio.

Every endpoint is ``POST /admin/<subject>/<action>`` with a JSON body and
answers HTTP 200 ``{"code", "msg", "result"}``. Only authentication failures
change the HTTP status (401, see ``auth``). The API reference for app-server
developers is docs/ADMIN_API.md; the generated schema is at /openapi.json.
This module builds the app and holds the user, session, message and operations
endpoints; each later subject has its own module of routes (``relation_routes``,
``group_routes``, ``chatroom_routes``, ``channel_routes``, ``conversation_routes``).

Nothing here logs request bodies or answers: they carry tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from gateway.domain.conversations import ConversationService
from gateway.domain.messaging import RequestRejected
from gateway.domain.relations import RelationService
from protocol.codec import Fields
from protocol.codes import ConversationType, ErrorCode
from protocol.connection import encode_notify_body
from protocol.errors import FieldError
from storage.records import UserRecord
from storage.writer import StorageFull, StorageRetryLater, space_probe

from . import (
    channel_routes,
    chatroom_routes,
    conversation_routes,
    group_routes,
    relation_routes,
    robot_routes,
    search_routes,
)
from . import models as m
from . import robot_models as rm
from .answers import SIGNED_RESPONSES, answer
from .auth import NonceCache, SignatureMiddleware
from .body_guard import BodyGuard

if TYPE_CHECKING:
    from gateway.clock import Clock
    from gateway.config import Config
    from gateway.delivery import Delivery
    from gateway.domain.channels import ChannelService
    from gateway.domain.chatrooms import ChatroomService
    from gateway.domain.groups import GroupService
    from gateway.domain.messaging import MessageService
    from gateway.domain.robots import RobotService
    from gateway.domain.sessions import SessionService
    from gateway.services import Services
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


def create_admin_app(
    *,
    config: Config,
    store: Store,
    sessions: SessionService,
    delivery: Delivery,
    clock: Clock,
    messages: MessageService,
    relations: RelationService | None = None,
    groups: GroupService | None = None,
    chatrooms: ChatroomService | None = None,
    conversations: ConversationService | None = None,
    channels: ChannelService | None = None,
    services: Services | None = None,
    robots: RobotService | None = None,
) -> FastAPI:
    """Build the admin app, wrapped in its signature check.

    Args:
        config: Gives the signing key and the timestamp window.
        store: Users and sessions.
        sessions: The session rules (tokens, kicks, blocking).
        delivery: Tells which sessions have a live connection (and pushes, for the relations built here).
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
        robots: Robots (``/admin/robot/...``, ``/admin/message/update`` and the robot API ``/robot/...``,
            signed with each robot's own secret); without it those endpoints are absent.
    """
    app = FastAPI(
        title="Ember admin API",
        version="1",
        description="Signed JSON API for app servers. See docs/ADMIN_API.md for signing.",
        redoc_url=None,
        # Served by our own routes below: FastAPI's would build the document on the trio thread.
        openapi_url=None,
        docs_url=None,
        # Every request is signed, so the CSRF guard this gives browsers is moot, and
        # app servers (curl) often omit Content-Type: read any body as JSON.
        strict_content_type=False,
    )
    app.include_router(_routes(store, sessions, delivery, clock, chatrooms))
    app.include_router(_operations_routes(store, services))
    app.include_router(_message_routes(messages, chatrooms))
    app.include_router(search_routes.routes(messages.store))
    relations = relations or RelationService(config, store, delivery, clock)
    app.include_router(relation_routes.routes(relations))
    app.include_router(
        conversation_routes.routes(conversations or ConversationService(config, store, relations, clock), store)
    )
    if groups is not None:
        app.include_router(group_routes.routes(groups))
    app.include_router(chatroom_routes.routes(chatrooms, clock))
    if channels is not None:
        app.include_router(channel_routes.routes(channels))
    if robots is not None:
        app.include_router(robot_routes.admin_routes(robots))
        app.include_router(robot_routes.robot_api(robots, groups))
    _install_error_answers(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    _install_openapi_routes(app)
    app.add_middleware(BodyGuard)  # added first, so it runs inside (after) the signature check
    app.add_middleware(
        SignatureMiddleware,
        key=config.admin.key_bytes(),
        clock=clock,
        window_ms=config.admin.max_clock_skew_seconds * 1000,
        unsigned_paths=UNSIGNED_PATHS,
        nonces=getattr(delivery, "admin_nonces", None) or NonceCache(),  # a cluster node's: the shared one
        robot_key=robots.secret_of if robots is not None else None,
    )
    return app


#: What the signature check (``auth``) may answer instead of the endpoint, documented on every signed one.
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


def _install_openapi_routes(app: FastAPI) -> None:
    """``/openapi.json`` and ``/docs``, unsigned, with the document built off the trio thread.

    Building it walks every route's pydantic models: about a second of CPU here (several on a busy
    machine). FastAPI's own route does it inside the request, on the thread that also serves every
    client connection, so the first GET, which anyone may send, paused the whole gateway that long. Here it
    is built once, in a worker thread, and every later request gets the cached document.
    """
    building = trio.Lock()
    rendered: list[bytes] = []  # the document as JSON bytes, once built

    def build() -> bytes:
        return bytes(JSONResponse(app.openapi()).body)  # the rendering too: off the loop

    async def openapi_document(request: Request) -> Response:
        if not rendered:
            async with building:  # one build, however many ask at once
                if not rendered:
                    rendered.append(await trio.to_thread.run_sync(build))
        return Response(rendered[0], media_type="application/json")

    async def swagger_page(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - Swagger UI")

    app.add_route("/openapi.json", openapi_document, include_in_schema=False)
    app.add_route("/docs", swagger_page, include_in_schema=False)


def _routes(
    store: Store, sessions: SessionService, delivery: Delivery, clock: Clock, chatrooms: ChatroomService | None = None
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
        online = {client_id for client_id, _ in await delivery.online_clients_everywhere(req.user_id)}
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
        """Liveness probe: ``storage_writable`` is whether a write (a page, really written) commits within 2 s."""
        writer = store.writer
        writable = False
        if not writer.closing and writer.failure is None:
            with trio.move_on_after(HEALTH_WRITE_TIMEOUT_SECONDS):
                try:
                    await store.run(space_probe)
                    # A probe of one page can commit where a send cannot: the state decides (storage.writer).
                    writable = not writer.disk_full
                except StorageFull:
                    pass  # the writer logs a full disk itself, every 10 s at most; the answer says it
                except Exception as exc:  # noqa: BLE001 - the answer is the point: storage is not writable
                    log.warning("health: storage write failed: %s", exc)
        return answer(
            result={
                "status": "ok" if writable else "degraded",
                "storage_writable": writable,
                "disk_full": writer.disk_full,
            }
        )

    api.add_api_route(HEALTH_PATH, health, methods=["GET"], response_model=m.Answer[m.Health])
    api.add_api_route("/health", health, methods=["GET"], response_model=m.Answer[m.Health])

    if services is not None:
        from gateway.metrics_page import CONTENT_TYPE, render

        @api.get(
            METRICS_PATH,
            response_class=PlainTextResponse,
            responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}},
        )
        async def metrics() -> PlainTextResponse:
            """Prometheus text exposition (format 0.0.4) of this process's counters; unsigned."""
            return PlainTextResponse(render(services), media_type=CONTENT_TYPE)

    return api


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
            code, ack = await chatrooms.send_async(msg, None)
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
        messages.delivery.push_to_each(holders, body)
        return answer(result={"message_id": req.message_id, "user_ids": holders})

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

    @app.exception_handler(StorageRetryLater)
    async def retry_later(request: Request, exc: StorageRetryLater) -> JSONResponse:
        # Nothing was written: the disk is full, or the writer's queue is. 250 is the client protocol's
        # "retry in a moment" too (docs/ADMIN_API.md "Answers").
        msg = "storage is full: retry later" if isinstance(exc, StorageFull) else "storage is busy: retry later"
        return JSONResponse(answer(ErrorCode.OVER_FREQUENCY, msg=msg))

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
    """Every operation of the admin app (not the robot API's), read off the OpenAPI document the gateway serves; request bodies
    are named there by their model (``#/components/schemas/UserInfo``), looked up in ``models``."""
    from gateway.config import Config

    class _NoStore:
        store = None
        messages = None

        def secret_of(self, robot_id: str) -> None:
            return None

    app = create_admin_app(
        config=Config.default(), store=None, sessions=None, delivery=None, clock=None,  # type: ignore[arg-type]
        messages=_NoStore(), services=object(), groups=_NoStore(), robots=_NoStore(),  # type: ignore[arg-type]
    )  # fmt: skip
    out = []
    for path, item in app.openapi()["paths"].items():
        if path.startswith("/robot/"):  # the robot API: signed by a robot's own secret, not an admin operation
            continue
        for method, op in item.items():
            ref = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            name = ref.get("$ref", "").rsplit("/", 1)[-1]
            body = (getattr(m, name, None) or getattr(rm, name)) if name else None
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
