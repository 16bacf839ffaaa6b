"""A full disk is a state the gateway knows: 250 to writes, /health and a metric say so, and it recovers by itself.

Run on a real small file system: a tmpfs mounted for the test (root, or CAP_SYS_ADMIN). Elsewhere the tests
skip with the reason, except in CI (``CI=true``), where they must run and fail instead.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

import storage.writer
from gateway.signing import signed_json
from storage import StorageFull, open_store
from tests.harness import start_gateway
from tests.storage_helpers import peek, wait_until
from tests.test_messaging import Device
from tests.test_metrics import parse

# SQLite itself (its file, connection or PRAGMAs), not the backend-neutral store: tests/backends.py.
pytestmark = pytest.mark.sqlite_only

#: Room for the gateway's files (a migrated database is ~0.3 MB); the filler takes the rest.
FS_SIZE = "8m"
#: Sends of a few pages each: a write of one page (the probe) may still fit in the blocks a failed commit
#: left in the WAL file, a send of this size does not (see storage.writer.DISK_FULL_CLEAR_BYTES).
TEXT = "x" * 6000
ADMIN_SECRET = "disk-full-admin-secret"


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of ``FS_SIZE`` mounted for this test, unmounted after it."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    if shutil.which("mount") is None:
        problem = "no mount command"
    else:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE}", "tmpfs", str(mountpoint)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        problem = "" if done.returncode == 0 else (done.stderr.strip() or f"mount exited {done.returncode}")
    if problem:
        reason = f"mounting a small tmpfs needs root or CAP_SYS_ADMIN ({problem})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the disk-full tests, but {reason}")
        pytest.skip(reason)
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], capture_output=True, check=False).returncode:
            held = open_files_under(mountpoint)
            subprocess.run(["umount", "-l", str(mountpoint)], check=False)  # detached now, freed once closed
            pytest.fail(f"files still open on the small file system: {held}")


def open_files_under(directory: Path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile (the listing's own fd)
        if target.startswith(str(directory)):
            found.append(target)
    return found


def fill(directory: Path) -> Path:
    """Write a filler file until the file system has no block left; return it."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (1 << 20, 1 << 12):  # big pieces first, then the last few blocks
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


def full_log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "the disk is full" in r.getMessage()]


async def test_a_full_disk_answers_250_says_so_and_recovers_once_space_is_freed(
    small_fs: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One line per episode, however long the test takes on a busy machine (the 10 s are checked below).
    monkeypatch.setattr(storage.writer, "DISK_FULL_LOG_SECONDS", 3600.0)
    caplog.set_level(logging.INFO, logger="ember.storage")
    acked: dict[str, int] = {}  # client text -> message id, every send answered 0
    async with trio.open_nursery() as nursery:
        # No rate limit in the way: every 250 here is the full disk's.
        gw = await start_gateway(
            nursery, small_fs, admin={"secret": ADMIN_SECRET}, client={"request_rate_limit": 1_000_000}
        )
        for user in ("alice", "bob"):
            await gw.user(user)
        alice = await Device.connect(gw, "alice")
        async with httpx.AsyncClient(timeout=10) as http:

            async def health() -> dict[str, object]:
                return (await http.get(gw.running.admin_url + "/health")).json()["result"]

            async def disk_full_metric() -> float:
                return parse((await http.get(gw.running.admin_url + "/metrics")).text)["ember_storage_disk_full"]

            async def admin_send(text: str) -> dict[str, object]:
                payload = {"sender": "bob", "conv": {"type": 0, "target": "alice"},
                           "content": {"type": 1, "searchable_content": text, "content": TEXT}}  # fmt: skip
                body, headers = signed_json(ADMIN_SECRET.encode(), payload, gw.clock.now_ms())
                return (await http.post(gw.running.admin_url + "/admin/message/send", content=body, headers=headers)).json()

            async def send(text: str) -> int:
                answer = await alice.send_text("bob", text, content=TEXT)
                if answer.code == 0:
                    acked[text] = answer.result["message_id"]
                return answer.code

            assert await send("before") == 0
            assert await health() == {"status": "ok", "storage_writable": True, "disk_full": False}
            filler = fill(small_fs)
            # The WAL may still take a few commits in place; sooner or later one needs a new block.
            codes = []
            while 250 not in codes:
                assert len(codes) < 5000, "the full disk never refused a send"
                codes.append(await send(f"m{len(codes)}"))
            assert set(codes) <= {0, 250}  # never 4: a full disk is not a server error
            assert await send("while full") == 250
            assert await health() == {"status": "degraded", "storage_writable": False, "disk_full": True}
            assert await disk_full_metric() == 1
            admin = await admin_send("admin while full")
            assert (admin["code"], admin["result"]) == (250, None)
            # An awaited write (a task of the connection) gets 250 too, and the connection stays.
            setting = {"scope": 1000, "key": "k", "value": TEXT}
            assert (await alice.call("put_setting", **setting)).code == 250
            assert len(full_log_lines(caplog)) == 1  # however many refusals

            filler.unlink()  # space is back: no restart, the next write commits
            assert await send("after") == 0
            assert await health() == {"status": "ok", "storage_writable": True, "disk_full": False}
            assert await disk_full_metric() == 0
            assert (await admin_send("admin after"))["code"] == 0
            assert (await alice.call("put_setting", **setting)).code == 0
            assert any("writes commit again" in r.getMessage() for r in caplog.records)
        await alice.aclose()
        nursery.cancel_scope.cancel()
    db = small_fs / "ember.db"
    stored = {row[0] for row in peek(db, "SELECT message_id FROM messages")}
    assert set(acked.values()) <= stored  # acknowledged means committed, full disk or not
    assert peek(db, "PRAGMA integrity_check") == [("ok",)]


async def test_an_idle_writer_notices_by_itself_that_space_is_back(small_fs: Path) -> None:
    """Nobody writes after the 250s (clients gave up): the writer's own probe clears the state."""
    db = small_fs / "ember.db"
    async with open_store(db) as store:
        await store.run(lambda conn: conn.execute("CREATE TABLE blobs (b BLOB)"))
        filler = fill(small_fs)
        with pytest.raises(StorageFull):
            for _ in range(5000):  # the WAL may take a few commits in place first
                await store.run(lambda conn: conn.execute("INSERT INTO blobs VALUES (randomblob(1000))"))
        assert store.writer.disk_full
        filler.unlink()
        await wait_until(lambda: not store.writer.disk_full)  # DISK_FULL_PROBE_SECONDS, no submit of ours
        await store.run(lambda conn: conn.execute("INSERT INTO blobs VALUES (randomblob(1000))"))
    assert peek(db, "PRAGMA integrity_check") == [("ok",)]


async def test_the_disk_full_line_is_logged_at_most_every_ten_seconds(
    small_fs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The limit itself (the gateway test above sets it out of reach): eight refusals in two episodes log a
    line per started 10 s of the test's run at most, and at least one."""
    caplog.set_level(logging.INFO, logger="ember.storage")
    db = small_fs / "ember.db"
    started = trio.current_time()

    def insert(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO blobs VALUES (randomblob(1000))")

    async with open_store(db) as store:
        await store.run(lambda conn: conn.execute("CREATE TABLE blobs (b BLOB)"))
        for _episode in range(2):
            filler = fill(small_fs)
            with pytest.raises(StorageFull):
                for _ in range(5000):
                    await store.run(insert)
            for _ in range(3):
                with pytest.raises(StorageFull):
                    await store.run(insert)
            filler.unlink()
            await store.run(insert)
            assert not store.writer.disk_full
    periods = 1 + int((trio.current_time() - started) // storage.writer.DISK_FULL_LOG_SECONDS)
    assert 1 <= len(full_log_lines(caplog)) <= periods
