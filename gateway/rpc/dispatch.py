"""Method name → handler, and the rules every request goes through.

Two kinds of handler:

- ``@method(name)``: ``async (services, caller, params) -> (code, result)``,
  run as a task of the connection.
- ``@method(name, immediate=True)``: ``(services, caller, params, reply) -> None``,
  called right in the connection's read loop. It must not block; it answers
  by calling ``reply(code, result)``, now or later (the send path answers
  from the storage commit callback). Requests handled this way keep the order
  they arrived in, and cost no task.

Rate limit: every request costs one unit of ``client.request_rate_limit`` when it
arrives, except methods registered with ``cost=``: they are charged after they
answer, by what the answer cost (a pull by the messages it returned), and are
refused only once the connection is already over its limit. Methods registered
with ``serial=True`` run one at a time per connection (pulls: a client gains
nothing by running two at once, and pipelined ones must not fill the reader
connections that every other user's pulls share).

A ``FieldError`` raised while reading params becomes 251; a ``RequestRejected``
its code; a ``StorageRetryLater`` (the disk is full, or the storage writer's queue is:
nothing was written) 250, which clients retry; any other ``StorageError`` (the storage
failed, not the handler) 4; an unknown method is 254. Anything else a handler raises is
a bug: the connection driver logs it and closes that one connection.

Registration is explicit: ``@method`` only marks a function, and a ``MethodRegistry``
is built from a list of handler modules (``gateway.rpc.methods`` lists the gateway's).
This module imports no handler, so handlers may import it without a cycle.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from gateway.domain.messaging import RequestRejected
from gateway.services import Services
from protocol.codec import Fields
from protocol.codes import ErrorCode
from protocol.errors import FieldError
from storage import StorageError, StorageRetryLater

log = logging.getLogger("gateway.rpc.dispatch")


class PullMark:
    """How far ``pull`` has answered one connection (its highest seq): what lies below is a re-read."""

    __slots__ = ("seq",)

    def __init__(self) -> None:
        self.seq = 0


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated session a request comes from (one per connection)."""

    user_id: str
    client_id: str
    platform: int
    pulled: PullMark = field(default_factory=PullMark, compare=False, repr=False)


Handler = Callable[[Services, Caller, Fields], Awaitable[tuple[int, Any]]]
Reply = Callable[[int, Any], None]
ImmediateHandler = Callable[[Services, Caller, Fields, Reply], None]

#: What an answer cost in rate-limit units: ``cost(code, result) -> float``.
Cost = Callable[[int, Any], float]


def invalid(exc: FieldError) -> tuple[int, Any]:
    """The 251 answer, naming the field and what is wrong with it (never echoing its value)."""
    return ErrorCode.INVALID_PARAMETER, {"field": exc.field, "problem": exc.problem}


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """How ``@method`` registers a handler (see the module docstring for ``cost`` and ``serial``)."""

    name: str
    immediate: bool
    cost: Cost | None
    serial: bool


#: The attribute ``@method`` puts its ``MethodSpec`` in.
_SPEC_ATTRIBUTE = "ember_method"


def method(
    name: str, *, immediate: bool = False, cost: Cost | None = None, serial: bool = False
) -> Callable[[Any], Any]:
    """Mark a handler for a wire method name; a ``MethodRegistry`` built from its module registers it."""
    if immediate and (cost is not None or serial):
        raise ValueError("an immediate handler is charged on arrival and never waits")
    spec = MethodSpec(name, immediate, cost, serial)

    def mark(fn: Any) -> Any:
        setattr(fn, _SPEC_ATTRIBUTE, spec)
        return fn

    return mark


class MethodRegistry:
    """Method name → handler, built once from an explicit list of handler modules.

    Every function a listed module defines with ``@method`` is registered (one its module only imports
    is not: it belongs to its own module). A name registered twice is an error.
    """

    def __init__(self, modules: Iterable[ModuleType]) -> None:
        self._handlers: dict[str, Handler] = {}
        self._immediate: dict[str, ImmediateHandler] = {}
        #: Methods charged after they answer, by what the answer cost (see the module docstring).
        self.charged_after: dict[str, Cost] = {}
        serial: set[str] = set()
        for module in modules:
            for fn in vars(module).values():
                spec = getattr(fn, _SPEC_ATTRIBUTE, None)
                if not isinstance(spec, MethodSpec) or getattr(fn, "__module__", None) != module.__name__:
                    continue
                if spec.name in self._handlers or spec.name in self._immediate:
                    raise ValueError(f"method {spec.name} registered twice")
                (self._immediate if spec.immediate else self._handlers)[spec.name] = fn
                if spec.cost is not None:
                    self.charged_after[spec.name] = spec.cost
                if spec.serial:
                    serial.add(spec.name)
        #: Methods that run one at a time per connection.
        self.serial = frozenset(serial)
        #: Every registered method name (metrics count any other name as "unknown": clients choose names).
        self.known = frozenset([*self._handlers, *self._immediate])

    def names(self) -> list[str]:
        return sorted(self.known)

    def dispatch_immediate(self, services: Services, caller: Caller, name: str, params: Fields, reply: Reply) -> bool:
        """Run an immediate handler if ``name`` has one; False otherwise."""
        handler = self._immediate.get(name)
        if handler is None:
            return False
        try:
            handler(services, caller, params, reply)
        except FieldError as exc:
            reply(*invalid(exc))
        except RequestRejected as exc:
            reply(exc.code, None)
        except StorageRetryLater:
            reply(ErrorCode.OVER_FREQUENCY, None)
        return True

    async def dispatch(self, services: Services, caller: Caller, name: str, params: Fields) -> tuple[int, Any]:
        handler = self._handlers.get(name)
        if handler is None:
            return ErrorCode.NOT_IMPLEMENTED, None
        try:
            return await handler(services, caller, params)
        except FieldError as exc:
            return invalid(exc)
        except RequestRejected as exc:
            return exc.code, None
        except StorageRetryLater:
            return ErrorCode.OVER_FREQUENCY, None
        except StorageError as exc:  # the storage writer logged the cause; the connection is not at fault
            log.error("%s failed in storage: %s", name, exc)
            return ErrorCode.SERVER_ERROR, None
