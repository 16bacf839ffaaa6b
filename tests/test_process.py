"""``ember serve`` as a real process: no outbound connection without webhook URLs (FAQ §11), and SIGTERM.

On SIGTERM the gateway stops accepting, sends each connected client a DISCONNECT (docs/PROTOCOL.md §8.7),
delivers the webhook events still queued (the disconnects' own offline events too) and exits 0.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

import client
from gateway.clock import Clock
from gateway.signing import signed_json
from protocol.events import GoAway
from protocol.token import parse_token
from tests import backends
from tests.harness import RawClient
from tests.http_receiver import Receiver
from tests.test_messaging import Device

ROOT = Path(__file__).resolve().parent.parent
ADMIN_SECRET = "process-admin-secret"
TOKEN_KEY = "7b" * 32


class Proc:
    def __init__(self, process: trio.Process, connect_log: Path) -> None:
        self.process = process
        self.connect_log = connect_log
        self.stderr = b""
        self.host = ""
        self.port = 0
        self.admin_url = ""

    def connects(self) -> list[str]:
        return self.connect_log.read_text().splitlines() if self.connect_log.exists() else []

    async def read_until(self, pattern: bytes) -> re.Match[bytes]:
        assert self.process.stderr is not None
        with trio.fail_after(20):
            while (match := re.search(pattern, self.stderr)) is None:
                chunk = await self.process.stderr.receive_some(65536)
                assert chunk, self.stderr.decode(errors="replace")
                self.stderr += chunk
        return match

    async def rest(self) -> None:
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.receive_some(65536):
            self.stderr += chunk


async def start(tmp_path: Path, extra: str = "", folder_mode: int = 0o700, config_mode: int = 0o600) -> Proc:
    data = tmp_path / "data"
    data.mkdir(mode=folder_mode)
    data.chmod(folder_mode)  # whatever the umask
    (data / "ember.toml").write_text(
        f'[server]\nport = 0\nshutdown_seconds = 5\n[admin]\nport = 0\nsecret = "{ADMIN_SECRET}"\n'
        f'[token]\nkey = "{TOKEN_KEY}"\n{extra}'
    )
    (data / "ember.toml").chmod(config_mode)
    connect_log = tmp_path / "connects.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
    env |= {"EMBER_TEST_CONNECT_LOG": str(connect_log), "PYTHONPATH": str(ROOT)}
    if backends.on_postgres():
        env["EMBER_STORAGE__URL"] = await trio.to_thread.run_sync(backends.storage_url, data)
    process = await trio.lowlevel.open_process(
        [sys.executable, str(ROOT / "tests" / "audited_serve.py"), "serve", "--data", str(data)],
        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env, cwd=tmp_path,
    )  # fmt: skip
    proc = Proc(process, connect_log)
    match = await proc.read_until(rb"listening gateway=(\S+):(\d+) admin=(\S+) ")
    proc.host, proc.port, proc.admin_url = match[1].decode(), int(match[2]), match[3].decode()
    return proc


class _Gw:
    """Enough of tests.harness.Gateway for RawClient and Device: the process runs on the wall clock."""

    def __init__(self, proc: Proc) -> None:
        self.host, self.port = proc.host, proc.port
        self.clock = Clock()


async def scenario(proc: Proc) -> dict[str, str]:
    """Users, tokens, messages, a logout, /metrics and /health: everything but webhooks is exercised.

    Returns the tokens issued, by user.
    """
    tokens = {}
    async with httpx.AsyncClient() as http:

        async def call(path: str, payload: dict) -> dict:
            body, headers = signed_json(ADMIN_SECRET.encode(), payload, _Gw(proc).clock.now_ms())
            answer = (await http.post(proc.admin_url + path, content=body, headers=headers)).json()
            assert answer["code"] == 0, answer
            return answer["result"]

        for user in ("alice", "bob"):
            await call("/admin/user/create", {"user_id": user})
            tokens[user] = (await call("/admin/user/get_token", {"user_id": user, "client_id": f"{user}-1", "platform": 2}))["token"]
        gw = _Gw(proc)
        alice = Device(await RawClient.connected(gw, tokens["alice"]))  # type: ignore[arg-type]
        bob = Device(await RawClient.connected(gw, tokens["bob"]))  # type: ignore[arg-type]
        for i in range(10):
            assert (await alice.send_text("bob", f"m{i}")).code == 0
        assert (await bob.call("set_push_token", push_type=1, token="t")).code == 0
        assert len(await bob.pull_all()) == 10
        await bob.client.send(bob.client.proto.disconnect(clear_session=True))
        await bob.aclose()
        await alice.aclose()
        assert (await http.get(proc.admin_url + "/metrics")).status_code == 200
        assert (await http.get(proc.admin_url + "/health")).json()["result"]["storage_writable"]
    return tokens


async def stop(proc: Proc) -> int:
    proc.process.send_signal(signal.SIGTERM)
    with trio.fail_after(15):
        await proc.rest()
        return await proc.process.wait()


async def test_no_outbound_connection_without_webhook_urls(tmp_path: Path) -> None:
    proc = await start(tmp_path)
    try:
        await scenario(proc)
        assert await stop(proc) == 0
    finally:
        if proc.process.returncode is None:
            proc.process.kill()
    assert proc.connects() == [], proc.connects()


async def test_sigterm_tells_clients_to_reconnect_delivers_webhooks_and_exits_0(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    receiver = await Receiver().start(nursery)
    proc = await start(
        tmp_path, f'[callback]\nsecret = "s"\nuser_online_status_url = "{receiver.url}"\n'
    )
    try:
        await scenario(proc)
        await receiver.wait_for(4)  # alice and bob online, bob logout, alice offline
        assert proc.connects(), "the online-status webhook connects out (the audit hook sees it)"
        async with httpx.AsyncClient() as http:
            body, headers = signed_json(ADMIN_SECRET.encode(), {"user_id": "carol"}, _Gw(proc).clock.now_ms())
            await http.post(proc.admin_url + "/admin/user/create", content=body, headers=headers)
            body, headers = signed_json(
                ADMIN_SECRET.encode(), {"user_id": "carol", "client_id": "carol-1", "platform": 2}, _Gw(proc).clock.now_ms()
            )
            token = (await http.post(proc.admin_url + "/admin/user/get_token", content=body, headers=headers)).json()["result"]["token"]
        async with client.connect(proc.host, proc.port, token, backoff=(0.05, 0.1)) as carol:
            await receiver.wait_for(5)  # carol online
            events = carol.events()
            assert await stop(proc) == 0
            with trio.fail_after(5):
                async for event in events:
                    if isinstance(event, GoAway):
                        break
            assert (event.reason, event.retry_ms, event.redirect) == ("shutdown", 1000, "")
            await carol.disconnect()
    finally:
        if proc.process.returncode is None:
            proc.process.kill()
    # Carol's offline event was queued by the shutdown itself and still delivered before the exit.
    assert [(b["user_id"], b["status"]) for b in receiver.bodies()][-1] == ("carol", "offline")
    log = proc.stderr.decode()
    assert "shutdown: 1 connection(s) told to reconnect and closed" in log
    assert "shutdown: webhooks drained (0 left)" in log


@pytest.mark.sqlite_only
async def test_files_stay_private_open_ones_are_named_and_no_secret_is_stored_in_clear(tmp_path: Path) -> None:
    """Under the usual umask (022) a data folder and config as a user might make them: 0755 and 0644."""
    old_umask = os.umask(0o022)  # the child inherits it: SQLite on its own would make 0644 files
    try:
        proc = await start(tmp_path, folder_mode=0o755, config_mode=0o644)
    finally:
        os.umask(old_umask)
    data = tmp_path / "data"
    try:
        tokens = await scenario(proc)
        files = {name: os.stat(data / name).st_mode & 0o777 for name in os.listdir(data) if name.startswith("ember.db")}
        assert set(files) == {"ember.db", "ember.db-wal", "ember.db-shm", "ember.db.lock"}, files
        assert set(files.values()) == {0o600}, files
        assert await stop(proc) == 0
    finally:
        if proc.process.returncode is None:
            proc.process.kill()
    log = proc.stderr.decode()
    warnings = [line for line in log.splitlines() if "is open to other users" in line]
    assert len(warnings) == 2, log
    assert f"data folder {data} is open to other users (mode 0755)" in warnings[0]
    assert f"config file {data / 'ember.toml'} is open to other users (mode 0644)" in warnings[1]
    assert ADMIN_SECRET not in log and TOKEN_KEY not in log
    stored = b"".join((data / name).read_bytes() for name in os.listdir(data) if name.startswith("ember.db"))
    for token in tokens.values():
        assert parse_token(token).secret not in stored
