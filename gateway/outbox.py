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

The queue is bounded in bytes. A peer that stops reading until the bound is
reached is cut off (``overflowed``): its connection is closed and the client
catches up by pulling, rather than the server holding unbounded memory for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import trio

DEFAULT_MAX_QUEUED_BYTES = 4 * 1024 * 1024

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


class Outbox:
    __slots__ = (
        "_drained",
        "_fd",
        "_held",
        "_in_flight",
        "_max_queued",
        "_nursery",
        "_on_overflow",
        "_queue",
        "_queued_bytes",
        "_stream",
        "_wakeup",
        "_writer_started",
        "closed",
        "overflowed",
    )

    def __init__(
        self,
        stream: trio.SocketStream,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
        on_overflow: Callable[[], object] = lambda: None,
    ) -> None:
        self._stream = stream
        self._fd = stream.socket.fileno()
        self._queue: list[bytes] = []
        self._held: list[bytes] = []  # collected while corked
        self._queued_bytes = 0
        self._max_queued = max_queued_bytes
        self._in_flight = False
        self._wakeup = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._writer_started = False
        self._drained = trio.Event()
        self._drained.set()
        self.closed = False
        self.overflowed = False
        self._on_overflow = on_overflow  # the connection ends itself: its client will pull on reconnect

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting for the socket (for /metrics)."""
        return self._queued_bytes

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
        if self._queued_bytes > self._max_queued:
            self.overflowed = self.closed = True
            self._on_overflow()
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

    async def run_writer(self) -> None:
        """Drain the queue with one ``send_all`` per wake-up, until cancelled or the peer is gone."""
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup = trio.Event()
                while self._queue:
                    data = b"".join(self._queue) if len(self._queue) > 1 else self._queue[0]
                    self._queue.clear()
                    self._queued_bytes = 0
                    self._in_flight = True
                    try:
                        await self._stream.send_all(data)
                    finally:
                        self._in_flight = False
                self._drained.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.closed = True
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
        self._drained.set()
