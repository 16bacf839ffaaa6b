"""Hosted groups (SPEC §8, FAQ §1, §6, §15): the rules, and every operation with its notification.

Each operation is one writer operation (``_run`` on the writer thread): it
reads the group and the members it concerns (``storage.groups``), checks the
rules below (a refusal raises ``storage.engine.Refused(code)``, which undoes
the operation's writes), writes the change, and stores the operation's notification message
(content types 104–123, ``protocol.codes.GroupNotification``) for the members
it concerns, all in one transaction. After the commit the notification is
delivered like any group message (``MessageService.deliver``: fan-out in
chunks). So a kicked member's inbox ends with its kick notification: it is an
owner of that one, and of nothing after it.

The rules, by the caller's role (owner 2, manager 1, others) and the group type:

- create: any user; organization groups (type 3) only through the admin API (248);
- add: type 3 only admin (248); restricted groups (2) and join type 2 need the
  owner or a manager (248); a non-member may only add itself, and only to a
  normal group with join type 0 (else 9); anyone already a member → 12;
- kick: owner or manager (248); a manager may not kick the owner or managers
  (248); not oneself (251); type 3 only admin (248);
- quit: a member (9); the owner must transfer first (248: WildfireChat's
  documented rule; a quit never dismisses); type 3 only admin (248);
- dismiss: the owner (248); type 3 only admin;
- transfer: the owner (248), to a current member (9);
- modify info: name and portrait by any member of a normal group, everything
  else (extra, mute, join type) by the owner or a manager; the group type by
  the owner only, and never to 3 from a client (248);
- managers: the owner; silence and allow: owner or manager, never of the owner
  or a manager (248);
- member alias and extra: one's own, any member; another's, owner or manager
  (a manager not the owner's, 248).

The admin API acts with every right (``admin=True``): only facts are checked
(253, 9, 12, 11, 240, 251).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.clock import Clock
from gateway.config import Config
from gateway.domain.messaging import MessageService, check_json
from protocol.codes import (
    DEFAULT_PERSIST_FLAG,
    ConversationType,
    ErrorCode,
    GroupJoinType,
    GroupMemberType,
    GroupNotification,
    GroupType,
    PersistFlag,
)
from protocol.errors import FieldError
from storage import Store
from storage import groups as db
from storage import users as users_db
from storage.engine import Refused, Tx, savepoint
from storage.groups import GroupRecord, MemberRecord
from storage.inboxes import InboxState
from storage.messages import Conversation, Outgoing, SendResult, store_notification

GROUP = int(ConversationType.GROUP)
NORMAL, MANAGER, OWNER = int(GroupMemberType.NORMAL), int(GroupMemberType.MANAGER), int(GroupMemberType.OWNER)
SILENCED, REMOVED, ALLOWED = (
    int(GroupMemberType.SILENCED), int(GroupMemberType.REMOVED), int(GroupMemberType.ALLOWED),
)  # fmt: skip
PRIVILEGED = frozenset({OWNER, MANAGER})
GROUP_TYPES = frozenset(int(t) for t in GroupType)
JOIN_TYPES = frozenset(int(t) for t in GroupJoinType)

MAX_NAME = 256
MAX_PORTRAIT = 2048
MAX_ALIAS = 256

#: modify_group_info ``field`` → its notification type (None: the group type has no WildfireChat notification).
INFO_FIELDS: dict[str, int | None] = {
    "name": int(GroupNotification.NAME),
    "portrait": int(GroupNotification.PORTRAIT),
    "extra": int(GroupNotification.EXTRA),
    "mute": int(GroupNotification.MUTE),
    "join_type": int(GroupNotification.JOIN_TYPE),
    "type": None,
}
#: Fields any member of a normal group may change.
MEMBER_EDITABLE = frozenset({"name", "portrait"})


def notification_data(group_id: str, operator: str, **values: Any) -> bytes:
    """The JSON of a notification's ``data``: keys in the order g, o, n, m, ms; absent ones left out."""
    data: dict[str, Any] = {"g": group_id, "o": operator}
    for key in ("n", "m", "ms"):
        if values.get(key) is not None:
            data[key] = values[key]
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def notification_content(
    group_id: str, operator: str, kind: int, override: dict[str, Any] | None = None, **values: Any
) -> dict[str, Any]:
    """A notification's content: ``{type, data, persist_flag: 1}``, or ``override`` with the type forced to
    ``kind`` and, when it has none, the default ``data``."""
    content: dict[str, Any] = {
        "type": int(kind),
        "data": notification_data(group_id, operator, **values),
        "persist_flag": int(PersistFlag.PERSIST),
    }
    if override is not None:
        custom = dict(override)
        custom["type"] = int(kind)
        custom.setdefault("data", content["data"])
        content = custom
    return content


@dataclass
class Outcome:
    """What an operation did: its code, the caller's result, and the notification to deliver."""

    code: int
    result: Any = None
    notice: Outgoing | None = None
    stored: SendResult | None = None


@dataclass
class _Ctx:
    """One operation's inputs, made on the trio side (ids and time come from there)."""

    operator: str
    admin: bool
    now_ms: int
    message_id: int
    notify_content: dict[str, Any] | None
    max_members: int
    notice: Outgoing | None = None
    stored: SendResult | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def notify(
        self,
        conn: Tx,
        inboxes: InboxState,
        group_id: str,
        kind: int,
        owners: Sequence[str],
        **values: Any,
    ) -> None:
        """Store the operation's notification for ``owners`` (``notify_content`` replaces the default)."""
        content = notification_content(group_id, self.operator, kind, self.notify_content, **values)
        msg = Outgoing(
            self.message_id, self.now_ms, Conversation(GROUP, group_id), self.operator, content,
            content.get("persist_flag", DEFAULT_PERSIST_FLAG),
        )  # fmt: skip
        self.notice = msg
        self.stored = store_notification(conn, inboxes, msg, owners)


def _live(group: GroupRecord | None) -> GroupRecord:
    if group is None or group.dismissed:
        raise Refused(ErrorCode.NOT_EXIST)
    return group


def _member(conn: Tx, group_id: str, user_id: str) -> MemberRecord | None:
    member = db.get_member(conn, group_id, user_id)
    return None if member is None or member.type == REMOVED else member


def _caller(conn: Tx, ctx: _Ctx, group: GroupRecord) -> MemberRecord | None:
    """The caller's member row; 9 unless a member (the admin may act without one)."""
    member = _member(conn, group.group_id, ctx.operator)
    if member is None and not ctx.admin:
        raise Refused(ErrorCode.NOT_IN_GROUP)
    return member


def _require(ok: bool) -> None:
    if not ok:
        raise Refused(ErrorCode.NOT_RIGHT)


def _privileged(ctx: _Ctx, member: MemberRecord | None) -> bool:
    return ctx.admin or (member is not None and member.type in PRIVILEGED)


def _not_organization(ctx: _Ctx, group: GroupRecord) -> None:
    """Organization groups change membership only through the admin API."""
    _require(ctx.admin or group.type != GroupType.ORGANIZATION)


def _current_members(conn: Tx, group: GroupRecord, user_ids: Sequence[str]) -> dict[str, MemberRecord]:
    """The rows of ``user_ids``; 9 unless every one is a current member."""
    rows = db.get_members_of(conn, group.group_id, user_ids)
    if any(rows.get(u) is None or rows[u].type == REMOVED for u in user_ids):
        raise Refused(ErrorCode.NOT_IN_GROUP)
    return rows


# --- the operations (writer thread) --------------------------------------------------------------


def op_create(
    conn: Tx, inboxes: InboxState, ctx: _Ctx, group_id: str, fields: dict[str, Any],
    members: list[str],
) -> Any:  # fmt: skip
    _require(ctx.admin or fields.get("type", 0) != GroupType.ORGANIZATION)
    if db.get_group(conn, group_id) is not None:
        raise Refused(ErrorCode.GROUP_ALREADY_EXISTS)
    everyone = list(dict.fromkeys([ctx.operator, *members]))
    if len(everyone) > ctx.max_members:
        raise Refused(ErrorCode.GROUP_EXCEEDS_MAX_MEMBERS)
    if len(users_db.existing_users(conn, everyone)) != len(everyone):
        raise Refused(ErrorCode.NOT_EXIST)
    rows = [(ctx.operator, OWNER)] + [(u, NORMAL) for u in everyone[1:]]
    if not db.create_group(conn, group_id, ctx.operator, fields, rows, ctx.now_ms):
        raise Refused(ErrorCode.GROUP_ALREADY_EXISTS)
    ctx.notify(
        conn, inboxes, group_id, GroupNotification.CREATE, everyone, n=fields.get("name", ""), ms=everyone[1:]
    )
    return {"group_id": group_id}


def op_add(conn: Tx, inboxes: InboxState, ctx: _Ctx, group_id: str, user_ids: list[str]) -> Any:
    group = _live(db.get_group(conn, group_id))
    caller = _member(conn, group_id, ctx.operator)
    if not ctx.admin:
        _not_organization(ctx, group)
        if caller is None:
            # Only joining by oneself, and only where anyone may join.
            self_join = user_ids == [ctx.operator]
            if not (self_join and group.type == GroupType.NORMAL and group.join_type == GroupJoinType.OPEN):
                raise Refused(ErrorCode.NOT_IN_GROUP)
        elif group.type == GroupType.RESTRICTED or group.join_type == GroupJoinType.MANAGERS_INVITE:
            _require(caller.type in PRIVILEGED)
    rows = db.get_members_of(conn, group_id, user_ids)
    if any(row.type != REMOVED for row in rows.values()):
        raise Refused(ErrorCode.ALREADY_IN_GROUP)
    if len(users_db.existing_users(conn, user_ids)) != len(user_ids):
        raise Refused(ErrorCode.NOT_EXIST)
    if group.member_count + len(user_ids) > ctx.max_members:
        raise Refused(ErrorCode.GROUP_EXCEEDS_MAX_MEMBERS)
    db.add_members(conn, group_id, user_ids, ctx.now_ms)
    ctx.notify(conn, inboxes, group_id, GroupNotification.ADD_MEMBERS, db.member_ids(conn, group_id), ms=user_ids)
    return None


def op_kick(conn: Tx, inboxes: InboxState, ctx: _Ctx, group_id: str, user_ids: list[str]) -> Any:
    group = _live(db.get_group(conn, group_id))
    caller = _caller(conn, ctx, group)
    _not_organization(ctx, group)
    _require(_privileged(ctx, caller))
    if ctx.operator in user_ids and not ctx.admin:
        raise Refused(ErrorCode.INVALID_PARAMETER)  # quitting is its own operation
    targets = _current_members(conn, group, user_ids)
    if not ctx.admin:
        assert caller is not None
        for target in targets.values():
            _require(target.type != OWNER and (target.type != MANAGER or caller.type == OWNER))
    elif any(t.type == OWNER for t in targets.values()):
        raise Refused(ErrorCode.NOT_RIGHT)  # a group keeps its owner: transfer first
    # The removed members are owners of this notification, so their devices learn it, and of nothing after.
    ctx.notify(conn, inboxes, group_id, GroupNotification.KICK_MEMBERS, db.member_ids(conn, group_id), ms=user_ids)
    db.remove_members(conn, group_id, user_ids, ctx.now_ms)
    return None


def op_quit(conn: Tx, inboxes: InboxState, ctx: _Ctx, group_id: str) -> Any:
    group = _live(db.get_group(conn, group_id))
    member = _member(conn, group_id, ctx.operator)
    if member is None:
        raise Refused(ErrorCode.NOT_IN_GROUP)
    _not_organization(ctx, group)
    _require(member.type != OWNER)  # the owner transfers first (or dismisses)
    ctx.notify(conn, inboxes, group_id, GroupNotification.QUIT, db.member_ids(conn, group_id))
    db.remove_members(conn, group_id, [ctx.operator], ctx.now_ms)
    return None


def op_dismiss(conn: Tx, inboxes: InboxState, ctx: _Ctx, group_id: str) -> Any:
    group = _live(db.get_group(conn, group_id))
    if not ctx.admin:
        _not_organization(ctx, group)
        _require(group.owner == ctx.operator)
    ctx.notify(conn, inboxes, group_id, GroupNotification.DISMISS, db.member_ids(conn, group_id))
    db.dismiss_group(conn, group_id, ctx.now_ms)
    return None


def op_transfer(conn: Tx, inboxes: InboxState, ctx: _Ctx, group_id: str, new_owner: str) -> Any:
    group = _live(db.get_group(conn, group_id))
    if not ctx.admin:
        _caller(conn, ctx, group)
        _require(group.owner == ctx.operator)
    if new_owner == group.owner:
        raise Refused(ErrorCode.INVALID_PARAMETER)
    _current_members(conn, group, [new_owner])
    db.set_member_types(conn, group_id, [(group.owner, NORMAL), (new_owner, OWNER)], ctx.now_ms)
    db.update_group(conn, group_id, {"owner": new_owner}, ctx.now_ms)
    ctx.notify(conn, inboxes, group_id, GroupNotification.TRANSFER, db.member_ids(conn, group_id), m=new_owner)
    return None


def op_modify(
    conn: Tx, inboxes: InboxState, ctx: _Ctx, group_id: str, name: str, value: Any
) -> Any:
    group = _live(db.get_group(conn, group_id))
    caller = _caller(conn, ctx, group)
    if not ctx.admin:
        assert caller is not None
        if name == "type":
            _require(caller.type == OWNER and value != GroupType.ORGANIZATION)
        elif not (name in MEMBER_EDITABLE and group.type == GroupType.NORMAL):
            _require(caller.type in PRIVILEGED)
    db.update_group(conn, group_id, {name: value}, ctx.now_ms)
    kind = INFO_FIELDS[name]
    if kind is not None:
        ctx.notify(conn, inboxes, group_id, kind, db.member_ids(conn, group_id), n=str(value))
    return None


def op_set_types(
    conn: Tx, inboxes: InboxState, ctx: _Ctx, group_id: str, kind: int, user_ids: list[str],
    on: bool,
) -> Any:  # fmt: skip
    """Managers (117), silenced (118) or allowed (119) members, set (``on``) or unset."""
    group = _live(db.get_group(conn, group_id))
    caller = _caller(conn, ctx, group)
    if kind == GroupNotification.MANAGERS:
        _require(ctx.admin or (caller is not None and caller.type == OWNER))
    else:
        _require(_privileged(ctx, caller))
    targets = _current_members(conn, group, user_ids)
    if kind == GroupNotification.MANAGERS:
        if any(t.type == OWNER for t in targets.values()):
            raise Refused(ErrorCode.INVALID_PARAMETER)
        special = MANAGER
    else:
        _require(all(t.type not in PRIVILEGED for t in targets.values()))
        special = SILENCED if kind == GroupNotification.SILENCE_MEMBERS else ALLOWED
    if on:
        changes = [(u, special) for u in user_ids if targets[u].type != special]
    else:
        changes = [(u, NORMAL) for u in user_ids if targets[u].type == special]
    if changes:
        db.set_member_types(conn, group_id, changes, ctx.now_ms)
    ctx.notify(conn, inboxes, group_id, kind, db.member_ids(conn, group_id), n="1" if on else "0", ms=user_ids)
    return None


def op_member_field(
    conn: Tx, inboxes: InboxState, ctx: _Ctx, group_id: str, member_id: str, column: str,
    value: str,
) -> Any:  # fmt: skip
    """A member's alias (111) or extra (123)."""
    group = _live(db.get_group(conn, group_id))
    caller = _caller(conn, ctx, group)
    target = _current_members(conn, group, [member_id])[member_id]
    if member_id != ctx.operator and not ctx.admin:
        assert caller is not None
        _require(caller.type == OWNER or (caller.type == MANAGER and target.type != OWNER))
    db.set_member_field(conn, group_id, member_id, column, value, ctx.now_ms)
    kind = GroupNotification.MEMBER_ALIAS if column == "alias" else GroupNotification.MEMBER_EXTRA
    ctx.notify(conn, inboxes, group_id, kind, db.member_ids(conn, group_id), n=value, m=member_id)
    return None


def _run(conn: Tx, inboxes: InboxState, fn: Callable[..., Any], ctx: _Ctx, *args: Any) -> Outcome:
    """Writer-thread entry: a refusal (``Refused``) undoes the operation's writes, in a savepoint of its own."""
    try:
        with savepoint(conn, "ember_group_op"):
            result = fn(conn, inboxes, ctx, *args)
    except Refused as refused:
        return Outcome(refused.code)
    return Outcome(ErrorCode.SUCCESS, result, ctx.notice, ctx.stored)


# --- the service (trio side) -------------------------------------------------------------------


class GroupService:
    """Group operations for client methods and the admin API; reads for sync."""

    def __init__(self, config: Config, store: Store, messages: MessageService, clock: Clock) -> None:
        self.config = config
        self.store = store
        self.messages = messages
        self.clock = clock

    def _ctx(self, operator: str, admin: bool, notify_content: dict[str, Any] | None) -> _Ctx:
        return _Ctx(
            operator, admin, self.clock.now_ms(), self.messages.ids.next_id(), notify_content,
            self.config.group.max_members,
        )  # fmt: skip

    async def _apply(
        self, fn: Callable[..., Any], operator: str, admin: bool, notify_content: dict[str, Any] | None,
        *args: Any,
    ) -> tuple[int, Any]:  # fmt: skip
        ctx = self._ctx(operator, admin, notify_content)
        outcome: Outcome = await self.store.run_with_inboxes(_run, fn, ctx, *args)
        if outcome.code != ErrorCode.SUCCESS:
            return outcome.code, None
        if outcome.notice is not None and outcome.stored is not None:
            # Every device of every owner, the caller's own included: it applies the notification like the rest.
            self.messages.deliver(outcome.notice, outcome.stored, None)
        return outcome.code, outcome.result

    # --- operations; each validates its inputs (FieldError: 251) -------------------------------

    async def create(
        self, operator: str, group_id: str | None, fields: dict[str, Any], members: list[str], *,
        admin: bool = False, notify_content: dict[str, Any] | None = None,
    ) -> tuple[int, Any]:  # fmt: skip
        check_group_fields(fields, self.config.message.max_text_bytes)
        gid = group_id or secrets.token_urlsafe(12)
        return await self._apply(op_create, operator, admin, notify_content, gid, fields, members)

    async def add(self, operator: str, group_id: str, user_ids: list[str], **kw: Any) -> tuple[int, Any]:
        return await self._op(op_add, operator, kw, group_id, _unique(user_ids))

    async def kick(self, operator: str, group_id: str, user_ids: list[str], **kw: Any) -> tuple[int, Any]:
        return await self._op(op_kick, operator, kw, group_id, _unique(user_ids))

    async def quit(self, operator: str, group_id: str, **kw: Any) -> tuple[int, Any]:
        return await self._op(op_quit, operator, kw, group_id)

    async def dismiss(self, operator: str, group_id: str, **kw: Any) -> tuple[int, Any]:
        return await self._op(op_dismiss, operator, kw, group_id)

    async def transfer(self, operator: str, group_id: str, new_owner: str, **kw: Any) -> tuple[int, Any]:
        return await self._op(op_transfer, operator, kw, group_id, new_owner)

    async def modify(self, operator: str, group_id: str, name: str, value: Any, **kw: Any) -> tuple[int, Any]:
        if name not in INFO_FIELDS:
            raise FieldError("field", f"one of {sorted(INFO_FIELDS)}")
        check_group_fields({name: value}, self.config.message.max_text_bytes, path="value")
        return await self._op(op_modify, operator, kw, group_id, name, value)

    async def set_managers(self, operator: str, group_id: str, user_ids: list[str], on: bool, **kw: Any) -> tuple[int, Any]:
        return await self._op(op_set_types, operator, kw, group_id, int(GroupNotification.MANAGERS), _unique(user_ids), on)

    async def silence(self, operator: str, group_id: str, user_ids: list[str], on: bool, **kw: Any) -> tuple[int, Any]:
        kind = int(GroupNotification.SILENCE_MEMBERS)
        return await self._op(op_set_types, operator, kw, group_id, kind, _unique(user_ids), on)

    async def allow(self, operator: str, group_id: str, user_ids: list[str], on: bool, **kw: Any) -> tuple[int, Any]:
        kind = int(GroupNotification.ALLOW_MEMBERS)
        return await self._op(op_set_types, operator, kw, group_id, kind, _unique(user_ids), on)

    async def member_alias(self, operator: str, group_id: str, member: str, alias: str, **kw: Any) -> tuple[int, Any]:
        return await self._op(op_member_field, operator, kw, group_id, member, "alias", alias)

    async def member_extra(self, operator: str, group_id: str, member: str, extra: str, **kw: Any) -> tuple[int, Any]:
        if extra:
            check_json("extra", extra)
        return await self._op(op_member_field, operator, kw, group_id, member, "extra", extra)

    async def _op(self, fn: Callable[..., Any], operator: str, kw: dict[str, Any], *args: Any) -> tuple[int, Any]:
        return await self._apply(fn, operator, kw.get("admin", False), kw.get("notify_content"), *args)

    # --- reads -----------------------------------------------------------------------------------

    async def info(self, group_id: str, held_version: int = 0) -> tuple[int, Any]:
        """{info_version, member_version, group}: ``group`` is nil when ``held_version`` is current."""
        group = await self.store.read(db.get_group, group_id)
        if group is None or group.dismissed:
            return ErrorCode.NOT_EXIST, None
        return ErrorCode.SUCCESS, {
            "info_version": group.info_version,
            "member_version": group.member_version,
            "group": None if held_version == group.info_version else group.to_wire(),
        }

    async def members(
        self,
        caller: str | None,
        group_id: str,
        since_version: int = 0,
        after: tuple[int, str] = (0, ""),
        limit: int = 200,
    ) -> tuple[int, Any]:
        """A page of the member rows changed after ``since_version`` (tombstones too), for a current member
        (``caller`` None: the admin API, anyone's)."""
        return await self.store.read(_members_page, caller, group_id, since_version, after, limit)

    async def my_groups(self, user_id: str) -> list[dict[str, Any]]:
        groups = await self.store.read(db.user_groups, user_id)
        return [
            {"group_id": g.group_id, "info_version": g.info_version, "member_version": g.member_version}
            for g in groups
        ]

    async def common(self, user_id: str, other: str) -> list[str]:
        return await self.store.read(db.common_groups, user_id, other)


def _members_page(
    conn: Tx, caller: str | None, group_id: str, since: int, after: tuple[int, str], limit: int
) -> tuple[int, Any]:
    """In one read transaction: the membership check, the page and the version it is part of.

    A device holding a version below the group's member horizon may have missed a removal whose tombstone
    was purged: it gets the first page from 0 instead (``after`` ignored), flagged ``reset`` (§13.4).
    """
    group = db.get_group(conn, group_id)
    if group is None or group.dismissed:
        return ErrorCode.NOT_EXIST, None
    if caller is not None and _member(conn, group_id, caller) is None:
        return ErrorCode.NOT_IN_GROUP, None
    reset = 0 < since < db.member_horizon(conn, group_id)
    if reset:
        since, after = 0, (0, "")
    rows = db.list_members(conn, group_id, since, after, limit)
    page: dict[str, Any] = {"member_version": group.member_version, "members": [m.to_wire() for m in rows]}
    if reset:
        page["reset"] = True
    return ErrorCode.SUCCESS, page


def _unique(user_ids: list[str]) -> list[str]:
    ids = list(dict.fromkeys(user_ids))
    if not ids:
        raise FieldError("user_ids", "at least one user id")
    return ids


def check_group_fields(fields: dict[str, Any], max_text: int, path: str | None = None) -> None:
    """The group fields' types and ranges (FieldError: 251)."""
    for name, value in fields.items():
        where = path or name
        if name in ("name", "portrait", "extra"):
            limit = {"name": MAX_NAME, "portrait": MAX_PORTRAIT, "extra": max_text}[name]
            if not isinstance(value, str) or len(value.encode()) > limit:
                raise FieldError(where, f"must be a string of at most {limit} bytes")
            if name == "extra" and value:
                check_json(where, value)
        elif name in ("type", "join_type", "mute"):
            allowed = {"type": GROUP_TYPES, "join_type": JOIN_TYPES, "mute": frozenset({0, 1})}[name]
            if value.__class__ is not int or value not in allowed:
                raise FieldError(where, f"must be one of {sorted(allowed)}")
        else:
            raise FieldError(where, "not a group field")
