"""Reader connections (storage.readers): reads that do not wait behind writes, and the indexed first pull."""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path

import msgpack
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from storage import UserRecord, open_store
from storage.messages import first_seq_since, pull
from storage.writer import StorageError
from tests.storage_helpers import held_writer

# SQLite itself (its file, connection or PRAGMAs), not the backend-neutral store: tests/backends.py.
pytestmark = pytest.mark.sqlite_only


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ember.db"


async def test_reads_are_answered_while_the_writer_is_busy(db_path: Path) -> None:
    async with open_store(db_path, server_key=bytes(32)) as store:
        assert await store.create_user(UserRecord("alice", name="Alice"))
        async with held_writer(store.writer):  # the writer thread is stuck in an operation
            with trio.fail_after(5):
                user = await store.get_user("alice")
                page = await store.pull("alice", 0, 10)
                sessions = await store.list_sessions("alice")
            assert user is not None and user.name == "Alice"
            assert page.messages == [] and page.head == 0 and sessions == []
            # A write queued now waits for the writer; the reads above did not.
            assert store.writer.queued == 0


async def test_a_reader_cannot_write(db_path: Path) -> None:
    async with open_store(db_path) as store:

        def sneaky(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO blacklist (user_id, target, created_at) VALUES ('a', 'b', 0)")

        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await store.read(sneaky)
        assert await store.get_blacklist("a") == []


async def test_reads_after_close_are_refused(db_path: Path) -> None:
    async with open_store(db_path) as store:
        pass
    with pytest.raises(StorageError):
        await store.get_user("alice")


# ------------------------------------------------------------------ the first pull of a new device


def _inbox_db(path: Path, times: list[int | None]) -> sqlite3.Connection:
    """A migrated database whose user "u" has one merged inbox row per entry: a message at that time,
    or a hole (None: a row whose message was deleted for everyone)."""
    conn = sqlite3.connect(path, isolation_level=None)
    content = msgpack.packb({"type": 1, "searchable_content": "x", "persist_flag": 3})
    conn.execute("BEGIN")
    for seq, t in enumerate(times, start=1):
        conn.execute("INSERT INTO inbox (user_id, seq, message_id) VALUES ('u', ?, ?)", (seq, seq))
        if t is not None:
            conn.execute(
                "INSERT INTO messages (message_id, conv_type, conv_target, conv_line, conv_key, from_user,"
                " content, server_time, to_users, persist_flag, only_for)"
                " VALUES (?, 0, 'u', 0, 'u\nv', 'v', ?, ?, NULL, 3, NULL)",
                (seq, content, t),
            )
    conn.execute("COMMIT")
    return conn


async def _migrated(path: Path) -> None:
    async with open_store(path):
        pass


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.integers(0, 50)), max_size=40).map(
        # Times along seqs are sorted (one clock); holes anywhere.
        lambda xs: [None if x is None else x for x in _sorted_with_holes(xs)]
    ),
    st.integers(0, 55),
)
def test_first_seq_since_matches_a_scan(tmp_path_factory: pytest.TempPathFactory, times, min_time) -> None:
    path = tmp_path_factory.mktemp("first") / "ember.db"
    trio.run(_migrated, path)
    conn = _inbox_db(path, times)
    try:
        first = first_seq_since(conn, "u", min_time)
        # Every message below `first` is older; the first message at or after it (if any) is young enough.
        assert all(t is None or t < min_time for t in times[: first - 1])
        later = [t for t in times[first - 1 :] if t is not None]
        assert not later or later[0] >= min_time
    finally:
        conn.close()


def _sorted_with_holes(xs: list[int | None]) -> list[int | None]:
    present = iter(sorted(x for x in xs if x is not None))
    return [None if x is None else next(present) for x in xs]


def _instructions(conn: sqlite3.Connection, fn) -> int:
    """SQLite virtual-machine instructions ``fn`` made ``conn`` run (a count, not a time)."""
    count = 0

    def tick() -> int:
        nonlocal count
        count += 1
        return 0

    conn.set_progress_handler(tick, 1)
    try:
        fn()
    finally:
        conn.set_progress_handler(None, 1)
    return count


async def test_first_pull_with_roaming_off_does_not_walk_the_inbox(tmp_path: Path) -> None:
    """A new device's first pull (after_seq 0, min_time set) costs about the same in a 200-message and a
    20,000-message inbox: it finds its start by the index instead of reading every older message."""
    costs = {}
    for old in (200, 20_000):
        path = tmp_path / f"{old}.db"
        await _migrated(path)
        conn = _inbox_db(path, [1_000] * old + [9_000] * 5)  # old messages, then five recent ones
        try:
            result = pull(conn, "u", 0, 100, 5_000, 2**62)
            assert [seq for seq, _ in result.messages] == list(range(old + 1, old + 6))
            assert result.head == old + 5
            costs[old] = _instructions(conn, functools.partial(pull, conn, "u", 0, 100, 5_000, 2**62))
        finally:
            conn.close()
    # A walk would cost ~100x; the binary search adds ~7 probes (log2 of 100x).
    assert costs[20_000] < 2 * costs[200], costs
