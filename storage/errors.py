"""What the storage layer raises to its callers, whatever database it runs on.

``StorageError`` and its kinds are the seam's (``storage.engine``): the SQLite writer raises them today, a
PostgreSQL one raises the same, and the gateway answers them (a ``StorageRetryLater`` is 250, the code a
client resends on) without knowing which database is behind them.
"""

from __future__ import annotations


class StorageError(Exception):
    """The database could not do what was asked (it is closed, or a transaction failed).

    An exception raised by an operation itself (say ``sqlite3.IntegrityError``)
    reaches its caller unchanged; this type means the failure was not that
    operation's own.
    """


class StorageRetryLater(StorageError):
    """Nothing was written, and the same operation may well succeed in a moment: try again later.

    The gateway answers it 250 (docs/PROTOCOL.md §8.1), the code a client already resends on.
    """


class StorageFull(StorageRetryLater):
    """SQLite reported SQLITE_FULL: the file system (or the database's size limit) is full.

    The writer retries with every later batch, and probes once a second while nothing else
    writes, so writes commit again as soon as space is freed (``Writer.disk_full``).
    """


class WriterBacklogged(StorageRetryLater):
    """``max_queued`` operations already wait for the writer: refused at submit, never queued."""
