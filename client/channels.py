"""Channels for the app (conversation type 3): typed operations, a channel-info cache by version, events.

``Client.channels`` is a ``Channels``. Its operations are thin typed wrappers over the
gateway's channel methods (docs/PROTOCOL.md §15); a refusal raises ``RequestFailed`` with
the code (253 no such channel, 248 not allowed, 21 not listening).

The cache: ``info(channel_id)`` fetches on demand and keeps the info with its version; the
next call sends the version held and gets nothing back when it is current. A fetch that
changed the cache yields ``ChannelSynced`` on ``events()``; one answered 253 (destroyed, or a
private channel no longer visible) drops the entry and yields ``ChannelGone``.
``refresh_mine()`` asks which channels this user owns and listens to, with their versions, and
fetches only the stale ones.

Which channels the user owns and listens to is also in the setting stream (scopes 8 and 9,
written by the server): with ``connect(..., sync_relations=True)`` every device of the user has
them without asking, as ``owned()`` and ``listened()`` read them from ``client.relations``.
Posts and listeners' messages are ordinary messages (``conv.type`` 3): send them with
``post()`` and receive them through ``client.messages`` like any other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import trio

from protocol.codes import ConversationType, ErrorCode, SettingScope

from .core import Core
from .errors import RequestFailed
from .relations import Relations

CHANNEL = int(ConversationType.CHANNEL)
MY_CHANNEL = int(SettingScope.MY_CHANNEL)
LISTENED_CHANNEL = int(SettingScope.LISTENED_CHANNEL)


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    channel_id: str
    name: str
    portrait: str
    desc: str
    extra: str
    owner: str
    private: bool
    callback_only: bool
    state: int
    info_version: int
    created_at: int
    updated_at: int
    listener_count: int = 0
    callback: str | None = None  # only in the owner's answer

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> ChannelInfo:
        return cls(**{name: raw[name] for name in cls.__dataclass_fields__ if name in raw})


@dataclass(frozen=True, slots=True)
class ChannelSynced:
    """A fetch by version changed the cached info (``info`` is the new one)."""

    channel_id: str
    info: ChannelInfo


@dataclass(frozen=True, slots=True)
class ChannelGone:
    """A fetch answered 253: the channel was destroyed (or is private and no longer visible); dropped."""

    channel_id: str


#: Methods that move this user's scope 8 / 9 settings.
_MOVES_SETTINGS = frozenset(
    {"create_channel", "destroy_channel", "transfer_channel", "listen_channel", "unlisten_channel"}
)

#: What ``Channels.events()`` yields.
ChannelChange = ChannelSynced | ChannelGone


class Channels:
    """``Client.channels``: channel operations, the info cache and its events."""

    def __init__(self, core: Core, relations: Relations, *, event_buffer: int = 1000) -> None:
        self._core = core
        self._relations = relations  # what this user owns and listens to are settings
        self._cache: dict[str, ChannelInfo] = {}
        self._events_tx, self._events_rx = trio.open_memory_channel[ChannelChange](event_buffer)
        self.dropped_events = 0

    def events(self) -> trio.MemoryReceiveChannel[ChannelChange]:
        """What changed the cache, in order (when the channel is full, new ones are dropped and counted)."""
        return self._events_rx

    def _emit(self, event: ChannelChange) -> None:
        try:
            self._events_tx.send_nowait(event)
        except trio.WouldBlock:
            self.dropped_events += 1

    def cached_info(self, channel_id: str) -> ChannelInfo | None:
        return self._cache.get(channel_id)

    # --- from the synced settings ----------------------------------------------------------------

    def owned(self) -> list[str]:
        """The channels this user owns, from the synced setting stream (scope 8), sorted."""
        return sorted(key for (scope, key), s in self._relations.settings.items() if scope == MY_CHANNEL and s.value)

    def listened(self) -> list[str]:
        """The channels this user listens to, from the synced setting stream (scope 9), sorted."""
        return sorted(
            key for (scope, key), s in self._relations.settings.items() if scope == LISTENED_CHANNEL and s.value
        )

    # --- operations ------------------------------------------------------------------------------

    async def create(
        self,
        *,
        channel_id: str | None = None,
        name: str = "",
        portrait: str = "",
        desc: str = "",
        extra: str = "",
        private: bool = False,
        callback: str = "",
        callback_only: bool = False,
    ) -> str:
        """Create a channel owned by this user; its id."""
        params: dict[str, Any] = {
            "name": name, "portrait": portrait, "desc": desc, "extra": extra, "private": private,
            "callback": callback, "callback_only": callback_only,
        }  # fmt: skip
        if channel_id is not None:
            params["channel_id"] = channel_id
        result = await self._call("create_channel", **params)
        return str(result["channel_id"])

    async def modify(self, channel_id: str, field_name: str, value: str | bool) -> int:
        """Set ``name``, ``portrait``, ``desc``, ``extra`` (owner or manager), ``private``, ``callback`` or
        ``callback_only`` (owner); the new info version."""
        result = await self._call("modify_channel", channel_id=channel_id, field=field_name, value=value)
        return int(result["info_version"])

    async def destroy(self, channel_id: str) -> None:
        await self._call("destroy_channel", channel_id=channel_id)
        self._cache.pop(channel_id, None)

    async def transfer(self, channel_id: str, new_owner: str) -> None:
        """Hand the channel to ``new_owner``; this user becomes a listener."""
        await self._call("transfer_channel", channel_id=channel_id, new_owner=new_owner)

    async def listen(self, channel_id: str) -> None:
        await self._call("listen_channel", channel_id=channel_id)

    async def unlisten(self, channel_id: str) -> None:
        await self._call("unlisten_channel", channel_id=channel_id)

    async def invite(self, channel_id: str, user_ids: Iterable[str]) -> None:
        """Let users listen to a private channel (the owner only)."""
        await self._call("invite_channel", channel_id=channel_id, user_ids=list(user_ids))

    async def set_managers(self, channel_id: str, user_ids: Iterable[str], is_manager: bool = True) -> None:
        await self._call("set_channel_managers", channel_id=channel_id, user_ids=list(user_ids), is_manager=is_manager)

    async def post(self, channel_id: str, content: Mapping[str, Any], **extra: Any) -> Mapping[str, Any]:
        """Send ``content`` to the channel: a post (owner, managers) or a message to the owner (listeners).
        The ack ``{message_id, server_time, seq}``."""
        params = {"conv": {"type": CHANNEL, "target": channel_id}, "content": dict(content), **extra}
        return await self._call("send_message", **params)

    async def mine(self) -> tuple[dict[str, int], dict[str, int]]:
        """(owned, listened) as the server has them now: channel id → info version."""
        result = await self._call("get_my_channels")
        return (
            {c["channel_id"]: c["info_version"] for c in result["owned"]},
            {c["channel_id"]: c["info_version"] for c in result["listened"]},
        )

    # --- the cache -------------------------------------------------------------------------------

    async def info(self, channel_id: str, *, refresh: bool = True) -> ChannelInfo:
        """The channel's info; with ``refresh``, asks with the version held (nothing comes back when it is
        current). Raises ``RequestFailed`` 253 for an unknown or destroyed channel (and drops it)."""
        cached = self._cache.get(channel_id)
        if cached is not None and not refresh:
            return cached
        held = cached.info_version if cached is not None else 0
        try:
            result = await self._call("get_channel_info", channel_id=channel_id, info_version=held)
        except RequestFailed as exc:
            if exc.code == ErrorCode.NOT_EXIST and self._cache.pop(channel_id, None) is not None:
                self._emit(ChannelGone(channel_id))
            raise
        if result["channel"] is not None:
            fresh = ChannelInfo.from_wire(result["channel"])
            if fresh != cached:
                self._emit(ChannelSynced(channel_id, fresh))
            self._cache[channel_id] = fresh
            return fresh
        assert cached is not None  # the server answers nil only for the version held
        return cached

    async def refresh_mine(self) -> dict[str, ChannelInfo]:
        """Every channel this user owns or listens to, fetched only where the cached version is stale."""
        owned, listened = await self.mine()
        out: dict[str, ChannelInfo] = {}
        for channel_id, version in {**listened, **owned}.items():
            cached = self._cache.get(channel_id)
            if cached is not None and cached.info_version == version:
                out[channel_id] = cached
            else:
                out[channel_id] = await self.info(channel_id)
        return out

    async def _call(self, method: str, **params: Any) -> Any:
        if method in _MOVES_SETTINGS:
            # This device is not pushed its own change: with sync_relations the setting stream is pulled now.
            return await self._relations.call_and_pull(method, ("setting",), **params)
        response = await self._core.request(method, params)
        if not response.ok:
            raise RequestFailed(method, response.code, response.result)
        return response.result
