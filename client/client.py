"""The SDK's connection: a thin trio driver over ``protocol.ClientConnection``.

One ``Client`` owns at most one live TCP connection (a *link*) at a time. Each
link runs three tasks in its own nursery: a reader (bytes → state machine →
events), a writer (drains the outbox, one ``send_all`` per wakeup) and a
keepalive. A supervisor task serves links one after another: when a link is
lost it waits (exponential backoff with jitter) and opens a new one with a
fresh client nonce, until ``disconnect()``, a terminal status, or
``reconnect=False`` stops it for good.

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

import logging
import os
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import trio

from protocol.codes import TERMINAL_STATUSES, ConnectionStatus, ErrorCode
from protocol.connection import MAX_KEEPALIVE_SECONDS, ClientConnection
from protocol.crypto import NONCE_SIZE
from protocol.events import (
    ConnAck,
    GoAway,
    Hello,
    Notify,
    Pong,
    ProtocolViolation,
    ServerError,
)
from protocol.events import (
    Response as _WireResponse,
)
from protocol.timers import KeepaliveTimer, TimerAction
from protocol.token import TokenError, parse_token

from ._outbox import Outbox
from .channels import Channels
from .chatrooms import CHATROOM_QUIT_TOPIC, Chatrooms
from .conversations import Conversations, ConversationsChanged
from .errors import ClientClosed, ConnectError, RequestTimeout
from .groups import Groups
from .messages import MESSAGE_DELETED_TOPIC, MESSAGE_UPDATED_TOPIC, MSG_TOPIC, Messages, parse_message
from .relations import HEAD_TOPIC, Relations, RelationsChanged, Snapshot
from .users import UserInfoUpdated, Users

log = logging.getLogger("ember.client")

S = ConnectionStatus

#: Statuses in which a link is open and requests go out.
_OPEN = frozenset({S.CONNECTED, S.RECEIVING})

#: Failure codes a server may send, in a CONNACK or a ``kicked`` push.
_SERVER_FAILURES = frozenset(
    {S.REJECTED, S.TOKEN_INCORRECT, S.SECRET_KEY_MISMATCH, S.KICKED_OFF, S.TIME_INCONSISTENT, S.NOT_LICENSED}
)

#: The NOTIFY topic the server sends right before closing a kicked or forbidden connection.
KICKED_TOPIC = "kicked"

#: Attempts in a row that must each get a clear −6 before the SDK reports SecretKeyMismatch (see
#: ``Client._open_link``): with the default backoff about 1.4 s of retrying; a sealed −6 is final at once.
CLEAR_MISMATCH_ATTEMPTS = 4

_RECV_BYTES = 65536
_OUTBOX_LIMIT_BYTES = 1 << 20
_CLOSE_GRACE_SECONDS = 1.0
_DEFAULT_KEEPALIVE_SECONDS = 60


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


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """Put on the event stream each time ``Client.status`` changes."""

    status: ConnectionStatus


#: What ``Client.events()`` yields.
Event = Notify | StatusChanged | RelationsChanged | UserInfoUpdated | ConversationsChanged | GoAway

OnConnected = Callable[["Client", ConnAck], Awaitable[object]]


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _error_code(code: int) -> int:
    try:
        return ErrorCode(code)
    except ValueError:
        return code


def _server_status(code: object, default: ConnectionStatus) -> ConnectionStatus:
    """A failure status the server sent, or ``default`` when the value is not one."""
    if isinstance(code, int) and not isinstance(code, bool) and code in _SERVER_FAILURES:
        return ConnectionStatus(code)
    return default


class _Secrets:
    """The token's secret parts, kept out of every repr."""

    __slots__ = ("credential", "secret")

    def __init__(self, secret: bytes, credential: bytes) -> None:
        self.secret = secret
        self.credential = credential

    def __repr__(self) -> str:
        return "<redacted>"


class _Slot:
    """One awaited answer: ``value`` stays None if the link closed first."""

    __slots__ = ("event", "value")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.value: Any = None

    def fill(self, value: Any) -> None:
        if not self.event.is_set():
            self.value = value
            self.event.set()


class _StatusWaiter:
    __slots__ = ("event", "status", "wanted")

    def __init__(self, wanted: frozenset[ConnectionStatus]) -> None:
        self.wanted = wanted
        self.event = trio.Event()
        self.status: ConnectionStatus | None = None


class _Link:
    """One TCP connection whose handshake succeeded."""

    def __init__(
        self,
        stream: trio.SocketStream,
        conn: ClientConnection,
        connack: ConnAck,
        backlog: list[Any],
        keepalive: int,
    ) -> None:
        self.stream = stream
        self.conn = conn
        self.connack = connack
        self.backlog = backlog  # events that arrived in the same read as the CONNACK
        self.keepalive = connack.keepalive_seconds or keepalive or _DEFAULT_KEEPALIVE_SECONDS
        self.outbox = Outbox(_OUTBOX_LIMIT_BYTES)
        self.pending: dict[int, _Slot] = {}
        self.pongs: deque[_Slot | None] = deque()  # one entry per PING sent; PONGs come in order
        self.timer = KeepaliveTimer(self.keepalive, trio.current_time())  # when to PING, when the server is lost
        self.scope: trio.CancelScope | None = None
        self.end_status: ConnectionStatus | None = None
        self.draining = False  # DISCONNECT queued: flush, half-close, wait for the server's close


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

    def __init__(
        self,
        host: str,
        port: int,
        token: str,
        *,
        keepalive_seconds: int,
        reconnect: bool,
        user_id: str | None,
        client_id: str | None,
        platform: int | None,
        clock: Callable[[], int] | None,
        backoff: tuple[float, float],
        timeout: float,
        event_buffer: int,
        on_connected: OnConnected | None,
        sync_messages: bool = False,
        last_seq: int = 0,
        message_buffer: int = 1000,
        sync_relations: bool = False,
        relations_snapshot: Snapshot | None = None,
        chatroom_buffer: int = 1000,
    ) -> None:
        if not 0 <= keepalive_seconds <= MAX_KEEPALIVE_SECONDS:
            raise ValueError(f"keepalive_seconds must be in 0..{MAX_KEEPALIVE_SECONDS}")
        first, most = backoff
        if not 0 < first <= most:
            raise ValueError("backoff must be (first, max) with 0 < first <= max")
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        if event_buffer < 1:
            raise ValueError("event_buffer must be at least 1")
        try:
            parts = parse_token(token)
        except TokenError:
            raise ConnectError(S.TOKEN_INCORRECT) from None
        self.user_id = parts.user_id if user_id is None else user_id
        self.client_id = parts.client_id if client_id is None else client_id
        self.platform = parts.platform if platform is None else platform
        self._secrets = _Secrets(parts.secret, parts.credential)
        self._host, self._port = host, port
        self._keepalive = keepalive_seconds
        self._reconnect = reconnect
        self._clock = clock or _wall_clock_ms
        self._backoff = (first, most)
        self._timeout = timeout
        self._on_connected = on_connected
        self._random = random.Random()
        self._go_away: GoAway | None = None  # the server's last "going away" (§8.7), for the next reconnect
        self.messages = Messages(self, sync=sync_messages, last_seq=last_seq, buffer=message_buffer)
        self.relations = Relations(self, sync=sync_relations, snapshot=relations_snapshot)
        self.users = Users(self)
        self.groups = Groups(self)
        self.conversations = Conversations(self)
        self.chatrooms = Chatrooms(self, buffer=chatroom_buffer)
        self.channels = Channels(self)

        self._status = S.UNCONNECTED
        self._waiters: set[_StatusWaiter] = set()
        self._events_tx, self._events_rx = trio.open_memory_channel[Event](event_buffer)
        self._dropped_events = 0
        self._link: _Link | None = None
        self._connack: ConnAck | None = None
        self._receiving_depth = 0
        self._reconnect_scope: trio.CancelScope | None = None
        self._stopping = False
        self._finished = trio.Event()

    def __repr__(self) -> str:
        return (
            f"<Client {self.user_id!r}/{self.client_id!r} platform={self.platform} "
            f"{self._host}:{self._port} status={self._status.name}>"
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
                await link.outbox.wait_room()
                if link.end_status is not None:
                    raise ClientClosed(self._status)
                # Seal and queue with no checkpoint in between: frames leave in sealing order.
                request_id, frame = link.conn.request(method, merged)
                slot = link.pending[request_id] = _Slot()
                self._queue(link, frame)
                try:
                    await slot.event.wait()
                finally:
                    link.pending.pop(request_id, None)
        except trio.TooSlowError:
            raise RequestTimeout(method, limit) from None
        if slot.value is None:
            raise ClientClosed(self._status)
        return slot.value

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
                slot = _Slot()
                started = trio.current_time()
                self._send_ping(link, slot)
                await slot.event.wait()
        except trio.TooSlowError:
            raise RequestTimeout("ping", limit) from None
        if slot.value is None:
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
            link = self._link
            if link is not None and link.end_status is None and not link.draining:
                link.draining = True
                link.outbox.put(link.conn.disconnect(clear_session))
            else:
                if clear_session:
                    log.warning("disconnect(clear_session=True) with no open connection: session kept")
                if self._reconnect_scope is not None:
                    self._reconnect_scope.cancel()
        with trio.move_on_after(_CLOSE_GRACE_SECONDS):
            await self._finished.wait()
            return
        link = self._link
        if link is not None:
            log.info("server did not close after DISCONNECT; closing")
            self._close_link(link, S.LOGOUT, "disconnect grace period over")
        await self._finished.wait()

    @contextmanager
    def receiving(self) -> Iterator[None]:
        """Report RECEIVING while the block catches up, then CONNECTED again.

        For the sync layer (pulling after a gap); ``on_connected`` runs inside one.
        Does nothing when no connection is open.
        """
        link = self._link
        if link is None or link.end_status is not None:
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

    def _finish(self) -> None:
        self._finished.set()
        self._events_tx.close()
        self.messages._close()
        for waiter in self._waiters:
            waiter.event.set()  # unmatched waiters raise ClientClosed

    @property
    def _stopped(self) -> bool:
        """Stopped for good, or stopping: no request will be sent again."""
        return self._stopping or self._finished.is_set()

    # --- connections ---------------------------------------------------------------------------

    async def _wait_link(self) -> _Link:
        while True:
            if self._stopping or self._finished.is_set():
                raise ClientClosed(self._status)
            if self._status in _OPEN and self._link is not None:
                return self._link
            await self.wait_status(*_OPEN)

    def _queue(self, link: _Link, frame: bytes, *, ping: bool = False) -> None:
        link.outbox.put(frame)
        link.timer.sent(trio.current_time(), ping=ping)

    def _send_ping(self, link: _Link, slot: _Slot | None) -> None:
        link.pongs.append(slot)
        self._queue(link, link.conn.ping(), ping=True)

    async def _open_link(self) -> _Link:
        """TCP connect and handshake, within ``timeout`` per attempt; a clear −6 is tried again first.

        A clear −6 is the one CONNACK anyone on the path can forge (docs/PROTOCOL.md §7), and −6 is
        terminal: believed at once, one injected frame would make the app fetch a new token, which
        under the one-device rule logs the user's other device out. So it is reported only after
        ``CLEAR_MISMATCH_ATTEMPTS`` attempts in a row, with the reconnect backoff between them; a
        sealed −6 (the session really is gone) is final at once.

        Raises:
            ConnectError: the server's failure status, or SERVER_DOWN.
        """
        delay, most = self._backoff
        for attempt in range(1, CLEAR_MISMATCH_ATTEMPTS + 1):
            try:
                return await self._open_link_once()
            except ConnectError as exc:
                if not exc.clear or attempt == CLEAR_MISMATCH_ATTEMPTS or self._stopping:
                    raise
            log.info("clear SecretKeyMismatch (attempt %d of %d): trying again", attempt, CLEAR_MISMATCH_ATTEMPTS)
            await trio.sleep(delay / 2 + self._random.uniform(0, delay / 2))
            delay = min(delay * 2, most)
        raise AssertionError("unreachable")

    async def _open_link_once(self) -> _Link:
        conn = ClientConnection(
            user_id=self.user_id,
            client_id=self.client_id,
            platform=self.platform,
            secret=self._secrets.secret,
            credential=self._secrets.credential,
            client_nonce=os.urandom(NONCE_SIZE),
            keepalive_seconds=self._keepalive,
        )
        with trio.move_on_after(self._timeout) as deadline:
            try:
                stream = await trio.open_tcp_stream(self._host, self._port)
            except OSError as exc:
                log.info("cannot reach %s:%s: %s", self._host, self._port, exc.strerror or type(exc).__name__)
                raise ConnectError(S.SERVER_DOWN) from None
            try:
                connack, backlog = await self._handshake(stream, conn)
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
            return _Link(stream, conn, connack, backlog, self._keepalive)
        assert deadline.cancelled_caught
        log.info("handshake with %s:%s timed out after %g s", self._host, self._port, self._timeout)
        raise ConnectError(S.SERVER_DOWN)

    async def _handshake(
        self, stream: trio.SocketStream, conn: ClientConnection
    ) -> tuple[ConnAck, list[Any]]:
        while True:
            try:
                data = await stream.receive_some(_RECV_BYTES)
            except trio.BrokenResourceError:
                data = b""
            if not data:
                log.info("server closed the connection during the handshake")
                raise ConnectError(S.SERVER_DOWN)
            events = conn.receive_data(data)
            for index, event in enumerate(events):
                if isinstance(event, Hello):
                    try:
                        await stream.send_all(conn.connect(self._clock()))
                    except trio.BrokenResourceError:
                        raise ConnectError(S.SERVER_DOWN) from None
                elif isinstance(event, ConnAck):
                    if event.code == S.CONNECTED:
                        return event, events[index + 1 :]
                    status = _server_status(event.code, S.SERVER_DOWN)
                    log.info("server refused the connection: %s%s", status.name, "" if event.sealed else " (clear)")
                    raise ConnectError(status, clear=not event.sealed)
                elif isinstance(event, ServerError):
                    log.warning("server error during the handshake: code %s, %s", event.code, event.reason)
                    raise ConnectError(S.SERVER_DOWN)
                elif isinstance(event, ProtocolViolation):
                    log.warning("protocol violation during the handshake: %s", event.reason)
                    raise ConnectError(S.SERVER_DOWN)

    def _close_link(self, link: _Link, status: ConnectionStatus, why: str) -> None:
        """End a link (the first call decides its status) and cancel its tasks."""
        if link.end_status is None:
            link.end_status = S.LOGOUT if link.draining else status
            log.log(logging.DEBUG if link.draining else logging.INFO, "connection closed: %s", why)
            self._set_status(link.end_status)
            link.outbox.close()
        if link.scope is not None:
            link.scope.cancel()

    # --- the tasks -----------------------------------------------------------------------------

    async def _supervise(self, link: _Link | None, task_status: trio.TaskStatus[None]) -> None:
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
                link = await self._reconnect_loop()
        finally:
            self._finish()

    async def _reconnect_loop(self) -> _Link | None:
        delay, most = self._backoff
        go_away, self._go_away = self._go_away, None
        if go_away is not None:
            # The server said when (and maybe where) to come back: wait between retry_ms and twice that
            # (equal jitter below), so the devices of a restarted node do not all reconnect at once.
            if go_away.redirect:
                host, _, port = go_away.redirect.rpartition(":")
                if host and port.isdigit():
                    self._host, self._port = host.strip("[]"), int(port)
            delay = max(2 * go_away.retry_ms / 1000, 1e-3)
        try:
            with trio.CancelScope() as self._reconnect_scope:  # disconnect() cancels it
                while not self._stopping:
                    await trio.sleep(delay / 2 + self._random.uniform(0, delay / 2))  # "equal jitter"
                    delay = min(delay * 2, most)
                    self._set_status(S.CONNECTING)
                    try:
                        return await self._open_link()
                    except ConnectError as exc:
                        self._set_status(exc.status)
                        if exc.status in TERMINAL_STATUSES:
                            return None
            return None
        finally:
            self._reconnect_scope = None

    async def _serve(self, link: _Link, ready: Callable[[], None]) -> None:
        """Run one link until it ends: reader, writer and keepalive, then ``on_connected``."""
        try:
            if self._stopping:
                return
            async with trio.open_nursery() as nursery:
                link.scope = nursery.cancel_scope
                self._link = link
                self._connack = link.connack
                self._receiving_depth = 0
                nursery.start_soon(self._read_loop, link)
                nursery.start_soon(self._write_loop, link)
                nursery.start_soon(self._keepalive_loop, link)
                nursery.start_soon(self.chatrooms._keep_alive, link)
                syncing = self.messages.syncing
                if syncing:
                    nursery.start_soon(self.messages._pull_worker, link)
                if self.relations.syncing:
                    nursery.start_soon(self.relations._worker, link)
                if self._on_connected is None and not syncing and not self.relations.syncing:
                    self._set_status(S.CONNECTED)
                else:
                    with self.receiving():
                        try:
                            if syncing:
                                await self.messages._catch_up(link)
                            if self.relations.syncing:
                                await self.relations._catch_up(link)
                            if self._on_connected is not None:
                                await self._on_connected(self, link.connack)
                        except ClientClosed:
                            pass  # the link dropped while catching up; the supervisor carries on
                ready()
        finally:
            self._close_link(link, S.SERVER_DOWN, "connection ended")
            self._link = None
            for slot in link.pending.values():
                slot.fill(None)
            for pong in link.pongs:
                if pong is not None:
                    pong.fill(None)
            await trio.aclose_forcefully(link.stream)

    async def _read_loop(self, link: _Link) -> None:
        try:
            if link.backlog:
                self._dispatch(link, link.backlog)
                link.backlog = []
            while True:
                data = await link.stream.receive_some(_RECV_BYTES)
                if not data:
                    self._close_link(link, S.SERVER_DOWN, "server closed the connection")
                    return
                link.timer.received(trio.current_time())
                self._dispatch(link, link.conn.receive_data(data))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._close_link(link, S.SERVER_DOWN, f"read failed: {type(exc.__cause__ or exc).__name__}")

    def _dispatch(self, link: _Link, events: list[Any]) -> None:
        for event in events:
            kind = type(event)
            if kind is _WireResponse:
                slot = link.pending.pop(event.request_id, None)
                if slot is not None:
                    slot.fill(Response(_error_code(event.code), event.result))
            elif kind is Notify:
                if event.topic == MSG_TOPIC:
                    if self.chatrooms._on_push(event.data):
                        continue  # a chatroom message (seq 0, conv type 2): client.chatrooms.events()
                    if self.messages.syncing:
                        self.messages._on_push(event.data)
                        continue
                    if isinstance(event.data, dict):
                        pushed = parse_message(event.data.get("message"), 0)
                        if pushed is not None:
                            self.groups._observe(pushed)
                elif event.topic == MESSAGE_UPDATED_TOPIC:
                    if self.messages.syncing:
                        self.messages._on_push(event.data)  # the notice sits in the inbox like a msg push
                        continue
                elif event.topic == HEAD_TOPIC:
                    if self.relations.syncing:
                        self.relations._on_head(event.data)
                        continue
                elif event.topic == CHATROOM_QUIT_TOPIC:
                    self.chatrooms._on_quit(event.data)
                elif event.topic == MESSAGE_DELETED_TOPIC:
                    self.conversations._on_deleted(event.data)
                self._emit(event)
                if event.topic == KICKED_TOPIC:
                    code = event.data.get("code") if isinstance(event.data, dict) else None
                    self._close_link(link, _server_status(code, S.KICKED_OFF), "kicked by the server")
                    return
            elif kind is Pong:
                if link.pongs:
                    waiter = link.pongs.popleft()
                    if waiter is not None:
                        waiter.fill(True)
            elif kind is ServerError:
                self._close_link(link, S.SERVER_DOWN, f"server error {event.code}: {event.reason}")
                return
            elif kind is GoAway:
                self._go_away = event  # the reconnect waits retry_ms, and goes to redirect if given
                self._emit(event)
                self._close_link(link, S.SERVER_DOWN, f"server going away: {event.reason}")
                return
            elif kind is ProtocolViolation:
                log.warning("protocol violation by the server: %s", event.reason)
                self._close_link(link, S.SERVER_DOWN, "protocol violation")
                return
            else:  # pragma: no cover - the state machine yields no other event once OPEN
                self._close_link(link, S.SERVER_DOWN, f"unexpected {kind.__name__}")
                return

    async def _write_loop(self, link: _Link) -> None:
        try:
            while True:
                data = await link.outbox.take()
                await link.stream.send_all(data)
                if link.draining and not link.outbox:
                    await link.stream.send_eof()  # DISCONNECT is out; the reader waits for the close
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._close_link(link, S.SERVER_DOWN, f"write failed: {type(exc.__cause__ or exc).__name__}")

    async def _keepalive_loop(self, link: _Link) -> None:
        """PING and give up on the server when ``protocol.timers.KeepaliveTimer`` says (docs/PROTOCOL.md §8.4)."""
        timer = link.timer
        while not link.draining:
            action = timer.handle_timer(trio.current_time())
            if action is TimerAction.SERVER_LOST:
                self._close_link(link, S.SERVER_DOWN, f"nothing received for {link.keepalive} s")
                return
            if action is TimerAction.SEND_PING:
                self._send_ping(link, None)
            await trio.sleep_until(timer.get_timer())

def _single(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return None if isinstance(exc, BaseExceptionGroup) else exc


@asynccontextmanager
async def connect(
    host: str,
    port: int,
    token: str,
    *,
    keepalive_seconds: int = 60,
    reconnect: bool = True,
    user_id: str | None = None,
    client_id: str | None = None,
    platform: int | None = None,
    clock: Callable[[], int] | None = None,
    backoff: tuple[float, float] = (0.2, 10.0),
    timeout: float = 10.0,  # noqa: ASYNC109 - also bounds background reconnects, beyond a caller's reach
    event_buffer: int = 1000,
    on_connected: OnConnected | None = None,
    sync_messages: bool = False,
    last_seq: int = 0,
    message_buffer: int = 1000,
    sync_relations: bool = False,
    relations_snapshot: Snapshot | None = None,
    chatroom_buffer: int = 1000,
) -> AsyncIterator[Client]:
    """Connect to a gateway; leaving the block disconnects (keeping the session).

    ``async with connect(...) as c`` returns once the first CONNACK succeeded (and
    ``on_connected`` returned). An exception raised in the block comes out as
    itself, not wrapped in an exception group.

    Args:
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
        timeout: bound of each TCP connect + handshake, and default bound of
            ``request`` and ``ping``.
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

    Raises:
        ConnectError: the first attempt failed; ``status`` is the server's code or
            SERVER_DOWN (TCP refused, handshake broken or timed out); a malformed
            token gives TOKEN_INCORRECT.
    """
    client = Client(
        host,
        port,
        token,
        keepalive_seconds=keepalive_seconds,
        reconnect=reconnect,
        user_id=user_id,
        client_id=client_id,
        platform=platform,
        clock=clock,
        backoff=backoff,
        timeout=timeout,
        event_buffer=event_buffer,
        on_connected=on_connected,
        sync_messages=sync_messages,
        last_seq=last_seq,
        message_buffer=message_buffer,
        sync_relations=sync_relations,
        relations_snapshot=relations_snapshot,
        chatroom_buffer=chatroom_buffer,
    )
    del token
    client._set_status(S.CONNECTING)
    link = await client._open_link()
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
