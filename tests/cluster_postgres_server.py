"""A private, throwaway PostgreSQL server for the cluster tests (until the shared fixture of issue 23 lands).

initdb + pg_ctl from the PATH (/usr/local/bin here) on a temp folder and a free 127.0.0.1 port, trust
authentication on loopback only, fsync off (the data is thrown away). initdb refuses to run as root, so
as root the server runs as the unprivileged user ``embertest`` (created if missing). Skipped with one line
when PostgreSQL is not installed, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

_USER = "embertest"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(_USER)
    except KeyError:
        subprocess.run(["useradd", "-m", _USER], check=True)
        return pwd.getpwnam(_USER)


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", _USER, "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def private_postgres() -> Iterator[str]:
    """Start a server; yield its URL (database ``postgres``, user ``postgres``); stop and delete it."""
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL (initdb, pg_ctl) is required under CI=true")
        pytest.skip("PostgreSQL not installed (no initdb/pg_ctl on PATH): cluster tests skipped")
    root = tempfile.mkdtemp(prefix="ember-cluster-pg-")
    os.chmod(root, 0o755)
    if os.geteuid() == 0:
        entry = _server_user()
        os.chown(root, entry.pw_uid, entry.pw_gid)
    data, log = os.path.join(root, "data"), os.path.join(root, "log")
    port = _free_port()
    subprocess.run(
        _as_server_user(["initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
    subprocess.run(
        _as_server_user(["pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "start"]),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_server_user(["pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"]),
            check=False,
            stdout=subprocess.DEVNULL,
        )
        shutil.rmtree(root, ignore_errors=True)

