"""The SDK's client: statuses, requests, pushes and the sub-APIs, over one link at a time.

One ``Client`` holds at most one live connection (a *link*, ``client.link``) at a time. The link runs
its reader, writer and keepalive in a nursery of the client's; a supervisor task serves links one after
another: when a link is lost the dialer waits (exponential backoff with jitter) and opens a new one with
a fresh client nonce, until ``disconnect()``, a terminal status, or ``reconnect=False`` stops it for good.

The client is also the composition root of the SDK (``client.core``): it builds the sub-APIs
(``messages``, ``relations``, ``users``, ``groups``, ``conversations``, ``chatrooms``, ``channels``), each
of which sees only the ``Core`` the client hands it, subscribes them to one another's signals and to the
NOTIFY topics they take (``_wire``), and runs the per-link work of each (``LinkObserver``).

Statuses (``protocol.codes.ConnectionStatus``) follow WildfireChat's SDK:

- UNCONNECTED before the first attempt; CONNECTING while a handshake runs;
- RECEIVING while the message sync pulls (after a connect or a gap), or while
  ``on_connected`` (or a ``receiving()`` block) catches up;
- CONNECTED otherwise while a link is open;
- SERVER_DOWN when the transport was lost (closed, reset, keepalive timeout,
  protocol violation, server ERROR frame) — reconnecting follows if enabled;
- LOGOUT after ``disconnect()``;
- the server's code from a failure CONNACK or a ``kicked`` push.

Reconnecting stops after any status in ``protocol.codes.TERMINAL_STATUSES``
(-3, -5, -6, -7, -8): retrying with the same token cannot succeed. -9
(TimeInconsistent) is deliberately not terminal: the device clock may be
corrected, so the client keeps retrying with backoff and reports -9 between
attempts.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import trio

from protocol.codes import TERMINAL_STATUSES, ConnectionStatus
from protocol.events import ConnAck, GoAway, Notify
from protocol.token import parse_token

from .channels import Channels
from .chatrooms import CHATROOM_QUIT_TOPIC, Chatrooms
from .conversations import Conversations, ConversationsChanged
from .core import LinkObserver, LinkView, Pushes, Response
from .errors import ClientClosed, RequestTimeout
from .groups import Groups
from .link import CLEAR_MISMATCH_ATTEMPTS, Dialer, Link, OpenTransport, Secrets, TcpTransport, server_status
from .messages import MESSAGE_DELETED_TOPIC, MESSAGE_UPDATED_TOPIC, MSG_TOPIC, Messages
from .options import ConnectOptions
from .relations import HEAD_TOPIC, Relations, RelationsChanged
from .users import UserInfoUpdated, Users
from .websocket import WebSocketTransport

__all__ = [
    "CLEAR_MISMATCH_ATTEMPTS",  # here since before the link had a module of its own (client.link)
    "KICKED_TOPIC",
    "Client",
    "ConnectOptions",
    "Event",
    "OnConnected",
    "Response",
    "StatusChanged",
    "connect",
]

log = logging.getLogger("ember.client")

S = ConnectionStatus

#: Statuses in which a link is open and requests go out.
_OPEN = frozenset({S.CONNECTED, S.RECEIVING})

#: The NOTIFY topic the server sends right before closing a kicked or forbidden connection.
KICKED_TOPIC = "kicked"

_CLOSE_GRACE_SECONDS = 1.0

#: The ``transport`` option: how the dialer opens one, and whether a GOAWAY's ``redirect`` applies to it (it
#: names a TCP address: a WebSocket client comes back to its own, docs/PROTOCOL.md §2.2).
_TRANSPORTS: dict[str, tuple[OpenTransport, bool]] = {
    "tcp": (TcpTransport.open, True),
    "websocket": (WebSocketTransport.open, False),
}


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """Put on the event stream each time ``Client.status`` changes."""

    status: ConnectionStatus


#: What ``Client.events()`` yields.
Event = Notify | StatusChanged | RelationsChanged | UserInfoUpdated | ConversationsChanged | GoAway

OnConnected = Callable[["Client", ConnAck], Awaitable[object]]


class _StatusWaiter:
    __slots__ = ("event", "status", "wanted")

    def __init__(self, wanted: frozenset[ConnectionStatus]) -> None:
        self.wanted = wanted
        self.event = trio.Event()
        self.status: ConnectionStatus | None = None


class _Core:
    """What the sub-APIs see of their client (``client.core.Core``), and nothing more."""

    __slots__ = ("_client", "backoff", "emit", "receiving", "request", "user_id")

    def __init__(self, client: Client) -> None:
        self._client = client
        self.user_id = client.user_id
        self.backoff = client._backoff
        self.request = client.request
        self.receiving = client.receiving
        self.emit = client._emit

    @property
    def stopped(self) -> bool:
        return self._client._stopped

    @property
    def link(self) -> LinkView | None:
        return self._client._link


class Client:
    """A connection to an Ember gateway, made by ``connect()``; do not build one directly.

    Attributes:
        user_id: the user this client connects as.
        client_id: the installation id sent in CONNECT.
        platform: the platform sent in CONNECT.
        messages: sending, deleting, recalling messages, and (with
            ``sync_messages``) the inbox sync; see ``client.messages``.
        relations: friends, friend requests, blacklist and settings, and (with
            ``sync_relations``) a synced local copy of each; see ``client.relations``.
        users: the user-info cache; see ``client.users``.
        groups: group operations, the group cache and its events; see ``client.groups``.
        conversations: the conversation list (last message, unread counts, marks), kept from
            what this client syncs; see ``client.conversations``.
        chatrooms: joining a chatroom, its messages and events; see ``client.chatrooms``.
        channels: channel operations, the channel-info cache by version and its events; see
            ``client.channels``.
    """

    def __init__(self, options: ConnectOptions) -> None:
        parts = parse_token(options.token)  # well-formed: ConnectOptions checked it
        self.user_id = parts.user_id if options.user_id is None else options.user_id
        self.client_id = parts.client_id if options.client_id is None else options.client_id
        self.platform = parts.platform if options.platform is None else options.platform
        first, most = options.backoff
        self._backoff = (first, most)
        self._timeout = options.timeout
        self._reconnect = options.reconnect
        self._on_connected = options.on_connected
        open_transport, follow_redirect = _TRANSPORTS[options.transport]
        self._dialer = Dialer(
            host=options.host,
            port=options.port,
            user_id=self.user_id,
            client_id=self.client_id,
            platform=self.platform,
            secrets=Secrets(parts.secret, parts.credential),
            keepalive_seconds=options.keepalive_seconds,
            timeout=options.timeout,
            backoff=self._backoff,
            clock=options.clock,
            on_push=self._on_push,
            on_close=self._set_status,
            open_transport=open_transport,
            follow_redirect=follow_redirect,
            endpoints=options.endpoints,
        )

        self._status = S.UNCONNECTED
        self._waiters: set[_StatusWaiter] = set()
        self._events_tx, self._events_rx = trio.open_memory_channel[Event](options.event_buffer)
        self._dropped_events = 0
        self._link: Link | None = None
        self._connack: ConnAck | None = None
        self._receiving_depth = 0
        self._stopping = False
        self._finished = trio.Event()

        core = _Core(self)
        self.relations = Relations(core, sync=options.sync_relations, snapshot=options.relations_snapshot)
        self.messages = Messages(
            core,
            sync=options.sync_messages,
            last_seq=options.last_seq,
            buffer=options.message_buffer,
            set_blacklist=self.relations.set_blacklist,
        )
        self.users = Users(core)
        self.groups = Groups(core)
        self.conversations = Conversations(core)
        self.chatrooms = Chatrooms(core, buffer=options.chatroom_buffer)
        self.channels = Channels(core, self.relations)
        #: Sub-APIs with work on every link; their catch-ups run in this order.
        self._link_observers: tuple[LinkObserver, ...] = (self.chatrooms, self.messages, self.relations)
        self._pushes = Pushes()
        self._wire()

    def _wire(self) -> None:
        """Who hears what. Where two subscribers share a signal or a topic, they hear it in this order."""
        # A message handed over updates the group cache first (a group notification), then the list.
        self.messages.handed_over.subscribe(self.groups.observe)
        self.messages.handed_over.subscribe(self.conversations.observe)
        self.messages.sent.subscribe(self.conversations.observe)
        self.messages.deleted.subscribe(self.conversations.on_deleted)
        self.relations.setting_changed.subscribe(self.conversations.on_setting)

        # msg: a chatroom message (seq 0, conv type 2) goes to chatrooms.events(); with the inbox sync on
        # the sync takes the rest (and update notices, which sit in the inbox like a msg); with it off
        # they go to events(), and the group cache still sees them.
        self._pushes.take(MSG_TOPIC, self.chatrooms.on_push)
        if self.messages.syncing:
            self._pushes.take(MSG_TOPIC, self.messages.on_push)
            self._pushes.take(MESSAGE_UPDATED_TOPIC, self.messages.on_push)
        else:
            self._pushes.watch(MSG_TOPIC, self.groups.on_push)
        if self.relations.syncing:
            self._pushes.take(HEAD_TOPIC, self.relations.on_head)  # RelationsChanged after the pull instead
        self._pushes.watch(CHATROOM_QUIT_TOPIC, self.chatrooms.on_quit)
        self._pushes.watch(MESSAGE_DELETED_TOPIC, self.conversations.on_deleted)

    def __repr__(self) -> str:
        return (
            f"<Client {self.user_id!r}/{self.client_id!r} platform={self.platform} "
            f"{self._dialer.host}:{self._dialer.port} status={self._status.name}>"
        )

    # --- public surface ------------------------------------------------------------------------

    @property
    def status(self) -> ConnectionStatus:
        """The current connection status."""
        return self._status

    @property
    def connack(self) -> ConnAck | None:
        """The CONNACK of the latest successful handshake: server time, keepalive and sync ``heads``."""
        return self._connack

    @property
    def dropped_events(self) -> int:
        """How many events were discarded because the event buffer was full."""
        return self._dropped_events

    def events(self) -> trio.MemoryReceiveChannel[Event]:
        """The stream of pushes: ``protocol.events.Notify`` and ``StatusChanged`` objects, and
        ``client.relations.RelationsChanged`` / ``client.users.UserInfoUpdated`` from the SDK's copies.

        There is one stream per client; every call returns it, so have one consumer.
        It is bounded (``event_buffer`` of ``connect``). When it is full the *oldest*
        buffered event is discarded to make room and ``dropped_events`` counts it: the
        reader never blocks on a slow consumer, so responses and PONGs keep flowing.
        Pushed messages that were dropped are not lost: the sync layer pulls them from
        the inbox by sequence, and the current status is always ``status``. The stream
        ends when the client stops for good (LOGOUT, a terminal status, transport lost
        with ``reconnect=False``, or leaving ``connect``).

        With ``sync_messages`` the ``msg`` pushes do not come here: the sync takes
        them, and the app reads messages from ``messages.received()``.
        Chatroom messages (``msg`` with seq 0 and conversation type 2) never come
        here either: they go to ``chatrooms.events()``.
        With ``sync_relations`` the ``head`` pushes do not come here either: the
        relation sync takes them and reports ``RelationsChanged`` after pulling.
        """
        return self._events_rx

    async def wait_status(self, *statuses: ConnectionStatus) -> ConnectionStatus:
        """Wait until the status is one of ``statuses``; return it.

        A status held only for a moment still counts, as long as it was entered after
        this call began. Bound the wait with ``trio.fail_after`` if needed.

        Raises:
            ClientClosed: the client stopped for good in a status not in ``statuses``.
        """
        if not statuses:
            raise ValueError("wait_status() needs at least one status")
        if self._status in statuses:
            return self._status
        if self._finished.is_set():
            raise ClientClosed(self._status)
        waiter = _StatusWaiter(frozenset(statuses))
        self._waiters.add(waiter)
        try:
            await waiter.event.wait()
        finally:
            self._waiters.discard(waiter)
        if waiter.status is None:
            raise ClientClosed(self._status)
        return waiter.status

    async def request(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        /,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - defaults to the client's bound; see docstring
        **kwargs: Any,
    ) -> Response:
        """Send a REQUEST and wait for its RESPONSE.

        Params come from ``params`` and keyword arguments (pass a param named
        ``timeout`` in the mapping). While the client is reconnecting the call waits
        for the next connection, within the same timeout; the wait is not a retry: a
        request whose connection drops after it was sent fails with ``ClientClosed``,
        since it may already have run on the server.

        Args:
            method: the method name.
            params: the params map.
            timeout: seconds for the whole call, waiting for a connection included;
                None means the ``timeout`` given to ``connect``, ``math.inf`` none.

        Returns:
            The response; a non-zero ``code`` is an answer, not an exception.

        Raises:
            ClientClosed: the connection dropped before the answer, or the client
                stopped for good.
            RequestTimeout: no answer within ``timeout``.
        """
        merged = dict(params or {})
        merged.update(kwargs)
        limit = self._timeout if timeout is None else timeout
        try:
            with trio.fail_after(limit):
                link = await self._wait_link()
                response = await link.request(method, merged)
        except trio.TooSlowError:
            raise RequestTimeout(method, limit) from None
        if response is None:
            raise ClientClosed(self._status)
        return response

    async def ping(self, *, timeout: float | None = None) -> float:  # noqa: ASYNC109 - as request()
        """Send a PING and wait for its PONG.

        Returns:
            The round trip in seconds.

        Raises:
            ClientClosed: as for ``request``.
            RequestTimeout: no PONG within ``timeout`` (default: ``connect``'s).
        """
        limit = self._timeout if timeout is None else timeout
        try:
            with trio.fail_after(limit):
                link = await self._wait_link()
                started = trio.current_time()
                answered = await link.ping()
        except trio.TooSlowError:
            raise RequestTimeout("ping", limit) from None
        if not answered:
            raise ClientClosed(self._status)
        return trio.current_time() - started

    async def set_push_token(self, platform_push_type: int, token: str) -> None:
        """Upload this device's push token (APNs, FCM, a vendor's), so the server's push webhook can
        reach it while it is offline. Kept with the session on the server (a reconnect needs no new
        upload; a logout with ``clear_session`` ends it); an empty token removes it.

        Args:
            platform_push_type: which push service the token belongs to (0..255, passed through to the
                app server's push bridge: by convention 1 APNs, 2 FCM).
            token: the device token, at most 4096 printable characters.

        Raises:
            ValueError: the server refused the arguments (251).
            ClientClosed, RequestTimeout: as for ``request``.
        """
        response = await self.request("set_push_token", push_type=platform_push_type, token=token)
        if response.code != 0:
            raise ValueError(f"set_push_token refused with code {response.code}")

    async def disconnect(self, clear_session: bool = False) -> None:
        """Log out: send DISCONNECT, close, set LOGOUT and never reconnect.

        With ``clear_session`` the server deletes the session, so the token stops
        working. The DISCONNECT is flushed and the client waits briefly for the
        server to close. When no connection is open (reconnecting) nothing can be
        sent: the client just stops, and the session stays on the server. After a
        terminal status this does nothing and the status stays as it was.
        """
        if self._finished.is_set():
            return
        if not self._stopping:
            self._set_status(S.LOGOUT)
            self._stopping = True
            self._dialer.stop()  # a reconnect under way ends; none starts
            link = self._link
            if (link is None or not link.disconnect(clear_session)) and clear_session:
                log.warning("disconnect(clear_session=True) with no open connection: session kept")
        with trio.move_on_after(_CLOSE_GRACE_SECONDS):
            await self._finished.wait()
            return
        link = self._link
        if link is not None:
            log.info("server did not close after DISCONNECT; closing")
            link.close(S.LOGOUT, "disconnect grace period over")
        await self._finished.wait()

    @contextmanager
    def receiving(self) -> Iterator[None]:
        """Report RECEIVING while the block catches up, then CONNECTED again.

        For the sync layer (pulling after a gap); ``on_connected`` runs inside one.
        Does nothing when no connection is open.
        """
        link = self._link
        if link is None or link.closed:
            yield
            return
        self._receiving_depth += 1
        self._set_status(S.RECEIVING)
        try:
            yield
        finally:
            self._receiving_depth -= 1
            if self._receiving_depth == 0 and self._link is link and self._status == S.RECEIVING:
                self._set_status(S.CONNECTED)

    # --- status and events ---------------------------------------------------------------------

    def _set_status(self, status: ConnectionStatus) -> None:
        if status == self._status or self._stopping or self._finished.is_set():
            return
        self._status = status
        for waiter in self._waiters:
            if waiter.status is None and status in waiter.wanted:
                waiter.status = status
                waiter.event.set()
        self._emit(StatusChanged(status))

    def _emit(self, event: Event) -> None:
        try:
            self._events_tx.send_nowait(event)
            return
        except trio.WouldBlock:
            pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # the consumer closed the stream, or the client finished
        try:
            self._events_rx.receive_nowait()  # drop the oldest
            self._dropped_events += 1
            self._events_tx.send_nowait(event)
        except (trio.WouldBlock, trio.EndOfChannel, trio.BrokenResourceError, trio.ClosedResourceError):
            self._dropped_events += 1

    def _on_push(self, link: Link, event: Notify | GoAway) -> None:
        """What the link's reader got from the server besides answers; never blocks."""
        if isinstance(event, GoAway):
            self._emit(event)  # the link closes next, and the dialer waits as the server asked
            return
        if self._pushes.deliver(event.topic, event.data):
            return  # a sub-API took it (see _wire)
        self._emit(event)
        if event.topic == KICKED_TOPIC:
            code = event.data.get("code") if isinstance(event.data, dict) else None
            link.close(server_status(code, S.KICKED_OFF), "kicked by the server")

    def _finish(self) -> None:
        self._finished.set()
        self._events_tx.close()
        self.messages.finish()
        for waiter in self._waiters:
            waiter.event.set()  # unmatched waiters raise ClientClosed

    @property
    def _stopped(self) -> bool:
        """Stopped for good, or stopping: no request will be sent again."""
        return self._stopping or self._finished.is_set()

    async def _wait_link(self) -> Link:
        while True:
            if self._stopping or self._finished.is_set():
                raise ClientClosed(self._status)
            if self._status in _OPEN and self._link is not None:
                return self._link
            await self.wait_status(*_OPEN)

    # --- the tasks -----------------------------------------------------------------------------

    async def _supervise(self, link: Link | None, task_status: trio.TaskStatus[None]) -> None:
        """Serve links one after another until the client stops for good."""
        started = False

        def ready() -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started()

        try:
            while link is not None:
                await self._serve(link, ready)
                ready()
                if self._stopping or not self._reconnect or self._status in TERMINAL_STATUSES:
                    return
                link = await self._dialer.reconnect(link.going_away, self._set_status)
        finally:
            self._finish()

    async def _serve(self, link: Link, ready: Callable[[], None]) -> None:
        """Run one link until it ends: its own tasks and the sub-APIs' per-link work, then ``on_connected``."""
        try:
            if self._stopping:
                return
            async with trio.open_nursery() as nursery:
                self._link = link
                self._connack = link.connack
                self._receiving_depth = 0
                link.start(nursery)
                for observer in self._link_observers:
                    nursery.start_soon(observer.serve_link, link)
                catching_up = [o for o in self._link_observers if o.catches_up]
                if self._on_connected is None and not catching_up:
                    self._set_status(S.CONNECTED)
                else:
                    with self.receiving():
                        try:
                            for observer in catching_up:
                                await observer.catch_up(link)
                            if self._on_connected is not None:
                                await self._on_connected(self, link.connack)
                        except ClientClosed:
                            pass  # the link dropped while catching up; the supervisor carries on
                ready()
        finally:
            link.close(S.SERVER_DOWN, "connection ended")
            self._link = None
            await link.aclose()


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return None if isinstance(exc, BaseExceptionGroup) else exc


P = ParamSpec("P")
R = TypeVar("R")


def _parameters_of(options: Callable[P, object]) -> Callable[[Callable[..., R]], Callable[P, R]]:
    """Give the decorated function ``options``' parameters, declared there once: for type checkers
    (the ParamSpec) and for ``help()`` and ``inspect.signature`` (``__signature__``) alike."""

    def decorate(function: Callable[..., R]) -> Callable[P, R]:
        parameters = inspect.signature(options).replace(return_annotation=inspect.Signature.empty)
        function.__signature__ = parameters  # type: ignore[attr-defined]
        return function

    return decorate


@_parameters_of(ConnectOptions)
@asynccontextmanager
async def connect(*args: Any, **kwargs: Any) -> AsyncIterator[Client]:
    """Connect to a gateway; leaving the block disconnects (keeping the session).

    ``connect(host, port, token, **options)``: the parameters, their defaults and what each does are
    ``client.options.ConnectOptions``' fields (``help(client.connect)`` lists them).

    ``async with connect(...) as c`` returns once the first CONNACK succeeded (and
    ``on_connected`` returned). An exception raised in the block comes out as
    itself, not wrapped in an exception group.

    Raises:
        ValueError: an option is out of range.
        ConnectError: the first attempt failed; ``status`` is the server's code or
            SERVER_DOWN (TCP refused, handshake broken or timed out); a malformed
            token gives TOKEN_INCORRECT.
    """
    client = Client(ConnectOptions(*args, **kwargs))
    del args, kwargs  # the token
    client._set_status(S.CONNECTING)
    link = await client._dialer.open()
    single: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(client._supervise, link)
                yield client
            finally:
                # Log out politely even when the block was cancelled, but never for long.
                with trio.CancelScope(shield=True) as shield:
                    shield.deadline = trio.current_time() + 2 * _CLOSE_GRACE_SECONDS
                    await client.disconnect()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        single = _single(group)
        if single is None:
            raise
    if single is not None:
        raise single
