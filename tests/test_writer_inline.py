"""Small batches committed on the trio thread (storage.writer, "inline"): when, and what never is.

Real SQLite files, the real writer and store. Which thread ran an operation is
recorded by the operation itself (``threading.get_ident()``), so each test fails
if the batches it expects inline went to the writer thread, or the other way round.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import storage.writer
from protocol.codes import ConversationType
from storage import Store, UserRecord, open_store
from storage.messages import Conversation, Outgoing
from storage.sends import SendPolicy
from storage.writer import INLINE_MAX_OPS, Writer
from tests.storage_helpers import held_writer, peek

# SQLite itself (its file, connection or PRAGMAs), not the backend-neutral store: tests/backends.py.
pytestmark = pytest.mark.sqlite_only

TRIO_THREAD = threading.get_ident()  # pytest-trio runs the tests on the main thread


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ember.db"


def make_items(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE items (n INTEGER PRIMARY KEY)")


def insert(conn: sqlite3.Connection, n: int) -> tuple[int, int]:
    conn.execute("INSERT INTO items (n) VALUES (?)", (n,))
    return n, threading.get_ident()


def insert_then_fail(conn: sqlite3.Connection, n: int) -> None:
    conn.execute("INSERT INTO items (n) VALUES (?)", (n,))
    raise ValueError("op failed")


class Outcomes:
    """Callbacks that record (result, error) in the order they were called."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, BaseException | None]] = []
        self._changed = trio.Event()

    def __call__(self, result: Any, error: BaseException | None) -> None:
        self.seen.append((result, error))
        self._changed.set()

    async def wait_for(self, count: int) -> None:
        with trio.fail_after(5):
            while len(self.seen) < count:
                self._changed = trio.Event()
                await self._changed.wait()


async def started_writer(db_path: Path, **kwargs: Any) -> Writer:
    writer = Writer(db_path, setup=make_items, **kwargs)
    await writer.start()
    return writer


async def test_what_a_gathering_block_submits_commits_when_it_ends_without_the_flusher(db_path: Path) -> None:
    """The read poller's pass: its sends are handed over at the block's end, in the same task step."""
    writer = await started_writer(db_path)
    try:
        done = Outcomes()
        with writer.gathering():
            for n in range(3):
                writer.submit_nowait(insert, n, callback=done, inline=True)
            with writer.gathering():  # nested: only the outermost block's end hands over
                writer.submit_nowait(insert, 3, callback=done, inline=True)
            assert done.seen == []
        # No await since the block ended: the batch ran and was reported by the block's exit itself.
        assert [result for result, _ in done.seen] == [(n, TRIO_THREAD) for n in range(4)]
        assert (writer.inline_batches, writer.inline_ops) == (1, 4)
        # Outside a block the flusher task hands over, once this task lets it run.
        writer.submit_nowait(insert, 4, callback=done, inline=True)
        assert len(done.seen) == 4
        await done.wait_for(5)
    finally:
        await writer.aclose()


async def test_a_small_batch_of_inline_ops_commits_on_the_trio_thread(db_path: Path) -> None:
    writer = await started_writer(db_path)
    try:
        done = Outcomes()
        for n in range(3):
            writer.submit_nowait(insert, n, callback=done, inline=True)
        await done.wait_for(3)
        assert [result for result, _ in done.seen] == [(0, TRIO_THREAD), (1, TRIO_THREAD), (2, TRIO_THREAD)]
        assert (writer.inline_batches, writer.inline_ops) == (1, 3)
        assert writer.inline_longest_s > 0 and writer.inline_longest_cpu_s > 0  # the loop pause, measured
        assert peek(db_path, "SELECT n FROM items ORDER BY n") == [(0,), (1,), (2,)]  # committed
        assert writer.queued == 0
        # Without the flag, and past the size limit, batches go to the writer thread.
        writer.submit_nowait(insert, 10, callback=done)
        for n in range(100, 101 + INLINE_MAX_OPS):
            writer.submit_nowait(insert, n, callback=done, inline=True)
        await done.wait_for(4 + 1 + INLINE_MAX_OPS)
        assert {thread for (_, thread), _ in done.seen[3:]} == {_writer_thread(writer)}
        assert writer.inline_batches == 1
    finally:
        await writer.aclose()


def _writer_thread(writer: Writer) -> int:
    assert writer._thread is not None and writer._thread.ident is not None
    return writer._thread.ident


async def test_full_durability_never_commits_on_the_trio_thread(db_path: Path) -> None:
    writer = await started_writer(db_path, synchronous="FULL")
    try:
        done = Outcomes()
        writer.submit_nowait(insert, 1, callback=done, inline=True)
        await done.wait_for(1)
        assert done.seen == [((1, _writer_thread(writer)), None)]
        assert writer.inline_batches == 0
    finally:
        await writer.aclose()


async def test_nothing_runs_inline_ahead_of_work_handed_to_the_thread(db_path: Path) -> None:
    """Submission order holds across the two paths: commits and callbacks alike."""
    writer = await started_writer(db_path)
    try:
        done = Outcomes()
        async with held_writer(writer):  # the thread is busy with an op handed to it
            writer.submit_nowait(insert, 1, callback=done)  # queued behind the hold
            await trio.testing.wait_all_tasks_blocked()  # the flusher has handed it to the thread
            writer.submit_nowait(insert, 2, callback=done, inline=True)  # may not overtake it
            await trio.sleep(0.05)  # give the flusher every chance to run it (it must not)
            assert done.seen == []
        await done.wait_for(2)
        assert [result for (result, _), _ in done.seen] == [1, 2]
        # Held, not queued behind it: op 2 ran inline, once op 1 had been committed and reported.
        assert [thread for (_, thread), _ in done.seen] == [_writer_thread(writer), TRIO_THREAD]
        # Once everything handed over has been reported, inline batches resume.
        writer.submit_nowait(insert, 3, callback=done, inline=True)
        await done.wait_for(3)
        assert done.seen[2] == ((3, TRIO_THREAD), None)
    finally:
        await writer.aclose()


async def test_what_is_held_behind_the_thread_keeps_its_order_when_it_must_go_there(db_path: Path) -> None:
    """Inline ops held while the thread has work go to the thread, first, once they no longer fit inline."""
    writer = await started_writer(db_path)
    try:
        done = Outcomes()
        async with held_writer(writer):
            writer.submit_nowait(insert, 1, callback=done, inline=True)  # held for an inline run
            await trio.testing.wait_all_tasks_blocked()
            writer.submit_nowait(insert, 2, callback=done)  # not inline: the held op goes first, to the thread
            await trio.testing.wait_all_tasks_blocked()
            for n in range(3, 4 + INLINE_MAX_OPS):  # more than one inline batch may hold
                writer.submit_nowait(insert, n, callback=done, inline=True)
            await trio.sleep(0.05)
            assert done.seen == []
        await done.wait_for(3 + INLINE_MAX_OPS)
        assert [result for (result, _), _ in done.seen] == list(range(1, 4 + INLINE_MAX_OPS))
        assert {thread for (_, thread), _ in done.seen} == {_writer_thread(writer)}
        assert writer.inline_batches == 0
    finally:
        await writer.aclose()


async def test_inline_errors_reach_only_their_own_op(db_path: Path) -> None:
    writer = await started_writer(db_path)
    try:
        done = Outcomes()
        writer.submit_nowait(insert, 1, callback=done, inline=True)
        writer.submit_nowait(insert_then_fail, 2, callback=done, inline=True)
        writer.submit_nowait(insert, 3, callback=done, inline=True)
        await done.wait_for(3)
        assert done.seen[0] == ((1, TRIO_THREAD), None) and done.seen[2] == ((3, TRIO_THREAD), None)
        assert isinstance(done.seen[1][1], ValueError)
        # An op alone in its transaction (no savepoint) that fails leaves nothing behind either.
        writer.submit_nowait(insert_then_fail, 4, callback=done, inline=True)
        await done.wait_for(4)
        assert isinstance(done.seen[3][1], ValueError)
        writer.submit_nowait(insert, 5, callback=done, inline=True)
        await done.wait_for(5)
        assert peek(db_path, "SELECT n FROM items ORDER BY n") == [(1,), (3,), (5,)]
        assert writer.inline_batches == 3
    finally:
        await writer.aclose()


async def test_a_write_lock_held_elsewhere_sends_the_batch_to_the_thread(db_path: Path) -> None:
    """Inline, BEGIN IMMEDIATE does not wait for another process's lock: the loop stays free."""
    writer = await started_writer(db_path)
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        done = Outcomes()
        other.execute("BEGIN IMMEDIATE")  # an admin tool writing, say
        writer.submit_nowait(insert, 1, callback=done, inline=True)
        with trio.fail_after(1):
            await trio.sleep(0.1)  # the loop runs on; the thread waits for the lock (busy_timeout)
        assert done.seen == []
        other.execute("COMMIT")
        await done.wait_for(1)
        assert done.seen == [((1, _writer_thread(writer)), None)]
        assert writer.inline_batches == 0
        writer.submit_nowait(insert, 2, callback=done, inline=True)  # the lock is free: inline again
        await done.wait_for(2)
        assert done.seen[1] == ((2, TRIO_THREAD), None)
    finally:
        other.close()
        await writer.aclose()


async def test_inline_batches_do_not_keep_the_wal_from_starting_over(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart the checkpointer asks for sends the next batch to the thread, which finishes it."""
    monkeypatch.setattr(storage.writer, "CHECKPOINT_INTERVAL_SECONDS", 0.005)
    monkeypatch.setattr(storage.writer, "WAL_RESTART_FRAMES", 1)
    wal = db_path.with_name(db_path.name + "-wal")

    def restarts() -> int:
        with wal.open("rb") as f:
            return int.from_bytes(f.read(16)[12:16], "big")

    writer = await started_writer(db_path)
    try:
        done = Outcomes()
        first, n = restarts(), 0
        with trio.fail_after(15):
            while restarts() < first + 3:  # one small batch after another, as at light load
                writer.submit_nowait(insert, n, callback=done, inline=True)
                n += 1
                await done.wait_for(n)
        assert writer.inline_batches > 0
    finally:
        await writer.aclose()


# ------------------------------------------------------------------ the store's sends


async def send(store: Store, message_id: int, conv: Conversation) -> tuple[Any, BaseException | None]:
    done = Outcomes()
    msg = Outgoing(message_id, 1_000 + message_id, conv, "alice", {"type": 1, "searchable": "hi"}, 3)
    store.send_private_nowait(msg, SendPolicy(), done)
    await done.wait_for(1)
    return done.seen[0]


async def test_private_sends_commit_inline_and_merges_of_the_log_never_do(db_path: Path) -> None:
    async with open_store(db_path) as store:
        for user in ("alice", "bob"):
            await store.create_user(UserRecord(user))
        merges: list[int] = []
        inboxes = store._inboxes
        merge = inboxes.merge

        def recording_merge(conn: sqlite3.Connection) -> None:
            merges.append(threading.get_ident())
            merge(conn)

        inboxes.merge = recording_merge  # type: ignore[method-assign]
        before = store.writer.inline_batches
        message_id = 1
        with trio.fail_after(30):
            while len(merges) < 2:  # the log merges every 512 rows at this rate: ~256 sends
                to_bob = Conversation(int(ConversationType.PRIVATE), "bob")
                result, error = await send(store, message_id, to_bob)
                assert error is None and result.seqs
                message_id += 1
        assert TRIO_THREAD not in merges
        assert store.writer.inline_batches - before > message_id // 2  # most sends ran inline
        # Every message is in both inboxes, merged or still in the log.
        assert (await store.inbox_head("bob"), await store.inbox_head("alice")) == (message_id - 1,) * 2
        rows = peek(db_path, "SELECT (SELECT COUNT(*) FROM inbox) + (SELECT COUNT(*) FROM inbox_recent)")
        assert rows == [(2 * (message_id - 1),)]


async def test_a_group_send_is_never_inline(db_path: Path) -> None:
    async with open_store(db_path) as store:
        await store.create_user(UserRecord("alice"))
        before = store.writer.inline_batches
        # No such group: the send is refused, but it was the writer thread that looked.
        result, error = await send(store, 1, Conversation(int(ConversationType.GROUP), "g1"))
        assert error is None and result.code != 0
        assert store.writer.inline_batches == before
