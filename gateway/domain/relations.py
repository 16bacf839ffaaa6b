"""Relations (SPEC §6, §7, §9): friend requests, friends, blacklists and settings, and telling devices.

``RelationService`` applies the product rules around ``storage.relations`` (hosting, windows from
config, codes) for both the client methods (``gateway/rpc/handlers/relations.py``) and the admin API.
Every write that changed a stream is followed, after its commit, by a ``head`` NOTIFY
(``{"stream": name, "head": version}``) to each live device of each user whose stream moved, except
the device that asked (its answer tells it): the devices then pull the stream from the version
they hold (docs/PROTOCOL.md §12).

Why the push cannot be missed by a device that is connecting meanwhile: the change's commit and
CONNECT's read are ordered by the writer. If the read ran after the commit, the CONNACK heads have
the new head; if before, the read's callback registered the connection before the commit, and the
push, made after the commit, finds it (held until its CONNACK is out).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from gateway.clock import Clock
from gateway.config import Config
from protocol import codec
from protocol.codes import (
    SERVER_SETTING_SCOPES,
    ErrorCode,
    SettingScope,
    decimal_message_id,
    valid_setting_scope,
)
from protocol.connection import encode_notify_body
from storage import Store, conversations, relations
from storage.relations import Change, Outcome, RequestPolicy

if TYPE_CHECKING:
    from gateway.delivery import Delivery

#: The NOTIFY topic of a stream's new head.
HEAD_TOPIC: Final = "head"
#: Most items a sync page carries (the SDK asks for this many by default).
MAX_SYNC: Final = 500

_CODES: Final = {
    Outcome.OK: ErrorCode.SUCCESS,
    Outcome.NO_USER: ErrorCode.NOT_EXIST,
    Outcome.NOT_FOUND: ErrorCode.NOT_EXIST,
    Outcome.ALREADY_FRIENDS: ErrorCode.ALREADY_FRIENDS,
    Outcome.BLACKLISTED: ErrorCode.IN_BLACKLIST,
    Outcome.PENDING: ErrorCode.FRIEND_ALREADY_REQUESTED,
    Outcome.REJECTED: ErrorCode.FRIEND_REQUEST_BLOCKED,
    Outcome.EXPIRED: ErrorCode.FRIEND_REQUEST_EXPIRED,
}

#: Streams that ``friend.hosting`` turns off (settings stay: they are not relations).
HOSTED_STREAMS: Final = frozenset({relations.FRIEND, relations.FRIEND_REQUEST, relations.BLACKLIST})
#: The conversation read mark's scope (docs/PROTOCOL.md §16.1), which a device's put_setting only moves forward.
READ_SCOPE: Final = int(SettingScope.CONVERSATION_READ)

Origin = tuple[str, str] | None  # (user_id, client_id) of the device that asked, or None (admin API)


class RelationService:
    def __init__(self, config: Config, store: Store, delivery: Delivery, clock: Clock) -> None:
        self.config = config
        self.store = store
        self.delivery = delivery
        self.clock = clock
        friend = config.friend
        self.policy = RequestPolicy(
            friend.repeat_request_seconds * 1000,
            friend.reject_request_seconds * 1000,
            friend.request_expiration_seconds * 1000,
        )

    @property
    def hosting(self) -> bool:
        return self.config.friend.hosting

    # --- pushes -----------------------------------------------------------------------------------

    def notify(self, changes: Iterable[Change], origin: Origin) -> None:
        """A ``head`` NOTIFY per changed stream (its last head) to the owner's live devices, but ``origin``."""
        last: dict[tuple[str, str], int] = {}
        for change in changes:
            key = (change.user_id, change.stream)
            last[key] = max(last.get(key, 0), change.head)
        # Not filtered by this node's ``offline``: in a cluster the owner's devices may all be on other nodes
        # (the push reaches them through the relay). A change names one or two users: a few bodies at most.
        for (user_id, stream), head in last.items():
            except_client = origin[1] if origin is not None and origin[0] == user_id else None
            self.delivery.push(user_id, encode_notify_body(HEAD_TOPIC, {"stream": stream, "head": head}), except_client)

    def _done(self, result: relations.Result, origin: Origin) -> int:
        if result.ok:
            self.notify(result.changes, origin)
        return _CODES[result.outcome]

    # --- friend requests --------------------------------------------------------------------------

    async def send_request(
        self, from_user: str, to_user: str, reason: str, extra: str, origin: Origin
    ) -> int:
        if not self.hosting:
            return ErrorCode.FUNCTION_DISABLED
        friend = self.config.friend
        if (
            from_user == to_user
            or len(reason.encode()) > friend.max_reason_bytes
            or len(extra.encode()) > friend.max_extra_bytes
        ):
            return ErrorCode.INVALID_PARAMETER
        result = await self.store.run(
            relations.send_friend_request, from_user, to_user, reason, extra, self.clock.now_ms(), self.policy
        )
        return self._done(result, origin)

    async def handle_request(self, to_user: str, from_user: str, accept: bool, origin: Origin) -> int:
        if not self.hosting:
            return ErrorCode.FUNCTION_DISABLED
        result = await self.store.run(
            relations.handle_friend_request, to_user, from_user, accept, self.clock.now_ms(), self.policy
        )
        return self._done(result, origin)

    async def mark_requests_read(self, user_id: str, until_ms: int, origin: Origin) -> tuple[int, Any]:
        if not self.hosting:
            return ErrorCode.FUNCTION_DISABLED, None
        result = await self.store.run(relations.mark_requests_read, user_id, until_ms)
        return self._done(result, origin), {"count": result.value}

    async def unread_request_count(self, user_id: str) -> tuple[int, Any]:
        if not self.hosting:
            return ErrorCode.FUNCTION_DISABLED, None
        return ErrorCode.SUCCESS, {"count": await self.store.read(relations.unread_request_count, user_id)}

    # --- friends ----------------------------------------------------------------------------------

    async def delete_friend(self, user_id: str, friend_id: str, origin: Origin) -> int:
        if not self.hosting:
            return ErrorCode.FUNCTION_DISABLED
        result = await self.store.run(relations.delete_friend, user_id, friend_id, self.clock.now_ms())
        return self._done(result, origin)

    async def set_friend(
        self,
        user_id: str,
        friend_id: str,
        origin: Origin,
        *,
        alias: str | None = None,
        extra: str | None = None,
    ) -> int:
        if not self.hosting:
            return ErrorCode.FUNCTION_DISABLED
        friend = self.config.friend
        if (alias is not None and len(alias.encode()) > friend.max_alias_bytes) or (
            extra is not None and len(extra.encode()) > friend.max_extra_bytes
        ):
            return ErrorCode.INVALID_PARAMETER
        result = await self.store.run(
            relations.set_friend_fields, user_id, friend_id, self.clock.now_ms(), alias, extra
        )
        return self._done(result, origin)

    async def add_friends(self, user_id: str, friend_ids: list[str]) -> int:
        """Admin: friends without a request (both sides)."""
        if not self.hosting:
            return ErrorCode.FUNCTION_DISABLED
        result = await self.store.add_friends(user_id, friend_ids, self.clock.now_ms())
        return self._done(result, None)

    # --- blacklist --------------------------------------------------------------------------------

    async def set_blacklist(self, user_id: str, target: str, blocked: bool, origin: Origin) -> int:
        if not self.hosting:
            return ErrorCode.FUNCTION_DISABLED
        if user_id == target:
            return ErrorCode.INVALID_PARAMETER
        result = await self.store.set_blacklist(user_id, target, blocked, self.clock.now_ms())
        return self._done(result, origin)

    # --- settings ---------------------------------------------------------------------------------

    def setting_problem(self, scope: int, key: str, value: str = "") -> str | None:
        """Why (scope, key, value) is refused (251), or None; the client handler reports the same per field."""
        if not valid_setting_scope(scope):
            return "scope: unknown scope (1, 3, 6, 8, 9, 11, 14, 17, 19, or 1000 and above)"
        if scope in SERVER_SETTING_SCOPES:
            return "scope: 8 and 9 are written by the server (channels)"
        if len(key.encode()) > self.config.setting.max_key_bytes:
            return f"key: at most {self.config.setting.max_key_bytes} bytes"
        if len(value.encode()) > self.config.setting.max_value_bytes:
            return f"value: at most {self.config.setting.max_value_bytes} bytes"
        return None

    async def put_setting(
        self, user_id: str, scope: int, key: str, value: str, origin: Origin
    ) -> tuple[int, Any]:
        """Set a setting (``origin`` None: the admin API). A device's read mark (scope 11) moves only forward,
        as ``mark_read`` moves it, so two devices marking at once cannot move it back; only the admin API
        overwrites it (to correct a mark)."""
        if self.setting_problem(scope, key, value) is not None:
            return ErrorCode.INVALID_PARAMETER, None
        now = self.clock.now_ms()
        if scope == READ_SCOPE and origin is not None:
            mark = decimal_message_id(value)
            if mark is None:
                return ErrorCode.INVALID_PARAMETER, None
            result = await self.store.run(conversations.advance_mark_setting, user_id, scope, key, mark, now)
        else:
            result = await self.store.run(relations.put_setting, user_id, scope, key, value, now)
        return self._done(result, origin), {"version": result.value}

    # --- sync -------------------------------------------------------------------------------------

    async def sync(
        self, user_id: str, stream: str, after: int, limit: int, full_sync_head: int = 0
    ) -> tuple[int, Any]:
        """One page of ``stream`` after version ``after``: ``{items, head}``, or the page from 0 flagged
        ``reset`` when ``after`` is below the stream's purge horizon (``relations.sync_page``); it fits one
        RESPONSE frame."""
        if stream in HOSTED_STREAMS and not self.hosting:
            return ErrorCode.FUNCTION_DISABLED, None
        page: relations.Page = await self.store.read(
            relations.sync_page, stream, user_id, after, full_sync_head, limit
        )
        return ErrorCode.SUCCESS, pack_page(page, self.config.server.max_frame_bytes * 3 // 4)


_ITEMS_KEY: Final = codec.pack("items")
_HEAD_KEY: Final = codec.pack("head")
_RESET_TAIL: Final = codec.pack("reset") + codec.pack(True)


def pack_page(page: relations.Page, budget: int) -> codec.Packed:
    """``{items, head}`` (``{items, head, reset: true}`` for a reset page) packed, each item once: the items
    that fit ``budget`` bytes (at least one).

    The same bytes as packing the map with the items kept; the rest come in the next page.
    """
    packed: list[bytes] = []
    used = 0
    for item in page.items:
        data = codec.pack(item)
        used += len(data)
        if used > budget and packed:
            break
        packed.append(data)
    parts = [codec.map_header(3 if page.reset else 2), _ITEMS_KEY, codec.array_header(len(packed)), *packed]
    tail = [_HEAD_KEY, codec.pack(page.head), _RESET_TAIL if page.reset else b""]
    return codec.Packed(b"".join([*parts, *tail]), len(packed))
