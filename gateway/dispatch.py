"""Method name → handler, and the rules every request goes through.

A handler takes the services, the calling connection's identity and the
validated-on-read params, and returns ``(code, result)``. A ``FieldError``
raised while reading params becomes 251; an unknown method is 254. Anything
else a handler raises is a bug: the connection driver logs it and closes that
one connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.services import Services
from protocol.codec import Fields
from protocol.codes import ErrorCode
from protocol.errors import FieldError


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated session a request comes from."""

    user_id: str
    client_id: str
    platform: int


Handler = Callable[[Services, Caller, Fields], Awaitable[tuple[int, Any]]]

#: Methods exempt from the per-connection rate limit: catching up must never be refused.
RATE_LIMIT_EXEMPT = frozenset({"pull"})

_handlers: dict[str, Handler] = {}


def method(name: str) -> Callable[[Handler], Handler]:
    """Register a handler under a wire method name."""

    def register(fn: Handler) -> Handler:
        if name in _handlers:
            raise ValueError(f"method {name} registered twice")
        _handlers[name] = fn
        return fn

    return register


async def dispatch(services: Services, caller: Caller, name: str, params: Fields) -> tuple[int, Any]:
    handler = _handlers.get(name)
    if handler is None:
        return ErrorCode.NOT_IMPLEMENTED, None
    try:
        return await handler(services, caller, params)
    except FieldError as exc:
        return ErrorCode.INVALID_PARAMETER, {"field": exc.field, "problem": exc.problem}


def methods() -> list[str]:
    return sorted(_handlers)


# Handlers register themselves on import.
from gateway import handlers as _handlers_module  # noqa: E402,F401
