"""Connections to the shared database, and how trio code uses one without blocking its loop.

psycopg 3's async API needs asyncio, so the cluster uses its synchronous API: every statement runs in a
worker thread (``trio.to_thread.run_sync``), one at a time per connection (a psycopg connection serves one
statement at a time, and our transactions must not interleave).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import psycopg
import trio

from gateway.cluster.postgres.tables import Connection

T = TypeVar("T")

#: Where "now" comes from for the leases: None means the database's own clock (``statement_timestamp()``,
#: one clock for every node, so hosts' clock drift does not matter); tests pass a clock they move by hand.
LeaseClock = Callable[[], datetime | None]


def database_time() -> datetime | None:
    return None


def connect(url: str, *, application_name: str = "ember-cluster") -> Connection:
    """An autocommit connection (each ``conn.transaction()`` block is one transaction)."""
    return psycopg.connect(url, autocommit=True, application_name=application_name)


class ClusterDatabase:
    """One connection used from trio: ``await db.run(fn, *args)`` calls ``fn(conn, *args)`` in a thread.

    A connection found broken (the server restarted, the backend was terminated) is replaced before the
    next call; the call that found it broken raises (``psycopg.OperationalError``) and its caller decides.
    """

    def __init__(self, url: str, conn: Connection) -> None:
        self.url = url
        self.conn = conn
        self._one_at_a_time = trio.CapacityLimiter(1)

    @classmethod
    async def open(cls, url: str) -> ClusterDatabase:
        return cls(url, await trio.to_thread.run_sync(connect, url))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(self._call, fn, args, limiter=self._one_at_a_time)

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        if self.conn.broken or self.conn.closed:
            self.conn.close()
            self.conn = connect(self.url)
        return fn(self.conn, *args)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self.conn.close, limiter=self._one_at_a_time)
