"""A connection's outbound byte queue: write now when the socket can take it, else queue.

Per TRIO-NOTES, an ``await stream.send_all`` per small frame costs 13–16 µs of
CPU (syscall, checkpoint, reschedule), most of a message's budget. So a frame
is first written straight to the socket with a non-blocking ``send`` on its
file descriptor (``os.write`` on ``SocketStream.socket.fileno()``: public, and the
descriptor is already non-blocking under trio); only when the
kernel buffer is full, or bytes are already waiting, does it go on a queue
that a writer task drains with one ``send_all`` per wake-up. Order is kept
because nothing is written directly while anything is queued or in flight.

Corking: inside ``with cork():`` frames are only collected, and each outbox
that got any writes them with one ``os.write`` when the outermost block ends.
The gateway corks while it handles one read's worth of requests and while a
storage batch's commit callbacks run, so ten acks to one client in one batch
cost one syscall, not ten.

The backlog (bytes queued plus the chunk the writer task is handing to the kernel) is bounded twice:

- per connection (``server.outbox_max_bytes``): a peer that stops reading until its bound is reached is cut
  off (``overflowed``);
- for the process (``server.outbox_budget_bytes``, an ``OutboxBudget`` every outbox of the gateway charges
  and credits): without it N stalled readers hold N times the per-connection bound (10,000 of them 40 GB).
  When a write takes the total past the budget, the outboxes with the largest backlogs are cut, largest
  first, until the total is back under it; so the total never exceeds the budget by more than one write.

A cut outbox drops what it holds at once (the bytes are credited back before the write that caused the cut
returns), refuses every later frame, and asks its connection to end (``on_overflow``): the connection closes
without flushing (its peer is not reading) and the client catches up by pulling when it reconnects. The
budget only counts; the connection logs the cut (``OutboxBudget.cut_to_log`` keeps that to a line a second
per reason, and ``unlogged_due`` gives the count of the rest a second later) and ``/metrics`` reads the counters.

What costs what: a direct write (the common case) touches no budget; a queued one adds to two integers and
a set. Only a write that takes the total past the budget looks for the largest backlogs, among the outboxes
that have one (not every connection), and one such scan serves up to ``SHED_CANDIDATES`` cuts within
``SHED_CANDIDATES_SECONDS``.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable

import trio

DEFAULT_MAX_QUEUED_BYTES = 4 * 1024 * 1024

#: Why an outbox was cut: its own bound, or the process-wide budget (``ember_outbox_cuts_total{reason}``).
CUT_CONNECTION_BOUND = "connection_bound"
CUT_BUDGET = "budget"
CUT_REASONS = (CUT_CONNECTION_BOUND, CUT_BUDGET)
#: At most one log line per this many ms for each reason; the next line says how many were not logged.
CUT_LOG_INTERVAL_MS = 1000
#: Over the budget, one scan keeps this many of the largest backlogs as the next ones to cut...
SHED_CANDIDATES = 16
#: ... for this long (trio's clock); after, or once they are used up, the next shed scans again.
SHED_CANDIDATES_SECONDS = 1.0

# Cork state. Module-level because all outboxes live on the one trio thread.
_cork_depth = 0
_corked: list[Outbox] = []


class _Cork:
    """``with cork():`` — a class, not a ``@contextmanager`` generator: it is entered twice per message
    (the read, the commit callbacks), and a generator-based one costs four more Python calls each time."""

    __slots__ = ()

    def __enter__(self) -> None:
        global _cork_depth
        _cork_depth += 1

    def __exit__(self, *exc_info: object) -> None:
        global _cork_depth
        _cork_depth -= 1
        if _cork_depth == 0:
            flush_corked()


_CORK = _Cork()


def cork() -> _Cork:
    """Collect frames sent inside the block; write each outbox's share once at the end."""
    return _CORK


def flush_corked() -> None:
    """Write out everything collected while corked (the cork's exit does this)."""
    while _corked:
        outbox = _corked.pop()
        pending, outbox._held = outbox._held, []
        if pending:
            outbox._write(b"".join(pending) if len(pending) > 1 else pending[0])


class OutboxBudget:
    """The bytes every outbox of the process holds for its socket, and the bound on their sum.

    ``limit_bytes`` 0 means no process-wide bound (each outbox still has its own). One per gateway
    (``Services.outbox_budget``); an ``Outbox`` made without one gets an unbounded budget of its own.
    """

    __slots__ = (
        "_backlogged",
        "_candidates",
        "_candidates_until",
        "_last_logged_ms",
        "_now_ms",
        "_unlogged",
        "cuts",
        "limit_bytes",
        "peak_bytes",
        "total_bytes",
    )

    def __init__(self, limit_bytes: int = 0, now_ms: Callable[[], int] | None = None) -> None:
        self.limit_bytes = limit_bytes
        self.total_bytes = 0  # queued + in flight, over every outbox (``ember_outbox_queued_bytes``)
        self.peak_bytes = 0  # the most total_bytes has been
        self.cuts = dict.fromkeys(CUT_REASONS, 0)  # reason -> outboxes cut (``ember_outbox_cuts_total``)
        self._backlogged: set[Outbox] = set()  # the outboxes with a backlog: the only ones a shed looks at
        self._candidates: list[Outbox] = []
        self._candidates_until = 0.0
        # The wall clock (the gateway's injectable Clock): the log's rate limit needs no trio run.
        self._now_ms = now_ms or (lambda: int(trio.current_time() * 1000))
        self._last_logged_ms: dict[str, int | None] = dict.fromkeys(CUT_REASONS, None)
        self._unlogged = dict.fromkeys(CUT_REASONS, 0)

    def _shed(self) -> None:
        """Cut the largest backlogs, largest first, until the total is within the limit."""
        while self.total_bytes > self.limit_bytes:
            victim = self._largest()
            if victim is None:  # nothing left to cut (cannot happen while the total is positive)
                return
            victim._cut(CUT_BUDGET)

    def _largest(self) -> Outbox | None:
        """The outbox with the largest backlog, among the candidates of a recent scan (scanning again
        when they are used up or stale): a shed after a shed costs O(SHED_CANDIDATES), not O(backlogged)."""
        now = trio.current_time()
        live = [o for o in self._candidates if o.backlog_bytes and not o.closed]
        if not live or now > self._candidates_until:
            live = heapq.nlargest(SHED_CANDIDATES, self._backlogged, key=_backlog_of)
            self._candidates_until = now + SHED_CANDIDATES_SECONDS
        if not live:
            self._candidates = []
            return None
        victim = max(live, key=_backlog_of)  # backlogs grew since the scan: compare them as they are now
        live.remove(victim)
        self._candidates = live
        return victim

    def cut_to_log(self, reason: str) -> int | None:
        """Whether a cut for ``reason`` gets a log line now: at most one per CUT_LOG_INTERVAL_MS per reason.

        None: not this one (it is counted for the next line). Else how many cuts for ``reason`` were not
        logged since the last line. Every cut is counted in ``cuts`` either way.
        """
        now = self._now_ms()
        last = self._last_logged_ms[reason]
        if last is not None and 0 <= now - last < CUT_LOG_INTERVAL_MS:
            self._unlogged[reason] += 1
            return None
        unlogged, self._unlogged[reason] = self._unlogged[reason], 0
        self._last_logged_ms[reason] = now
        return unlogged

    def unlogged_due(self) -> list[tuple[str, int]]:
        """(reason, count) of the cuts not logged yet, for each reason whose interval has passed since its last
        line; taken as logged now. So a burst of cuts that ends still gets its count into the log, a second
        after its first line (``gateway.connection.report_unlogged_cuts`` asks once a second)."""
        now = self._now_ms()
        due = []
        for reason, count in self._unlogged.items():
            last = self._last_logged_ms[reason]
            if count and (last is None or not 0 <= now - last < CUT_LOG_INTERVAL_MS):
                due.append((reason, count))
                self._unlogged[reason] = 0
                self._last_logged_ms[reason] = now
        return due


def _backlog_of(outbox: Outbox) -> int:
    return outbox.backlog_bytes


class Outbox:
    __slots__ = (
        "_budget",
        "_drained",
        "_fd",
        "_held",
        "_in_flight",
        "_in_flight_bytes",
        "_max_queued",
        "_nursery",
        "_on_overflow",
        "_queue",
        "_queued_bytes",
        "_stream",
        "_wakeup",
        "_writer_started",
        "closed",
        "cut_backlog_bytes",
        "cut_reason",
        "overflowed",
    )

    def __init__(
        self,
        stream: trio.SocketStream,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
        on_overflow: Callable[[], object] = lambda: None,
        budget: OutboxBudget | None = None,
    ) -> None:
        self._stream = stream
        self._fd = stream.socket.fileno()
        self._queue: list[bytes] = []
        self._held: list[bytes] = []  # collected while corked
        self._queued_bytes = 0  # in _queue
        self._in_flight_bytes = 0  # handed to send_all by the writer task, not yet all taken by the kernel
        self._max_queued = max_queued_bytes
        self._budget = budget if budget is not None else OutboxBudget()
        self._in_flight = False
        self._wakeup = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._writer_started = False
        self._drained = trio.Event()
        self._drained.set()
        self.closed = False
        self.overflowed = False  # cut: by its own bound or by the budget (cut_reason says which)
        self.cut_reason: str | None = None
        self.cut_backlog_bytes = 0  # the backlog it had when cut (for the log line)
        self._on_overflow = on_overflow  # the connection ends itself: its client will pull on reconnect

    @property
    def backlog_bytes(self) -> int:
        """Bytes this outbox holds for its socket: queued plus in flight. Both bounds count this."""
        return self._queued_bytes + self._in_flight_bytes

    def send(self, data: bytes) -> bool:
        """Write or queue ``data``; never blocks. False once the outbox is closed or overflowed."""
        if self.closed:
            return False
        if _cork_depth:
            if not self._held:
                _corked.append(self)
            self._held.append(data)
            return True
        return self._write(data)

    def _write(self, data: bytes) -> bool:
        if self.closed:
            return False
        if not self._queue and not self._in_flight:
            try:
                sent = os.write(self._fd, data)  # SIGPIPE is ignored in Python: a gone peer is an OSError
            except BlockingIOError:
                sent = 0
            except OSError:
                self.closed = True  # the peer is gone; the reader will notice and end the connection
                return False
            if sent == len(data):
                return True
            data = data[sent:]
        self._queue.append(data)
        self._queued_bytes += len(data)
        budget = self._budget
        budget._backlogged.add(self)
        budget.total_bytes += len(data)
        if budget.total_bytes > budget.peak_bytes:
            budget.peak_bytes = budget.total_bytes
        if self._queued_bytes + self._in_flight_bytes > self._max_queued:
            self._cut(CUT_CONNECTION_BOUND)
            return False
        if budget.limit_bytes and budget.total_bytes > budget.limit_bytes:
            budget._shed()  # may cut this outbox too, if its backlog is among the largest
            if self.closed:
                return False
        self._drained = trio.Event() if self._drained.is_set() else self._drained
        if not self._writer_started:
            # Most connections never fill their kernel buffer: their writer task is never spawned.
            assert self._nursery is not None, "attach() the outbox to a nursery first"
            self._writer_started = True
            self._nursery.start_soon(self.run_writer)
        self._wakeup.set()
        return True

    def attach(self, nursery: trio.Nursery) -> None:
        """Where to start the writer task, the first time bytes have to wait for the socket."""
        self._nursery = nursery

    def _cut(self, reason: str) -> None:
        """Give up on this peer: drop the backlog, refuse what comes next, and end the connection."""
        self.overflowed = self.closed = True
        self.cut_reason = reason
        self.cut_backlog_bytes = self.backlog_bytes
        self._budget.cuts[reason] += 1
        self._release()
        self._held = []
        # Nothing will be written any more: the connection's end does not wait for a flush that a peer
        # which stopped reading would never take (the writer task is cancelled then, freeing its chunk).
        self._drained.set()
        self._on_overflow()

    def _release(self) -> None:
        """Forget the backlog and credit it back to the budget."""
        budget = self._budget
        budget.total_bytes -= self._queued_bytes + self._in_flight_bytes
        budget._backlogged.discard(self)
        self._queue.clear()
        self._queued_bytes = self._in_flight_bytes = 0

    async def run_writer(self) -> None:
        """Drain the queue with one ``send_all`` per wake-up, until cancelled or the peer is gone."""
        budget = self._budget
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup = trio.Event()
                while self._queue:
                    data = b"".join(self._queue) if len(self._queue) > 1 else self._queue[0]
                    self._queue.clear()
                    self._in_flight_bytes, self._queued_bytes = self._queued_bytes, 0
                    self._in_flight = True
                    try:
                        await self._stream.send_all(data)
                    finally:
                        self._in_flight = False
                        budget.total_bytes -= self._in_flight_bytes  # 0 if a cut released it already
                        self._in_flight_bytes = 0
                budget._backlogged.discard(self)
                self._drained.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.closed = True
            self._release()
            self._drained.set()

    @property
    def backlogged(self) -> bool:
        """Bytes are waiting for the socket (its kernel buffer filled); what is corked does not count."""
        return bool(self._queue) or self._in_flight

    @property
    def drained(self) -> bool:
        """Nothing is waiting to be written (collected-while-corked bytes count as waiting)."""
        return self._drained.is_set() and not self._held

    async def drain(self) -> None:
        """Wait until everything queued has been handed to the kernel (or the peer is gone)."""
        await self._drained.wait()

    def detach(self) -> None:
        """Stop writing; call before the stream closes, since the descriptor number may be reused."""
        self._held = []
        self.closed = True
        self._release()
        self._drained.set()
