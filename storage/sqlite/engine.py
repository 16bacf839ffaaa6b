"""``SqliteEngine``: the ``storage.engine.Engine`` of a SQLite database owned by one process."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any, Final

from storage.engine import Engine, Tx

#: Primary result codes (the low byte of an extended code) worth running a transaction again for:
#: another connection held a lock past ``busy_timeout`` (SQLITE_BUSY), or a table lock (SQLITE_LOCKED).
_RETRYABLE: Final = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})

#: ``in_list``'s condition: the values travel as one JSON array, so the text (and the cached
#: statement, and the plan) is one for any number of values.
_IN_JSON: Final = "{} IN (SELECT value FROM json_each(?))"


def _primary_code(exc: BaseException | None) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None) if isinstance(exc, sqlite3.Error) else None
    return None if code is None else code & 0xFF


class SqliteEngine(Engine):
    name = "sqlite"
    single_writer = True  # storage.sqlite.guard's lock file makes sure of it
    inline_commit = True  # under synchronous=NORMAL (the writer checks the durability itself)
    wal_checkpoints = True
    reads_need_savepoint = False
    errors = (sqlite3.Error,)

    def convert_param_style(self, sql: str) -> str:
        return sql  # sqlite3 takes ``?`` as written

    def in_list(self, column: str, values: Collection[Any]) -> tuple[str, tuple[Any, ...]]:
        return _IN_JSON.format(column), (json.dumps(list(values)),)

    def pairs(self, alias: str, values: Collection[tuple[Any, Any]]) -> tuple[str, str, str, tuple[Any, ...]]:
        # One JSON array of [a, b] arrays: the plan the send checks had before the seam.
        return f"json_each(?) {alias}", f"{alias}.value ->> 0", f"{alias}.value ->> 1", (
            json.dumps([list(pair) for pair in values]),
        )

    def json_array_contains(self, column: str) -> str:
        return f"EXISTS (SELECT 1 FROM json_each({column}) t WHERE t.value = ?)"

    def begin(self, tx: Tx) -> None:
        # IMMEDIATE takes the write lock now: a transaction that would fail to get it fails at
        # BEGIN, before any of its operations ran, not at its first write.
        tx.execute("BEGIN IMMEDIATE")

    @contextmanager
    def savepoint(self, tx: Tx, name: str) -> Iterator[None]:
        if not name.isidentifier():  # formatted into the statement: names are ours, never input
            raise ValueError(f"not a savepoint name: {name!r}")
        tx.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            # The error may already have ended the whole transaction (disk full, I/O error), and the
            # savepoint with it: then there is nothing left to undo here (``transaction_failed``).
            if tx.in_transaction:
                tx.execute(f"ROLLBACK TO {name}")
                tx.execute(f"RELEASE {name}")
            raise
        if tx.in_transaction:
            tx.execute(f"RELEASE {name}")

    def transaction_failed(self, tx: Tx) -> bool:
        return not tx.in_transaction

    def commit(self, tx: Tx) -> None:
        try:
            tx.execute("COMMIT")
        except sqlite3.Error:
            # e.g. a deferred foreign key violation, or an I/O error: a failed COMMIT may leave the
            # transaction open, and the next BEGIN would fail on it.
            self.rollback(tx)
            raise

    def rollback(self, tx: Tx) -> None:
        if tx.in_transaction:
            tx.execute("ROLLBACK")

    def is_retryable(self, exc: BaseException) -> bool:
        return _primary_code(exc) in _RETRYABLE

    def is_disk_full(self, exc: BaseException | None) -> bool:
        """SQLITE_FULL ("database or disk is full"), by its error code (the extended code's low byte)."""
        return _primary_code(exc) == sqlite3.SQLITE_FULL


SQLITE: Final = SqliteEngine()
