"""The PostgreSQL test plumbing itself: without PostgreSQL the cases skip with one line, or fail where
PostgreSQL is required (``CI=true``, ``EMBER_REQUIRE_POSTGRES=1``). Each case runs pytest as a process on
one PostgreSQL test, with ``EMBER_TEST_PG_BIN`` naming a folder that holds no server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ONE_PG_TEST = "tests/test_postgres_schema.py::test_migrate_creates_the_schema_once_and_then_does_nothing"


def run_pytest(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_") and k != "CI"}
    clean |= {"EMBER_TEST_PG_BIN": str(tmp_path), **env}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", ONE_PG_TEST],
        capture_output=True, text=True, env=clean, cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_without_postgresql_the_cases_are_skipped_with_one_line_saying_how_to_enable_them(tmp_path: Path) -> None:
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout, result.stdout
    lines = [line for line in result.stdout.splitlines() if line.startswith("PostgreSQL tests skipped")]
    assert len(lines) == 1, result.stdout  # the session's summary line, once
    assert "no initdb/pg_ctl in" in lines[0] and "EMBER_TEST_POSTGRES_URL" in lines[0], lines[0]


def test_where_postgresql_is_required_its_absence_fails(tmp_path: Path) -> None:
    for env in ({"CI": "true"}, {"EMBER_REQUIRE_POSTGRES": "1"}):
        result = run_pytest(tmp_path, **env)
        assert result.returncode == 1, (env, result.stdout + result.stderr)
        assert "PostgreSQL is required here" in result.stdout, (env, result.stdout)


def test_an_unknown_backend_is_refused(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, EMBER_TEST_BACKEND="oracle")
    assert result.returncode != 0
    assert "EMBER_TEST_BACKEND='oracle': must be one of sqlite, postgresql" in result.stdout + result.stderr
