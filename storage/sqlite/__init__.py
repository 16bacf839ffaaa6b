"""The SQLite engine and what only SQLite needs: the connections' PRAGMAs, the WAL checkpointer, the lock file.

``engine`` (the ``storage.engine.Engine`` for SQLite, registered here for ``sqlite3.Connection``),
``connect`` (opening the writer's, the readers' and the checkpointer's connections; the WAL checkpoint
loop), ``guard`` (the SQLite version check and the one-owner lock file). The writer thread itself
(``storage.writer``) is SQLite's too, inline commits included: a PostgreSQL backend brings its own.
"""

import sqlite3

from storage.engine import register
from storage.sqlite.engine import SQLITE

register(sqlite3.Connection, SQLITE)
