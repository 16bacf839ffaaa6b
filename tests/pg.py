"""A private PostgreSQL server for the tests, and a fresh database per test.

``server()`` starts one server per test process, the first time a test asks for it: ``initdb`` and
``pg_ctl`` (found on PATH, in /usr/local/bin or under /usr/lib/postgresql/<version>/bin) on a
temporary folder, listening on a free 127.0.0.1 port with a password (scram) that only this process
knows; ``fsync`` off, since nothing here must survive a power loss. initdb refuses to run as root, so
under root the server runs as an unprivileged user (``postgres`` where the distribution made one,
else ``nobody``) that owns the folder. ``shutdown()`` (conftest runs it at session end, ``atexit``
too) stops it by its own data folder and pid and removes the folder.

``EMBER_TEST_POSTGRES_URL`` (a superuser's URL) points the tests at an existing server instead.

Each test gets a database of its own: ``create_database()`` copies a template migrated once per run
(``CREATE DATABASE ... TEMPLATE``), which is much faster than migrating every one; ``empty=True``
gives one with no schema at all. conftest drops each test's databases when it ends.

Without PostgreSQL (no binaries and no URL, or no psycopg) ``server()`` raises ``Unavailable`` with
one line saying how to get it; conftest turns that into a skip, or into a failure when
``EMBER_REQUIRE_POSTGRES=1`` or ``CI=true``.
"""

from __future__ import annotations

import atexit
import itertools
import os
import pwd
import queue
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from tests.ports import free_port as _free_port

ENV_URL = "EMBER_TEST_POSTGRES_URL"
ENV_REQUIRE = "EMBER_REQUIRE_POSTGRES"
ENV_BIN = "EMBER_TEST_PG_BIN"  # the folder of initdb and pg_ctl, where they are in none of the usual places
HOW_TO_ENABLE = f"install PostgreSQL, or set {ENV_URL}; {ENV_REQUIRE}=1 fails instead"

#: Server settings for tests: no fsync (a test database need not survive a power loss), few buffers
#: (a test database is small), room for many gateways' connections at once.
_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "full_page_writes": "off",
    "shared_buffers": "'32MB'",
    "max_connections": "200",
    "log_min_messages": "warning",
}

#: Seconds pg_ctl may take to start or stop the server.
_PG_CTL_WAIT_SECONDS = 60


class Unavailable(Exception):  # noqa: N818 - a state of the machine, not a program error
    """No PostgreSQL to test against: the message is the one line a skip shows."""


def required() -> bool:
    """Must the PostgreSQL cases run (fail rather than skip)? ``EMBER_REQUIRE_POSTGRES=1`` or CI."""
    return os.environ.get(ENV_REQUIRE, "") == "1" or os.environ.get("CI", "").lower() == "true"


def find_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (Debian keeps them off PATH), or None.

    ``EMBER_TEST_PG_BIN``, when set, is the only place looked in.
    """
    if os.environ.get(ENV_BIN):
        candidates = [Path(os.environ[ENV_BIN])]
    else:
        on_path = shutil.which("initdb")
        candidates = [Path(on_path).parent] if on_path else []
        candidates.append(Path("/usr/local/bin"))
        # Debian and Ubuntu: /usr/lib/postgresql/<major>/bin, the newest first.
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _major(p.parent.name), reverse=True)
        candidates.extend(versions)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def _major(name: str) -> int:
    return int(name) if name.isdigit() else -1


@dataclass
class Server:
    """A PostgreSQL server the tests may create databases on, as a superuser."""

    host: str
    port: int
    user: str
    password: str
    #: Set for the private server this module started; None for an existing one (``EMBER_TEST_POSTGRES_URL``).
    base_dir: Path | None = None
    bin_dir: Path | None = None
    run_as: tuple[int, int] | None = None  # (uid, gid) the private server runs as, when we are root
    template: str = ""
    started_seconds: float = 0.0
    _names: Any = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _drops: queue.Queue[str | None] = field(default_factory=queue.Queue)
    _dropper: threading.Thread | None = None

    def url(self, dbname: str, *, password: str | None = None, port: int | None = None) -> str:
        pw = self.password if password is None else password
        userinfo = f"{quote(self.user, safe='')}:{quote(pw, safe='')}"
        return f"postgresql://{userinfo}@{self.host}:{port or self.port}/{quote(dbname, safe='')}"

    def admin(self) -> Any:
        """A new autocommit connection to the ``postgres`` database (the caller closes it)."""
        import psycopg

        return psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=10)

    def create_database(self, *, empty: bool = False) -> str:
        """A new database (migrated to the current schema, or ``empty``); returns its URL."""
        with self._lock:
            name = f"ember_test_{os.getpid()}_{next(self._names)}"
        template = "template0" if empty else self.template
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" ENCODING \'UTF8\'')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop the database ``url`` names, ending any connection still on it."""
        name = urlsplit(url).path.lstrip("/")
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop_later(self, url: str) -> None:
        """Drop the database on a thread of this module (a drop takes ~0.1 s: the next test need not wait)."""
        if self._dropper is None:
            self._dropper = threading.Thread(target=self._drop_loop, name="pg-drop", daemon=True)
            self._dropper.start()
        self._drops.put(url)

    def _drop_loop(self) -> None:
        while (url := self._drops.get()) is not None:
            try:
                self.drop_database(url)
            except Exception as exc:  # noqa: BLE001 - a leftover database is removed with the server
                print(f"tests/pg.py: could not drop a test database: {exc}")

    def stop(self) -> None:
        if self._dropper is not None:
            self._drops.put(None)
            self._dropper.join(_PG_CTL_WAIT_SECONDS)
        if self.template and self.base_dir is None:  # an existing server: remove only what we made
            try:
                self.drop_database(self.url(self.template))
            except Exception:  # noqa: BLE001 - the server may be gone already; nothing else to undo
                pass
        if self.base_dir is None or self.bin_dir is None:
            return
        data = self.base_dir / "data"
        pid = _postmaster_pid(data)
        result = _run(self, [str(self.bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                             "-t", str(_PG_CTL_WAIT_SECONDS), "stop"], check=False)  # fmt: skip
        if result.returncode != 0 and pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)  # our own postmaster only: its pid from its own data folder
            except ProcessLookupError:
                pass
        shutil.rmtree(self.base_dir, ignore_errors=True)


_server: Server | None = None
_unavailable: str | None = None
_start_lock = threading.Lock()


def server() -> Server:
    """The server for this test process, started on first use.

    Raises:
        Unavailable: No PostgreSQL here (the message says how to get one).
        RuntimeError: PostgreSQL is installed but would not start (a real failure, never skipped).
    """
    global _server, _unavailable
    with _start_lock:
        if _server is not None:
            return _server
        if _unavailable is not None:
            raise Unavailable(_unavailable)
        try:
            import psycopg  # noqa: F401 - only to know it is there
        except ImportError:
            _unavailable = f"PostgreSQL tests skipped: psycopg is not installed (pip install -e '.[test]'); {ENV_REQUIRE}=1 fails instead"
            raise Unavailable(_unavailable) from None
        existing = os.environ.get(ENV_URL, "")
        if existing:
            started = _existing(existing)
        else:
            bin_dir = find_bin_dir()
            if bin_dir is None:
                where = os.environ.get(ENV_BIN) or "PATH, /usr/local/bin, /usr/lib/postgresql/*/bin"
                _unavailable = f"PostgreSQL tests skipped: no initdb/pg_ctl in {where}: {HOW_TO_ENABLE}"
                raise Unavailable(_unavailable)
            started = _start_private(bin_dir)
        atexit.register(shutdown)
        _make_template(started)
        _server = started
        return started


def shutdown() -> None:
    """Stop the private server (if this process started one) and forget it; idempotent."""
    global _server
    with _start_lock:
        if _server is not None:
            _server.stop()
            _server = None


def unavailable_reason() -> str | None:
    """Why ``server()`` said no, if it did (for the session's one summary line)."""
    return _unavailable


# --------------------------------------------------------------------------------------- internals


def _existing(url: str) -> Server:
    parts = urlsplit(url)
    if parts.hostname is None or parts.username is None:
        raise RuntimeError(f"{ENV_URL} must name a host and a superuser: postgresql://user:password@host:port/db")
    return Server(parts.hostname, parts.port or 5432, parts.username, parts.password or "")


def _start_private(bin_dir: Path) -> Server:
    began = time.monotonic()
    run_as = _unprivileged_user() if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="ember-pg-"))
    if run_as is not None:
        os.chown(base, *run_as)
    password = secrets.token_urlsafe(18)
    srv = Server("127.0.0.1", 0, "ember_test", password, base_dir=base, bin_dir=bin_dir, run_as=run_as)
    pwfile = base / "pwfile"
    pwfile.write_text(password + "\n")
    if run_as is not None:
        os.chown(pwfile, *run_as)
    data = base / "data"
    try:
        _run(srv, [str(bin_dir / "initdb"), "-D", str(data), "-U", srv.user, f"--pwfile={pwfile}",
                   "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"])  # fmt: skip
        pwfile.unlink()
        with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# tests/pg.py\n")
            conf.write(f"unix_socket_directories = '{base}'\n")
            conf.writelines(f"{key} = {value}\n" for key, value in _SETTINGS.items())
        for _attempt in range(3):  # a free port can be taken between our probe and the server's bind
            srv.port = _free_port()
            result = _run(srv, [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"),
                                "-o", f"-p {srv.port}", "-w", "-t", str(_PG_CTL_WAIT_SECONDS), "start"],
                          check=False)  # fmt: skip
            if result.returncode == 0:
                break
            log = (base / "server.log").read_text(errors="replace") if (base / "server.log").exists() else ""
            if "could not bind" not in log and "already in use" not in log:
                raise RuntimeError(f"pg_ctl start failed: {result.stdout}{log[-2000:]}")
        else:
            raise RuntimeError("pg_ctl start failed three times: no free port")
    except BaseException:
        srv.stop()
        raise
    srv.started_seconds = time.monotonic() - began
    return srv


def _make_template(srv: Server) -> None:
    """Create this run's template database and migrate it, once: every test database copies it."""
    from storage.postgres.connection import connect
    from storage.postgres.schema import migrate

    name = f"ember_template_{os.getpid()}"
    with srv.admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\'')
    with connect(srv.url(name), autocommit=True) as conn:
        migrate(conn)
    srv.template = name


def _unprivileged_user() -> tuple[int, int]:
    """(uid, gid) to run the server as when we are root: the distribution's ``postgres``, else ``nobody``."""
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise Unavailable("PostgreSQL tests skipped: running as root and no unprivileged user (postgres, nobody) to run initdb as")


def _run(srv: Server, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool as the server's user, its output to a file (pg_ctl's server inherits no pipe)."""
    assert srv.base_dir is not None
    out = srv.base_dir / "tool.out"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(srv.base_dir), "LC_ALL": "C"}
    kwargs: dict[str, Any] = {}
    if srv.run_as is not None:
        kwargs = {"user": srv.run_as[0], "group": srv.run_as[1], "extra_groups": []}
    with open(out, "w", encoding="utf-8") as sink:
        if srv.run_as is not None:
            os.chown(out, *srv.run_as)
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                cwd=srv.base_dir, env=env, text=True, check=False, **kwargs)  # fmt: skip
    text = out.read_text(errors="replace")
    if check and result.returncode != 0:
        raise RuntimeError(f"{Path(argv[0]).name} failed ({result.returncode}): {text[-2000:]}")
    return subprocess.CompletedProcess(argv, result.returncode, text, "")


def _postmaster_pid(data: Path) -> int | None:
    try:
        return int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None




def closed_port() -> int:
    """A loopback port nobody listens on (bound, never listened, then released)."""
    return _free_port()


def masked(url: str) -> str:
    """``url`` without its password, for assertion messages."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"{parts.username}:***@{netloc}", parts.path, parts.query, ""))
