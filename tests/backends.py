"""Which storage backend the suite runs on: ``EMBER_TEST_BACKEND`` = ``sqlite`` (default) or ``postgresql``.

On ``postgresql`` every gateway ``tests.harness.start_gateway`` starts, and every store a test opens
through ``storage_url``, gets a PostgreSQL database of the private server (``tests.pg``) instead of
the SQLite file: the same tests, the other backend. A data folder (or a database path) keeps its
database for the whole test, so a test that stops a gateway and starts another on the same folder
finds its data again, as it does in the SQLite file. conftest drops the databases after the test.

Tests that are about SQLite itself (they open the file with ``sqlite3``, read PRAGMAs, fill a tmpfs,
check file modes) carry the ``sqlite_only`` marker and are skipped, with that reason, on PostgreSQL.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tests import pg

ENV_BACKEND = "EMBER_TEST_BACKEND"
BACKENDS = ("sqlite", "postgresql")

BACKEND = os.environ.get(ENV_BACKEND, "sqlite").strip().lower() or "sqlite"
if BACKEND not in BACKENDS:
    raise RuntimeError(f"{ENV_BACKEND}={BACKEND!r}: must be one of {', '.join(BACKENDS)}")

SQLITE_ONLY_REASON = "sqlite_only: tests SQLite itself (its file, PRAGMAs or file system), not the backend-neutral store"

_urls: dict[str, str] = {}  # data folder or database path -> its database, for the running test
_lock = threading.Lock()


def on_postgres() -> bool:
    return BACKEND == "postgresql"


def storage_url(where: Path | str) -> str:
    """What ``storage.url`` / ``open_store(url=...)`` should be for a store at ``where``.

    ``""`` on SQLite (the store is the file ``where`` names). On PostgreSQL, a fresh migrated database
    the first time a test names ``where``, the same one after. Blocks ~0.2 s on first use: call it
    from a thread (``trio.to_thread.run_sync``) where a trio loop is serving.
    """
    if not on_postgres():
        return ""
    key = str(Path(where).resolve())
    with _lock:
        if key in _urls:
            return _urls[key]
    try:
        server = pg.server()
    except pg.Unavailable as exc:
        pytest.fail(f"{ENV_BACKEND}=postgresql, but {exc}", pytrace=False)
    url = server.create_database()
    with _lock:
        return _urls.setdefault(key, url)


def known_url(where: Path | str) -> str:
    """The database ``storage_url`` gave ``where`` or its folder in this test ('' if none: SQLite)."""
    path = Path(where).resolve()
    with _lock:
        return _urls.get(str(path)) or _urls.get(str(path.parent), "")


def forget_test_databases() -> list[str]:
    """The databases ``storage_url`` made for the test that just ended (conftest drops them)."""
    with _lock:
        urls = list(_urls.values())
        _urls.clear()
    return urls
