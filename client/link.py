"""The SDK's link: one connection to the gateway, the transport under it, and the dialer that opens links.

Everything transport-shaped lives here, so that the rest of the SDK never sees a socket:

- ``Transport`` carries protocol frames: ``send(frames)`` (in order, as one write where the transport can),
  ``receive()`` (bytes, ``b""`` once the server closed), ``send_eof()`` (after DISCONNECT) and ``aclose()``.
  ``TcpTransport`` is over ``trio.open_tcp_stream``; ``client.websocket.WebSocketTransport`` (one binary
  message per frame) is the second: a subclass and an opener ``(host, port) -> Transport`` given to the
  ``Dialer``; the frames, the handshake and the loops below are the same for both.
- ``Dialer`` opens links: the transport plus the handshake, within ``timeout`` per attempt (a clear −6 is
  tried again, see ``Dialer.open``; a gateway that cannot be reached is left for the next of the
  ``endpoints``, each tried once per attempt), and after a link is lost the reconnect loop: exponential
  backoff with equal jitter, or the wait and the address a GOAWAY named.
- ``Link`` is one connection whose handshake succeeded. ``start(nursery)`` runs its three tasks in the
  nursery the client serves it in: a reader (bytes → ``protocol.ClientConnection`` → events), a writer
  (drains the outbox, one ``Transport.send`` per wakeup) and a keepalive (``protocol.timers.KeepaliveTimer``
  says when to PING and when the server is lost, docs/PROTOCOL.md §8.4). ``request``, ``ping`` and
  ``disconnect`` send frames; answers (RESPONSE, PONG) are matched here; what the server pushes (NOTIFY,
  GOAWAY) goes to the ``on_push`` callback, and the status the link ended with, once, to ``on_close``.
  ``close`` ends it and cancels that nursery; ``aclose`` then fails what still waits for an answer and
  releases the transport.
"""

from __future__ import annotations

import logging
import os
import random
import time
from abc import abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from protocol.codes import TERMINAL_STATUSES, ConnectionStatus, ErrorCode
from protocol.connection import ClientConnection
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

from ._outbox import Outbox, join_frames
from .core import Response
from .errors import ConnectError

# The link's records keep the client's logger name, as before the link had a module of its own.
log = logging.getLogger("ember.client")

S = ConnectionStatus

#: Failure codes a server may send, in a CONNACK or a ``kicked`` push.
_SERVER_FAILURES = frozenset(
    {S.REJECTED, S.TOKEN_INCORRECT, S.SECRET_KEY_MISMATCH, S.KICKED_OFF, S.TIME_INCONSISTENT, S.NOT_LICENSED}
)

#: Attempts in a row that must each get a clear −6 before the SDK reports SecretKeyMismatch (see
#: ``Dialer.open``): with the default backoff about 1.4 s of retrying; a sealed −6 is final at once.
CLEAR_MISMATCH_ATTEMPTS = 4

_RECV_BYTES = 65536
_OUTBOX_LIMIT_BYTES = 1 << 20
_DEFAULT_KEEPALIVE_SECONDS = 60


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _error_code(code: int) -> int:
    try:
        return ErrorCode(code)
    except ValueError:
        return code


def server_status(code: object, default: ConnectionStatus) -> ConnectionStatus:
    """A failure status the server sent, or ``default`` when the value is not one."""
    if isinstance(code, int) and not isinstance(code, bool) and code in _SERVER_FAILURES:
        return ConnectionStatus(code)
    return default


class Secrets:
    """The token's secret parts, kept out of every repr."""

    __slots__ = ("credential", "secret")

    def __init__(self, secret: bytes, credential: bytes) -> None:
        self.secret = secret
        self.credential = credential

    def __repr__(self) -> str:
        return "<redacted>"


# --- transports ------------------------------------------------------------------------------------


class Transport(trio.abc.AsyncResource):
    """How frames reach the gateway and bytes come back. Failures raise ``trio.BrokenResourceError`` (the
    peer is gone) or ``trio.ClosedResourceError`` (closed here), as trio's streams do."""

    @abstractmethod
    async def send(self, frames: Sequence[bytes]) -> None:
        """Send whole protocol frames, in order."""

    @abstractmethod
    async def receive(self) -> bytes:
        """The next bytes from the server, any amount (the state machine reassembles frames);
        ``b""`` once the server closed."""

    @abstractmethod
    async def send_eof(self) -> None:
        """Nothing more will be sent (after DISCONNECT); the server then closes."""


#: Opens a transport to ``host:port``; raises ``OSError`` when the gateway cannot be reached.
OpenTransport = Callable[[str, int], Awaitable[Transport]]


class TcpTransport(Transport):
    """The gateway's client port over TCP (docs/PROTOCOL.md): the frames back to back in one byte stream."""

    __slots__ = ("_stream",)

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream

    @classmethod
    async def open(cls, host: str, port: int) -> TcpTransport:
        return cls(await trio.open_tcp_stream(host, port))

    async def send(self, frames: Sequence[bytes]) -> None:
        await self._stream.send_all(join_frames(frames))

    async def receive(self) -> bytes:
        return await self._stream.receive_some(_RECV_BYTES)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


# --- one link ----------------------------------------------------------------------------------------

#: What a link hands its owner: the pushes (NOTIFY, GOAWAY) and, once, the status it ended with.
OnPush = Callable[["Link", Notify | GoAway], None]
OnClose = Callable[[ConnectionStatus], None]


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


class Link:
    """One connection whose handshake succeeded (see the module docstring)."""

    def __init__(
        self,
        transport: Transport,
        conn: ClientConnection,
        connack: ConnAck,
        backlog: list[Any],
        keepalive: int,
        on_push: OnPush,
        on_close: OnClose,
    ) -> None:
        self._transport = transport
        self._conn = conn
        self._connack = connack
        self._backlog = backlog  # events that arrived in the same read as the CONNACK
        self._on_push = on_push
        self._on_close = on_close
        self.keepalive = connack.keepalive_seconds or keepalive or _DEFAULT_KEEPALIVE_SECONDS
        self._outbox = Outbox(_OUTBOX_LIMIT_BYTES)
        self._pending: dict[int, _Slot] = {}
        self._pongs: deque[_Slot | None] = deque()  # one entry per PING sent; PONGs come in order
        self._timer = KeepaliveTimer(self.keepalive, trio.current_time())  # when to PING, when the server is lost
        self._scope: trio.CancelScope | None = None
        #: The status the link ended with; None while it is open.
        self.end_status: ConnectionStatus | None = None
        #: The server's "going away" (docs/PROTOCOL.md §8.7) that ended this link, for the next reconnect.
        self.going_away: GoAway | None = None
        self._draining = False  # DISCONNECT queued: flush, half-close, wait for the server's close

    @property
    def connack(self) -> ConnAck:
        return self._connack

    @property
    def closed(self) -> bool:
        return self.end_status is not None

    # --- running -------------------------------------------------------------------------------

    def start(self, nursery: trio.Nursery) -> None:
        """Run the reader, writer and keepalive in ``nursery``; ``close`` cancels the whole nursery."""
        self._scope = nursery.cancel_scope
        nursery.start_soon(self._read_loop)
        nursery.start_soon(self._write_loop)
        nursery.start_soon(self._keepalive_loop)

    def close(self, status: ConnectionStatus, why: str) -> None:
        """End the link (the first call decides its status) and cancel its tasks."""
        if self.end_status is None:
            self.end_status = S.LOGOUT if self._draining else status
            log.log(logging.DEBUG if self._draining else logging.INFO, "connection closed: %s", why)
            self._on_close(self.end_status)
            self._outbox.close()
        if self._scope is not None:
            self._scope.cancel()

    async def aclose(self) -> None:
        """After ``close``: whatever still waits for an answer gets none; the transport is released."""
        for slot in self._pending.values():
            slot.fill(None)
        for pong in self._pongs:
            if pong is not None:
                pong.fill(None)
        await trio.aclose_forcefully(self._transport)

    # --- sending -------------------------------------------------------------------------------

    async def request(self, method: str, params: dict[str, Any]) -> Response | None:
        """Send a REQUEST and wait for its RESPONSE; None when the link ended first."""
        await self._outbox.wait_room()
        if self.end_status is not None:
            return None
        # Seal and queue with no checkpoint in between: frames leave in sealing order.
        request_id, frame = self._conn.request(method, params)
        slot = self._pending[request_id] = _Slot()
        self._queue(frame)
        try:
            await slot.event.wait()
        finally:
            self._pending.pop(request_id, None)
        answer: Response | None = slot.value
        return answer

    async def ping(self) -> bool:
        """Send a PING and wait for its PONG; False when the link ended first."""
        slot = _Slot()
        self._send_ping(slot)
        await slot.event.wait()
        return slot.value is not None

    def disconnect(self, clear_session: bool) -> bool:
        """Queue DISCONNECT; the writer flushes it and half-closes, and the reader waits for the server to
        close. False (nothing sent) when the link is closed or already disconnecting."""
        if self.end_status is not None or self._draining:
            return False
        self._draining = True
        self._outbox.put(self._conn.disconnect(clear_session))
        return True

    def _queue(self, frame: bytes, *, ping: bool = False) -> None:
        self._outbox.put(frame)
        self._timer.sent(trio.current_time(), ping=ping)

    def _send_ping(self, slot: _Slot | None) -> None:
        self._pongs.append(slot)
        self._queue(self._conn.ping(), ping=True)

    # --- the tasks -----------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        try:
            if self._backlog:
                self._dispatch(self._backlog)
                self._backlog = []
            while True:
                data = await self._transport.receive()
                if not data:
                    self.close(S.SERVER_DOWN, "server closed the connection")
                    return
                self._timer.received(trio.current_time())
                self._dispatch(self._conn.receive_data(data))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.close(S.SERVER_DOWN, f"read failed: {type(exc.__cause__ or exc).__name__}")

    def _dispatch(self, events: list[Any]) -> None:
        for event in events:
            kind = type(event)
            if kind is _WireResponse:
                slot = self._pending.pop(event.request_id, None)
                if slot is not None:
                    slot.fill(Response(_error_code(event.code), event.result))
            elif kind is Notify:
                self._on_push(self, event)
                if self.end_status is not None:
                    return  # the push ended the link (``kicked``): the rest was for a closed connection
            elif kind is Pong:
                if self._pongs:
                    waiter = self._pongs.popleft()
                    if waiter is not None:
                        waiter.fill(True)
            elif kind is ServerError:
                self.close(S.SERVER_DOWN, f"server error {event.code}: {event.reason}")
                return
            elif kind is GoAway:
                self.going_away = event  # the reconnect waits retry_ms, and goes to redirect if given
                self._on_push(self, event)
                self.close(S.SERVER_DOWN, f"server going away: {event.reason}")
                return
            elif kind is ProtocolViolation:
                log.warning("protocol violation by the server: %s", event.reason)
                self.close(S.SERVER_DOWN, "protocol violation")
                return
            else:  # pragma: no cover - the state machine yields no other event once OPEN
                self.close(S.SERVER_DOWN, f"unexpected {kind.__name__}")
                return

    async def _write_loop(self) -> None:
        try:
            while True:
                frames = await self._outbox.take_frames()
                await self._transport.send(frames)
                if self._draining and not self._outbox:
                    await self._transport.send_eof()  # DISCONNECT is out; the reader waits for the close
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.close(S.SERVER_DOWN, f"write failed: {type(exc.__cause__ or exc).__name__}")

    async def _keepalive_loop(self) -> None:
        """PING and give up on the server when ``protocol.timers.KeepaliveTimer`` says (docs/PROTOCOL.md §8.4)."""
        timer = self._timer
        while not self._draining:
            action = timer.handle_timer(trio.current_time())
            if action is TimerAction.SERVER_LOST:
                self.close(S.SERVER_DOWN, f"nothing received for {self.keepalive} s")
                return
            if action is TimerAction.SEND_PING:
                self._send_ping(None)
            await trio.sleep_until(timer.get_timer())


# --- opening links -----------------------------------------------------------------------------------


class Dialer:
    """Opens links for one identity to one gateway, or to the first of a cluster's that answers.

    ``endpoints`` are the cluster's other nodes, in order (``ConnectOptions.endpoints``): every node holds
    the same sessions and inboxes (the database is the cluster's), so when the current one cannot be
    reached (refused, reset, no handshake within ``timeout``: SERVER_DOWN) the next is tried at once, each
    once, before the attempt counts as failed. Any other answer (a refusal such as −5, a clear −6) is the
    server's and is not retried elsewhere. The dialer stays on the node that answered until it is lost.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        user_id: str,
        client_id: str,
        platform: int,
        secrets: Secrets,
        keepalive_seconds: int,
        timeout: float,  # noqa: ASYNC109 - the bound of each attempt, not of a call
        backoff: tuple[float, float],
        clock: Callable[[], int] | None,
        on_push: OnPush,
        on_close: OnClose,
        open_transport: OpenTransport = TcpTransport.open,
        follow_redirect: bool = True,
        endpoints: Sequence[tuple[str, int]] = (),
    ) -> None:
        self.host, self.port = host, port
        # The first endpoint is the one the client was given; duplicates would only cost a second try.
        self._endpoints = list(dict.fromkeys([(host, port), *endpoints]))
        self._user_id, self._client_id, self._platform = user_id, client_id, platform
        self._secrets = secrets
        self._keepalive = keepalive_seconds
        self._timeout = timeout
        self._backoff = backoff
        self._clock = clock or _wall_clock_ms
        self._on_push = on_push
        self._on_close = on_close
        self._open_transport = open_transport
        self._follow_redirect = follow_redirect  # a GOAWAY's redirect is a TCP address (docs/PROTOCOL.md §2.2)
        self._random = random.Random()
        self._stopped = False
        self._reconnect_scope: trio.CancelScope | None = None

    def stop(self) -> None:
        """Open no more links: a reconnect under way ends (``reconnect`` returns None)."""
        self._stopped = True
        if self._reconnect_scope is not None:
            self._reconnect_scope.cancel()

    async def open(self) -> Link:
        """Transport and handshake, within ``timeout`` per attempt; a clear −6 is tried again first.

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
                return await self._open_somewhere()
            except ConnectError as exc:
                if not exc.clear or attempt == CLEAR_MISMATCH_ATTEMPTS or self._stopped:
                    raise
            log.info("clear SecretKeyMismatch (attempt %d of %d): trying again", attempt, CLEAR_MISMATCH_ATTEMPTS)
            await trio.sleep(delay / 2 + self._random.uniform(0, delay / 2))
            delay = min(delay * 2, most)
        raise AssertionError("unreachable")

    async def reconnect(self, going_away: GoAway | None, report: Callable[[ConnectionStatus], None]) -> Link | None:
        """After a lost link: wait (backoff), open, until a link opens; None after a terminal status or
        ``stop``. ``report`` gets CONNECTING before each attempt and each failed attempt's status."""
        delay, most = self._backoff
        if going_away is not None:
            # The server said when (and maybe where) to come back: wait between retry_ms and twice that
            # (equal jitter below), so the devices of a restarted node do not all reconnect at once.
            if going_away.redirect and self._follow_redirect:
                host, _, port = going_away.redirect.rpartition(":")
                if host and port.isdigit():
                    self.host, self.port = host.strip("[]"), int(port)
            delay = max(2 * going_away.retry_ms / 1000, 1e-3)
        try:
            with trio.CancelScope() as self._reconnect_scope:  # stop() cancels it
                while not self._stopped:
                    await trio.sleep(delay / 2 + self._random.uniform(0, delay / 2))  # "equal jitter"
                    delay = min(delay * 2, most)
                    report(S.CONNECTING)
                    try:
                        return await self.open()
                    except ConnectError as exc:
                        report(exc.status)
                        if exc.status in TERMINAL_STATUSES:
                            return None
            return None
        finally:
            self._reconnect_scope = None

    async def _open_somewhere(self) -> Link:
        """Open at the current endpoint; while the gateway there cannot be reached, at the next one, until
        each was tried once (a redirect's address, not in the list, counts as one more)."""
        tries = len(self._endpoints) + ((self.host, self.port) not in self._endpoints)
        for tried in range(1, tries + 1):
            try:
                return await self._open_once()
            except ConnectError as exc:
                if exc.status != S.SERVER_DOWN or tried == tries or self._stopped:
                    raise
            self.host, self.port = self._next_endpoint()
            log.info("trying the next gateway endpoint %s:%s", self.host, self.port)
        raise AssertionError("unreachable")

    def _next_endpoint(self) -> tuple[str, int]:
        """The endpoint after the current one (the first after an address from outside the list)."""
        try:
            index = self._endpoints.index((self.host, self.port)) + 1
        except ValueError:
            index = 0
        return self._endpoints[index % len(self._endpoints)]

    async def _open_once(self) -> Link:
        conn = ClientConnection(
            user_id=self._user_id,
            client_id=self._client_id,
            platform=self._platform,
            secret=self._secrets.secret,
            credential=self._secrets.credential,
            client_nonce=os.urandom(NONCE_SIZE),
            keepalive_seconds=self._keepalive,
        )
        with trio.move_on_after(self._timeout) as deadline:
            try:
                transport = await self._open_transport(self.host, self.port)
            except OSError as exc:
                log.info("cannot reach %s:%s: %s", self.host, self.port, exc.strerror or type(exc).__name__)
                raise ConnectError(S.SERVER_DOWN) from None
            try:
                connack, backlog = await self._handshake(transport, conn)
            except BaseException:
                await trio.aclose_forcefully(transport)
                raise
            return Link(transport, conn, connack, backlog, self._keepalive, self._on_push, self._on_close)
        assert deadline.cancelled_caught
        log.info("handshake with %s:%s timed out after %g s", self.host, self.port, self._timeout)
        raise ConnectError(S.SERVER_DOWN)

    async def _handshake(self, transport: Transport, conn: ClientConnection) -> tuple[ConnAck, list[Any]]:
        while True:
            try:
                data = await transport.receive()
            except trio.BrokenResourceError:
                data = b""
            if not data:
                log.info("server closed the connection during the handshake")
                raise ConnectError(S.SERVER_DOWN)
            events = conn.receive_data(data)
            for index, event in enumerate(events):
                if isinstance(event, Hello):
                    try:
                        await transport.send([conn.connect(self._clock())])
                    except trio.BrokenResourceError:
                        raise ConnectError(S.SERVER_DOWN) from None
                elif isinstance(event, ConnAck):
                    if event.code == S.CONNECTED:
                        return event, events[index + 1 :]
                    status = server_status(event.code, S.SERVER_DOWN)
                    log.info("server refused the connection: %s%s", status.name, "" if event.sealed else " (clear)")
                    raise ConnectError(status, clear=not event.sealed)
                elif isinstance(event, ServerError):
                    log.warning("server error during the handshake: code %s, %s", event.code, event.reason)
                    raise ConnectError(S.SERVER_DOWN)
                elif isinstance(event, ProtocolViolation):
                    log.warning("protocol violation during the handshake: %s", event.reason)
                    raise ConnectError(S.SERVER_DOWN)
