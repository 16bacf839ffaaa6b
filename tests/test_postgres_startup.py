"""``ember serve`` on a PostgreSQL it cannot use says so in one line, password masked, and exits 1.

Each case runs the real command as a process against the private server (``tests.pg``) or a loopback
port nobody listens on: the server down, credentials refused, no such database, a schema newer than
this build's. Never a traceback, never the password. A URL that is not PostgreSQL's is a config
error (exit 2), masked too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from storage.postgres import schema as pg_schema
from storage.postgres.connection import connect
from tests import pg

#: The PostgreSQL pass would repeat this module unchanged: it runs on the private PostgreSQL server it names.
pytestmark = pytest.mark.own_backend

ROOT = Path(__file__).resolve().parent.parent


def serve(tmp_path: Path, url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
    env |= {"EMBER_STORAGE__URL": url, "EMBER_SERVER__PORT": "0", "EMBER_ADMIN__PORT": "0", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--data", str(tmp_path / "data")],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip


def the_error(result: subprocess.CompletedProcess[str], *secrets: str) -> str:
    """The one error line, after checking what no failure may show (a traceback, a password)."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    for secret in secrets:
        assert secret not in output, f"the password is in the output: {output}"
    errors = [line for line in result.stderr.splitlines() if line.startswith("ember: ") and "config" not in line]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_an_unreachable_server_is_one_line_and_exit_1(tmp_path: Path) -> None:
    password = "hunter2-never-shown"
    url = f"postgresql://ember:{password}@127.0.0.1:{pg.closed_port()}/ember?sslmode=disable"
    result = serve(tmp_path, url)
    assert result.returncode == 1, result.stderr
    line = the_error(result, password)
    assert line.startswith("ember: cannot connect to PostgreSQL at postgresql://ember:***@127.0.0.1:"), line
    assert "Connection refused" in line, line


def test_refused_credentials_are_one_line_and_exit_1(tmp_path: Path, postgres: pg.Server) -> None:
    wrong = "wrong-password-never-shown"
    result = serve(tmp_path, postgres.url("postgres", password=wrong))
    assert result.returncode == 1, result.stderr
    line = the_error(result, wrong, postgres.password)
    assert re.search(r"password authentication failed for user \"ember_test\"", line), line
    assert "postgresql://ember_test:***@" in line, line


def test_a_missing_database_is_one_line_and_exit_1(tmp_path: Path, postgres: pg.Server) -> None:
    result = serve(tmp_path, postgres.url("ember_no_such_database"))
    assert result.returncode == 1, result.stderr
    assert 'database "ember_no_such_database" does not exist' in the_error(result, postgres.password)


def test_a_newer_schema_is_one_line_and_exit_1_and_left_alone(
    tmp_path: Path, postgres: pg.Server, pg_url: str
) -> None:
    newer = pg_schema.SCHEMA_VERSION + 1
    with connect(pg_url, autocommit=True) as conn:
        conn.execute(f"UPDATE {pg_schema.VERSION_TABLE} SET version = %s", (newer,))
    result = serve(tmp_path, pg_url)
    assert result.returncode == 1, result.stderr
    line = the_error(result, postgres.password)
    assert f"has schema version {newer}, newer than this build's {pg_schema.SCHEMA_VERSION}" in line, line
    with connect(pg_url) as conn:
        assert pg_schema.schema_version(conn) == newer


@pytest.mark.parametrize("url", ["mysql://u:topsecret-pw@db/ember", "host=db password=topsecret-pw"])
def test_a_url_that_is_not_postgresql_is_a_config_error(tmp_path: Path, url: str) -> None:
    result = serve(tmp_path, url)
    assert result.returncode == 2, result.stderr
    assert "storage.url: must be empty or a postgresql:// URL" in result.stderr
    assert "topsecret-pw" not in result.stdout + result.stderr and "Traceback" not in result.stderr
