"""Hosted groups for the app (SPEC §8): typed operations, a cache of info and members by version, events.

``Client.groups`` is a ``Groups``. Its operations are thin typed wrappers over the
gateway's group methods (docs/PROTOCOL.md §13); a refusal raises ``RequestFailed``
with the code (248 not allowed, 9 not a member, ...).

The cache: ``info(group_id)`` and ``members(group_id)`` fetch on demand (FAQ §9)
and keep what they got with its version; the next call sends the version held
and gets only what changed (the info: nothing when it is current; the members:
the rows changed since, paged, removed members as tombstones that leave the
cache; a page flagged ``reset`` — the version held is older than the server's
tombstone retention — is the list from 0, and the cached members are dropped and
rebuilt from it). Group notification messages (content types 104–123) that reach this
device — pushed or pulled, with ``sync_messages`` through ``received()``, else
from the ``msg`` pushes on ``events()`` — are applied to the cache at once
(name, mute, members added, kicked, managers, ...), and each one yields a
``GroupEvent`` on ``events()``. The applied change is provisional: the versions
held stay as they were, so the next fetch brings the server's rows, which win; a
fetch that changed the cache yields a ``GroupSynced``.

The SDK stores the notifications an app shows (``notifications(group_id)``),
in arrival order, except those with persist flag 0 or 4 (FAQ §15: a caller's
``notify_content`` with persist flag 0 is applied and reported, never kept).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import trio

from protocol.codes import ConversationType, GroupMemberType, GroupNotification, PersistFlag

from .core import Core
from .errors import RequestFailed
from .messages import Message, SeenIds, parse_message

log = logging.getLogger("ember.client.groups")

GROUP = int(ConversationType.GROUP)
NOTIFICATION_TYPES = frozenset(int(t) for t in GroupNotification)
NOT_KEPT = frozenset({int(PersistFlag.NOT_PERSIST), int(PersistFlag.TRANSPARENT)})
#: Members asked for per page (the server allows up to 500).
MEMBERS_PAGE = 500
#: Notifications kept per group.
KEPT_PER_GROUP = 1000
#: Notification ids remembered for dedup.
SEEN_NOTIFICATIONS = 10_000
N = GroupNotification
_TYPE_BY_KIND = {
    int(N.MANAGERS): int(GroupMemberType.MANAGER),
    int(N.SILENCE_MEMBERS): int(GroupMemberType.SILENCED),
    int(N.ALLOW_MEMBERS): int(GroupMemberType.ALLOWED),
}


@dataclass(frozen=True, slots=True)
class GroupInfo:
    group_id: str
    name: str
    portrait: str
    owner: str
    extra: str
    type: int
    join_type: int
    mute: int
    member_count: int
    info_version: int
    member_version: int
    created_at: int
    updated_at: int

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> GroupInfo:
        return cls(**{name: raw[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class GroupMember:
    user_id: str
    type: int
    alias: str = ""
    extra: str = ""
    join_time: int = 0
    version: int = 0

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> GroupMember:
        return cls(**{name: raw[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class GroupEvent:
    """A group notification this device received and applied to its cache.

    Attributes:
        kind: the content type (``protocol.codes.GroupNotification``: 104 create … 123 member extra).
        data: its data JSON: ``g`` group, ``o`` operator, and as the kind has them ``n`` value,
            ``m`` member, ``ms`` members.
        removed: this user left the group with it (kicked, quit, dismissed): the cache dropped it.
    """

    group_id: str
    kind: int
    operator: str
    data: Mapping[str, Any]
    message: Message
    removed: bool = False


@dataclass(frozen=True, slots=True)
class GroupSynced:
    """A fetch by version changed the cache (the server's rows, which win over what notifications applied).

    Attributes:
        info: the info changed (``info`` is the new one), or None.
        members_changed: user ids whose member rows were added or changed.
        members_removed: user ids that left the member list (tombstones).
    """

    group_id: str
    info: GroupInfo | None = None
    members_changed: tuple[str, ...] = ()
    members_removed: tuple[str, ...] = ()


#: What ``Groups.events()`` yields.
GroupChange = GroupEvent | GroupSynced


@dataclass
class _Cached:
    info: GroupInfo | None = None
    members: dict[str, GroupMember] | None = None
    member_version: int = 0
    kept: list[Message] = field(default_factory=list)


class Groups:
    """``Client.groups``: group operations, the cache and its events."""

    def __init__(self, core: Core, *, event_buffer: int = 1000) -> None:
        self._core = core
        self._cache: dict[str, _Cached] = {}
        self._seen = SeenIds(SEEN_NOTIFICATIONS)  # notifications already applied (pushed and pulled: dedup)
        self._events_tx, self._events_rx = trio.open_memory_channel[GroupChange](event_buffer)
        self.dropped_events = 0
        #: member pages flagged ``reset`` received (the cached members dropped and fetched from 0)
        self.resets = 0

    def events(self) -> trio.MemoryReceiveChannel[GroupChange]:
        """What changed the cache, in order: ``GroupEvent`` for each notification applied, ``GroupSynced``
        for each fetch that brought changes (when the channel is full, new ones are dropped and counted)."""
        return self._events_rx

    def _emit(self, event: GroupChange) -> None:
        try:
            self._events_tx.send_nowait(event)
        except trio.WouldBlock:
            self.dropped_events += 1

    def notifications(self, group_id: str) -> list[Message]:
        """The group's notification messages this device stored (persist flag 1 or 3), oldest first."""
        cached = self._cache.get(group_id)
        return list(cached.kept) if cached else []

    def cached_info(self, group_id: str) -> GroupInfo | None:
        cached = self._cache.get(group_id)
        return cached.info if cached else None

    def cached_members(self, group_id: str) -> dict[str, GroupMember] | None:
        cached = self._cache.get(group_id)
        return dict(cached.members) if cached and cached.members is not None else None

    # --- operations ------------------------------------------------------------------------------

    async def create(
        self,
        members: Iterable[str] = (),
        *,
        name: str = "",
        group_id: str | None = None,
        portrait: str = "",
        extra: str = "",
        type: int = 0,  # noqa: A002 - the protocol's name
        join_type: int = 0,
        notify_content: Mapping[str, Any] | None = None,
    ) -> str:
        """Create a group with this user as owner; its id."""
        params: dict[str, Any] = {
            "members": list(members), "name": name, "portrait": portrait, "extra": extra, "type": type,
            "join_type": join_type,
        }  # fmt: skip
        if group_id is not None:
            params["group_id"] = group_id
        result = await self._call("create_group", notify_content, **params)
        return str(result["group_id"])

    async def add(self, group_id: str, user_ids: Iterable[str], *, notify_content: Mapping[str, Any] | None = None) -> None:
        await self._call("add_group_members", notify_content, group_id=group_id, user_ids=list(user_ids))

    async def kick(self, group_id: str, user_ids: Iterable[str], *, notify_content: Mapping[str, Any] | None = None) -> None:
        await self._call("kick_group_members", notify_content, group_id=group_id, user_ids=list(user_ids))

    async def quit(self, group_id: str, *, notify_content: Mapping[str, Any] | None = None) -> None:
        """Leave the group (the owner cannot: transfer first, 248)."""
        await self._call("quit_group", notify_content, group_id=group_id)

    async def dismiss(self, group_id: str, *, notify_content: Mapping[str, Any] | None = None) -> None:
        await self._call("dismiss_group", notify_content, group_id=group_id)

    async def transfer(self, group_id: str, new_owner: str, *, notify_content: Mapping[str, Any] | None = None) -> None:
        await self._call("transfer_group", notify_content, group_id=group_id, new_owner=new_owner)

    async def modify(
        self, group_id: str, field_name: str, value: str | int, *, notify_content: Mapping[str, Any] | None = None
    ) -> None:
        """Set ``name``, ``portrait``, ``extra``, ``mute``, ``join_type`` or ``type``."""
        await self._call("modify_group_info", notify_content, group_id=group_id, field=field_name, value=value)

    async def set_managers(
        self, group_id: str, user_ids: Iterable[str], is_manager: bool = True, *,
        notify_content: Mapping[str, Any] | None = None,
    ) -> None:  # fmt: skip
        await self._call(
            "set_group_managers", notify_content, group_id=group_id, user_ids=list(user_ids), is_manager=is_manager
        )

    async def silence(
        self, group_id: str, user_ids: Iterable[str], silenced: bool = True, *,
        notify_content: Mapping[str, Any] | None = None,
    ) -> None:  # fmt: skip
        await self._call(
            "silence_group_members", notify_content, group_id=group_id, user_ids=list(user_ids), silenced=silenced
        )

    async def allow(
        self, group_id: str, user_ids: Iterable[str], allowed: bool = True, *,
        notify_content: Mapping[str, Any] | None = None,
    ) -> None:  # fmt: skip
        await self._call(
            "allow_group_members", notify_content, group_id=group_id, user_ids=list(user_ids), allowed=allowed
        )

    async def set_alias(self, group_id: str, alias: str, *, member: str | None = None) -> None:
        """This user's alias in the group (or ``member``'s, for the owner and managers)."""
        params: dict[str, Any] = {"group_id": group_id, "alias": alias}
        if member is not None:
            params["member"] = member
        await self._call("set_group_member_alias", None, **params)

    async def set_member_extra(self, group_id: str, extra: str, *, member: str | None = None) -> None:
        params: dict[str, Any] = {"group_id": group_id, "extra": extra}
        if member is not None:
            params["member"] = member
        await self._call("set_group_member_extra", None, **params)

    async def my_groups(self) -> list[str]:
        """The ids of every group this user is a member of (the contact list shows only favorites)."""
        result = await self._call("get_my_groups", None)
        return [g["group_id"] for g in result["groups"]]

    async def common(self, user_id: str) -> list[str]:
        """The groups this user and ``user_id`` are both members of."""
        return list((await self._call("get_common_groups", None, user_id=user_id))["group_ids"])

    # --- the cache -------------------------------------------------------------------------------

    async def info(self, group_id: str, *, refresh: bool = True) -> GroupInfo:
        """The group's info; with ``refresh``, asks the server with the version held (nothing comes back
        when it is current). Raises ``RequestFailed`` 253 for an unknown or dismissed group."""
        cached = self._cache.setdefault(group_id, _Cached())
        if cached.info is not None and not refresh:
            return cached.info
        held = cached.info.info_version if cached.info is not None else 0
        result = await self._call("get_group_info", None, group_id=group_id, info_version=held)
        if result["group"] is not None:
            fresh = GroupInfo.from_wire(result["group"])
            if fresh != cached.info:
                self._emit(GroupSynced(group_id, info=fresh))
            cached.info = fresh
        assert cached.info is not None
        return cached.info

    async def members(self, group_id: str) -> dict[str, GroupMember]:
        """The members (user id → member), synced by version: only rows changed since the last sync."""
        cached = self._cache.setdefault(group_id, _Cached())
        since = cached.member_version if cached.members is not None else 0
        rows: dict[str, GroupMember] = dict(cached.members or {})
        before = dict(rows)
        after_version, after_user = 0, ""
        while True:
            page = await self._call(
                "get_group_members", None, group_id=group_id, since_version=since, after_version=after_version,
                after_user=after_user, limit=MEMBERS_PAGE,
            )  # fmt: skip
            if page.get("reset") is True:
                # Removals we had not seen were purged: this is the first page of the list from 0 (§13.4).
                log.info("group %s: member version %d is below the purge horizon; fetching the list from 0",
                         group_id, since)  # fmt: skip
                self.resets += 1
                rows, since = {}, 0
            for raw in page["members"]:
                member = GroupMember.from_wire(raw)
                if member.type == GroupMemberType.REMOVED:
                    rows.pop(member.user_id, None)
                else:
                    rows[member.user_id] = member
            version = page["member_version"]
            if len(page["members"]) < MEMBERS_PAGE:
                break
            last = page["members"][-1]
            after_version, after_user = last["version"], last["user_id"]
        cached.members, cached.member_version = rows, version
        changed = tuple(sorted(u for u, m in rows.items() if before.get(u) != m))
        removed = tuple(sorted(set(before) - set(rows)))
        if changed or removed:
            self._emit(GroupSynced(group_id, members_changed=changed, members_removed=removed))
        return dict(rows)

    # --- notifications ---------------------------------------------------------------------------

    def on_push(self, data: Any) -> None:
        """A ``msg`` push the inbox sync did not take (it is off): a group notification still updates the cache."""
        if isinstance(data, dict):
            pushed = parse_message(data.get("message"), 0)
            if pushed is not None:
                self.observe(pushed)

    def observe(self, message: Message) -> None:
        """A message reached this device (pushed or pulled): apply it if it is a group notification."""
        if message.conv.type != GROUP or message.content_type not in NOTIFICATION_TYPES:
            return
        if message.message_id in self._seen:
            return
        self._seen.add(message.message_id)
        try:
            data = json.loads(message.content.get("data") or b"{}")
            if not isinstance(data, dict):
                raise ValueError("not a map")
        except ValueError:
            log.warning("group notification %d with unreadable data", message.message_id)
            return
        group_id = message.conv.target
        removed = self._apply(group_id, message.content_type, message.from_user, data)
        if message.content.get("persist_flag", int(PersistFlag.PERSIST)) not in NOT_KEPT and not removed:
            kept = self._cache.setdefault(group_id, _Cached()).kept
            kept.append(message)
            del kept[:-KEPT_PER_GROUP]
        self._emit(GroupEvent(group_id, message.content_type, message.from_user, data, message, removed))

    def _apply(self, group_id: str, kind: int, operator: str, data: Mapping[str, Any]) -> bool:
        """Apply a notification to the cache; True when this user left the group with it."""
        me = self._core.user_id
        listed = [u for u in data.get("ms", ()) if isinstance(u, str)]
        if kind == N.DISMISS or (kind == N.KICK_MEMBERS and me in listed) or (kind == N.QUIT and operator == me):
            self._cache.pop(group_id, None)
            return True
        cached = self._cache.setdefault(group_id, _Cached())
        members = cached.members
        value = data.get("n")
        if kind == N.ADD_MEMBERS and members is not None:
            for user_id in listed:
                members.setdefault(user_id, GroupMember(user_id, int(GroupMemberType.NORMAL)))
        elif kind == N.KICK_MEMBERS and members is not None:
            for user_id in listed:
                members.pop(user_id, None)
        elif kind == N.QUIT and members is not None:
            members.pop(operator, None)
        elif kind == N.TRANSFER and isinstance(data.get("m"), str):
            new_owner = data["m"]
            if members is not None:
                for user_id, member in list(members.items()):
                    if member.type == GroupMemberType.OWNER:
                        members[user_id] = replace(member, type=int(GroupMemberType.NORMAL))
                if new_owner in members:
                    members[new_owner] = replace(members[new_owner], type=int(GroupMemberType.OWNER))
            if cached.info is not None:
                cached.info = replace(cached.info, owner=new_owner)
        elif kind in _TYPE_BY_KIND and members is not None:
            special = _TYPE_BY_KIND[kind]
            for user_id in listed:
                listed_member = members.get(user_id)
                if listed_member is None:
                    continue
                if value == "1":
                    members[user_id] = replace(listed_member, type=special)
                elif listed_member.type == special:
                    members[user_id] = replace(listed_member, type=int(GroupMemberType.NORMAL))
        elif kind in (N.MEMBER_ALIAS, N.MEMBER_EXTRA) and members is not None and isinstance(value, str):
            target = members.get(data.get("m", ""))
            if target is not None:
                if kind == N.MEMBER_ALIAS:
                    members[target.user_id] = replace(target, alias=value)
                else:
                    members[target.user_id] = replace(target, extra=value)
        elif cached.info is not None and isinstance(value, str):
            info = cached.info
            if kind == N.NAME:
                cached.info = replace(info, name=value)
            elif kind == N.PORTRAIT:
                cached.info = replace(info, portrait=value)
            elif kind == N.EXTRA:
                cached.info = replace(info, extra=value)
            elif kind == N.MUTE and value.isdigit():
                cached.info = replace(info, mute=int(value))
            elif kind == N.JOIN_TYPE and value.isdigit():
                cached.info = replace(info, join_type=int(value))
        if members is not None and cached.info is not None:
            cached.info = replace(cached.info, member_count=len(members))
        return False

    async def _call(self, method: str, notify_content: Mapping[str, Any] | None, **params: Any) -> Any:
        if notify_content is not None:
            params["notify_content"] = dict(notify_content)
        response = await self._core.request(method, params)
        if not response.ok:
            raise RequestFailed(method, response.code, response.result)
        return response.result
