"""Robots (docs/ADMIN_API.md "Robots"): a signed HTTP client for the robot API, and the callback side.

A robot's server talks to Ember in two directions, both signed with the robot's own secret
(``X-Sign`` = lowercase hex HMAC-SHA256(secret, ``nonce|timestamp|body``)):

- ``RobotClient`` calls the robot API (``/robot/...`` on the admin port) as the robot::

      async with RobotClient("http://127.0.0.1:8081", "bot", secret) as robot:
          ack = await robot.call("message/send", {"conv": {"type": 0, "target": "ann"},
                                                  "content": {"type": 1, "searchable_content": "hi"}})

- the gateway POSTs every message stored for the robot to its callback URL. ``verify_callback`` checks
  such a request (any framework: it takes the headers and the raw body); ``callback_app`` is a whole ASGI
  app (Hypercorn on trio, Uvicorn, …) around one ``async handler(event) -> content | None``: the content
  it returns is answered as ``{"reply": content}``, which the gateway sends as the robot's reply.

This module needs httpx only for ``RobotClient`` (imported when one is made).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

#: How far a callback's ``X-Timestamp`` may be from now, either way (the admin API's default window).
DEFAULT_WINDOW_MS = 300_000
#: The largest callback body ``callback_app`` reads.
MAX_CALLBACK_BYTES = 1 << 20


def sign(secret: str | bytes, nonce: str, timestamp: str, body: bytes) -> str:
    """The ``X-Sign`` of one request or callback (the same function as the gateway's)."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    message = nonce.encode("ascii") + b"|" + timestamp.encode("ascii") + b"|" + body
    return hmac.new(key, message, hashlib.sha256).hexdigest()


class RobotCallFailed(Exception):
    """The robot API refused the call's credentials (HTTP 401: unknown robot, bad or stale signature)."""

    def __init__(self, status: int, answer: Mapping[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {answer.get('msg')}")
        self.status = status
        self.answer = answer


class RobotClient:
    """Signed calls to the robot API as one robot. ``call`` returns the answer ``{"code", "msg", "result"}``.

    Args:
        base_url: The gateway's admin address, e.g. ``http://127.0.0.1:8081``.
        robot_id: The robot's user id.
        secret: The robot's secret (robot/create's answer).
        clock: Milliseconds since the epoch, for ``X-Timestamp`` (default: the wall clock).
    """

    def __init__(
        self, base_url: str, robot_id: str, secret: str, *, clock: Callable[[], int] | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:  # fmt: skip
        import httpx

        self.base_url = base_url.rstrip("/")
        self.robot_id = robot_id
        self._secret = secret.encode("utf-8")
        self._clock = clock or (lambda: time.time_ns() // 1_000_000)
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(trust_env=False, timeout=10)

    async def __aenter__(self) -> RobotClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    def signed(self, payload: Any) -> tuple[bytes, dict[str, str]]:
        """The body and headers of one call (fresh nonce, now as timestamp)."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        nonce, timestamp = secrets.token_hex(16), str(self._clock())
        return body, {
            "X-Robot-Id": self.robot_id,
            "X-Nonce": nonce,
            "X-Timestamp": timestamp,
            "X-Sign": sign(self._secret, nonce, timestamp, body),
            "Content-Type": "application/json",
        }

    async def post(self, path: str, payload: Any = None) -> httpx.Response:
        """POST ``payload`` to ``path`` (e.g. ``/robot/profile``), signed as this robot; the raw response."""
        body, headers = self.signed({} if payload is None else payload)
        return await self._http.post(self.base_url + path, content=body, headers=headers)

    async def call(self, action: str, payload: Any = None) -> dict[str, Any]:
        """``/robot/<action>``'s answer; raises ``RobotCallFailed`` when the credentials are refused."""
        response = await self.post(f"/robot/{action}", payload)
        answer = response.json()
        if response.status_code == 401:
            raise RobotCallFailed(401, answer)
        return dict(answer)

    async def send_text(self, conv: Mapping[str, Any], text: str) -> dict[str, Any]:
        return await self.call("message/send", {"conv": dict(conv), "content": {"type": 1, "searchable_content": text}})


def verify_callback(
    secret: str | bytes, headers: Mapping[str, str] | Mapping[bytes, bytes], body: bytes, *,
    now_ms: int | None = None, window_ms: int = DEFAULT_WINDOW_MS,
) -> bool:  # fmt: skip
    """Whether a callback request was signed with the robot's ``secret`` within ``window_ms`` of now.

    ``headers`` as any mapping (names in any case, str or the bytes of an ASGI scope). Replays inside
    the window are not detected here: keep the ``X-Nonce`` values seen if that matters to the bot (the
    gateway retries a failed delivery with a new nonce, so the same message may come twice: dedup by
    ``message_id``).
    """
    found = {
        (k.decode("latin-1") if isinstance(k, bytes) else k).lower(): v.decode("latin-1") if isinstance(v, bytes) else v
        for k, v in headers.items()
    }
    nonce, timestamp, signature = found.get("x-nonce"), found.get("x-timestamp"), found.get("x-sign")
    if not nonce or not timestamp or not signature or not timestamp.isdigit():
        return False
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    if abs(now - int(timestamp)) > window_ms:
        return False
    try:
        expected = sign(secret, nonce, timestamp, body)
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(expected, signature)


#: A callback handler: the event (docs/ADMIN_API.md "Robots") → a content map to reply with, or None.
Handler = Callable[[dict[str, Any]], Awaitable["dict[str, Any] | None"]]
_Scope = MutableMapping[str, Any]


def callback_app(secret: str, handler: Handler, *, window_ms: int = DEFAULT_WINDOW_MS) -> Callable[..., Awaitable[None]]:
    """An ASGI app for the robot's callback URL: verifies each POST, calls ``handler``, answers its reply.

    A request that is not a correctly signed POST gets 401 and the handler is not called; the handler's
    content (or None: 204, nothing to say) is answered as ``{"reply": content}`` with 200.
    """

    async def app(scope: _Scope, receive: Callable[[], Awaitable[_Scope]], send: Callable[[_Scope], Awaitable[None]]) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_CALLBACK_BYTES:
                await _respond(send, 413, b"")
                return
            if not message.get("more_body", False):
                break
        if scope["method"] != "POST" or not verify_callback(secret, dict(scope["headers"]), body, window_ms=window_ms):
            await _respond(send, 401, b"")
            return
        try:
            event = json.loads(body)
        except ValueError:
            await _respond(send, 400, b"")
            return
        reply = await handler(event)
        if reply is None:
            await _respond(send, 204, b"")
            return
        await _respond(send, 200, json.dumps({"reply": reply}).encode())

    return app


async def _respond(send: Callable[[_Scope], Awaitable[None]], status: int, body: bytes) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if body:
        headers.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
