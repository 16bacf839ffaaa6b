"""Session rules (SPEC §2): issuing tokens, kicking, destroying, forbidding.

The storage layer does the row changes atomically; this module decides *which*
sessions end and tells ``gateway.delivery`` to close the live connections that held them.
Every public method returns an ``ErrorCode`` (errors are values at the edge);
an exception here is a bug or a storage failure.

Nothing here logs: the values passing through are session secrets and tokens.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from protocol.codes import MAX_PLATFORM, ConnectionStatus, ErrorCode, UserStatus, platform_class, valid_id
from protocol.token import issue_token
from storage import sessions as session_rows
from storage.records import SECRET_BYTES, UserRecord

if TYPE_CHECKING:
    from gateway.clock import Clock
    from gateway.config import Config
    from gateway.delivery import Delivery
    from storage import Store

_USER_STATUSES = frozenset(int(s) for s in UserStatus)


def valid_platform(value: object) -> bool:
    """Whether ``value`` is one of the platforms of SPEC §1 (0..12)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_PLATFORM


class SessionService:
    """Creates and ends sessions for the admin API (and, later, the client's disconnect).

    Args:
        config: The gateway configuration.
        store: The open storage.
        delivery: Told to close the live connections of ended sessions.
        clock: Wall time for timestamps and token expiry.
        token_rng: Source of session secrets; tests may make it deterministic.
    """

    def __init__(
        self,
        config: Config,
        store: Store,
        delivery: Delivery,
        clock: Clock,
        token_rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._config = config
        self._store = store
        self._delivery = delivery
        self._clock = clock
        self._rng = token_rng
        self._token_key = config.token.key_bytes()
        # Disconnect times not yet written to last_seen, by (user_id, client_id): see went_offline.
        self._last_seen: dict[tuple[str, str], int] = {}

    def _ended_status(self) -> ConnectionStatus:
        # A live device whose session was taken away is told what a reconnect
        # with its old token would be answered, so it reacts the same either way.
        if self._config.server.client_support_kickoff_event:
            return ConnectionStatus.KICKED_OFF
        return ConnectionStatus.SECRET_KEY_MISMATCH

    async def get_token(self, user_id: str, client_id: str, platform: int) -> tuple[int, str | None]:
        """Issue a session and its token, kicking what the one-device rule says to kick.

        Returns:
            ``(ErrorCode.SUCCESS, token)``, or ``(code, None)``: 251 for a bad id
            or platform, 253 for an unknown user while user info is hosted.
        """
        if not (valid_id(user_id) and valid_id(client_id) and valid_platform(platform)):
            return ErrorCode.INVALID_PARAMETER, None
        now = self._clock.now_ms()
        if self._config.user.hosting:
            if await self._store.get_user(user_id) is None:
                return ErrorCode.NOT_EXIST, None
        else:
            # Not hosting: users are bare ids, registered by their first token.
            await self._store.create_user(UserRecord(user_id, created_at=now, updated_at=now))
        secret = self._rng(SECRET_BYTES)
        kick = None if self._config.server.multi_endpoint else platform_class(platform)
        result = await self._store.issue_session(
            user_id, client_id, platform, secret, now, kick_platforms=kick
        )
        status = self._ended_status()
        for ended_user, ended_client in result.ended:
            self._delivery.kick(ended_user, ended_client, status)
        expire = self._config.token.expire_seconds
        token = issue_token(
            self._token_key,
            user_id=user_id,
            client_id=client_id,
            platform=platform,
            secret=secret,
            issued_at_ms=now,
            expires_at_ms=now + expire * 1000 if expire else 0,
        )
        return ErrorCode.SUCCESS, token

    async def kick(self, user_id: str, client_id: str) -> int:
        """End a session as kicked (admin kick); its device learns it was kicked if it can.

        Returns:
            0, 251 for bad ids, 253 if there is no active session.
        """
        return await self._end(user_id, client_id, "kicked", self._ended_status())

    async def destroy(self, user_id: str, client_id: str) -> int:
        """End a session for good, as if the device had disconnected with ``clear_session = 1``.

        Returns:
            0, 251 for bad ids, 253 if there is no active session.
        """
        return await self._end(user_id, client_id, "destroyed", ConnectionStatus.SECRET_KEY_MISMATCH)

    async def _end(self, user_id: str, client_id: str, reason: str, status: ConnectionStatus) -> int:
        if not (valid_id(user_id) and valid_id(client_id)):
            return ErrorCode.INVALID_PARAMETER
        if not await self._store.end_session(user_id, client_id, reason, self._clock.now_ms()):
            return ErrorCode.NOT_EXIST
        self._delivery.kick(user_id, client_id, status)
        return ErrorCode.SUCCESS

    async def set_block_status(self, user_id: str, status: int) -> int:
        """Set a user's standing; forbidding ends their sessions and closes their connections.

        Returns:
            0, 251 for a bad id or status, 253 for an unknown user.
        """
        if not valid_id(user_id) or isinstance(status, bool) or status not in _USER_STATUSES:
            return ErrorCode.INVALID_PARAMETER
        ended = await self._store.set_user_status(user_id, status, self._clock.now_ms())
        if ended is None:
            return ErrorCode.NOT_EXIST
        if status == UserStatus.FORBIDDEN:
            self._delivery.close_user(user_id, ConnectionStatus.REJECTED)
        return ErrorCode.SUCCESS

    # --- last_seen ------------------------------------------------------------------------------

    def went_offline(self, user_id: str, client_id: str, now_ms: int) -> None:
        """Note that a device disconnected; ``flush_last_seen`` writes it as its session's last_seen.

        Collected rather than written at once: one storage operation per disconnect was a measurable
        share of a handshake's CPU, and nobody is told that last_seen was written. The server flushes
        every second and once more after its connections have closed, before the store closes.
        """
        key = (user_id, client_id)
        if now_ms > self._last_seen.get(key, -1):
            self._last_seen[key] = now_ms

    async def flush_last_seen(self) -> None:
        """Write the disconnect times collected so far, in one storage operation (none if there are none).

        A write that fails (or is cancelled) puts its times back, for the next flush: writing one twice is
        harmless, as last_seen only moves forward. Times noted meanwhile are kept either way.
        """
        if self._last_seen:
            batch, self._last_seen = self._last_seen, {}
            try:
                await self._store.run(
                    session_rows.touch_sessions_each, [(user, client, ms) for (user, client), ms in batch.items()]
                )
            except BaseException:
                for key, ms in batch.items():
                    if ms > self._last_seen.get(key, -1):
                        self._last_seen[key] = ms
                raise
