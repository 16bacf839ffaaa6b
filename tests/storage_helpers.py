"""Helpers for storage tests: read what was committed, wait for the writer thread, hold it busy."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from storage.writer import Writer
from tests import backends


def peek(db_path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read with a second, independent connection: sees only what was committed.

    On ``EMBER_TEST_BACKEND=postgresql`` it reads the database that stands for ``db_path`` (or for its
    data folder): plain SQL with ``?`` placeholders reads the same on both backends.
    """
    url = backends.known_url(db_path)
    if url:
        from storage.postgres.connection import connect

        with connect(url) as pconn:
            return [tuple(row) for row in pconn.execute(sql.replace("?", "%s"), params).fetchall()]
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


async def wait_until(predicate: Callable[[], bool]) -> None:
    # Polling on purpose: the conditions (queue depth, a threading.Event) change
    # on the writer thread, which cannot set a trio.Event for us.
    with trio.fail_after(5):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.001)


@asynccontextmanager
async def held_writer(writer: Writer) -> AsyncIterator[None]:
    """Keep the writer thread busy for the block's duration, so what is queued meanwhile batches."""
    started, gate = threading.Event(), threading.Event()

    def block(conn: sqlite3.Connection) -> None:
        started.set()
        gate.wait(5)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.submit, block)
        await wait_until(started.is_set)
        try:
            yield
        finally:
            gate.set()
