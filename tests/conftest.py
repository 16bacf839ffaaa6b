"""Session-wide test plumbing: the private PostgreSQL server (``tests.pg``) and the backend switch
(``tests.backends``).

Fixtures: ``postgres`` (the server; skipped with one line where there is none, a failure under
``EMBER_REQUIRE_POSTGRES=1`` or ``CI=true``), ``pg_url`` (a fresh migrated database, dropped after
the test) and ``pg_empty_url`` (a fresh database with no schema). Markers: ``sqlite_only`` (skipped
when ``EMBER_TEST_BACKEND=postgresql``) and ``own_backend`` (a test that picks its storage itself, a PostgreSQL
server it names or a gateway it spawns on SQLite, runs the same in both passes: skipped in the PostgreSQL one,
which would only repeat it; it runs against PostgreSQL in the default pass all the same).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests import backends, pg


@pytest.fixture(scope="session")
def postgres() -> pg.Server:
    try:
        return pg.server()
    except pg.Unavailable as exc:
        if pg.required():
            pytest.fail(f"{exc} (PostgreSQL is required here: {pg.ENV_REQUIRE}=1 or CI=true)", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture
def pg_url(postgres: pg.Server) -> Iterator[str]:
    url = postgres.create_database()
    yield url
    postgres.drop_later(url)


@pytest.fixture
def pg_empty_url(postgres: pg.Server) -> Iterator[str]:
    url = postgres.create_database(empty=True)
    yield url
    postgres.drop_later(url)


@pytest.fixture(autouse=True)
def _drop_backend_databases() -> Iterator[None]:
    """Drop the databases the backend switch made for this test (none on SQLite).

    Not those of wider-scoped fixtures, set up before this one (a module's gateway serves on into
    the next test): they are dropped when the session ends.
    """
    older = backends.named_places()
    yield
    urls = backends.forget_test_databases(older)
    if urls:
        server = pg.server()
        for url in urls:
            server.drop_later(url)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not backends.on_postgres():
        return
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        if marker:
            # The marker's own reason when it gives one (what about the test is SQLite's alone).
            why = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            reason = f"sqlite_only: {why}" if why else backends.SQLITE_ONLY_REASON
            item.add_marker(pytest.mark.skip(reason=reason))
        elif item.get_closest_marker("own_backend"):
            item.add_marker(pytest.mark.skip(reason=backends.OWN_BACKEND_REASON))


def pytest_report_header(config: pytest.Config) -> str:
    return f"storage backend: {backends.BACKEND} ({backends.ENV_BACKEND})"


#: Under pytest-xdist the tests run in worker processes, which have no terminal: each sends its skip line
#: (``pg.unavailable_reason()``) to the controller in ``workeroutput``, which prints it once.
_workers_unavailable: set[str] = set()


@pytest.hookimpl(optionalhook=True)  # an xdist hook: unknown (and not called) without xdist
def pytest_testnodedown(node: Any, error: object) -> None:
    reason = getattr(node, "workeroutput", {}).get("pg_unavailable")
    if reason:
        _workers_unavailable.add(reason)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    reason = pg.unavailable_reason() or min(_workers_unavailable, default=None)
    if reason:
        terminalreporter.write_line(reason)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)  # set on an xdist worker only
    if workeroutput is not None:
        workeroutput["pg_unavailable"] = pg.unavailable_reason() or ""
    urls = backends.forget_test_databases()  # the wider-scoped fixtures' (their gateways have stopped)
    if urls:
        server = pg.server()
        for url in urls:
            server.drop_later(url)
    pg.shutdown()
