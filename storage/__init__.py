"""Ember's storage: SQLite, one writer thread, many requests per transaction.

Open a store inside trio and use its async methods; nothing here blocks the
trio loop on disk::

    async with open_store("ember.db") as store:
        await store.create_user(UserRecord("alice", name="Alice", created_at=now, updated_at=now))

Modules: ``writer`` (the thread and its group commits), ``schema`` (tables and
migrations), ``users``, ``sessions``, ``messages`` and ``relations`` (the SQL, as plain
functions of a connection), ``inboxes`` (inbox heads and the inbox log, kept by
the writer thread), ``store`` (``Store`` and ``open_store``), ``records`` (the values).
"""

import storage.sqlite  # noqa: F401 - registers the SQLite engine for sqlite3.Connection
from storage.records import (
    END_REASONS,
    SESSION_ACTIVE,
    SESSION_DELETED,
    IssueResult,
    SessionRecord,
    UserRecord,
)
from storage.schema import SCHEMA_VERSION
from storage.store import Store, open_store
from storage.writer import StorageError, StorageFull, StorageRetryLater, WriterBacklogged

__all__ = [
    "END_REASONS",
    "SCHEMA_VERSION",
    "SESSION_ACTIVE",
    "SESSION_DELETED",
    "IssueResult",
    "SessionRecord",
    "StorageError",
    "StorageFull",
    "StorageRetryLater",
    "Store",
    "UserRecord",
    "WriterBacklogged",
    "open_store",
]
