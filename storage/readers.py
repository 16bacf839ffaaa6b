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

import contextlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import trio

from storage.engine import Engine, is_transient
from storage.errors import StorageError, StorageRetryLater
from storage.sqlite.connect import connect_reader
from storage.sqlite.engine import SQLITE

T = TypeVar("T")

#: Reader connections per store. Two: on a small machine a pull's SQL is short, and more
#: threads would only compete with the writer for the cores.
DEFAULT_READERS: Final = 2


class Readers:
    """A few read-only connections to the database, lent out one call at a time.

    Start it after the writer has created and migrated the database.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        count: int = DEFAULT_READERS,
        busy_timeout_ms: int = 5000,
        engine: Engine = SQLITE,
        connect: Callable[[], Any] | None = None,
    ):
        """``connect`` opens a reader connection of ``engine`` (``path`` is then only a label); without
        it, the SQLite file at ``path``. A connection found lost is replaced at its next use."""
        if count < 1:
            raise ValueError("count must be at least 1")
        self.path = Path(path)
        self._engine = engine
        self._open = connect
        self._count = count
        self._busy_timeout_ms = busy_timeout_ms
        self._free: list[Any] = []
        self._limiter = trio.CapacityLimiter(count)
        self._closed = False
        #: Reads run so far (for tests and metrics).
        self.reads = 0

    async def start(self) -> None:
        """Open the connections (on a worker thread: opening touches the disk)."""
        self._free = await trio.to_thread.run_sync(lambda: [self._connect() for _ in range(self._count)])

    def _connect(self) -> Any:
        if self._open is not None:
            return self._open()
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
            slot = [self._free.pop()]
            try:
                if self._open is None:
                    return await trio.to_thread.run_sync(_call, slot[0], fn, args)
                return await trio.to_thread.run_sync(self._call_healing, slot, fn, args)
            finally:
                self._free.append(slot[0])
                self.reads += 1

    def _call_healing(self, slot: list[Any], fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """``_call`` on ``slot[0]``, replaced first if it was lost; a failure of the database is a 250."""
        engine = self._engine
        if slot[0] is None or engine.is_broken(slot[0]):
            if slot[0] is not None:
                with contextlib.suppress(Exception):
                    slot[0].close()
            slot[0] = None
            try:
                slot[0] = self._connect()
            except StorageError as exc:  # one line, no password (storage.postgres.connection)
                raise StorageRetryLater(str(exc)) from exc
        conn = slot[0]
        try:
            engine.begin_read(conn)
            try:
                return fn(conn, *args)
            finally:
                engine.end_read(conn)
        except Exception as exc:
            if is_transient(exc):  # the connection lost, the server restarting: nothing was read
                raise StorageRetryLater(f"the database could not run the read: {exc}") from exc
            raise

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


def _close_all(conns: list[Any]) -> None:
    for conn in conns:
        if conn is not None:
            conn.close()
