"""What only SQLite needs, apart from the queries (which are written once for every engine).

``engine`` (the ``storage.engine.Engine`` for SQLite, registered here for ``sqlite3.Connection``),
``connect`` (the writer's, the readers' and the checkpointer's connections with their PRAGMAs; the
PASSIVE WAL checkpoint), ``guard`` (the SQLite version check, the one-owner lock file, the files' mode).
Still outside this package (docs/ARCHITECTURE.md, "Storage engines"): the writer thread itself
(``storage.writer``, inline commits and the checkpointer's schedule included) and the schema history
(``storage.schema``).
"""

import sqlite3

from storage.engine import register
from storage.sqlite.engine import SQLITE

register(sqlite3.Connection, SQLITE)
