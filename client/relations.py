"""Friends, friend requests, blacklist and settings for the app, with a local synced copy of each (SPEC §7, §9).

``Client.relations`` is a ``Relations``. Its methods are typed wrappers over the gateway's
relation methods (docs/PROTOCOL.md §12). With ``connect(..., sync_relations=True)`` it also keeps a
copy of the user's four streams — ``friends``, ``requests`` (sent and received), ``blacklist`` and
``settings`` — that every device of the user converges to without asking:

- each stream has a version (``versions``): the server's head it has caught up to;
- after every (re)connect, while the status is RECEIVING, each stream whose CONNACK head is past
  its version is pulled (``sync_friends`` etc., ``after=version``, pages of ``SYNC_LIMIT``) until
  the page's head is reached;
- a ``head`` NOTIFY (another device, or the other user of a request, changed the stream) wakes a
  background task that pulls the same way; this device's own changes are pulled after their answer;
- items flagged ``deleted`` (tombstones) remove what they name, so a device away for a month
  converges, deletions included; a head below the version (a restored server) starts the stream
  over from 0;
- the server keeps tombstones for a retention (default 90 days): a device that held a version from
  before the deletions it purged gets a page flagged ``reset`` (the stream from 0), and the copy of
  that stream is dropped and rebuilt from it; while a sync from 0 is under way each request also
  carries ``full_sync_head`` (the first page's head), so that a long stream is not reset again page
  after page;
- after a pull that changed a stream, a ``RelationsChanged(stream, version)`` goes to
  ``Client.events()``.

An app that persists the copies saves ``relations.snapshot()`` and passes it back on the next start
(``connect(relations_snapshot=...)``): the first pull then asks only for what changed since. By
default the copy starts empty and the first connect pulls everything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import trio

from protocol.codes import ErrorCode, FriendRequestStatus

from .core import Core, LinkView, Signal
from .errors import ClientClosed, RequestFailed, RequestTimeout

log = logging.getLogger("ember.client.relations")

#: The NOTIFY topic of a stream's new head.
HEAD_TOPIC: Final = "head"
FRIEND: Final = "friend"
FRIEND_REQUEST: Final = "friend_request"
BLACKLIST: Final = "blacklist"
SETTING: Final = "setting"
STREAMS: Final = (FRIEND, FRIEND_REQUEST, BLACKLIST, SETTING)
_METHODS: Final = {
    FRIEND: "sync_friends",
    FRIEND_REQUEST: "sync_friend_requests",
    BLACKLIST: "sync_blacklist",
    SETTING: "sync_settings",
}
#: Items asked for per sync page (the server's most).
SYNC_LIMIT: Final = 500
#: How long a refused sync (250: the server's window is 5 s) waits before asking again.
RATE_LIMITED_WAIT_SECONDS: Final = 1.0


@dataclass(frozen=True, slots=True)
class Friend:
    friend_id: str
    alias: str
    extra: str
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class FriendRequest:
    """A request from ``from_user`` to ``to_user``; ``status`` is a ``FriendRequestStatus``; ``read`` is the receiver's."""

    from_user: str
    to_user: str
    reason: str
    extra: str
    status: int
    read: bool
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class Setting:
    scope: int
    key: str
    value: str
    updated_at: int


@dataclass(frozen=True, slots=True)
class RelationsChanged:
    """Put on ``Client.events()`` after a pull changed the local copy of ``stream``."""

    stream: str
    version: int


@dataclass(frozen=True)
class Snapshot:
    """The local copies and their versions, for an app to persist and restore (plain data)."""

    versions: Mapping[str, int]
    friends: Mapping[str, Friend]
    requests: Mapping[tuple[str, str], FriendRequest]
    blacklist: Mapping[str, int]
    settings: Mapping[tuple[int, str], Setting]


class Relations:
    """Relation calls and, with ``sync``, the local copies (see the module docstring).

    Each setting the sync brings (set, or removed: ``None``) is published on ``setting_changed`` as
    ``(scope, key, value)``, for the client to route (``client.core``). ``on_head``, ``serve_link`` and
    ``catch_up`` are the client's hooks.
    """

    def __init__(self, core: Core, *, sync: bool, snapshot: Snapshot | None = None) -> None:
        self._core = core
        self._sync = sync
        self.setting_changed: Signal[int, str, str | None] = Signal()
        #: friend id → Friend
        self.friends: dict[str, Friend] = dict(snapshot.friends) if snapshot else {}
        #: (from_user, to_user) → FriendRequest, both directions
        self.requests: dict[tuple[str, str], FriendRequest] = dict(snapshot.requests) if snapshot else {}
        #: blocked user id → when it was blocked (ms)
        self.blacklist: dict[str, int] = dict(snapshot.blacklist) if snapshot else {}
        #: (scope, key) → Setting
        self.settings: dict[tuple[int, str], Setting] = dict(snapshot.settings) if snapshot else {}
        #: stream → the version the copy has caught up to
        self.versions: dict[str, int] = {
            s: int(snapshot.versions.get(s, 0)) if snapshot else 0 for s in STREAMS
        }
        self._server: dict[str, int] = dict(self.versions)  # the newest head the server told us
        # While a stream is being synced from 0: the head of its first page (sent as full_sync_head); else 0.
        self._full_sync_head: dict[str, int] = {s: 0 for s in STREAMS}
        self._locks = {s: trio.Lock() for s in STREAMS}
        self._wake = trio.Event()
        self._changed = trio.Event()
        #: sync pages fetched so far (for tests and metrics)
        self.pages = 0
        #: ``reset`` pages received: a stream's copy dropped and rebuilt from 0 (for tests and metrics)
        self.resets = 0

    @property
    def syncing(self) -> bool:
        return self._sync

    def snapshot(self) -> Snapshot:
        """The copies as they are now (take it between pulls, e.g. after a ``RelationsChanged``)."""
        return Snapshot(
            dict(self.versions),
            dict(self.friends),
            dict(self.requests),
            dict(self.blacklist),
            dict(self.settings),
        )

    # --- the local copy --------------------------------------------------------------------------

    @property
    def unread_request_count(self) -> int:
        """Pending requests this user received and has not marked read (from the local copy)."""
        me = self._core.user_id
        return sum(
            1
            for r in self.requests.values()
            if r.to_user == me and not r.read and r.status == FriendRequestStatus.SENT
        )

    def setting(self, scope: int, key: str) -> str | None:
        """A setting's value from the local copy, or None."""
        found = self.settings.get((scope, key))
        return None if found is None else found.value

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, checking after every change to the copy (bound it yourself)."""
        while not predicate():
            await self._changed.wait()

    # --- calls -----------------------------------------------------------------------------------

    async def send_request(self, user_id: str, reason: str = "", extra: str = "") -> None:
        """Ask ``user_id`` to be friends. Raises RequestFailed: 16, 18, 23, 246, 251, 253, 220."""
        await self.call_and_pull(
            "send_friend_request", (FRIEND_REQUEST,), user_id=user_id, reason=reason, extra=extra
        )

    async def handle_request(self, user_id: str, accept: bool) -> None:
        """Accept or reject the request from ``user_id``. Raises RequestFailed: 19 expired, 253 none pending."""
        await self.call_and_pull("handle_friend_request", (FRIEND_REQUEST, FRIEND), user_id=user_id, accept=accept)

    async def mark_requests_read(self, until: int | None = None) -> int:
        """Mark received requests made at or before ``until`` (ms; default: now) read; how many were."""
        params = {} if until is None else {"until": until}
        return int((await self.call_and_pull("mark_friend_requests_read", (FRIEND_REQUEST,), **params))["count"])

    async def delete_friend(self, user_id: str) -> None:
        await self.call_and_pull("delete_friend", (FRIEND,), user_id=user_id)

    async def set_alias(self, user_id: str, alias: str) -> None:
        await self.call_and_pull("set_friend_alias", (FRIEND,), user_id=user_id, alias=alias)

    async def set_extra(self, user_id: str, extra: str) -> None:
        await self.call_and_pull("set_friend_extra", (FRIEND,), user_id=user_id, extra=extra)

    async def set_blacklist(self, user_id: str, blocked: bool) -> None:
        await self.call_and_pull("set_blacklist", (BLACKLIST,), user_id=user_id, blocked=blocked)

    async def put_setting(self, scope: int, key: str, value: str) -> int:
        """Set a setting ("" removes it); returns the setting stream's version after it."""
        return int(
            (await self.call_and_pull("put_setting", (SETTING,), scope=scope, key=key, value=value))["version"]
        )

    async def get_setting(self, scope: int, key: str) -> Setting | None:
        """Ask the server for one setting (None if unset)."""
        response = await self._core.request("get_setting", scope=scope, key=key)
        if response.code == ErrorCode.NOT_EXIST:
            return None
        if not response.ok:
            raise RequestFailed("get_setting", response.code)
        r = response.result
        return Setting(r["scope"], r["key"], r["value"], r["updated_at"])

    async def sync(self, *streams: str) -> None:
        """Pull the given streams (default: all four) up to the server's head now."""
        for stream in streams or STREAMS:
            await self._pull(stream)

    async def call_and_pull(self, method: str, streams: tuple[str, ...], **params: Any) -> Any:
        """Make a call that changes ``streams`` and return its result; with the sync on, pull those streams
        at once (this device is not pushed its own change). Also for the other sub-APIs whose calls move
        these streams (``client.channels``: a listen is a setting).

        Raises:
            RequestFailed: the server refused the call.
        """
        response = await self._core.request(method, params)
        if not response.ok:
            raise RequestFailed(method, response.code, response.result)
        if self._sync:
            try:
                for stream in streams:  # this device is not pushed its own change: pull it now
                    await self._pull(stream)
            except (ClientClosed, RequestTimeout):
                pass  # the change is made; the next connect's catch-up brings it
        return response.result

    # --- sync ------------------------------------------------------------------------------------

    def on_head(self, data: Any) -> bool:
        """A ``head`` NOTIFY with the sync on: the sync takes it (True); never blocks."""
        self._on_head(data)
        return True

    def _on_head(self, data: Any) -> None:
        """A ``head`` NOTIFY: remember the server's head and wake the pull task if we are behind."""
        if not isinstance(data, dict):
            return
        stream, head = data.get("stream"), data.get("head")
        if stream not in self.versions or head.__class__ is not int:
            return
        self._server[stream] = max(self._server[stream], head)
        if head != self.versions[stream]:
            self._wake.set()

    @property
    def catches_up(self) -> bool:
        return self._sync

    async def catch_up(self, link: LinkView) -> None:
        heads = link.connack.heads or {}
        for stream in STREAMS:
            head = heads.get(stream, 0)
            self._server[stream] = head if isinstance(head, int) else 0
            if self._server[stream] != self.versions[stream]:
                try:
                    await self._pull(stream)
                except RequestFailed as exc:  # 250 (rate limited) or a server error: try again in the background
                    log.info("sync of %s refused with %s; trying again later", stream, exc.code)
                    self._wake.set()

    async def serve_link(self, link: LinkView) -> None:
        """With the sync on: pull streams that pushes said are behind, until the link ends."""
        if not self._sync:
            return
        while not link.closed:
            await self._wake.wait()
            self._wake = trio.Event()
            for stream in STREAMS:
                if self._server[stream] != self.versions[stream]:
                    try:
                        with self._core.receiving():
                            await self._pull(stream)
                    except (ClientClosed, RequestTimeout):
                        return  # the next link catches up from its CONNACK
                    except RequestFailed as exc:  # 250 or a server error: wait, then try again
                        log.info("sync of %s refused with %s; trying again in %g s", stream, exc.code,
                                 RATE_LIMITED_WAIT_SECONDS)  # fmt: skip
                        await trio.sleep(RATE_LIMITED_WAIT_SECONDS)
                        self._wake.set()

    async def _pull(self, stream: str) -> None:
        async with self._locks[stream]:
            changed = False
            while True:
                after = self.versions[stream]
                if after == 0:
                    self._full_sync_head[stream] = 0  # a sync from 0 starts: its first page sets it
                params: dict[str, int] = {"after": after, "limit": SYNC_LIMIT}
                if self._full_sync_head[stream]:
                    params["full_sync_head"] = self._full_sync_head[stream]
                response = await self._core.request(_METHODS[stream], params)
                if response.code == ErrorCode.FUNCTION_DISABLED:  # friend.hosting off: nothing to keep
                    self._server[stream] = self.versions[stream]
                    break
                if not response.ok:
                    raise RequestFailed(_METHODS[stream], response.code)
                self.pages += 1
                items, head = response.result["items"], response.result["head"]
                if response.result.get("reset") is True:
                    # Tombstones we had not seen were purged: this page is the stream from 0 (§12.1).
                    log.info("%s: version %d is below the server's purge horizon; syncing it from 0", stream, after)
                    self.resets += 1
                    self._clear(stream)
                    self.versions[stream] = 0
                    changed = True
                elif head < after:  # the server's stream is behind ours (a restored database): start over
                    log.warning(
                        "%s head %d below our version %d: syncing it again from 0", stream, head, after
                    )
                    self._clear(stream)
                    self.versions[stream] = 0
                    self._server[stream] = head
                    changed = True
                    continue
                if self.versions[stream] == 0:
                    self._full_sync_head[stream] = head
                for item in items:
                    self._apply(stream, item)
                    self.versions[stream] = max(self.versions[stream], item["version"])
                changed = changed or bool(items)
                if not items or self.versions[stream] >= head:
                    self.versions[stream] = max(self.versions[stream], head)
                    self._server[stream] = max(self._server[stream], head)
                    self._full_sync_head[stream] = 0
                    break
            if changed:
                self._changed.set()
                self._changed = trio.Event()
                self._core.emit(RelationsChanged(stream, self.versions[stream]))

    def _clear(self, stream: str) -> None:
        copies: dict[str, dict[Any, Any]] = {
            FRIEND: self.friends, FRIEND_REQUEST: self.requests, BLACKLIST: self.blacklist, SETTING: self.settings,
        }  # fmt: skip
        copies[stream].clear()

    def _apply(self, stream: str, item: Mapping[str, Any]) -> None:
        deleted = item.get("deleted", False)
        if stream == FRIEND:
            if deleted:
                self.friends.pop(item["friend_id"], None)
            else:
                self.friends[item["friend_id"]] = Friend(
                    item["friend_id"], item["alias"], item["extra"], item["created_at"], item["updated_at"]
                )
        elif stream == FRIEND_REQUEST:
            request = FriendRequest(
                item["from"], item["to"], item["reason"], item["extra"], item["status"], item["read"],
                item["created_at"], item["updated_at"],
            )  # fmt: skip
            self.requests[(request.from_user, request.to_user)] = request
        elif stream == BLACKLIST:
            if deleted:
                self.blacklist.pop(item["user_id"], None)
            else:
                self.blacklist[item["user_id"]] = item["created_at"]
        elif deleted:
            self.settings.pop((item["scope"], item["key"]), None)
            self.setting_changed.publish(item["scope"], item["key"], None)
        else:
            self.settings[(item["scope"], item["key"])] = Setting(
                item["scope"], item["key"], item["value"], item["updated_at"]
            )
            self.setting_changed.publish(item["scope"], item["key"], item["value"])
