"""One task reads every established client connection.

Why: a connection task that waits for its own socket costs a trip through
trio's scheduler per read: wake the task, resume its stack of coroutines,
re-arm the socket in trio's epoll (trio registers one-shot, so an
``epoll_ctl`` per wait). At one message per read that trip was a tenth of the
trio thread's CPU per message (an echo test with 50 connections: 12.2 µs per
message with a task per socket, 6.2 with one reader).

So once a connection has sent its CONNACK and read once more by itself (a
connection that sends one thing and goes never joins: see
``GatewayConnection._read_loop``), its socket joins an epoll set of
our own (level-triggered, registered once), and one task waits in trio for
that set to be readable, then hands each ready socket to its connection's
``on_readable``, which reads once and handles the bytes synchronously. The
connection's own task stays alive for what needs a task: its lifetime, its
idle deadline, its request tasks, and its end. Level-triggered: a socket with
more to read after its turn is ready again in the next pass, and the
``wait_readable`` between passes lets every other task run, so one busy peer
cannot starve the rest.

Level-triggered has one hazard: a registration nobody reads spins the loop (every
``wait_readable`` returns at once). Each live registration has a reader that reads
whenever it is reported, so the only such registration is a stale one: a socket
closed before ``remove`` while its file description lives on elsewhere (a dup, a
child), which ``epoll_ctl(DEL)`` can no longer name. EPOLLONESHOT would rule it out
at the price of an ``epoll_ctl`` per read, the very cost this module exists to
avoid. Instead a readiness with no reader is dropped at once: unregistered by
number if it still can be, else the whole set is rebuilt (a new epoll with every
live reader, the old one closed, which ends every registration it held). A stale
registration therefore costs at most one pass, never a spin; ``rebuilds`` counts them
(each is a bug somewhere, logged).
"""

from __future__ import annotations

import logging
import select
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType

import trio

#: Linux. Elsewhere ``gateway.server.serve`` runs without a poller: each connection's task waits in trio.
HAVE_EPOLL = hasattr(select, "epoll")

#: Most sockets handled per pass (epoll_wait's maxevents); the rest stay ready for the next pass.
MAX_READY_PER_PASS = 512

log = logging.getLogger(__name__)


class ReadPoller:
    """The epoll set of established connections, and the task that serves it (``run``).

    Use as a context manager around the nursery that runs ``run`` and the connections: it closes the
    epoll set once they have all ended.
    """

    def __init__(self, around_pass: Callable[[], AbstractContextManager[object]] = nullcontext) -> None:
        """``around_pass``: entered around each pass's reads (the server passes ``Writer.gathering``, so
        what a pass's reads submit to storage is handed over at the pass's end, in the same task step)."""
        self._around_pass = around_pass
        self._epoll = select.epoll()
        self._readers: dict[int, Callable[[], None]] = {}
        self._removed_in_pass: set[int] = set()  # reported in this pass's batch, but removed before its turn
        #: How many times the set was polled (each ``wait_readable`` that returned).
        self.passes = 0
        #: How many times a stale registration made the set be rebuilt (see the module docstring).
        self.rebuilds = 0

    def add(self, fd: int, on_readable: Callable[[], None]) -> None:
        """Call ``on_readable()`` (on the trio thread, never concurrently) whenever ``fd`` has data or hung up.

        ``on_readable`` must not raise or block; it should read once.
        """
        self._readers[fd] = on_readable
        self._epoll.register(fd, select.EPOLLIN)

    def remove(self, fd: int) -> None:
        """Stop watching ``fd``; call before it is closed (its number may be reused). Idempotent."""
        if self._readers.pop(fd, None) is None or self._epoll.closed:
            return
        self._removed_in_pass.add(fd)
        try:
            self._epoll.unregister(fd)
        except OSError:  # closed already: if its file lives on, ``run`` drops the stale registration
            pass

    async def run(self) -> None:
        """Serve the set until cancelled."""
        readers = self._readers
        removed_in_pass = self._removed_in_pass
        while True:
            await trio.lowlevel.wait_readable(self._epoll.fileno())
            self.passes += 1
            removed_in_pass.clear()
            with self._around_pass():
                for fd, _events in self._epoll.poll(0, MAX_READY_PER_PASS):
                    on_readable = readers.get(fd)
                    if on_readable is not None:
                        on_readable()
                    elif fd not in removed_in_pass:  # (else: removed by an earlier reader of this pass)
                        self._drop_stale(fd)

    def _drop_stale(self, fd: int) -> None:
        """A registration with no reader was reported: end it before it can be reported again."""
        try:
            self._epoll.unregister(fd)
            return
        except OSError:  # its fd is closed (EBADF) or is another file now (ENOENT): rebuild the set
            pass
        self.rebuilds += 1
        log.error("read poller: a socket was closed while registered (fd %d); rebuilding the set", fd)
        fresh = select.epoll()
        for live_fd in self._readers:
            fresh.register(live_fd, select.EPOLLIN)
        old, self._epoll = self._epoll, fresh
        trio.lowlevel.notify_closing(old.fileno())
        old.close()

    def __enter__(self) -> ReadPoller:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._readers.clear()
        self._epoll.close()
