"""Channels (conversation type 3, issue 12): the rules, every operation, and the reads.

A channel has an owner, managers (listeners flagged as such) and listeners. Each
operation is one writer operation (``_run`` on the writer thread): it reads the
channel and the rows it concerns (``storage.channels``), checks the rules below
(a refusal raises ``storage.engine.Refused(code)``, which undoes the operation's writes),
writes the change and the scope 8 / 9 settings it moves (``storage.relations.put_setting``:
"my channels" and "listened channels", key the channel id, value "1"), all in one
transaction. After the commit the settings' owners get a ``head`` push
(``RelationService.notify``), so their other devices sync the setting stream.

The rules (the admin API acts with every right: only facts are checked):

- create: any user (owner: the caller); the admin API for any existing user;
- modify: name, portrait, desc and extra by the owner or a manager; private,
  callback and callback_only by the owner (248);
- destroy, transfer, invite, set/unset managers: the owner (248); a transfer's new
  owner must be a user (253), not the owner (251); the old owner becomes a
  listener, the new one stops being one; managers must be listeners (21);
- listen: anyone, but a private channel only the invited (else 253, as if it did not
  exist); the owner does not listen to its own channel (251); unlisten: a listener (21);
- info: anyone, but a private channel only its owner, listeners and the invited (253);
  the callback URL only for the owner;
- history: the owner and listeners (21);
- send (``channel_route``): the owner and managers post to every listener; a
  listener's message goes to the owner only (not to the managers: one party answers,
  and the managers see what the owner forwards), or with ``callback_only`` to the
  callback URL only; anyone else 21.

A channel that is unknown or destroyed answers 253 everywhere.
"""

from __future__ import annotations

import logging
import secrets
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.clock import Clock
from gateway.config import Config
from gateway.domain.messaging import MessageService, check_json
from gateway.domain.relations import Origin, RelationService
from protocol.codes import ErrorCode, SettingScope
from protocol.errors import FieldError
from storage import Store, relations
from storage import channels as db
from storage import users as users_db
from storage.channels import ChannelRecord
from storage.engine import Refused, Tx, savepoint
from storage.messages import Conversation, Outgoing, StoredMessage, channel_history
from storage.relations import Change

log = logging.getLogger("ember.channels")

MY_CHANNEL: Final = int(SettingScope.MY_CHANNEL)
LISTENED_CHANNEL: Final = int(SettingScope.LISTENED_CHANNEL)

MAX_NAME: Final = 256
MAX_PORTRAIT: Final = 2048
MAX_DESC: Final = 4096
MAX_CALLBACK: Final = 2048
#: How many callback-only messages the hook keeps until a webhook sender takes them (oldest dropped, counted).
CALLBACK_QUEUE: Final = 10_000

#: modify_channel ``field`` → its column, and who may set it (True: managers too).
FIELDS: Final[dict[str, tuple[str, bool]]] = {
    "name": ("name", True),
    "portrait": ("portrait", True),
    "desc": ("description", True),
    "extra": ("extra", True),
    "private": ("private", False),
    "callback": ("callback", False),
    "callback_only": ("callback_only", False),
}


def channel_route(role: int, callback_only: bool) -> tuple[int, int]:
    """Who may send into a channel and where it goes (``SendPolicy.channel_route``)."""
    if role == db.ROLE_OWNER or role == db.ROLE_MANAGER:
        return 0, db.ROUTE_LISTENERS
    if role == db.ROLE_LISTENER:
        return 0, db.ROUTE_CALLBACK if callback_only else db.ROUTE_OWNER
    return ErrorCode.NOT_IN_CHANNEL, 0


@dataclass
class _Ctx:
    operator: str
    admin: bool
    now_ms: int
    changes: list[Change] = field(default_factory=list)

    def setting(self, conn: Tx, user_id: str, scope: int, channel_id: str, on: bool) -> None:
        result = relations.put_setting(conn, user_id, scope, channel_id, "1" if on else "", self.now_ms)
        self.changes.extend(result.changes)


def _require(ok: bool, code: int = ErrorCode.NOT_RIGHT) -> None:
    if not ok:
        raise Refused(code)


def _live(conn: Tx, channel_id: str) -> ChannelRecord:
    channel = db.get_channel(conn, channel_id)
    if channel is None or channel.destroyed:
        raise Refused(ErrorCode.NOT_EXIST)
    return channel


def _owner(ctx: _Ctx, channel: ChannelRecord) -> None:
    _require(ctx.admin or channel.owner == ctx.operator)


# --- the operations (writer thread) --------------------------------------------------------------


def op_create(conn: Tx, ctx: _Ctx, channel_id: str, fields: dict[str, Any]) -> Any:
    if not users_db.existing_users(conn, [ctx.operator]):
        raise Refused(ErrorCode.NOT_EXIST)
    if not db.create_channel(conn, channel_id, ctx.operator, fields, ctx.now_ms):
        raise Refused(ErrorCode.INVALID_PARAMETER)  # the id is taken
    ctx.setting(conn, ctx.operator, MY_CHANNEL, channel_id, True)
    return {"channel_id": channel_id, "info_version": 1}


def op_modify(conn: Tx, ctx: _Ctx, channel_id: str, name: str, value: Any) -> Any:
    channel = _live(conn, channel_id)
    column, managers_too = FIELDS[name]
    if not (ctx.admin or channel.owner == ctx.operator):
        listener = db.get_listener(conn, channel_id, ctx.operator)
        _require(managers_too and listener is not None and listener.manager)
    return {"info_version": db.update_channel(conn, channel_id, {column: value}, ctx.now_ms)}


def op_destroy(conn: Tx, ctx: _Ctx, channel_id: str) -> Any:
    channel = _live(conn, channel_id)
    _owner(ctx, channel)
    for user_id in db.destroy_channel(conn, channel_id, ctx.now_ms):
        ctx.setting(conn, user_id, LISTENED_CHANNEL, channel_id, False)
    ctx.setting(conn, channel.owner, MY_CHANNEL, channel_id, False)
    return None


def op_transfer(conn: Tx, ctx: _Ctx, channel_id: str, new_owner: str) -> Any:
    channel = _live(conn, channel_id)
    _owner(ctx, channel)
    if new_owner == channel.owner:
        raise Refused(ErrorCode.INVALID_PARAMETER)
    if not users_db.existing_users(conn, [new_owner]):
        raise Refused(ErrorCode.NOT_EXIST)
    if db.remove_listener(conn, channel_id, new_owner):
        ctx.setting(conn, new_owner, LISTENED_CHANNEL, channel_id, False)
    version = db.update_channel(conn, channel_id, {"owner": new_owner}, ctx.now_ms)
    db.add_listener(conn, channel_id, channel.owner, ctx.now_ms)
    ctx.setting(conn, channel.owner, MY_CHANNEL, channel_id, False)
    ctx.setting(conn, channel.owner, LISTENED_CHANNEL, channel_id, True)
    ctx.setting(conn, new_owner, MY_CHANNEL, channel_id, True)
    return {"info_version": version}


def op_listen(conn: Tx, ctx: _Ctx, channel_id: str, listen: bool) -> Any:
    channel = _live(conn, channel_id)
    if listen:
        if channel.owner == ctx.operator:
            raise Refused(ErrorCode.INVALID_PARAMETER)
        if channel.private and not ctx.admin and not db.is_invited(conn, channel_id, ctx.operator):
            raise Refused(ErrorCode.NOT_EXIST)
        if db.add_listener(conn, channel_id, ctx.operator, ctx.now_ms):
            ctx.setting(conn, ctx.operator, LISTENED_CHANNEL, channel_id, True)
        return None
    _require(db.remove_listener(conn, channel_id, ctx.operator), ErrorCode.NOT_IN_CHANNEL)
    ctx.setting(conn, ctx.operator, LISTENED_CHANNEL, channel_id, False)
    return None


def op_invite(conn: Tx, ctx: _Ctx, channel_id: str, user_ids: list[str]) -> Any:
    channel = _live(conn, channel_id)
    _owner(ctx, channel)
    if len(users_db.existing_users(conn, user_ids)) != len(user_ids):
        raise Refused(ErrorCode.NOT_EXIST)
    db.add_invites(conn, channel_id, user_ids, ctx.now_ms)
    return None


def op_managers(conn: Tx, ctx: _Ctx, channel_id: str, user_ids: list[str], on: bool) -> Any:
    channel = _live(conn, channel_id)
    _owner(ctx, channel)
    if len(db.get_listeners_of(conn, channel_id, user_ids)) != len(user_ids):
        raise Refused(ErrorCode.NOT_IN_CHANNEL)
    db.set_managers(conn, channel_id, user_ids, on)
    return None


@dataclass
class Outcome:
    code: int
    result: Any = None
    changes: list[Change] = field(default_factory=list)


def _run(conn: Tx, fn: Callable[..., Any], ctx: _Ctx, *args: Any) -> Outcome:
    """Writer-thread entry: a refusal (``Refused``) undoes the operation's writes, in a savepoint of its own."""
    try:
        with savepoint(conn, "ember_channel_op"):
            result = fn(conn, ctx, *args)
    except Refused as refused:
        return Outcome(refused.code)
    return Outcome(ErrorCode.SUCCESS, result, ctx.changes)


# --- reads (reader connections; the check and the read in one transaction) -----------------------


def _may_see(conn: Tx, channel: ChannelRecord, user_id: str | None) -> bool:
    if user_id is None or not channel.private or channel.owner == user_id:
        return True
    return db.get_listener(conn, channel.channel_id, user_id) is not None or db.is_invited(
        conn, channel.channel_id, user_id
    )


def _info(conn: Tx, user_id: str | None, channel_id: str, held: int) -> tuple[int, Any]:
    channel = db.get_channel(conn, channel_id)
    if channel is None or channel.destroyed or not _may_see(conn, channel, user_id):
        return ErrorCode.NOT_EXIST, None
    count = db.listener_count(conn, channel_id) if held != channel.info_version else 0
    return ErrorCode.SUCCESS, info_answer(channel, user_id is None or user_id == channel.owner, count, held)


def info_answer(channel: ChannelRecord, with_callback: bool, listener_count: int, held: int) -> dict[str, Any]:
    """``get_channel_info``'s result: ``channel`` nil when the version ``held`` is current (§15)."""
    wire = None
    if held != channel.info_version:
        wire = channel.to_wire(with_callback)
        wire["listener_count"] = listener_count
    return {"info_version": channel.info_version, "channel": wire}


def _history(
    conn: Tx, user_id: str, conv: Conversation, before_id: int, count: int
) -> tuple[int, list[StoredMessage]]:
    channel = db.get_channel(conn, conv.target)
    if channel is None or channel.destroyed:
        return ErrorCode.NOT_EXIST, []
    if channel.owner != user_id and db.get_listener(conn, conv.target, user_id) is None:
        return ErrorCode.NOT_IN_CHANNEL, []
    return ErrorCode.SUCCESS, channel_history(conn, user_id, conv, before_id, count)


def _listeners_page(conn: Tx, channel_id: str, after: str, limit: int) -> tuple[int, Any]:
    channel = db.get_channel(conn, channel_id)
    if channel is None or channel.destroyed:
        return ErrorCode.NOT_EXIST, None
    rows = db.list_listeners(conn, channel_id, after, limit)
    return ErrorCode.SUCCESS, {
        "count": db.listener_count(conn, channel_id),
        "listeners": [{"user_id": r.user_id, "manager": r.manager, "listened_at": r.listened_at} for r in rows],
    }


def _mine(conn: Tx, user_id: str) -> dict[str, Any]:
    def brief(channels: list[ChannelRecord]) -> list[dict[str, Any]]:
        return [{"channel_id": c.channel_id, "info_version": c.info_version} for c in channels]

    return {"owned": brief(db.owned_channels(conn, user_id)), "listened": brief(db.listened_channels(conn, user_id))}


# --- the callback hook ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallbackEvent:
    """A listener's message to a ``callback_only`` channel, for its callback URL."""

    url: str
    channel_id: str
    message: dict[str, Any]  # the message map (docs/PROTOCOL.md), as a push carries it


class ChannelCallbackHook:
    """Where callback-only messages are handed over, after their commit (the message itself is stored
    for its sender only).

    Each event goes to ``sink(url, channel_id, msg)``: the server sets it to ``Webhooks.channel_message``,
    which POSTs it, signed, from the webhook queue (only to hosts in ``callback.channel_hosts``). The
    hook also keeps the most recent events (``pending``, oldest dropped past ``CALLBACK_QUEUE``, counted
    in ``dropped``) for tests and tools (``take``).
    """

    def __init__(self, limit: int = CALLBACK_QUEUE) -> None:
        self.pending: deque[CallbackEvent] = deque()
        self.limit = limit
        self.recorded = 0
        self.dropped = 0
        self.sink: Callable[[str, str, Outgoing], None] | None = None

    def __call__(self, msg: Outgoing, url: str) -> None:
        if len(self.pending) >= self.limit:
            self.pending.popleft()
            self.dropped += 1
        self.pending.append(CallbackEvent(url, msg.conv.target, msg.to_wire()))
        self.recorded += 1
        if self.sink is not None:
            self.sink(url, msg.conv.target, msg)

    def take(self) -> list[CallbackEvent]:
        events = list(self.pending)
        self.pending.clear()
        return events


# --- the service (trio side) -----------------------------------------------------------------------


class ChannelService:
    """Channel operations for client methods and the admin API; reads; the send rule and callback hook."""

    def __init__(
        self, config: Config, store: Store, messages: MessageService, relations: RelationService, clock: Clock
    ) -> None:
        self.config = config
        self.store = store
        self.messages = messages
        self.relations = relations
        self.clock = clock
        self.callbacks = ChannelCallbackHook()
        messages.enable_channels(self, channel_route)

    async def _apply(
        self, fn: Callable[..., Any], operator: str, admin: bool, origin: Origin, *args: Any
    ) -> tuple[int, Any]:
        ctx = _Ctx(operator, admin, self.clock.now_ms())
        outcome: Outcome = await self.store.run(_run, fn, ctx, *args)
        if outcome.code == ErrorCode.SUCCESS and outcome.changes:
            self.relations.notify(outcome.changes, origin)
        return outcome.code, outcome.result

    # --- operations; each validates its inputs (FieldError: 251) -------------------------------

    async def create(
        self, operator: str, channel_id: str | None, fields: dict[str, Any], *, admin: bool = False,
        origin: Origin = None,
    ) -> tuple[int, Any]:  # fmt: skip
        columns = {}
        for name, value in fields.items():
            check_field(name, value, self.config.message.max_text_bytes)
            columns[FIELDS[name][0]] = value
        cid = channel_id or secrets.token_urlsafe(12)
        return await self._apply(op_create, operator, admin, origin, cid, columns)

    async def modify(
        self, operator: str, channel_id: str, name: str, value: Any, *, admin: bool = False, origin: Origin = None
    ) -> tuple[int, Any]:
        check_field(name, value, self.config.message.max_text_bytes, path="value")
        return await self._apply(op_modify, operator, admin, origin, channel_id, name, value)

    async def destroy(self, operator: str, channel_id: str, *, admin: bool = False, origin: Origin = None) -> tuple[int, Any]:
        return await self._apply(op_destroy, operator, admin, origin, channel_id)

    async def transfer(
        self, operator: str, channel_id: str, new_owner: str, *, admin: bool = False, origin: Origin = None
    ) -> tuple[int, Any]:
        return await self._apply(op_transfer, operator, admin, origin, channel_id, new_owner)

    async def listen(
        self, user_id: str, channel_id: str, listen: bool, *, admin: bool = False, origin: Origin = None
    ) -> tuple[int, Any]:
        return await self._apply(op_listen, user_id, admin, origin, channel_id, listen)

    async def invite(
        self, operator: str, channel_id: str, user_ids: list[str], *, admin: bool = False, origin: Origin = None
    ) -> tuple[int, Any]:
        return await self._apply(op_invite, operator, admin, origin, channel_id, _unique(user_ids))

    async def set_managers(
        self, operator: str, channel_id: str, user_ids: list[str], on: bool, *, admin: bool = False,
        origin: Origin = None,
    ) -> tuple[int, Any]:  # fmt: skip
        return await self._apply(op_managers, operator, admin, origin, channel_id, _unique(user_ids), on)

    # --- reads -----------------------------------------------------------------------------------

    async def info(self, user_id: str | None, channel_id: str, held_version: int = 0) -> tuple[int, Any]:
        """{info_version, channel}: ``channel`` is nil when ``held_version`` is current (``user_id`` None: admin)."""
        return await self.store.read(_info, user_id, channel_id, held_version)

    async def history(
        self, user_id: str, conv: Conversation, before_id: int, count: int
    ) -> tuple[int, list[StoredMessage]]:
        return await self.store.read(_history, user_id, conv, before_id, count)

    async def listeners(self, channel_id: str, after: str = "", limit: int = 200) -> tuple[int, Any]:
        return await self.store.read(_listeners_page, channel_id, after, limit)

    async def mine(self, user_id: str) -> dict[str, Any]:
        return await self.store.read(_mine, user_id)


def _unique(user_ids: Sequence[str]) -> list[str]:
    ids = list(dict.fromkeys(user_ids))
    if not ids:
        raise FieldError("user_ids", "at least one user id")
    return ids


def check_field(name: str, value: Any, max_text: int, path: str | None = None) -> None:
    """A channel field's type and range (FieldError: 251)."""
    where = path or name
    if name not in FIELDS:
        raise FieldError("field" if path else name, f"one of {sorted(FIELDS)}")
    if name in ("private", "callback_only"):
        if value.__class__ is not bool:
            raise FieldError(where, "must be a boolean")
        return
    limit = {"name": MAX_NAME, "portrait": MAX_PORTRAIT, "desc": MAX_DESC, "extra": max_text, "callback": MAX_CALLBACK}[
        name
    ]
    if not isinstance(value, str) or len(value.encode()) > limit:
        raise FieldError(where, f"must be a string of at most {limit} bytes")
    if name == "extra" and value:
        check_json(where, value)
    if name == "callback" and value and not value.startswith(("http://", "https://")):
        raise FieldError(where, "must be an http:// or https:// URL (or empty)")
