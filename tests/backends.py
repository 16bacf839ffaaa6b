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
OWN_BACKEND_REASON = "own_backend: picks its storage itself, so the default pass has run it exactly as this one would"

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


def copy_database(source: Path | str, target: Path | str) -> None:
    """On PostgreSQL, give ``target`` a copy of the database ``source`` has (``CREATE DATABASE ... TEMPLATE``),
    as a test on SQLite copies the file: a backup restored, a database moved to another server.

    The gateways on ``source`` must have stopped (PostgreSQL copies only a database nobody is connected
    to); a closed connection's server process can take a moment to leave, so a busy source is retried.
    Nothing to do on SQLite (the test copies the files itself).
    """
    if not on_postgres():
        return
    import time

    import psycopg

    from_url = known_url(source)
    if not from_url:
        raise RuntimeError(f"no database was made for {source}")
    server = pg.server()
    with _lock:
        name = f"ember_test_{os.getpid()}_copy_{len(_urls)}_{threading.get_ident()}"
    source_name = from_url.rsplit("/", 1)[1]
    deadline = time.monotonic() + 10
    with server.admin() as conn:
        while True:
            try:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source_name}"')
                break
            except psycopg.errors.ObjectInUse:  # "source database is being accessed by other users"
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    with _lock:
        _urls[str(Path(target).resolve())] = server.url(name)


def known_url(where: Path | str) -> str:
    """The database ``storage_url`` gave ``where`` or its folder in this test ('' if none: SQLite)."""
    path = Path(where).resolve()
    with _lock:
        return _urls.get(str(path)) or _urls.get(str(path.parent), "")


def named_places() -> set[str]:
    """The places that have a database now (conftest notes them as a test starts)."""
    with _lock:
        return set(_urls)


def forget_test_databases(older: set[str] | None = None) -> list[str]:
    """The databases ``storage_url`` made since the places ``older`` were noted (conftest drops them).

    Those of ``older`` belong to a fixture of a wider scope (a module's gateway, set up before the
    test's own fixtures): they stay until the session ends (``older=None`` forgets every one).
    """
    with _lock:
        keys = [key for key in _urls if older is None or key not in older]
        return [_urls.pop(key) for key in keys]
