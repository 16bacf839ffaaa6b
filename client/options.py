"""How to connect: every option of ``client.connect``, declared once, in one frozen dataclass.

``connect(host, port, token, **options)`` takes exactly this dataclass's fields (its signature is the
dataclass's, for ``help()`` and type checkers alike: ``client.client.connect``), builds one
``ConnectOptions`` when its block is entered, and the client hands each part to the piece that uses it:
the endpoint, identity, keepalive, timeout, clock and backoff to the dialer (``client.link``), the sync
settings to ``messages``, ``relations`` and ``chatrooms``. The checks run here, once, when the object is
built.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Literal

from protocol.codes import ConnectionStatus
from protocol.connection import MAX_KEEPALIVE_SECONDS
from protocol.events import ConnAck
from protocol.token import TokenError, parse_token

from .errors import ConnectError
from .relations import Snapshot

#: ``async def hook(client, connack)``; the first argument is the ``client.Client`` (typed ``Any`` here:
#: naming the class would import ``client.client`` back into the module it imports).
OnConnected = Callable[[Any, ConnAck], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """The options of one client.

    Attributes:
        host: gateway host.
        port: gateway client port.
        token: the token from the app server; never logged or shown in a repr.
        keepalive_seconds: keepalive announced in CONNECT (0 lets the server
            choose); the one the CONNACK returns is used.
        reconnect: reconnect after the transport is lost, with backoff.
        user_id: replaces the token's clear user id (for tests and tools).
        client_id: replaces the token's clear client id.
        platform: replaces the token's clear platform.
        clock: client wall clock in ms for the CONNECT proof (default: system time).
        backoff: (first, max) reconnect delay in seconds; it doubles after each
            failed attempt and each wait is uniform in [delay/2, delay].
        timeout: bound of each connect (TCP, and the WebSocket upgrade) + handshake,
            and default bound of ``request`` and ``ping``.
        event_buffer: capacity of the event stream (see ``Client.events``).
        on_connected: ``async def hook(client, connack)`` run after every successful
            (re)connect while the status is RECEIVING, e.g. to pull from
            ``connack.heads``. Its requests may be made; a ``ClientClosed`` from it
            is ignored (the link dropped), any other exception ends the client.
        sync_messages: keep the inbox in sync and hand messages over through
            ``client.messages.received()`` (see ``client.messages``); ``msg``
            pushes then stay off ``events()``. Each (re)connect first pulls what
            the CONNACK's ``heads["msg"]`` says is missing, then runs ``on_connected``.
        last_seq: with ``sync_messages``, the inbox seq the app had reached
            (``client.messages.last_seq``, persisted); 0 for a new install.
        message_buffer: with ``sync_messages``, how many messages may wait for the
            app; beyond it the sync pulls later instead of buffering.
        sync_relations: keep local copies of the friend list, friend requests,
            blacklist and settings in sync (see ``client.relations``); ``head``
            pushes then stay off ``events()``, which gets ``RelationsChanged`` instead.
        relations_snapshot: with ``sync_relations``, the copies the app persisted
            (``client.relations.snapshot()``); the first pull asks only for what changed since.
        chatroom_buffer: capacity of ``client.chatrooms.events()`` (oldest dropped when full).
        transport: how the frames travel: ``"tcp"`` (the client port, ``server.port``) or
            ``"websocket"`` (``port`` is then the gateway's ``server.ws_port``; path ``/ws``, one
            binary message per frame, docs/PROTOCOL.md §2.2; plain ``ws://``, no TLS). Everything
            else, the handshake and keepalive included, is the same on both.
        endpoints: the other gateways of a cluster, ``(host, port)`` pairs in the order to try them
            (ports of the same ``transport``). When the gateway at hand cannot be reached (refused,
            reset, or no handshake within ``timeout``), the next one is tried at once, each once per
            attempt, before the attempt counts as failed; the client stays on the one that answered until
            it is lost (docs/ARCHITECTURE.md, "Cluster"). Empty (the default): only ``host``/``port``, or
            where a GOAWAY redirects. Every node of a cluster holds the same sessions, so the same token
            works on each.

    Raises:
        ValueError: an option is out of range (the message names it).
        ConnectError: the token is malformed (status TOKEN_INCORRECT).
    """

    host: str
    port: int
    token: str = field(repr=False)
    _: KW_ONLY
    keepalive_seconds: int = 60
    reconnect: bool = True
    user_id: str | None = None
    client_id: str | None = None
    platform: int | None = None
    clock: Callable[[], int] | None = None
    backoff: tuple[float, float] = (0.2, 10.0)
    timeout: float = 10.0
    event_buffer: int = 1000
    on_connected: OnConnected | None = None
    sync_messages: bool = False
    last_seq: int = 0
    message_buffer: int = 1000
    sync_relations: bool = False
    relations_snapshot: Snapshot | None = None
    chatroom_buffer: int = 1000
    transport: Literal["tcp", "websocket"] = "tcp"
    endpoints: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        # In the order the SDK always checked them (the token between the client's and the sub-APIs' own).
        if not 0 <= self.keepalive_seconds <= MAX_KEEPALIVE_SECONDS:
            raise ValueError(f"keepalive_seconds must be in 0..{MAX_KEEPALIVE_SECONDS}")
        first, most = self.backoff
        if not 0 < first <= most:
            raise ValueError("backoff must be (first, max) with 0 < first <= max")
        if not self.timeout > 0:
            raise ValueError("timeout must be positive")
        if self.event_buffer < 1:
            raise ValueError("event_buffer must be at least 1")
        try:
            parse_token(self.token)
        except TokenError:
            raise ConnectError(ConnectionStatus.TOKEN_INCORRECT) from None
        if self.last_seq < 0:
            raise ValueError("last_seq must be >= 0")
        if self.message_buffer < 1:
            raise ValueError("message_buffer must be at least 1")
        if self.chatroom_buffer < 1:
            raise ValueError("chatroom_buffer must be at least 1")
        if self.transport not in ("tcp", "websocket"):
            raise ValueError("transport must be 'tcp' or 'websocket'")
        try:
            endpoints = tuple(tuple(endpoint) for endpoint in self.endpoints)  # a list of lists is fine too
        except TypeError:
            endpoints = ((),)  # not pairs at all: the check below names the option
        for endpoint in endpoints:
            if not (
                len(endpoint) == 2
                and isinstance(endpoint[0], str)
                and endpoint[0]
                and type(endpoint[1]) is int
                and 0 < endpoint[1] < 65536
            ):
                raise ValueError("endpoints must be (host, port) pairs with a port in 1..65535")
        object.__setattr__(self, "endpoints", endpoints)  # frozen: the normalised tuple replaces the input
