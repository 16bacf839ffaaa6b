"""Reader connections: reads that do not wait behind the writer's queue.

The writer (``storage.writer``) runs everything it is handed in queue order, one
batch after another, so a read queued there waits for every write queued before
it, and a client that loops expensive reads delays everyone's acks. In WAL mode
a reader sees the last committed state without blocking the writer or being
blocked by it, so the reads that need no ordering with queued writes run here,
on a few connections of their own, each call on a worker thread
(``trio.to_thread``). A ``trio.CapacityLimiter`` lends out the connections
first come, first served.

Which reads need the writer's order, and so stay on the writer:

* CONNECT's read (``Store.connect_read_nowait``): a send queued before it must be
  counted in the CONNACK heads and one queued after it must find the connection
  registered, or a message could be neither in the heads nor pushed.
* ``Store.inbox_head``: it reads the writer's head cache, which counts sends that
  are queued but not yet committed (tests use it as a barrier behind them).

Every other read (pulls, history, user info, sessions, blacklists, admin reads)
comes from a caller that already has what it needs committed: an acknowledged
send, an awaited admin write, a push that went out after its commit. Each call
runs in one read transaction, so a function that reads several tables (a pull
reads ``inbox`` and the ``inbox_recent`` log, which a merge moves rows between)
sees one snapshot.

Single-process assumption: none. Reader connections hold no state of their own;
with a shared PostgreSQL they would be a read pool (or replicas, with the same
rule about which reads must see the primary).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import trio

from storage.errors import StorageError
from storage.sqlite.connect import connect_reader

T = TypeVar("T")

#: Reader connections per store. Two: on a small machine a pull's SQL is short, and more
#: threads would only compete with the writer for the cores.
DEFAULT_READERS: Final = 2


class Readers:
    """A few read-only connections to the database, lent out one call at a time.

    Start it after the writer has created and migrated the database.
    """

    def __init__(self, path: str | os.PathLike[str], *, count: int = DEFAULT_READERS, busy_timeout_ms: int = 5000):
        if count < 1:
            raise ValueError("count must be at least 1")
        self.path = Path(path)
        self._count = count
        self._busy_timeout_ms = busy_timeout_ms
        self._free: list[sqlite3.Connection] = []
        self._limiter = trio.CapacityLimiter(count)
        self._closed = False
        #: Reads run so far (for tests and metrics).
        self.reads = 0

    async def start(self) -> None:
        """Open the connections (on a worker thread: opening touches the disk)."""
        self._free = await trio.to_thread.run_sync(lambda: [self._connect() for _ in range(self._count)])

    def _connect(self) -> sqlite3.Connection:
        return connect_reader(self.path, self._busy_timeout_ms)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in a read transaction on a free connection; return its result.

        Waits for a free connection first (first come, first served). If the
        caller is cancelled while ``fn`` runs, the call still finishes (its thread
        cannot be interrupted) before the connection is lent again.

        Raises:
            StorageError: The readers are closed.
            Exception: Whatever ``fn`` raised.
        """
        if self._closed:
            raise StorageError("the store is closed")
        async with self._limiter:
            if self._closed:
                raise StorageError("the store is closed")
            conn = self._free.pop()
            try:
                return await trio.to_thread.run_sync(_call, conn, fn, args)
            finally:
                self._free.append(conn)
                self.reads += 1

    async def aclose(self) -> None:
        """Close every connection, once no call holds one."""
        if self._closed:
            return
        self._closed = True
        tokens = [object() for _ in range(self._count)]
        with trio.CancelScope(shield=True):
            for token in tokens:  # take every connection back: no call is left running
                await self._limiter.acquire_on_behalf_of(token)
            conns, self._free = self._free, []
            await trio.to_thread.run_sync(_close_all, conns)
            for token in tokens:
                self._limiter.release_on_behalf_of(token)


def _call(conn: sqlite3.Connection, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    # One snapshot for the whole function: its statements see the same committed state.
    conn.execute("BEGIN")
    try:
        return fn(conn, *args)
    finally:
        conn.execute("ROLLBACK")  # nothing to undo: it only ends the read transaction


def _close_all(conns: list[sqlite3.Connection]) -> None:
    for conn in conns:
        conn.close()
