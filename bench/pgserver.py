"""A private, throwaway PostgreSQL server for a benchmark run: ``with private_server() as pg: pg.url``.

What ``python -m bench pairs --spawn --postgres`` and ``python -m bench cluster-notify --spawn`` run against:
``initdb`` and ``pg_ctl`` from the distribution (on PATH, /usr/local/bin or /usr/lib/postgresql/<n>/bin) on a
temporary folder, listening on a free 127.0.0.1 port with a random password (scram), removed at the end.
initdb refuses to run as root, so under root the server runs as the distribution's ``postgres`` user (or
``nobody``), which owns the folder.

Unlike the tests' server (tests/pg.py, which this mirrors in brief: the tests are not part of the installed
package, the load tester is) it keeps ``fsync`` on by default: a benchmark's commit should cost what a real
one costs. ``cpu_seconds()`` is the CPU the server's processes have used, for a per-message figure.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench.procfs import cpu_seconds as process_cpu_seconds

DATABASE = "ember_bench"
_WAIT_SECONDS = "60"


class NoPostgres(Exception):  # noqa: N818 - a state of the machine
    """No initdb/pg_ctl here, or no user to run them as: the message says which."""


@dataclass
class PrivateServer:
    url: str  # the benchmark database, as its superuser
    data_dir: Path

    def postmaster_pid(self) -> int:
        return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])

    def cpu_seconds(self) -> float:
        """CPU (user + system) of the postmaster and its children so far: backends, WAL writer, checkpointer.

        A backend that exited meanwhile takes its CPU with it (a benchmark's connections live the whole run).
        """
        postmaster = self.postmaster_pid()
        total = process_cpu_seconds(postmaster)
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                if ppid == postmaster:
                    total += process_cpu_seconds(int(entry))
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
        return total


def find_bin_dir() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl`` (Debian keeps them off PATH), or None."""
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).parent] if on_path else []
    candidates.append(Path("/usr/local/bin"))
    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name, reverse=True))
    return next((c for c in candidates if (c / "initdb").is_file() and (c / "pg_ctl").is_file()), None)


@contextmanager
def private_server(*, fsync: bool = True, settings: Mapping[str, str] | None = None) -> Iterator[PrivateServer]:
    """``settings``: more postgresql.conf lines for the run (e.g. ``{"shared_buffers": "256MB"}``)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise NoPostgres("no initdb/pg_ctl found (PATH, /usr/local/bin, /usr/lib/postgresql/*/bin): install PostgreSQL")
    run_as = _unprivileged_user() if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="ember-bench-pg-"))
    data = base / "data"
    password = secrets.token_urlsafe(18)
    try:
        if run_as is not None:
            os.chown(base, *run_as)
        pwfile = base / "pwfile"
        pwfile.write_text(password + "\n")
        if run_as is not None:
            os.chown(pwfile, *run_as)
        _run(base, run_as, [str(bin_dir / "initdb"), "-D", str(data), "-U", "ember", f"--pwfile={pwfile}",
                            "--auth=scram-sha-256", "-E", "UTF8", "--locale=C"])  # fmt: skip
        pwfile.unlink()
        with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(
                "\n# bench/pgserver.py\n"
                f"unix_socket_directories = '{base}'\nlisten_addresses = '127.0.0.1'\n"
                f"max_connections = 200\nfsync = {'on' if fsync else 'off'}\n"
            )
            conf.writelines(f"{key} = '{value}'\n" for key, value in (settings or {}).items())
        port = _free_port()
        _run(base, run_as, [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"),
                            "-o", f"-p {port}", "-w", "-t", _WAIT_SECONDS, "start"])  # fmt: skip
        root = f"postgresql://ember:{quote(password, safe='')}@127.0.0.1:{port}"
        import psycopg  # the postgresql extra: only a PostgreSQL run needs it

        with psycopg.connect(f"{root}/postgres", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{DATABASE}"')
        yield PrivateServer(f"{root}/{DATABASE}", data)
    finally:
        if (data / "postmaster.pid").exists():
            _run(base, run_as, [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", _WAIT_SECONDS,
                                "stop"], check=False)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


def _unprivileged_user() -> tuple[int, int]:
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise NoPostgres("running as root and no unprivileged user (postgres, nobody) to run initdb as")


def _run(base: Path, run_as: tuple[int, int] | None, argv: list[str], *, check: bool = True) -> None:
    """Run a PostgreSQL tool as the server's user, its output to a file (pg_ctl's server inherits no pipe)."""
    out = base / "tool.out"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(base), "LC_ALL": "C"}
    kwargs: dict[str, Any] = {}
    if run_as is not None:
        kwargs = {"user": run_as[0], "group": run_as[1], "extra_groups": []}
    with open(out, "w", encoding="utf-8") as sink:
        if run_as is not None:
            os.chown(out, *run_as)
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, cwd=base,
                                env=env, text=True, check=False, **kwargs)  # fmt: skip
    if check and result.returncode != 0:
        raise RuntimeError(f"{Path(argv[0]).name} failed ({result.returncode}): {out.read_text(errors='replace')[-2000:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
