"""The seams inside the SDK: what a sub-API may use of the client, and how sub-APIs hear of each other.

``Client`` (``client.client``) is the composition root: it owns the link (``client.link``), builds the
sub-APIs (``messages``, ``relations``, ``users``, ``groups``, ``conversations``, ``chatrooms``,
``channels``) and wires them together. A sub-API never imports ``client.client`` and never touches
another sub-API's private members. It sees

- a ``Core``: the few things of the client it calls (requests, the event stream, the RECEIVING status,
  the current link, who the user is);
- a ``LinkView`` of each connection it serves (``LinkObserver``): the CONNACK, whether it is closed, and
  a way to close it;
- ``Signal`` objects: a sub-API publishes what it learned (a message handed over or sent, a message
  deleted, a setting changed) on signals of its own, and the client subscribes the sub-APIs that care,
  in the order they must hear it. The NOTIFY topics are routed the same way (``Client._wire``).

So ``client/`` has no import cycle: ``core`` imports nothing of the SDK, the sub-APIs import ``core`` (and
the data model of ``messages``), and only ``client.client`` imports them all (tests/test_import_graph.py
and the ``acyclic_siblings`` contract in pyproject.toml check it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, Protocol

from protocol.codes import ConnectionStatus, ErrorCode
from protocol.events import ConnAck

P = ParamSpec("P")


@dataclass(frozen=True, slots=True)
class Response:
    """A request's answer.

    Attributes:
        code: ``protocol.codes.ErrorCode`` (a plain int if this SDK does not know the code).
        result: the method's result, as decoded from MessagePack.
    """

    code: int
    result: Any = None

    @property
    def ok(self) -> bool:
        return self.code == ErrorCode.SUCCESS


class LinkView(Protocol):
    """What a sub-API sees of one connection (``client.link.Link`` provides it)."""

    @property
    def connack(self) -> ConnAck:
        """The handshake's CONNACK: the sync ``heads`` to catch up to."""
        ...

    @property
    def closed(self) -> bool:
        """The connection has ended (its tasks are being cancelled)."""
        ...

    def close(self, status: ConnectionStatus, why: str) -> None:
        """End the connection (the client reconnects if it may), e.g. after a pull that cannot succeed on it."""
        ...


class Core(Protocol):
    """What a sub-API may use of the client (the client hands each sub-API one)."""

    @property
    def user_id(self) -> str:
        """The user this client connects as."""
        ...

    @property
    def stopped(self) -> bool:
        """Stopped for good, or stopping: no request will be sent again."""
        ...

    @property
    def backoff(self) -> tuple[float, float]:
        """The reconnect backoff (first, max) in seconds, for a sub-API's own retry pauses."""
        ...

    @property
    def link(self) -> LinkView | None:
        """The connection being served now, if any."""
        ...

    async def request(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        /,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the client's bound; see Client.request
        **kwargs: Any,
    ) -> Response:
        """Send a REQUEST and wait for its RESPONSE (``Client.request``)."""
        ...

    def receiving(self) -> AbstractContextManager[None]:
        """Report RECEIVING while the block catches up (``Client.receiving``)."""
        ...

    def emit(self, event: Any) -> None:
        """Put an event on ``Client.events()`` (oldest dropped when it is full); never blocks."""
        ...


class LinkObserver(Protocol):
    """A sub-API with work on every connection: the client runs these for each link it serves."""

    @property
    def catches_up(self) -> bool:
        """Whether ``catch_up`` has work on each new link (the client reports RECEIVING while it runs)."""
        ...

    async def serve_link(self, link: LinkView) -> None:
        """Background work for the life of ``link``; cancelled when it closes."""
        ...

    async def catch_up(self, link: LinkView) -> None:
        """Run once on each new link right after the handshake, while the status is RECEIVING."""
        ...


class Signal(Generic[P]):
    """A typed, synchronous publish point: ``publish(...)`` calls every subscriber in subscription order.

    Subscribers run inside the publisher's call (often the link's reader), so they must never block.
    """

    __slots__ = ("_subscribers",)

    def __init__(self) -> None:
        self._subscribers: list[Callable[P, object]] = []

    def subscribe(self, subscriber: Callable[P, object]) -> None:
        self._subscribers.append(subscriber)

    def publish(self, *args: P.args, **kwargs: P.kwargs) -> None:
        for subscriber in self._subscribers:
            subscriber(*args, **kwargs)


class Pushes:
    """NOTIFY topic → its subscribers, in subscription order (the client's routing table).

    A *taker* returns True when it took the push: the push then stays off ``Client.events()`` and the
    later subscribers of the topic do not see it. A *watcher* only looks; the push goes on.
    """

    __slots__ = ("_by_topic",)

    def __init__(self) -> None:
        self._by_topic: dict[str, list[tuple[Callable[[Any], object], bool]]] = {}

    def take(self, topic: str, taker: Callable[[Any], bool]) -> None:
        self._by_topic.setdefault(topic, []).append((taker, True))

    def watch(self, topic: str, watcher: Callable[[Any], object]) -> None:
        self._by_topic.setdefault(topic, []).append((watcher, False))

    def deliver(self, topic: str, data: Any) -> bool:
        """Hand ``data`` to the topic's subscribers; True when one took it."""
        for subscriber, takes in self._by_topic.get(topic, ()):
            if subscriber(data) and takes:
                return True
        return False
