"""Inbox rows pass through a log before they reach their indexes (``storage.inboxes``).

Whatever the log holds, merged or not, across restarts and failed commits, pulls
and history must show exactly the messages sent, in order. These tests run a
real store on a real file and merge the log often (a small ``MERGE_ROWS``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio
from sqlite_utils import Database

from protocol.codes import ErrorCode
from storage import StorageError, Store, UserRecord, inboxes, open_store
from storage.inboxes import InboxState
from storage.messages import Conversation, Outgoing
from storage.schema import MIGRATIONS, migrate
from storage.sends import SendPolicy
from tests.storage_helpers import held_writer, peek, wait_until

# SQLite itself (its file, connection or PRAGMAs), not the backend-neutral store: tests/backends.py.
pytestmark = pytest.mark.sqlite_only

POLICY = SendPolicy()
FAR_FUTURE = 2**62


def outgoing(message_id: int, sender: str, recipient: str) -> Outgoing:
    content = {"type": 1, "content": f"m{message_id}", "persist_flag": 3}
    return Outgoing(message_id, 1000 + message_id, Conversation(0, recipient), sender, content, 3)


async def pulled(store: Store, user_id: str) -> list[tuple[int, int]]:
    """The user's whole inbox as (seq, message id), pulled in pages of 3."""
    got: list[tuple[int, int]] = []
    after = 0
    while page := (await store.pull(user_id, after, limit=3)).messages:
        got += [(seq, message.message_id) for seq, message in page]
        after = page[-1][0]
    return got


async def history(store: Store, user_id: str, peer: str) -> list[int]:
    """The user's conversation with ``peer``, newest first, read back in pages of 3."""
    got: list[int] = []
    before = FAR_FUTURE
    while page := await store.remote_history(user_id, Conversation(0, peer), before, 3):
        got += [message.message_id for message in page]
        before = page[-1].message_id
    return got


async def test_pulls_and_history_span_the_log_and_the_merged_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inboxes, "MERGE_ROWS", 5)
    async with open_store(tmp_path / "ember.db") as store:
        for user_id in ("alice", "bob", "carol"):
            await store.create_user(UserRecord(user_id))
        bob_inbox: list[tuple[int, int]] = []
        with_alice: list[int] = []
        merges = 0
        for message_id in range(1, 16):
            sender, recipient = [("alice", "bob"), ("bob", "alice"), ("carol", "bob")][message_id % 3]
            result = await store.send_private(outgoing(message_id, sender, recipient), POLICY)
            assert result.code == ErrorCode.SUCCESS
            bob_inbox.append((result.seqs["bob"], message_id))
            if "alice" in (sender, recipient):
                with_alice.insert(0, message_id)
            merges += peek(store.path, "SELECT count(*) FROM inbox_recent") == [(0,)]
            assert await pulled(store, "bob") == bob_inbox
            assert await history(store, "bob", "alice") == with_alice
            assert await history(store, "alice", "bob") == with_alice
            assert await store.inbox_head("bob") == len(bob_inbox)
        assert merges >= 3  # the log was merged along the way, not only at the end


async def test_rows_still_in_the_log_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "ember.db"
    async with open_store(path) as store:
        for user_id in ("alice", "bob"):
            await store.create_user(UserRecord(user_id))
        for message_id in (1, 2, 3):
            await store.send_private(outgoing(message_id, "alice", "bob"), POLICY)
    assert peek(path, "SELECT count(*) FROM inbox") == [(0,)]
    assert peek(path, "SELECT count(*) FROM inbox_recent") == [(6,)]

    async with open_store(path) as store:
        assert await pulled(store, "bob") == [(1, 1), (2, 2), (3, 3)]
        assert await store.inbox_head("alice") == 3
        result = await store.send_private(outgoing(4, "bob", "alice"), POLICY)
        assert result.seqs == {"alice": 4, "bob": 4}
        assert await store.delete_message_for_everyone(2) == ["alice", "bob"]
        assert await history(store, "alice", "bob") == [4, 3, 1]
        await store.run(store._inboxes.merge)
        assert peek(path, "SELECT count(*) FROM inbox_recent") == [(0,)]
        assert await pulled(store, "bob") == [(1, 1), (3, 3), (4, 4)]  # seq 2 is a hole now
        assert await history(store, "bob", "alice") == [4, 3, 1]
        assert peek(path, "SELECT message_id FROM conversation_index ORDER BY 1") == [(1,), (3,), (4,)]


async def test_a_failed_commit_leaves_the_log_and_its_copy_as_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merge inside a batch whose COMMIT fails is undone; the copy in memory must follow."""
    monkeypatch.setattr(inboxes, "MERGE_ROWS", 4)
    async with open_store(tmp_path / "ember.db") as store:
        for user_id in ("alice", "bob"):
            await store.create_user(UserRecord(user_id))
        await store.send_private(outgoing(1, "alice", "bob"), POLICY)  # two rows in the log

        def make_tables(conn: sqlite3.Connection) -> None:
            conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
            conn.execute(
                "CREATE TABLE child (id INTEGER PRIMARY KEY,"
                " parent_id INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
            )

        def add_orphan(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO child (parent_id) VALUES (99)")  # fails only at COMMIT

        await store.run(make_tables)
        outcomes: list[BaseException] = []

        async def expect_failure(operation: Any) -> None:
            with pytest.raises(StorageError) as caught:
                await operation
            outcomes.append(caught.value)

        async with trio.open_nursery() as nursery:
            async with held_writer(store.writer):
                # The send brings the log to four rows and merges it; the orphan fails the COMMIT.
                nursery.start_soon(expect_failure, store.send_private(outgoing(2, "bob", "alice"), POLICY))
                nursery.start_soon(expect_failure, store.run(add_orphan))
                await wait_until(lambda: store.writer.queued == 2)
        assert len(outcomes) == 2
        assert peek(store.path, "SELECT count(*) FROM inbox_recent") == [(2,)]
        assert await pulled(store, "bob") == [(1, 1)]
        assert await history(store, "bob", "alice") == [1]
        result = await store.send_private(outgoing(3, "bob", "alice"), POLICY)
        assert result.seqs == {"alice": 2, "bob": 2}  # the failed send's seqs were not kept
        assert await pulled(store, "alice") == [(1, 1), (2, 3)]


async def test_a_version_2_database_gets_its_conversation_index(tmp_path: Path) -> None:
    path = tmp_path / "ember.db"
    conn = sqlite3.connect(path, isolation_level=None)
    db = Database(conn)
    for migration in MIGRATIONS[:2]:
        migration(db)
    conn.execute("PRAGMA user_version = 2")
    for message_id, sender, target in ((1, "alice", "bob"), (2, "bob", "alice"), (3, "alice", "carol")):
        key = "\n".join(sorted((sender, target)))
        conn.execute(
            "INSERT INTO messages (message_id, conv_type, conv_target, conv_line, conv_key, from_user, content,"
            " server_time, persist_flag) VALUES (?, 0, ?, 0, ?, ?, x'80', 1, 3)",
            (message_id, target, key, sender),
        )
    conn.close()

    async with open_store(path) as store:
        assert await history(store, "bob", "alice") == [2, 1]
        assert await history(store, "alice", "carol") == [3]
    assert peek(path, "SELECT name FROM sqlite_master WHERE name = 'messages_conversation'") == []


def test_the_log_is_merged_sooner_when_sends_come_few_at_a_time() -> None:
    """Busy (big groups): merge at MERGE_ROWS, cheapest per row; quiet: at an eighth, for short pauses."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn)
    state = InboxState()
    message_id = 0

    def append_group(messages: int) -> None:
        nonlocal message_id
        rows = []
        for _ in range(messages):
            message_id += 1
            rows += [("alice", message_id, message_id), ("bob", message_id, message_id)]
        state.append(conn, rows)

    for _ in range(64):
        append_group(25)
    assert state.merge_at() == inboxes.MERGE_ROWS
    for _ in range(64):
        append_group(1)
    assert state.merge_at() == inboxes.MERGE_ROWS // 8
    rows_before = state.recent_rows
    while state.recent_rows >= rows_before:  # grows until the quiet threshold, then merges
        rows_before = state.recent_rows
        append_group(1)
    assert rows_before < inboxes.MERGE_ROWS // 8 <= rows_before + 2
    assert state.recent_rows == 0
    assert conn.execute("SELECT count(*) FROM inbox").fetchone()[0] == 2 * message_id
