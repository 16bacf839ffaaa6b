"""One client socket: handshake, then requests, pushes and keepalive.

A thin driver over ``protocol.ServerConnection``: it reads bytes, hands them
to the state machine, and acts on the events; the rules of the handshake
(which status code when) live here because they need storage and config.

Lifecycle of a connection task::

    HELLO ─► wait for CONNECT ─► one storage read (session, user status, sync heads); both within
          handshake_timeout from accept, else the socket closes (no CONNECT) or a clear ERROR 4 (read late)
          ─► checks and, if they pass, register with presence (both in the read's callback)
          ─► CONNACK, then any pushes that came meanwhile
          ─► reads: the first by the task itself, then the socket joins the shared ``ReadPoller``, which calls
             ``on_readable`` per read; the task waits for the end (end of stream, DISCONNECT, violation, kick)
             or the idle timeout (1.5 × keepalive)
          ─► answer the requests read (sends: at their commit) and flush, both briefly (going away, within
             server.shutdown_seconds, then the DISCONNECT), unregister, close the socket
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterable

import trio

from gateway.net.transport import CLOSE_GOING_AWAY, CLOSE_INTERNAL_ERROR, CLOSE_NORMAL, Transport
from gateway.outbox import CUT_LOG_INTERVAL_MS, OutboxBudget, cork
from gateway.reads import ReadPoller
from gateway.rpc import dispatch
from gateway.rpc.methods import METHODS
from gateway.services import Services
from gateway.webhooks import LOGOUT, OFFLINE, ONLINE
from protocol import events
from protocol.codes import ConnectionStatus, ErrorCode, UserStatus
from protocol.connection import ServerConnection, encode_notify_body
from protocol.timers import IdleTimer, TimerAction
from protocol.token import TokenError, open_credential
from storage import SessionRecord

log = logging.getLogger("ember.connection")

RATE_WINDOW_SECONDS = 5.0
# Bounds the request tasks one connection can have open (waiting serial ones included): beyond, 250.
MAX_IN_FLIGHT_REQUESTS = 64
CLOSE_FLUSH_SECONDS = 1.0  # how long a closing connection may take to flush its last frames
#: Connection ids for log lines (``conn=N`` follows one device's connection); per process.
_connection_ids = itertools.count(1)


async def report_unlogged_cuts(budget: OutboxBudget) -> None:
    """Once a second, log how many slow-reader cuts the rate limit kept out of the log (run by the server):
    a thousand readers cut in one burst make their first line at once and this one a second later."""
    while True:
        await trio.sleep(CUT_LOG_INTERVAL_MS / 1000)
        for reason, count in budget.unlogged_due():
            log.warning("slow readers cut off without a line of their own: %d reason=%s", count, reason)


class GatewayConnection:
    """Serves one accepted connection until either side ends it, over its transport (gateway/net/: TCP, or
    WebSocket once the upgrade is done)."""

    __slots__ = (
        "_accepted_at",
        "_awaiting_replies",
        "_caller",
        "_close_code",
        "_early_pushes",
        "_go_away",
        "_idle",
        "_in_flight",
        "_logout",
        "_nursery",
        "_reading",
        "_reads",
        "_requests_done",
        "_main",
        "_outbox",
        "_own_wait",
        "_paused",
        "_proto",
        "_rate_count",
        "_rate_window_start",
        "_registered",
        "_resume_at",
        "_send",
        "_serial",
        "_sending",
        "_transport",
        "_violation_reason",
        "client_id",
        "conn_id",
        "keepalive_seconds",
        "platform",
        "services",
        "user_id",
    )

    def __init__(
        self, services: Services, transport: Transport, reads: ReadPoller | None, accepted_at: float | None = None
    ) -> None:
        self.services = services
        self._transport = transport
        # The handshake timeout and the idle rule count from the accept (a WebSocket's upgrade came before).
        self._accepted_at = trio.current_time() if accepted_at is None else accepted_at
        self._close_code = CLOSE_NORMAL  # the transport's goodbye (WebSocket's Close code; TCP has none)
        self._reads = reads
        self._reading: trio.Event | None = None  # while the poller reads for us; set when reading ends
        self._nursery: trio.Nursery | None = None
        self.user_id = ""
        self.client_id = ""
        self.platform = 0
        self.keepalive_seconds = 0
        self.conn_id = next(_connection_ids)
        self._logout = False  # the client's DISCONNECT asked to clear its session
        self._go_away: tuple[int, str] | None = None  # (retry_ms, redirect) once the server shuts down
        server = services.config.server
        self._proto = ServerConnection(
            server_nonce=os.urandom(32),
            server_time_ms=services.clock.now_ms(),
            max_frame_bytes=server.max_frame_bytes,
        )
        self._main = trio.CancelScope()  # cancelled by _cut_off() to end the connection
        # Not self._cut_off: the outbox holding a bound method of this connection would make a reference
        # cycle, and every ended connection would wait for the cyclic garbage collector instead of going at
        # once (that made handshakes ~20 % dearer and put GC pauses in their p99). The task's end stops
        # the reading.
        self._outbox = transport.open_outbox(
            max_queued_bytes=server.outbox_max_bytes,
            on_overflow=self._main.cancel,
            budget=services.outbox_budget,
        )
        # A frame goes out through the transport, which frames it (WebSocket) or not (TCP: the outbox's own send).
        self._send = transport.send
        self._registered = False
        self._rate_window_start = 0.0
        self._rate_count = 0.0  # units spent in the current window (dispatch: a pull costs what it returned)
        self._resume_at: float | None = None  # over the rate limit: read nothing more until then
        self._paused: trio.CancelScope | None = None  # the task that resumes the poller's reading
        self._in_flight = 0  # request tasks
        # Immediate requests (dispatch) whose answer is still to come: sends waiting for their commit.
        self._awaiting_replies = 0
        # While the task itself reads or waits out the rate limit (no poller reads for it): a go-away
        # cancels it, to end the reading but not the connection.
        self._own_wait: trio.CancelScope | None = None
        self._serial: trio.Lock | None = None  # made at the first serial request (most connections never pull)
        self._requests_done: trio.Event | None = None  # made when the end waits for in-flight requests
        self._violation_reason: str | None = None
        self._idle = IdleTimer(self._accepted_at)  # trio's clock; silence counts from the accept
        # True from CONNACK until an ERROR goes out. Not the state machine's state: that closes
        # for reading at a violation, while answers to the requests before it must still go out.
        self._sending = False
        # Pushes that arrive between registering with presence and sending CONNACK wait here.
        self._early_pushes: list[bytes] = []
        self._caller: dispatch.Caller | None = None  # who the requests come from, made at the first one

    # --- called by presence and the notice bus (never block) --------------------------------------

    def push_frame_body(self, body: bytes) -> None:
        """Seal and send a NOTIFY body made once by ``encode_notify_body``."""
        if not self._sending:
            if self._registered:
                self._early_pushes.append(body)
            return
        if not self._send(self._proto.notify_body(body)):
            self._cut_off()  # the peer stopped reading: it will pull on reconnect

    @property
    def backlogged(self) -> bool:
        """Bytes wait for the socket: the chatroom fan-out queues this member's messages meanwhile."""
        return self._outbox.backlogged

    async def wait_drained(self) -> None:
        """Until nothing waits for the socket (or the peer is gone)."""
        await self._outbox.drain()

    def kick(self, status: ConnectionStatus) -> None:
        """Tell the device why (a ``kicked`` push with the status code), then close."""
        self.push_frame_body(encode_notify_body("kicked", {"code": int(status)}))
        self._cut_off()

    def frame_counts(self) -> tuple[int, int]:
        """(sealed frames sent, received) so far, for /metrics."""
        return self._proto.frame_counts()

    @property
    def last_active(self) -> float:
        """When the peer last sent anything (trio's clock), for the sweeper that releases idle keys."""
        return self._idle.last_received

    @property
    def outbox_backlog_bytes(self) -> int:
        """What the outbox holds for the socket (queued and in flight): what its bounds count."""
        return self._outbox.backlog_bytes

    def release_idle_keys(self) -> None:
        """Called by the server's sweeper for connections quiet for a while (see server.py)."""
        self._proto.release_keys()

    def go_away(self, retry_ms: int, redirect: str) -> None:
        """The server is shutting down: stop reading, answer the requests already read, then send a
        DISCONNECT (docs/PROTOCOL.md §8.7) telling the client when and where to reconnect, and close."""
        self._go_away = (retry_ms, redirect)
        if self._requests_done is not None:
            return  # reading has ended and its task answers the last requests: it says goodbye after them
        if self._reading is not None and not self._reading.is_set():
            self._stop_reading()  # the task's wait ends: it answers what is in flight, then says goodbye
        elif self._own_wait is not None:
            self._own_wait.cancel()  # the same where the task reads for itself (first read, no poller)
        else:
            self._cut_off()  # still in its handshake: no request has been read yet

    def replace(self) -> None:
        """A newer connection of the same session took over: close without a word."""
        self._cut_off()

    def _cut_off(self) -> None:
        """End the connection: read nothing more from now on, and cancel its task's main scope."""
        self._stop_reading()
        self._main.cancel()

    # --- called by the read poller (never blocks, never raises) ---------------------------------

    def on_readable(self) -> None:
        """Read once and act on what came; at the end of the stream or of the session, stop reading."""
        data = self._transport.read_ready()
        if data is None:
            return  # nothing for the protocol (readiness without data; a WebSocket ping): asked again later
        assert self._nursery is not None
        try:
            if self._take(data, self._nursery):
                self._stop_reading()
            elif self._resume_at is not None:
                # Over the rate limit: what this read brought got its 250s; the rest waits in the socket
                # (TCP pushes back on the client) instead of costing a decrypt and a 250 each.
                assert self._reads is not None
                self._reads.remove(self._transport.fd)
                self._nursery.start_soon(self._resume_reading, self._resume_at)
        except Exception:  # noqa: BLE001 - a bug: it ends this one connection, never the poller
            log.exception("reading failed conn=%d user=%s", self.conn_id, self.user_id)
            self._cut_off()

    def _take(self, data: bytes, nursery: trio.Nursery) -> bool:
        """Act on one read's protocol bytes (``b""``: the end of the stream); True when reading must end."""
        if data:
            self._idle.received(trio.current_time())
            with cork():  # one read's answers leave in one write
                if self._handle(self._proto.receive_data(data), nursery):
                    return True
            if not self._transport.ended:
                return False
        # The end of the stream, or the transport ended reading (WebSocket: a Close, a text or oversize
        # message, or one that is not exactly one frame: that one is answered as the protocol's violation).
        violation = self._transport.violation
        if violation is not None:
            self._violation_reason = violation
        return True

    def _stop_reading(self) -> None:
        if self._paused is not None:
            self._paused.cancel()
        if self._reading is not None and not self._reading.is_set():
            assert self._reads is not None  # _reading exists only while the poller reads for us
            self._reads.remove(self._transport.fd)
            self._reading.set()

    async def _resume_reading(self, at: float) -> None:
        """The poller's reading, paused by the rate limit, goes on when the window ends (unless reading ended)."""
        with trio.CancelScope() as self._paused:
            await trio.sleep_until(at)
        self._paused = self._resume_at = None
        if self._reading is not None and not self._reading.is_set():
            assert self._reads is not None
            self._reads.add(self._transport.fd, self.on_readable)

    async def _wait_out_rate_limit(self) -> bool:
        """The same pause where this connection's own task reads (its first read; no poller). True when
        the server went away meanwhile (``go_away``): reading must end."""
        if self._resume_at is not None:
            with trio.CancelScope() as self._own_wait:
                try:
                    await trio.sleep_until(self._resume_at)
                finally:
                    self._own_wait = None
            self._resume_at = None
        return self._go_away is not None

    async def _own_read(self, nursery: trio.Nursery, deadline: float) -> bool:
        """One read by the task itself, until ``deadline`` at most; True when reading must end (the read's
        events say so, or the server went away meanwhile)."""
        with trio.move_on_at(deadline) as self._own_wait:
            try:
                data = await self._transport.receive()
            finally:
                self._own_wait = None
            return self._take(data, nursery)
        return self._go_away is not None

    # --- the connection task --------------------------------------------------------------------

    async def serve(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._outbox.attach(nursery)
                with self._main:
                    self._send(self._proto.hello())
                    if await self._handshake():
                        await self._read_loop(nursery)
                        if self._in_flight or self._awaiting_replies:
                            await self._answer_the_rest()
                        if self._violation_reason is not None:
                            self._violation(self._violation_reason)
                if self._outbox.cut_reason is not None:
                    self._log_cut(self._outbox.cut_reason)
                if self._go_away is not None and self._sending:
                    self._sending = False
                    self._send(self._proto.goaway("shutdown", *self._go_away))
                if self._go_away is not None:
                    self._close_code = CLOSE_GOING_AWAY
                self._transport.finish(self._close_code, "")  # after the protocol's last frame
                # Give the last frames (answers, CONNACK failure, ERROR, kicked) a moment to leave.
                # Usually they already have (direct writes): then no scope, no wait.
                if not self._outbox.drained:
                    with trio.move_on_after(CLOSE_FLUSH_SECONDS):
                        await self._outbox.drain()
                nursery.cancel_scope.cancel()  # request tasks past the bound, and the writer task
        finally:
            self._stop_reading()  # before the socket closes: its number may be reused at once
            if self._registered:
                self.services.delivery.unregister(self)
                if self.services.chatrooms is not None:
                    self.services.chatrooms.leave(self)
                self._on_offline()
            self.services.metrics.connection_ended(*reversed(self._proto.frame_counts()))
            await self._transport.aclose()  # stops the outbox first: the descriptor may be reused at once

    async def _answer_the_rest(self) -> None:
        """Wait, within a bound, until every request read before the end is answered (sends included:
        their acks come with their commits). Going away, the bound is the shutdown's own
        (``server.shutdown_seconds``, which the server also enforces): a client told to reconnect must not
        be left to resend what was stored (docs/PROTOCOL.md §8.7)."""
        self._requests_done = trio.Event()
        bound = CLOSE_FLUSH_SECONDS if self._go_away is None else self.services.config.server.shutdown_seconds
        with trio.move_on_after(bound):
            await self._requests_done.wait()

    def _request_ended(self) -> None:
        if not self._in_flight and not self._awaiting_replies and self._requests_done is not None:
            self._requests_done.set()

    async def _handshake(self) -> bool:
        connect: events.ConnectRequested | None = None
        # One deadline for the whole handshake, CONNECT's storage read included: a stuck or overloaded
        # writer must not hold every new connection (and its socket) for as long as it is stuck.
        deadline = self._accepted_at + self.services.config.server.handshake_timeout_seconds
        transport = self._transport
        with trio.move_on_at(deadline):
            while connect is None:
                data = await transport.receive()
                for event in self._proto.receive_data(data) if data else ():
                    if isinstance(event, events.ConnectRequested):
                        connect = event
                    elif isinstance(event, events.ProtocolViolation):
                        self._violation(event.reason)
                        return False
                if not data or (connect is None and transport.ended):
                    if transport.violation is not None:
                        self._violation(transport.violation)
                    return False
        if connect is None:
            self.services.metrics.handshake_timeouts += 1
            log.info("handshake timed out conn=%d peer=%s", self.conn_id, self._peer())
            return False
        with trio.move_on_at(deadline) as reading:
            status, proof, heads = await self._check(connect)
        if reading.cancelled_caught:
            self.services.metrics.handshake_timeouts += 1
            log.warning("connect read timed out conn=%d user=%s: storage busy", self.conn_id, connect.user_id)
            # No key without the session: a clear ERROR 4, which a client retries (docs/PROTOCOL.md §8.6).
            self._send_error(ErrorCode.SERVER_ERROR, "server busy")
            return False
        self.services.metrics.handshake(int(status))
        if status != ConnectionStatus.CONNECTED or proof is None:
            log.info(
                "connect refused conn=%d user=%s client=%s status=%d",
                self.conn_id, connect.user_id, connect.client_id, status,
            )  # fmt: skip
            # Sealed when the proof opened (only SecretKeyMismatch can be clear): see ServerConnection.reject.
            self._send(self._proto.reject(status))
            return False
        await self.services.delivery.written()  # a cluster's presence row is in the table (Delivery.written)
        self._open(proof, heads)
        return True

    async def _check(
        self, connect: events.ConnectRequested
    ) -> tuple[ConnectionStatus, events.ConnectProof | None, dict[str, int]]:
        """Read the session, user status and sync heads in one storage operation and run the checks.

        Returns the status, the proof (None when it did not open) and the user's sync heads. On
        CONNECTED the connection is registered with presence when this returns.

        Why the checks and the registration run in the read's callback, not after the await: storage
        callbacks run on the trio thread in the writer's queue order, and a message send pushes from its
        own callback (a relation change pushes after its commit, looking the connections up then). So a send queued before the read is counted in the head, and a send queued after it
        finds this connection registered and pushes to it (held until CONNACK has gone): in the heads or
        pushed, never neither. This task itself resumes later, possibly after the callbacks of later
        batches, so registering once it resumes would leave a gap; the old way round, registering first
        and then reading the head, cost a second storage round trip per handshake.
        """
        done = trio.Event()
        decided: tuple[ConnectionStatus, events.ConnectProof | None, dict[str, int]] | BaseException | None = None
        waiting = True  # False once this task stopped waiting (cancelled): then the callback does nothing

        def on_read(
            result: tuple[SessionRecord | None, int | None, dict[str, int]] | None, error: BaseException | None
        ) -> None:
            nonlocal decided
            if not waiting:
                return
            try:
                if error is not None:
                    raise error
                assert result is not None
                session, user_status, heads = result
                status, proof = self._decide(connect, session, user_status)
                if status == ConnectionStatus.CONNECTED:
                    assert proof is not None
                    self.user_id, self.client_id, self.platform = (
                        connect.user_id, connect.client_id, proof.platform
                    )  # fmt: skip
                    self.services.delivery.register(self)
                    self._registered = True
                    webhooks = self.services.webhooks
                    if webhooks.watch_presence:  # in the callback: in order with presence (see below)
                        webhooks.presence(self.user_id, self.client_id, self.platform, ONLINE)
                decided = (status, proof, heads)
            except Exception as exc:  # noqa: BLE001 - raised in the task, which ends this connection
                decided = exc
            done.set()

        self.services.store.connect_read_nowait(connect.user_id, connect.client_id, on_read)
        try:
            await done.wait()
        finally:
            waiting = False
        if isinstance(decided, BaseException):
            raise decided
        assert decided is not None
        return decided

    def _decide(
        self, connect: events.ConnectRequested, session: SessionRecord | None, user_status: int | None
    ) -> tuple[ConnectionStatus, events.ConnectProof | None]:
        """The server's checks, in the documented order (docs/PROTOCOL.md, "Status codes").

        Past the proof, only what it authenticates is acted on: its platform, never CONNECT's clear copy.
        """
        if session is None or session.secret is None:  # None: sealed under another token.key
            return ConnectionStatus.SECRET_KEY_MISMATCH, None
        proof = self._proto.authenticate(session.secret)
        if proof is None:
            return ConnectionStatus.SECRET_KEY_MISMATCH, None
        return self._check_proven(connect, session, user_status, proof), proof

    def _check_proven(
        self,
        connect: events.ConnectRequested,
        session: SessionRecord,
        user_status: int | None,
        proof: events.ConnectProof,
    ) -> ConnectionStatus:
        services = self.services
        now = services.clock.now_ms()
        try:
            credential = open_credential(services.token_key, proof.credential)
        except TokenError:
            return ConnectionStatus.TOKEN_INCORRECT
        if (
            (credential.user_id, credential.client_id, credential.platform)
            != (connect.user_id, connect.client_id, proof.platform)
            or proof.platform != session.platform
            or credential.expired(now)
        ):
            return ConnectionStatus.TOKEN_INCORRECT
        if user_status == UserStatus.FORBIDDEN:
            return ConnectionStatus.REJECTED
        if abs(proof.client_time_ms - now) > services.config.server.max_clock_skew_seconds * 1000:
            return ConnectionStatus.TIME_INCONSISTENT
        if session.state != "active":
            if session.deleted_reason == "kicked" and services.config.server.client_support_kickoff_event:
                return ConnectionStatus.KICKED_OFF
            return ConnectionStatus.SECRET_KEY_MISMATCH
        return ConnectionStatus.CONNECTED

    def _open(self, proof: events.ConnectProof, heads: dict[str, int]) -> None:
        """Send the success CONNACK (already registered: see ``_check``), then the pushes held meanwhile."""
        server = self.services.config.server
        announced = proof.keepalive_seconds or server.keepalive_seconds
        self.keepalive_seconds = min(
            max(announced, server.min_keepalive_seconds), server.max_keepalive_seconds
        )
        self._send(
            self._proto.accept(
                server_time_ms=self.services.clock.now_ms(),
                keepalive_seconds=self.keepalive_seconds,
                heads=heads,
            )
        )
        self._idle.set_keepalive(self.keepalive_seconds)
        self._sending = True
        self._proto.release_keys()  # many connections then sit idle: hold no key schedule until used
        early, self._early_pushes = self._early_pushes, []
        for body in early:
            self.push_frame_body(body)
        log.debug(
            "connected conn=%d user=%s client=%s platform=%d", self.conn_id, self.user_id, self.client_id, self.platform
        )

    def _on_offline(self) -> None:
        # Per-connection lines are DEBUG: at thousands of handshakes a second, INFO lines
        # for each were a measurable share of a handshake's CPU. Refusals stay INFO.
        log.debug("disconnected conn=%d user=%s client=%s", self.conn_id, self.user_id, self.client_id)
        services = self.services
        webhooks = services.webhooks
        # Not when a newer connection of the same session took over (it reported online already).
        if webhooks.watch_presence and not services.delivery.session_online(self.user_id, self.client_id):
            webhooks.presence(self.user_id, self.client_id, self.platform, LOGOUT if self._logout else OFFLINE)
        # last_seen is when the device was last online: its disconnect (while connected, presence knows).
        self.services.sessions.went_offline(self.user_id, self.client_id, self.services.clock.now_ms())

    async def _read_loop(self, nursery: trio.Nursery) -> None:
        """Let the read poller read for this connection until reading ends or the peer falls idle."""
        # Anything the client pipelined behind its CONNECT was buffered until the keys existed.
        if self._handle(self._proto.receive_data(b""), nursery):
            return
        if self._transport.ended:  # the transport ended reading in the read that brought CONNECT (WebSocket)
            self._take(b"", nursery)
            return
        idle = self._idle
        # The first read is the task's own. Many connections send one thing and go (a device that
        # connects, pulls and leaves; the connect bench): joining the poller would cost them two
        # epoll_ctl calls and one more wake-up, which a connection earns back only by going on talking.
        if await self._own_read(nursery, idle.get_timer()) or await self._wait_out_rate_limit():
            return
        if self._reads is None:  # no poller (no epoll here): this task goes on reading, as it did before
            while idle.handle_timer(trio.current_time()) is TimerAction.NONE:
                if await self._own_read(nursery, idle.get_timer()) or await self._wait_out_rate_limit():
                    return
            log.info("idle timeout conn=%d user=%s client=%s", self.conn_id, self.user_id, self.client_id)
            return
        self._nursery = nursery
        self._reading = reading = trio.Event()
        self._reads.add(self._transport.fd, self.on_readable)
        # The idle deadline is moved once per idle period, not per read (moving a deadline costs a
        # heap update in trio's scheduler): when it passes, only a connection quiet since is idle.
        while idle.handle_timer(trio.current_time()) is TimerAction.NONE:
            with trio.move_on_at(idle.get_timer()):
                await reading.wait()
                return
        self._stop_reading()
        log.info("idle timeout conn=%d user=%s client=%s", self.conn_id, self.user_id, self.client_id)

    def _handle(self, received: Iterable[events.ServerEvent], nursery: trio.Nursery) -> bool:
        """Act on events; True when the connection must end."""
        for event in received:
            if isinstance(event, events.Request):
                self._start_request(event, nursery)
            elif isinstance(event, events.BadRequest):
                where = None if event.field is None else {"field": event.field, "problem": event.problem}
                self._reply(event.request_id, ErrorCode.INVALID_PARAMETER, where)
            elif isinstance(event, events.Ping):
                self._send(self._proto.pong())
            elif isinstance(event, events.Disconnect):
                if event.clear_session:
                    self._logout = True
                    nursery.start_soon(self._clear_session)
                return True
            elif isinstance(event, events.ProtocolViolation):
                self._violation_reason = event.reason  # answered after the requests before it
                return True
        return False

    def _log_cut(self, reason: str) -> None:
        """The outbox gave up on this peer (its own bound or the process budget): say so, at most a line a
        second per reason (a thousand stalled readers cut at once make one line, and the next says how many)."""
        budget = self.services.outbox_budget
        unlogged = budget.cut_to_log(reason)
        if unlogged is None:
            return
        log.warning(
            "slow reader cut off conn=%d user=%s client=%s reason=%s backlog_bytes=%d"
            " outbox_max_bytes=%d outbox_budget_bytes=%d unlogged_cuts_since_last_line=%d",
            self.conn_id, self.user_id or "-", self.client_id or "-", reason, self._outbox.cut_backlog_bytes,
            self.services.config.server.outbox_max_bytes, budget.limit_bytes, unlogged,
        )  # fmt: skip

    def _violation(self, reason: str) -> None:
        log.info(
            "protocol violation conn=%d user=%s peer=%s reason=%s", self.conn_id, self.user_id or "-", self._peer(), reason
        )
        self._send_error(ErrorCode.INVALID_DATA, reason)

    def _send_error(self, code: ErrorCode, reason: str) -> None:
        self._sending = False
        self._send(self._proto.error(code, reason))

    async def _clear_session(self) -> None:
        with trio.CancelScope(shield=True):  # the client asked; finish even though the connection is ending
            await self.services.store.end_session(
                self.user_id, self.client_id, "cleared", self.services.clock.now_ms()
            )

    def _over_rate(self, method: str) -> bool:
        """Charge a request's arrival (none for methods charged after answering); True if over the limit."""
        now = trio.current_time()
        if now - self._rate_window_start >= RATE_WINDOW_SECONDS:
            self._rate_window_start, self._rate_count = now, 0.0
        if method not in METHODS.charged_after:
            self._rate_count += 1
        return self._rate_count > self.services.config.client.request_rate_limit

    def _start_request(self, request: events.Request, nursery: trio.Nursery) -> None:
        if self._over_rate(request.method):
            self._resume_at = self._rate_window_start + RATE_WINDOW_SECONDS
            self._answer(request.method, request.request_id, ErrorCode.OVER_FREQUENCY, None)
            return
        if self._in_flight >= MAX_IN_FLIGHT_REQUESTS:
            self._answer(request.method, request.request_id, ErrorCode.OVER_FREQUENCY, None)
            return
        caller = self._caller
        if caller is None:  # requests are read only once the session is established: it is fixed now
            caller = self._caller = dispatch.Caller(self.user_id, self.client_id, self.platform)
        request_id, name = request.request_id, request.method
        answered = False

        def reply(code: int, result: object) -> None:  # now, or from the commit's callback (a send)
            nonlocal answered
            if not answered:
                answered = True
                self._answer(name, request_id, code, result)
                self._awaiting_replies -= 1
                self._request_ended()

        self._awaiting_replies += 1
        try:
            handled = METHODS.dispatch_immediate(self.services, caller, name, request.params, reply)
        except Exception:  # noqa: BLE001 - a bug: it ends this one connection, never the server
            self._bug(request.method)
            return
        if not handled:
            answered = True
            self._awaiting_replies -= 1
            self._in_flight += 1
            nursery.start_soon(self._run_request, caller, request)

    async def _run_request(self, caller: dispatch.Caller, request: events.Request) -> None:
        try:
            try:
                if request.method in METHODS.serial:
                    if self._serial is None:
                        self._serial = trio.Lock()
                    async with self._serial:
                        code, result = await METHODS.dispatch(
                            self.services, caller, request.method, request.params
                        )
                else:
                    code, result = await METHODS.dispatch(self.services, caller, request.method, request.params)
            except Exception:  # noqa: BLE001 - a bug: it ends this one connection, never the server
                self._bug(request.method)
                return
            cost = METHODS.charged_after.get(request.method)
            if cost is not None:
                self._rate_count += cost(code, result)
            self._answer(request.method, request.request_id, code, result)
        finally:
            self._in_flight -= 1
            self._request_ended()

    def _answer(self, method: str, request_id: int, code: int, result: object) -> None:
        """Reply, counting the answer by method and code for /metrics (one dict add)."""
        counts = self.services.metrics.requests
        key = (method if method in METHODS.known else "unknown", code)
        counts[key] = counts.get(key, 0) + 1
        if self._sending:  # ``_reply``, inline: every answer
            self._send(self._proto.response(request_id, code, result))

    def _reply(self, request_id: int, code: int, result: object) -> None:
        if self._sending:
            self._send(self._proto.response(request_id, code, result))

    def _bug(self, method: str) -> None:
        log.exception("handler failed conn=%d method=%s user=%s", self.conn_id, method, self.user_id)
        self._close_code = CLOSE_INTERNAL_ERROR
        if self._sending:
            self._send_error(ErrorCode.SERVER_ERROR, "internal error")
        self._cut_off()

    def _peer(self) -> str:
        return self._transport.peer
