"""Data at rest: the database's files are the owner's alone, and session secrets are stored sealed.

What a local user, a copied database or a backup could read: the files' modes (0600, older 0644 files
tightened at open), warnings for a data folder or config open to others, and the ``sessions.secret``
column, which holds each secret sealed under the server's key (``storage.sealing``). A database under
another key lets nobody connect, and one written in clear by v8 is sealed at open with its sessions kept.
Robots' secrets (``robots.secret``) are sealed the same way under a key of their own.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import stat
from pathlib import Path

import httpx
import pytest
import trio
from sqlite_utils import Database

from client.robot import RobotCallFailed, RobotClient
from gateway.cli import warn_if_open_to_others
from protocol.codes import ConnectionStatus
from protocol.token import issue_token, parse_token
from storage import StorageError, UserRecord, open_store, schema
from tests import backends
from tests.harness import Gateway, RawClient, start_gateway
from tests.storage_helpers import peek
from tests.test_admin_messages import Admin
from tests.test_handshake import connack

KEY_A = "a1" * 32
KEY_B = "b2" * 32


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def database_files(db: Path) -> list[Path]:
    return [p for p in (db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", ".lock"))) if p.exists()]


def raw_bytes(db: Path) -> bytes:
    """Every byte of the database and its WAL, as someone copying the files would have them."""
    return b"".join(p.read_bytes() for p in database_files(db) if not p.name.endswith((".lock", "-shm")))


# ------------------------------------------------------------------ file modes


@pytest.mark.sqlite_only
async def test_a_new_database_and_its_side_files_are_0600(tmp_path: Path) -> None:
    db = tmp_path / "ember.db"
    old = os.umask(0o022)  # the common default, under which SQLite alone makes 0644 files
    try:
        async with open_store(db) as store:
            await store.create_user(UserRecord("alice"))
            files = database_files(db)
            assert {p.name for p in files} == {"ember.db", "ember.db-wal", "ember.db-shm", "ember.db.lock"}
            assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
    finally:
        os.umask(old)


@pytest.mark.sqlite_only
async def test_an_older_world_readable_database_is_tightened_and_it_is_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "ember.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE leftover (x)")
    conn.commit()
    conn.close()  # the last connection's close removes -wal and -shm: make them as a crash leaves them
    for p in (db, db.with_name("ember.db-wal"), db.with_name("ember.db-shm"), db.with_name("ember.db.lock")):
        p.touch()
        p.chmod(0o644)  # as an older Ember (or SQLite under umask 022) left them
    with caplog.at_level(logging.WARNING, logger="ember.storage"):
        async with open_store(db):
            assert {p.name: mode(p) for p in database_files(db)} == {p.name: 0o600 for p in database_files(db)}
    said = [r.getMessage() for r in caplog.records if "readable by other users" in r.getMessage()]
    assert any(str(db) in line for line in said), said


def test_an_open_data_folder_or_config_is_warned_about_once_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    config = data / "ember.toml"
    config.write_text('[token]\nkey = "' + KEY_A + '"\n')
    data.chmod(0o755)
    config.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="ember.serve"):
        warn_if_open_to_others(data, config)
    lines = [r.getMessage() for r in caplog.records if r.name == "ember.serve"]
    assert len(lines) == 2, lines
    assert "data folder" in lines[0] and "0755" in lines[0] and "chmod 700" in lines[0]
    assert "config file" in lines[1] and "0644" in lines[1] and "chmod 600" in lines[1]
    assert not any(KEY_A in line for line in lines)
    caplog.clear()
    data.chmod(0o700)
    config.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="ember.serve"):
        warn_if_open_to_others(data, config)
    assert [r for r in caplog.records if r.name == "ember.serve"] == []


# ------------------------------------------------------------------ sealed secrets


@pytest.mark.sqlite_only
async def test_no_session_secret_is_stored_in_clear(nursery: trio.Nursery, tmp_path: Path) -> None:
    gw = await start_gateway(nursery, tmp_path, token={"key": KEY_A})
    await gw.user("alice")
    token = await gw.token("alice", "phone")
    secret = parse_token(token).secret
    await (await RawClient.connected(gw, token)).aclose()  # the sealed secret is the one that works
    db = Path(gw.config.storage.path)
    [(stored,)] = peek(db, "SELECT secret FROM sessions WHERE user_id = 'alice'")
    assert stored != secret and secret not in stored and len(stored) == 12 + 32 + 16
    assert secret not in raw_bytes(db)


async def stop_after(tmp_path: Path, key: str) -> tuple[Gateway, str]:
    """A gateway that issued alice a token and served one connection, then stopped."""
    async with trio.open_nursery() as nursery:
        gw = await start_gateway(nursery, tmp_path, token={"key": key})
        await gw.user("alice")
        token = await gw.token("alice", "phone")
        await (await RawClient.connected(gw, token)).aclose()
        nursery.cancel_scope.cancel()
    return gw, token


@pytest.mark.sqlite_only
async def test_a_database_copied_under_another_server_key_lets_no_one_in(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old, token = await stop_after(tmp_path / "a", KEY_A)
    (tmp_path / "b").mkdir()
    for p in database_files(Path(old.config.storage.path)):
        shutil.copy(p, tmp_path / "b" / p.name)
    with caplog.at_level(logging.WARNING, logger="ember.storage"):
        gw = await start_gateway(nursery, tmp_path / "b", token={"key": KEY_B})
    assert any("sealed under another token.key" in r.getMessage() for r in caplog.records)
    # Whoever runs the copy holds its own key: a token forged with it and the session's secret gets -6.
    parts = parse_token(token)
    forged = issue_token(
        bytes.fromhex(KEY_B), user_id="alice", client_id="phone", platform=parts.platform,
        secret=parts.secret, issued_at_ms=gw.clock.now_ms(),
    )  # fmt: skip
    assert (await connack(gw, forged)).code == ConnectionStatus.SECRET_KEY_MISMATCH
    assert (await connack(gw, token)).code == ConnectionStatus.SECRET_KEY_MISMATCH
    # A new token from this server works: the row is sealed afresh under its key.
    await (await RawClient.connected(gw, await gw.token("alice", "phone"))).aclose()


@pytest.mark.sqlite_only
async def test_a_store_without_the_server_key_refuses_session_secrets(tmp_path: Path) -> None:
    async with open_store(tmp_path / "ember.db") as store:
        with pytest.raises(StorageError, match="server_key"):
            await store.issue_session("alice", "phone", 2, os.urandom(32), 1, kick_platforms=None)
        with pytest.raises(StorageError, match="server_key"):
            await store.get_session("alice", "phone")


def build_v8_database(db: Path, secret: bytes, issued_at_ms: int) -> None:
    """A database as the release before sealing left it: every migration before v9, a secret in clear."""
    before_sealing = schema.MIGRATIONS.index(schema._v9_sealed_session_secrets)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        database = Database(conn, recursive_triggers=False, execute_plugins=False)
        for migration in schema.MIGRATIONS[:before_sealing]:
            migration(database)
        conn.execute(f"PRAGMA user_version = {before_sealing}")
        conn.execute("INSERT INTO users (user_id) VALUES ('alice')")
        conn.execute(
            "INSERT INTO sessions (user_id, client_id, platform, secret, state, created_at, issued_at, last_seen)"
            " VALUES ('alice', 'phone', 2, ?, 'active', ?, ?, ?)",
            (secret, issued_at_ms, issued_at_ms, issued_at_ms),
        )
    finally:
        conn.close()


@pytest.mark.sqlite_only
async def test_a_v8_database_with_clear_secrets_is_sealed_at_start_and_its_sessions_still_connect(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    secret = os.urandom(32)
    db = tmp_path / "ember.db"
    build_v8_database(db, secret, 1_000)
    assert secret in db.read_bytes()
    token = issue_token(
        bytes.fromhex(KEY_A), user_id="alice", client_id="phone", platform=2, secret=secret, issued_at_ms=1_000
    )
    gw = await start_gateway(nursery, tmp_path, token={"key": KEY_A})
    assert Path(gw.config.storage.path) == db
    await (await RawClient.connected(gw, token)).aclose()
    assert peek(db, "PRAGMA user_version") == [(schema.SCHEMA_VERSION,)]
    assert peek(db, "SELECT COUNT(*) FROM unsealed_sessions") == [(0,)]
    [(stored,)] = peek(db, "SELECT secret FROM sessions")
    assert stored != secret
    assert secret not in raw_bytes(db)  # not even in freed space or old WAL frames


# ------------------------------------------------------------------ robot secrets


async def create_robot(gw: Gateway, http: httpx.AsyncClient) -> str:
    """A robot "bot" owned by alice, through the admin API; its secret (shown this once)."""
    await gw.user("alice")
    created = await Admin(gw, http).call("robot/create", {"owner": "alice", "robot_id": "bot", "name": "Bot"})
    assert created["code"] == 0, created
    return str(created["result"]["secret"])


async def robot_profile_code(gw: Gateway, http: httpx.AsyncClient, secret: str) -> int:
    robot = RobotClient(gw.running.admin_url, "bot", secret, clock=gw.clock.now_ms, http=http)
    try:
        return int((await robot.call("profile"))["code"])
    except RobotCallFailed as failed:
        return failed.status


async def test_no_robot_secret_is_stored_in_clear(nursery: trio.Nursery, tmp_path: Path) -> None:
    gw = await start_gateway(nursery, tmp_path, token={"key": KEY_A})
    async with httpx.AsyncClient() as http:
        secret = await create_robot(gw, http)
        assert await robot_profile_code(gw, http, secret) == 0  # the sealed secret is the one that signs
        rotated = await Admin(gw, http).call("robot/update", {"robot_id": "bot", "rotate_secret": True})
        new_secret = rotated["result"]["secret"]
        assert await robot_profile_code(gw, http, new_secret) == 0
    db = Path(gw.config.storage.path)
    [(stored,)] = peek(db, "SELECT secret FROM robots WHERE robot_id = 'bot'")
    assert stored.startswith("sealed1:") and new_secret not in stored
    assert secret.encode() not in raw_bytes(db) and new_secret.encode() not in raw_bytes(db)


@pytest.mark.sqlite_only(reason="an upgrade from a release that stored robot secrets in clear: none did on PostgreSQL")
async def test_a_clear_robot_secret_of_an_older_version_is_sealed_at_start_and_still_signs(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with trio.open_nursery() as first:
        gw = await start_gateway(first, tmp_path, token={"key": KEY_A})
        async with httpx.AsyncClient() as http:
            await create_robot(gw, http)
        first.cancel_scope.cancel()
    db = Path(gw.config.storage.path)
    clear = "c0" * 32
    conn = sqlite3.connect(db, isolation_level=None)  # what stop 18 wrote: the secret as it was given
    conn.execute("UPDATE robots SET secret = ? WHERE robot_id = 'bot'", (clear,))
    conn.close()
    with caplog.at_level(logging.INFO, logger="ember.storage"):
        gw = await start_gateway(nursery, tmp_path, token={"key": KEY_A})
    assert any("sealed 1 robot secrets" in r.getMessage() for r in caplog.records)
    [(stored,)] = peek(db, "SELECT secret FROM robots WHERE robot_id = 'bot'")
    assert stored.startswith("sealed1:")
    async with httpx.AsyncClient() as http:
        assert await robot_profile_code(gw, http, clear) == 0


async def test_a_robot_secret_sealed_under_another_server_key_signs_nothing(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with trio.open_nursery() as first:
        gw = await start_gateway(first, tmp_path / "a", token={"key": KEY_A})
        async with httpx.AsyncClient() as http:
            secret = await create_robot(gw, http)
        first.cancel_scope.cancel()
    (tmp_path / "b").mkdir()
    for p in database_files(Path(gw.config.storage.path)):
        shutil.copy(p, tmp_path / "b" / p.name)
    await trio.to_thread.run_sync(backends.copy_database, tmp_path / "a", tmp_path / "b")  # the same on PostgreSQL
    gw = await start_gateway(nursery, tmp_path / "b", token={"key": KEY_B})
    async with httpx.AsyncClient() as http:
        assert await robot_profile_code(gw, http, secret) == 401  # refused, never a guess at the key
        # The admin can give it a new secret, sealed under this server's key.
        rotated = await Admin(gw, http).call("robot/update", {"robot_id": "bot", "rotate_secret": True})
        assert await robot_profile_code(gw, http, rotated["result"]["secret"]) == 0
