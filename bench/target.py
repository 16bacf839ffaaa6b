"""The gateway under test: spawned on a temporary data folder, or one already running; and its admin API.

``spawn_gateway`` runs ``python -m gateway.cli serve --data DIR`` as a child
process with a config written here (fresh admin secret and token key) and
ports picked here (the CLI does not report ports it chose itself), waits for
``/admin/health``, and afterwards stops it with SIGTERM by its pid (SIGKILL if
it does not stop in time) and removes the folder.

``Admin`` signs calls as docs/ADMIN_API.md says and provisions many users and
tokens concurrently.
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from bench.procfs import free_loopback_port
from gateway.signing import signed_json

HEALTH_PATH = "/admin/health"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0
#: The spawned gateway's per-connection request limit: far above any scenario's rate, so a
#: benchmark measures the message path rather than the limiter's refusals (SPEC §4 default: 100/5 s).
SPAWN_REQUEST_RATE_LIMIT = 1_000_000_000
BENCH_PLATFORM = 2  # Android: every bench user has one session, so the one-device rule never kicks


class BenchError(Exception):
    """A run cannot go on; the message says why (printed without a traceback)."""


@dataclass
class Target:
    host: str
    port: int
    admin_url: str
    admin_secret: str
    pid: int | None
    spawned: bool
    data_dir: Path | None = None
    ws_port: int = 0  # the WebSocket listener (spawned with ws=True), else 0
    token_key: str = ""  # spawned: the key its tokens are made with (the other nodes of a cluster get it)

    @property
    def log_path(self) -> Path | None:
        return self.data_dir / "gateway.log" if self.data_dir else None


def _config_text(
    admin_secret: str,
    token_key: str,
    log_level: str,
    request_rate_limit: int,
    group_max_members: int = 2000,
    server: Mapping[str, int] | None = None,
) -> str:
    server_lines = "".join(f"{key} = {value}\n" for key, value in (server or {}).items())
    return (
        "# Written by bench/ for one benchmark run.\n"
        + (f"[server]\n{server_lines}\n" if server_lines else "")
        + f'[admin]\nsecret = "{admin_secret}"\n\n'
        f'[token]\nkey = "{token_key}"\n\n'
        f"[client]\nrequest_rate_limit = {request_rate_limit}\n\n"
        f"[group]\nmax_members = {group_max_members}\n\n"
        f'[log]\nlevel = "{log_level}"\n'
    )


def _tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join("    " + line for line in text)


@asynccontextmanager
async def spawn_gateway(
    *,
    log_level: str = "INFO",
    keep_data: bool = False,
    request_rate_limit: int | None = None,
    group_max_members: int = 2000,
    server: Mapping[str, int] | None = None,
    ws: bool = False,
    storage_url: str = "",
    secrets_from: Target | None = None,
    node_id: int | None = None,
) -> AsyncIterator[Target]:
    """``server``: integer keys of the [server] section (e.g. ``outbox_budget_bytes``) to set for the run;
    ``ws``: also open the WebSocket listener (``Target.ws_port``); ``storage_url``: a PostgreSQL database
    (``storage.url``) instead of SQLite in the data folder; ``node_id``: a node of a cluster on that database
    (``server.cluster``, ``server.node_id``), with the admin secret and token key of ``secrets_from`` (an
    earlier node: a token it issues opens a session on every node)."""
    data = Path(tempfile.mkdtemp(prefix="ember-bench-"))
    admin_secret, token_key = secrets.token_hex(32), secrets.token_hex(32)
    if secrets_from is not None:
        admin_secret, token_key = secrets_from.admin_secret, secrets_from.token_key
    config = data / "ember.toml"
    config.write_text(
        _config_text(
            admin_secret,
            token_key,
            log_level,
            request_rate_limit or SPAWN_REQUEST_RATE_LIMIT,
            group_max_members,
            server,
        )
    )
    config.chmod(0o600)
    port = free_loopback_port()
    admin_port = free_loopback_port()
    while admin_port == port:
        admin_port = free_loopback_port()
    ws_port = 0
    while ws and ws_port in (0, port, admin_port):
        ws_port = free_loopback_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
    env.update(
        EMBER_DATA=str(data),
        EMBER_SERVER__HOST="127.0.0.1",
        EMBER_SERVER__PORT=str(port),
        EMBER_ADMIN__HOST="127.0.0.1",
        EMBER_ADMIN__PORT=str(admin_port),
        EMBER_SERVER__WS_PORT=str(ws_port),
        EMBER_SERVER__WS_HOST="127.0.0.1",
    )
    if storage_url:
        env["EMBER_STORAGE__URL"] = storage_url  # in the environment, not the config file left on disk
    if node_id is not None:
        env.update(EMBER_SERVER__CLUSTER="true", EMBER_SERVER__NODE_ID=str(node_id))
    target = Target("127.0.0.1", port, f"http://127.0.0.1:{admin_port}", admin_secret, None, True, data, ws_port)
    target.token_key = token_key
    assert target.log_path is not None
    log = os.open(target.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "gateway.cli", "serve", "--data", str(data)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    finally:
        os.close(log)
    target.pid = proc.pid
    try:
        await _wait_healthy(target, proc)
        yield target
    finally:
        with trio.CancelScope(shield=True):
            await stop_process(proc)
        if keep_data:
            print(f"bench: gateway data and log kept in {data}", file=sys.stderr)
        else:
            shutil.rmtree(data, ignore_errors=True)


async def _wait_healthy(target: Target, proc: trio.Process) -> None:
    deadline = trio.current_time() + START_TIMEOUT_SECONDS
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            if proc.poll() is not None:
                raise BenchError(
                    f"the gateway exited with status {proc.returncode} while starting; its log:\n"
                    + _tail(target.log_path)
                )
            try:
                response = await client.get(target.admin_url + HEALTH_PATH)
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if trio.current_time() > deadline:
                raise BenchError(
                    f"the gateway did not answer {HEALTH_PATH} within {START_TIMEOUT_SECONDS:.0f} s"
                )
            await trio.sleep(0.05)


async def stop_process(proc: trio.Process, grace_seconds: float = STOP_TIMEOUT_SECONDS) -> None:
    """SIGTERM the process (ours, by its pid), wait; SIGKILL if it has not stopped in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(grace_seconds):
            await proc.wait()
        if proc.poll() is None:
            print(
                f"bench: pid {proc.pid} ignored SIGTERM for {grace_seconds:.0f} s: killing it",
                file=sys.stderr,
            )
            proc.kill()
    await proc.wait()


def _process_exists(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}/stat")


@asynccontextmanager
async def existing_gateway(
    target: str, admin_url: str | None, admin_secret: str | None, pid: int | None
) -> AsyncIterator[Target]:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise BenchError(f"--target must be HOST:PORT, got {target!r}")
    admin_secret = admin_secret or os.environ.get("EMBER_ADMIN_SECRET")
    if not admin_url or not admin_secret:
        raise BenchError(
            "--target needs --admin URL and --admin-secret (or $EMBER_ADMIN_SECRET) to issue tokens"
        )
    if pid is not None and not _process_exists(pid):
        raise BenchError(f"--server-pid {pid}: no such process")
    yield Target(host.strip("[]"), int(port), admin_url.rstrip("/"), admin_secret, pid, False)


class Admin:
    """Signed admin calls over one pooled HTTP client."""

    def __init__(self, url: str, secret: str, concurrency: int) -> None:
        self._key = secret.encode("utf-8")
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._client = httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def answer(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The whole answer (``code``, ``msg``, ``result``), whatever its code."""
        body, headers = signed_json(self._key, payload, int(time.time() * 1000))
        try:
            response = await self._client.post(path, content=body, headers=headers)
            answer: dict[str, Any] = response.json()
        except httpx.HTTPError as exc:
            raise BenchError(f"admin API {path}: {type(exc).__name__}: {exc}") from None
        except ValueError:
            raise BenchError(f"admin API {path}: HTTP {response.status_code} without JSON") from None
        return answer

    async def call(self, path: str, payload: dict[str, Any]) -> Any:
        answer = await self.answer(path, payload)
        if answer.get("code") != 0:
            raise BenchError(f"admin API {path} answered code {answer.get('code')}: {answer.get('msg')}")
        return answer["result"]

    async def provision(
        self,
        user_ids: Sequence[str],
        concurrency: int,
        on_progress: Callable[[int], None] | None = None,
    ) -> list[str]:
        """Create each user and issue one token for it (client id ``<user>-c``); tokens in order."""
        tokens: list[str] = [""] * len(user_ids)
        next_index = 0
        done = 0

        async def work() -> None:
            nonlocal next_index, done
            while next_index < len(user_ids):
                i = next_index
                next_index += 1
                uid = user_ids[i]
                await self.call("/admin/user/create", {"user_id": uid})
                result = await self.call(
                    "/admin/user/get_token",
                    {"user_id": uid, "client_id": f"{uid}-c", "platform": BENCH_PLATFORM},
                )
                tokens[i] = result["token"]
                done += 1

        async def report() -> None:
            while True:
                await trio.sleep(1.0)
                if on_progress is not None:
                    on_progress(done)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(report)
            async with trio.open_nursery() as workers:
                for _ in range(max(1, min(concurrency, math.ceil(len(user_ids) / 2) or 1))):
                    workers.start_soon(work)
            nursery.cancel_scope.cancel()
        return tokens
