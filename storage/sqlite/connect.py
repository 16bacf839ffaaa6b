"""Opening SQLite connections the way each user of one needs them, and the WAL checkpoint.

Only SQLite has these: the writer's PRAGMAs (WAL, ``synchronous``, page size and cache, no automatic
checkpoint), the readers' (query-only), the checkpointer's connection and its PASSIVE checkpoint.
``storage.writer`` and ``storage.readers`` call these; the numbers' reasons are written beside them.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Final

from storage.errors import StorageError

#: Page size of a new database file, in bytes (see ``connect_writer``).
PAGE_SIZE: Final = 2048

#: Page cache of the writer's connection, in KiB.
CACHE_KIB: Final = 32 * 1024

#: Page cache of each reader connection, in KiB.
READER_CACHE_KIB: Final = 16 * 1024

#: After a checkpoint lets the WAL restart, trim the file back to this size.
WAL_SIZE_LIMIT_BYTES: Final = 64 * 1024 * 1024

#: The values PRAGMA synchronous accepts here. Pragmas cannot take SQL parameters, so the value is
#: checked against this set before being formatted in.
SYNCHRONOUS_MODES: Final = frozenset({"NORMAL", "FULL"})


def connect_writer(path: str | os.PathLike[str], synchronous: str, busy_timeout_ms: int) -> sqlite3.Connection:
    """The writer's connection: WAL, ``synchronous`` as asked, checkpoints left to ``passive_checkpoint``."""
    if synchronous not in SYNCHRONOUS_MODES:
        raise ValueError(f"synchronous must be one of {sorted(SYNCHRONOUS_MODES)}, not {synchronous!r}")
    # isolation_level=None: the sqlite3 module must not open transactions
    # behind our back; the writer issues BEGIN/COMMIT itself.
    # check_same_thread=False: small batches also run on the trio thread, never at the same
    # time as on the writer's (``Writer._conn_lock``).
    conn = sqlite3.connect(
        path,
        isolation_level=None,
        timeout=busy_timeout_ms / 1000,
        cached_statements=256,
        check_same_thread=False,
    )
    try:
        # Only a new database takes this (an existing one keeps its page size). A commit writes
        # every page it dirtied, whole, to the WAL, and a message dirties a page in each of two
        # inboxes and in its conversation's index, a few bytes each: smaller pages write less.
        # Storage-thread CPU per message, 100k messages stored, groups of 100: 4096-byte pages
        # 37-38 us, 2048 29 us; 1024 no better (deeper trees), 8192 worse.
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StorageError(f"could not switch {path} to WAL (journal_mode={mode})")
        conn.execute(f"PRAGMA synchronous={synchronous}")  # checked above
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        conn.execute("PRAGMA foreign_keys=ON")
        # A cache that holds the hot pages: measured on message batches, fewer pages re-read.
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        # Savepoints (one per operation or per group) and statements keep the original of each
        # page they change in a sub-journal, a temporary file once it passes 64 KiB: a group of
        # sends went through a pwrite per page and a close per savepoint (a quarter of the
        # writer's CPU). In memory, it is a copy; it lives only until the savepoint ends.
        conn.execute("PRAGMA temp_store=MEMORY")
        # Checkpoints are the checkpointer thread's job (storage.writer.CHECKPOINT_INTERVAL_SECONDS).
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
    except BaseException:
        conn.close()
        raise
    return conn


def connect_reader(path: str | os.PathLike[str], busy_timeout_ms: int) -> sqlite3.Connection:
    """A reader's connection: query-only, its own cache."""
    # check_same_thread=False: a connection is used by one call at a time, but each call may run on
    # another of trio's worker threads. isolation_level=None: the readers issue BEGIN/ROLLBACK themselves.
    conn = sqlite3.connect(
        path,
        isolation_level=None,
        timeout=busy_timeout_ms / 1000,
        check_same_thread=False,
        cached_statements=128,
    )
    try:
        conn.execute("PRAGMA query_only=ON")  # a read function that writes is a bug: make it fail
        conn.execute(f"PRAGMA cache_size=-{READER_CACHE_KIB}")
        conn.execute("PRAGMA temp_store=MEMORY")
    except BaseException:
        conn.close()
        raise
    return conn


def connect_checkpointer(path: str | os.PathLike[str], busy_timeout_ms: int) -> sqlite3.Connection:
    """The checkpointer thread's own connection."""
    return sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000)


def passive_checkpoint(conn: sqlite3.Connection) -> tuple[bool, int]:
    """Copy what committed WAL frames it can into the database file, never waiting for the writer's lock.

    Returns (another connection was busy so not everything was copied, frames in the WAL).
    """
    busy, wal_frames, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return bool(busy), int(wal_frames)
