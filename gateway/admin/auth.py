"""Signature checking for the admin API, as a pure ASGI middleware.

It runs before routing and body parsing, on the raw body bytes, so the bytes
that were signed are exactly the bytes that were checked; the body is then
replayed to the application unchanged.

Replay protection keeps the nonces of accepted requests in memory until their
timestamp leaves the window (``admin.max_clock_skew_seconds`` either side of
now). On one node that store is this process's ``NonceCache``; a cluster node
(``server.cluster``) spends each nonce in the shared database as well
(``gateway.cluster.postgres.nonces``), so a request replayed to another node
behind the same admin address is refused there too.
"""

from __future__ import annotations

import heapq
import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

from starlette.responses import JSONResponse

from gateway.signing import sign, valid_nonce
from protocol.codes import ErrorCode

if TYPE_CHECKING:
    from gateway.clock import Clock

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Bound on remembered nonces. With the default 300 s window a nonce is kept
#: about 5 minutes, so this allows ~650 signed requests/s sustained; beyond it
#: requests are refused (250) rather than forgetting a nonce early, which would
#: open a replay hole.
DEFAULT_MAX_NONCES = 200_000

#: Largest admin request body accepted.
MAX_BODY_BYTES = 1 << 20

_MAX_TIMESTAMP_DIGITS = 16

#: The robot API (issue 22): paths under this prefix are signed with a robot's own secret, never the admin's.
ROBOT_PREFIX = "/robot/"
ROBOT_HEADER = b"x-robot-id"
#: Where an accepted robot call's robot id is left in the ASGI scope, for the route.
ROBOT_SCOPE_KEY = "ember.robot_id"


Verdict = Literal["ok", "reused", "full"]


class NonceStore(Protocol):
    async def spend(self, nonce: str, expires_at_ms: int, now_ms: int) -> Verdict:
        """"ok" the first time a nonce is seen in its window, "reused" after; "full": refuse (retryable)."""
        ...


class NonceCache:
    """Nonces of accepted requests, each kept until its timestamp leaves the window."""

    def __init__(self, max_entries: int = DEFAULT_MAX_NONCES) -> None:
        self._max = max_entries
        self._expiry: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []  # (expires_at_ms, nonce), soonest first

    def __len__(self) -> int:
        return len(self._expiry)

    def add(self, nonce: str, expires_at_ms: int, now_ms: int) -> Literal["ok", "reused", "full"]:
        """Remember ``nonce`` until ``expires_at_ms`` unless it is already remembered."""
        while self._heap and self._heap[0][0] < now_ms:
            _, old = heapq.heappop(self._heap)
            del self._expiry[old]
        if nonce in self._expiry:
            return "reused"
        if len(self._expiry) >= self._max:
            return "full"
        self._expiry[nonce] = expires_at_ms
        heapq.heappush(self._heap, (expires_at_ms, nonce))
        return "ok"

    async def spend(self, nonce: str, expires_at_ms: int, now_ms: int) -> Verdict:
        return self.add(nonce, expires_at_ms, now_ms)


class SignatureMiddleware:
    """Refuse any HTTP request outside ``unsigned_paths`` that is not freshly and correctly signed.

    Args:
        app: The application behind it.
        key: The HMAC key (``admin.secret`` as UTF-8).
        clock: Wall time for the timestamp window.
        window_ms: How far ``X-Timestamp`` may be from now, either way.
        unsigned_paths: Paths served without a signature (health, API docs).
        nonces: The replay store.
        robot_key: For paths under ``ROBOT_PREFIX``, the second credential source: the robot named by the
            ``X-Robot-Id`` header → its secret's bytes (None: no such robot, 401). The admin key never
            signs those paths, and a robot's never signs the others. Nonces and window are shared.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        key: bytes,
        clock: Clock,
        window_ms: int,
        unsigned_paths: frozenset[str],
        nonces: NonceStore | None = None,
        robot_key: Callable[[str], bytes | None] | None = None,
    ) -> None:
        self._app = app
        self._key = key
        self._robot_key = robot_key
        self._clock = clock
        self._window_ms = window_ms
        self._unsigned = unsigned_paths
        self._nonces = nonces if nonces is not None else NonceCache()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._unsigned:
            await self._app(scope, receive, send)
            return
        headers = {name.lower(): value for name, value in scope["headers"]}
        key = self._key
        robot_id = None
        if scope["path"].startswith(ROBOT_PREFIX):
            robot_raw = headers.get(ROBOT_HEADER)
            found = None
            if robot_raw is not None and self._robot_key is not None:
                robot_id = robot_raw.decode("latin-1")
                found = self._robot_key(robot_id)
            if found is None:
                await _refuse(scope, receive, send, 401, "missing or unknown X-Robot-Id")
                return
            key = found
        nonce_raw = headers.get(b"x-nonce")
        timestamp_raw = headers.get(b"x-timestamp")
        sign_raw = headers.get(b"x-sign")
        if nonce_raw is None or timestamp_raw is None or sign_raw is None:
            await _refuse(scope, receive, send, 401, "missing X-Nonce, X-Timestamp or X-Sign header")
            return
        nonce = nonce_raw.decode("latin-1")
        timestamp = timestamp_raw.decode("latin-1")
        if not valid_nonce(nonce):
            await _refuse(
                scope, receive, send, 401, "X-Nonce must be 1-64 printable ASCII characters, no '|'"
            )
            return
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _MAX_TIMESTAMP_DIGITS):
            await _refuse(
                scope, receive, send, 401, "X-Timestamp must be decimal milliseconds since the epoch"
            )
            return
        now = self._clock.now_ms()
        if abs(now - int(timestamp)) > self._window_ms:
            await _refuse(scope, receive, send, 401, "stale X-Timestamp: check the clock")
            return
        body = await read_body(receive)
        if body is None:
            await _refuse(scope, receive, send, 413, "request body too large", ErrorCode.INVALID_PARAMETER)
            return
        expected = sign(key, nonce, timestamp, body).encode("ascii")
        if not hmac.compare_digest(expected, sign_raw):
            await _refuse(scope, receive, send, 401, "bad X-Sign")
            return
        # Only a correctly signed request may spend a nonce, so strangers cannot fill the store.
        verdict = await self._nonces.spend(nonce, int(timestamp) + self._window_ms, now)
        if verdict == "reused":
            await _refuse(scope, receive, send, 401, "X-Nonce already used")
            return
        if verdict == "full":
            await _refuse(scope, receive, send, 429, "too many signed requests", ErrorCode.OVER_FREQUENCY)
            return
        if robot_id is not None:
            # The key may have changed while the body was read (destroyed, rotated): the call is refused.
            if self._robot_key is None or self._robot_key(robot_id) != key:
                await _refuse(scope, receive, send, 401, "missing or unknown X-Robot-Id")
                return
            scope = {**scope, ROBOT_SCOPE_KEY: robot_id}
        await self._app(scope, replay(body, receive), send)


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if it exceeds ``MAX_BODY_BYTES``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)  # client went away; the app will see the disconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the already-read body once, then defers to the real one."""
    sent = False

    async def once() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return once


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, msg: str, code: int = ErrorCode.NOT_RIGHT
) -> None:
    response = JSONResponse({"code": int(code), "msg": msg, "result": None}, status_code=status)
    await response(scope, receive, send)
