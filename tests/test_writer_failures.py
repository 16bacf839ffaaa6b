"""The storage writer when things go wrong: its thread dies, an operation has a bug, too much is queued,
its close is cancelled. Every caller hears an answer; nothing waits forever."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

import storage.sends
from protocol import events
from storage import StorageError, WriterBacklogged
from storage.inboxes import InboxState
from storage.writer import Writer
from tests.harness import start_gateway
from tests.storage_helpers import held_writer, peek, wait_until
from tests.test_messaging import Device


class HookBug(RuntimeError):
    """Raised by a rollback hook with a bug: what kills the writer thread outside any operation."""


def create_items(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE items (n INTEGER PRIMARY KEY)")


def insert_item(conn: sqlite3.Connection, n: int) -> int:
    conn.execute("INSERT INTO items (n) VALUES (?)", (n,))
    return n


def op_bug(conn: sqlite3.Connection) -> None:
    raise ValueError("an operation's own bug")  # rolled back, so the writer calls on_rollback


async def outcome(results: dict[Any, Any], key: Any, call: Any) -> None:
    try:
        results[key] = await call
    except Exception as exc:  # noqa: BLE001 - the outcome is what the test looks at
        results[key] = exc


def open_files_under(directory: Path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


# ------------------------------------------------------------------- the thread dies


@pytest.mark.sqlite_only
async def test_when_the_writer_thread_dies_every_caller_hears_of_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A hook that raises while the writer recovers from an op's error ends the thread's loop. Before, callers
    of that batch and every later submit waited forever (``submit`` checked only for closing)."""
    armed = False

    def on_rollback() -> None:
        if armed:
            raise HookBug("the rollback hook broke")

    writer = Writer(tmp_path / "w.db", on_rollback=on_rollback, inline_max_ops=0)
    await writer.start()
    try:
        await writer.submit(create_items)
        armed = True
        results: dict[str, Any] = {}
        reported: list[BaseException | None] = []
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                async with held_writer(writer):  # one batch: the bug, an op beside it, a callback op
                    nursery.start_soon(outcome, results, "bug", writer.submit(op_bug))
                    await wait_until(lambda: writer.queued == 1)
                    nursery.start_soon(outcome, results, "beside", writer.submit(insert_item, 1))
                    await wait_until(lambda: writer.queued == 2)
                    writer.submit_nowait(insert_item, 2, callback=lambda result, error: reported.append(error))
                    await wait_until(lambda: writer.queued == 3)
            assert all(isinstance(results[k], StorageError) for k in ("bug", "beside")), results
            assert len(reported) == 1 and isinstance(reported[0], StorageError)
            # From now on: refused at once, with the reason.
            with pytest.raises(StorageError, match="stopped after an internal error") as refused:
                await writer.submit(insert_item, 3)
            assert isinstance(refused.value.__cause__, HookBug)
            with pytest.raises(StorageError):
                writer.submit_nowait(insert_item, 4, callback=lambda result, error: None)
        assert isinstance(writer.failure, HookBug)
        died = [r for r in caplog.records if "writer thread stopped" in r.getMessage()]
        assert len(died) == 1 and died[0].exc_info is not None  # with the traceback
    finally:
        await writer.aclose()  # still closes: the thread is gone, the file is closed
    assert peek(tmp_path / "w.db", "SELECT n FROM items") == []


async def test_a_gateway_whose_writer_died_answers_sends_and_health_says_so(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    armed = False
    forget = InboxState.forget

    def broken_forget(self: InboxState) -> None:  # the store's on_rollback hook, with a bug once armed
        if armed:
            raise HookBug("reloading the inbox cache broke")
        forget(self)

    monkeypatch.setattr(InboxState, "forget", broken_forget)  # before the store binds it
    gw = await start_gateway(nursery, tmp_path)
    for user in ("alice", "bob"):
        await gw.user(user)
    alice = await Device.connect(gw, "alice")
    assert (await alice.send_text("bob", "before")).code == 0
    armed = True
    with trio.fail_after(5):
        with pytest.raises(StorageError):
            await gw.services.store.run(op_bug)  # a service's own query that raises: rolled back
        assert (await alice.send_text("bob", "after")).code == 4  # an answer, not a wait
        async with httpx.AsyncClient() as http:
            health = (await http.get(gw.running.admin_url + "/health")).json()["result"]
    assert health == {"status": "degraded", "storage_writable": False, "disk_full": False}
    await alice.aclose()


# --------------------------------------------------------------- an operation's own bug


@pytest.mark.sqlite_only
async def test_a_send_whose_own_code_raises_is_logged_with_its_traceback_not_its_body(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, the log said "send failed to commit: LookupError": no traceback, nothing to find the bug by."""
    body = "the body nobody may log"
    real_send = storage.sends.send_message

    def send_with_a_bug(conn: sqlite3.Connection, *args: Any) -> Any:
        msg = args[1]
        if msg.content.get("searchable_content") == body:
            raise LookupError("bug in send_with_a_bug")
        return real_send(conn, *args)

    monkeypatch.setattr(storage.sends, "send_message", send_with_a_bug)
    gw = await start_gateway(nursery, tmp_path)
    for user in ("alice", "bob"):
        await gw.user(user)
    alice = await Device.connect(gw, "alice")
    assert (await alice.send_text("bob", body)).code == 4
    assert (await alice.send_text("bob", "fine")).code == 0  # one send's bug is that send's alone
    failed = [r for r in caplog.records if "send failed" in r.getMessage()]
    assert len(failed) == 1
    assert failed[0].exc_info is not None and failed[0].exc_info[0] is LookupError
    assert "send_with_a_bug" in caplog.text  # the traceback names the function that raised
    assert body not in caplog.text
    await alice.aclose()


# ------------------------------------------------------------------------ queue bound


@pytest.mark.sqlite_only
async def test_a_submit_past_the_queue_bound_is_refused_and_not_stored(tmp_path: Path) -> None:
    writer = Writer(tmp_path / "w.db", max_queued=3)
    await writer.start()
    try:
        await writer.submit(create_items)
        reported: dict[int, Any] = {}

        def report(n: int) -> Any:
            return lambda result, error: reported.__setitem__(n, error or result)

        async with held_writer(writer):
            for n in range(3):
                writer.submit_nowait(insert_item, n, callback=report(n))
            with pytest.raises(WriterBacklogged):
                writer.submit_nowait(insert_item, 3, callback=report(3))
            with pytest.raises(WriterBacklogged):
                await writer.submit(insert_item, 4)
        await wait_until(lambda: len(reported) == 3)
        assert reported == {0: 0, 1: 1, 2: 2}
        assert await writer.submit(insert_item, 5) == 5  # room again once the queue has drained
    finally:
        await writer.aclose()
    assert peek(tmp_path / "w.db", "SELECT n FROM items ORDER BY n") == [(0,), (1,), (2,), (5,)]


@pytest.mark.sqlite_only
async def test_sends_past_the_queue_bound_get_250_and_are_not_stored(nursery: trio.Nursery, tmp_path: Path) -> None:
    gw = await start_gateway(nursery, tmp_path, storage={"max_queued_operations": 3})
    for user in ("alice", "bob"):
        await gw.user(user)
    alice = await Device.connect(gw, "alice")
    store, sends = gw.services.store, 6
    texts: dict[int, str] = {}  # request id -> text
    async with held_writer(store.writer):  # its thread is busy: sends queue (and cannot commit inline)
        for i in range(sends):
            request_id, frame = alice.client.proto.request(
                "send_message", {"conv": {"type": 0, "target": "bob"}, "content": {"type": 1, "searchable_content": f"bounded-send-{i}"}}
            )
            texts[request_id] = f"bounded-send-{i}"
            await alice.client.send(frame)
        # At most three wait for the writer (fewer if a background write took a place): three or more get 250.
        await wait_until(lambda: gw.services.metrics.requests.get(("send_message", 250), 0) >= sends - 3)
    codes: dict[str, int] = {}
    while len(codes) < sends:
        event = await alice.client.next_event()
        if isinstance(event, events.Response):
            codes[texts[event.request_id]] = event.code
    assert set(codes.values()) <= {0, 250} and 250 in codes.values()
    stored = peek(tmp_path / "ember.db", "SELECT content FROM messages")
    stored_texts = {t for t in codes if any(t.encode() in bytes(row[0]) for row in stored)}
    assert stored_texts == {t for t, code in codes.items() if code == 0}  # refused means not stored
    await alice.aclose()


# ---------------------------------------------------------------------- a cancelled close


@pytest.mark.sqlite_only
async def test_a_cancelled_close_still_commits_and_closes_the_database(tmp_path: Path) -> None:
    """The gateway closes its store while its nursery is cancelled. aclose waited for the checkpointer
    unshielded, so it raised Cancelled before stopping the writer: the thread (and the file) stayed open."""
    db = tmp_path / "w.db"
    writer = Writer(db)
    await writer.start()
    await writer.submit(create_items)
    writer.submit_nowait(insert_item, 1, callback=lambda result, error: None)
    with trio.CancelScope() as scope:
        scope.cancel()
        await writer.aclose()
    assert writer.closing
    assert open_files_under(tmp_path) == []  # the writer's connection and the checkpointer's are closed
    assert peek(db, "SELECT n FROM items") == [(1,)]
