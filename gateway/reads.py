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
"""

from __future__ import annotations

import select
from collections.abc import Callable
from types import TracebackType

import trio

#: Linux. Elsewhere ``gateway.server.serve`` runs without a poller: each connection's task waits in trio.
HAVE_EPOLL = hasattr(select, "epoll")

#: Most sockets handled per pass (epoll_wait's maxevents); the rest stay ready for the next pass.
MAX_READY_PER_PASS = 512


class ReadPoller:
    """The epoll set of established connections, and the task that serves it (``run``).

    Use as a context manager around the nursery that runs ``run`` and the connections: it closes the
    epoll set once they have all ended.
    """

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._readers: dict[int, Callable[[], None]] = {}

    def add(self, fd: int, on_readable: Callable[[], None]) -> None:
        """Call ``on_readable()`` (on the trio thread, never concurrently) whenever ``fd`` has data or hung up.

        ``on_readable`` must not raise or block; it should read once.
        """
        self._readers[fd] = on_readable
        self._epoll.register(fd, select.EPOLLIN)

    def remove(self, fd: int) -> None:
        """Stop watching ``fd``; call before it is closed (its number may be reused). Idempotent."""
        if self._readers.pop(fd, None) is not None and not self._epoll.closed:
            self._epoll.unregister(fd)

    async def run(self) -> None:
        """Serve the set until cancelled."""
        epoll_fd = self._epoll.fileno()
        readers = self._readers
        while True:
            await trio.lowlevel.wait_readable(epoll_fd)
            for fd, _events in self._epoll.poll(0, MAX_READY_PER_PASS):
                on_readable = readers.get(fd)
                if on_readable is not None:  # removed by an earlier reader of this pass
                    on_readable()

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
