"""Tests for storage/: schema migrations, users, sessions, and the group-commit writer.

Real SQLite files in tmp_path, no mocks. To prove that operations share a
transaction, a test first parks the writer thread on a blocking operation
(``held_writer``), queues the operations it wants batched, then releases it:
the thread then drains them all into one batch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import pytest
import trio
from sqlite_utils import Database

import storage.schema
import storage.sqlite.connect
import storage.writer
from protocol.codes import Platform, UserStatus, platform_class
from storage import (
    SCHEMA_VERSION,
    IssueResult,
    SessionRecord,
    StorageError,
    Store,
    UserRecord,
    open_store,
)
from storage.writer import Writer
from tests import backends
from tests.storage_helpers import held_writer, peek, wait_until

SERVER_KEY = bytes(range(64, 96))  # what session secrets are sealed under (token.key's bytes)
SECRET_A = bytes(range(32))
SECRET_B = bytes(range(1, 33))
T0 = 1_700_000_000_000


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ember.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[Store]:
    url = await trio.to_thread.run_sync(backends.storage_url, db_path)  # "" on SQLite: the file db_path
    async with open_store(db_path, server_key=SERVER_KEY, url=url) as opened:
        yield opened


async def capture(results: dict[Any, Any], key: Any, call: Awaitable[Any]) -> None:
    """Store a call's result or exception under ``key`` (keeps exceptions out of the nursery)."""
    try:
        results[key] = await call
    except Exception as exc:  # noqa: BLE001 - any error is the outcome under test
        results[key] = exc


def create_table(conn: sqlite3.Connection, sql: str) -> None:
    conn.execute(sql)


def insert_item(conn: sqlite3.Connection, n: int) -> int:
    conn.execute("INSERT INTO items (n) VALUES (?)", (n,))
    return n


def insert_then_fail(conn: sqlite3.Connection, n: int) -> None:
    conn.execute("INSERT INTO items (n) VALUES (?)", (n,))
    raise ValueError("op failed")


async def make_items_table(store: Store) -> None:
    await store.run(create_table, "CREATE TABLE items (n INTEGER PRIMARY KEY)")


# ------------------------------------------------------------------ schema


@pytest.mark.sqlite_only
async def test_fresh_database_is_migrated_and_configured(db_path: Path) -> None:
    async with open_store(db_path) as store:
        assert store.path == db_path
        pragmas = await store.run(
            lambda conn: [
                conn.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            ]
        )
        assert pragmas == ["wal", 1, 1, 5000]
    assert peek(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    tables = {name for (name,) in peek(db_path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"users", "sessions"} <= tables
    assert peek(db_path, "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sessions'")


@pytest.mark.sqlite_only
async def test_synchronous_full_and_invalid(db_path: Path) -> None:
    async with open_store(db_path, synchronous="FULL") as store:
        assert await store.run(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0]) == 2
    with pytest.raises(ValueError):
        async with open_store(db_path, synchronous="OFF"):
            pass


@pytest.mark.sqlite_only
async def test_reopen_is_idempotent_and_keeps_data(db_path: Path) -> None:
    async with open_store(db_path, server_key=SERVER_KEY) as store:
        assert await store.create_user(UserRecord("alice", name="Alice", created_at=T0, updated_at=T0))
        await store.issue_session("alice", "c1", Platform.IOS, SECRET_A, T0, kick_platforms=None)
    async with open_store(db_path, server_key=SERVER_KEY) as store:
        assert (await store.get_user("alice")) == UserRecord(
            "alice", name="Alice", created_at=T0, updated_at=T0
        )
        session = await store.get_session("alice", "c1")
        assert session is not None and session.secret == SECRET_A
    assert peek(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        assert storage.schema.migrate(conn) == SCHEMA_VERSION  # nothing left to do
    finally:
        conn.close()


@pytest.mark.sqlite_only
async def test_appended_migration_runs_once_on_existing_db(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_store(db_path):
        pass
    calls: list[int] = []

    def v2(db: Database) -> None:
        calls.append(1)
        db.table("notes").create({"id": int, "text": str}, pk="id")

    monkeypatch.setattr(storage.schema, "MIGRATIONS", (*storage.schema.MIGRATIONS, v2))
    monkeypatch.setattr(storage.schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    for _ in range(2):
        async with open_store(db_path) as store:
            await store.run(lambda conn: conn.execute("INSERT INTO notes (text) VALUES ('x')"))
    assert calls == [1]
    assert peek(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION + 1,)]


@pytest.mark.sqlite_only
async def test_failing_migration_changes_nothing(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with open_store(db_path):
        pass

    def broken(db: Database) -> None:
        db.table("half_done").create({"id": int}, pk="id")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(storage.schema, "MIGRATIONS", (*storage.schema.MIGRATIONS, broken))
    monkeypatch.setattr(storage.schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StorageError) as caught:
        async with open_store(db_path):
            pass
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert peek(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert peek(db_path, "SELECT name FROM sqlite_master WHERE name = 'half_done'") == []


@pytest.mark.sqlite_only
async def test_newer_schema_and_unopenable_path_are_refused(db_path: Path, tmp_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(StorageError):
        async with open_store(db_path):
            pass
    with pytest.raises(StorageError):
        async with open_store(tmp_path / "missing-dir" / "x.db"):
            pass


# ------------------------------------------------------------------- users


async def test_create_and_get_user(store: Store) -> None:
    alice = UserRecord("alice", name="Alice", gender=1, extra='{"k": 1}', created_at=T0, updated_at=T0)
    assert await store.create_user(alice) is True
    assert await store.create_user(UserRecord("alice", name="Impostor")) is False
    assert await store.get_user("alice") == alice
    assert await store.get_user("nobody") is None
    with pytest.raises(TypeError):
        await store.create_user(UserRecord("bob", gender=True))
    with pytest.raises(ValueError):
        await store.create_user(UserRecord("bob", status=7))


async def test_update_user(store: Store) -> None:
    await store.create_user(UserRecord("alice", name="Alice", email="a@x", created_at=T0, updated_at=T0))
    assert await store.update_user("alice", T0 + 5, display_name="Al", gender=2) is True
    assert await store.get_user("alice") == UserRecord(
        "alice", name="Alice", display_name="Al", gender=2, email="a@x", created_at=T0, updated_at=T0 + 5
    )
    assert await store.update_user("nobody", T0, name="x") is False
    with pytest.raises(ValueError):
        await store.update_user("alice", T0, status=2)  # status has its own call
    with pytest.raises(ValueError):
        await store.update_user("alice", T0, created_at=1)
    with pytest.raises(TypeError):
        await store.update_user("alice", T0, name=5)


async def test_get_users_keeps_the_order_asked(store: Store) -> None:
    for user_id in ("a", "b", "c"):
        await store.create_user(UserRecord(user_id))
    found = await store.get_users(["c", "missing", "a", "c"])
    assert [user.user_id for user in found] == ["c", "a", "c"]
    assert await store.get_users([]) == []
    many = [f"u{i}" for i in range(1200)]  # more than one IN (...) chunk
    assert [user.user_id for user in await store.get_users([*many, "b"])] == ["b"]


async def test_set_user_status_forbidden_ends_active_sessions(store: Store) -> None:
    await store.create_user(UserRecord("alice"))
    await store.issue_session("alice", "c1", Platform.IOS, SECRET_A, T0, kick_platforms=None)
    await store.issue_session("alice", "c2", Platform.WINDOWS, SECRET_A, T0, kick_platforms=None)
    await store.issue_session("alice", "c3", Platform.WEB, SECRET_B, T0, kick_platforms=None)
    await store.end_session("alice", "c3", "cleared", T0 + 1)

    assert await store.set_user_status("nobody", UserStatus.FORBIDDEN, T0) is None
    assert await store.set_user_status("alice", UserStatus.MUTED, T0 + 2) == []
    assert {s.state for s in await store.list_sessions("alice")} == {"active", "deleted"}

    assert await store.set_user_status("alice", UserStatus.FORBIDDEN, T0 + 3) == [
        ("alice", "c1"),
        ("alice", "c2"),
    ]
    user = await store.get_user("alice")
    assert user is not None and user.status == UserStatus.FORBIDDEN and user.updated_at == T0 + 3
    reasons = {s.client_id: (s.state, s.deleted_reason) for s in await store.list_sessions("alice")}
    assert reasons == {
        "c1": ("deleted", "forbidden"),
        "c2": ("deleted", "forbidden"),
        "c3": ("deleted", "cleared"),  # already ended: keeps its own reason
    }
    assert (await store.get_session("alice", "c1")).secret == SECRET_A  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        await store.set_user_status("alice", 3, T0)


# ---------------------------------------------------------------- sessions


async def test_issue_session_creates_then_reissues(store: Store) -> None:
    result = await store.issue_session("alice", "c1", Platform.IOS, SECRET_A, T0, kick_platforms=None)
    assert result == IssueResult(
        SessionRecord("alice", "c1", Platform.IOS, SECRET_A, "active", None, T0, T0, T0), []
    )
    await store.end_session("alice", "c1", "kicked", T0 + 1)
    again = await store.issue_session(
        "alice", "c1", Platform.ANDROID, SECRET_B, T0 + 9, kick_platforms=platform_class(Platform.ANDROID)
    )
    # Re-activated in place: new secret and platform, created_at kept, not kicking itself.
    assert again == IssueResult(
        SessionRecord("alice", "c1", Platform.ANDROID, SECRET_B, "active", None, T0, T0 + 9, T0 + 9), []
    )
    with pytest.raises(ValueError):
        await store.issue_session("alice", "c1", Platform.IOS, b"short", T0, kick_platforms=None)


async def test_issue_session_kicks_same_platform_class_only(store: Store) -> None:
    for client_id, platform in (("phone", Platform.IOS), ("pc", Platform.WINDOWS), ("pad", Platform.IPAD)):
        await store.issue_session("alice", client_id, platform, SECRET_A, T0, kick_platforms=None)
    await store.issue_session("alice", "old-phone", Platform.HARMONY, SECRET_A, T0, kick_platforms=None)
    await store.end_session("alice", "old-phone", "cleared", T0)

    # multi-endpoint (None) and an empty class kick nothing
    quiet = await store.issue_session(
        "alice", "phone2", Platform.ANDROID, SECRET_A, T0 + 1, kick_platforms=None
    )
    assert quiet.ended == []
    assert (await store.issue_session("alice", "web", 5, SECRET_A, T0 + 1, kick_platforms=set())).ended == []

    result = await store.issue_session(
        "alice", "phone3", Platform.ANDROID, SECRET_B, T0 + 2, kick_platforms=platform_class(Platform.ANDROID)
    )
    assert result.ended == [("alice", "phone"), ("alice", "phone2")]
    states = {s.client_id: (s.state, s.deleted_reason) for s in await store.list_sessions("alice")}
    assert states == {
        "phone": ("deleted", "kicked"),
        "phone2": ("deleted", "kicked"),
        "phone3": ("active", None),
        "pc": ("active", None),
        "pad": ("active", None),
        "web": ("active", None),
        "old-phone": ("deleted", "cleared"),  # was not active: untouched, not reported
    }


async def test_issue_session_replaces_other_users_on_same_client(store: Store) -> None:
    await store.issue_session("bob", "device", Platform.IOS, SECRET_A, T0, kick_platforms=None)
    # carol replaces bob on the same device
    await store.issue_session("carol", "device", Platform.IOS, SECRET_A, T0, kick_platforms=None)
    await store.issue_session("alice", "phone", Platform.IOS, SECRET_A, T0, kick_platforms=None)

    result = await store.issue_session(
        "alice", "device", Platform.ANDROID, SECRET_B, T0 + 1, kick_platforms=platform_class(Platform.ANDROID)
    )
    # carol replaced (bob was already), alice's own phone kicked; all in one call.
    assert result.ended == [("alice", "phone"), ("carol", "device")]
    carol = await store.get_session("carol", "device")
    bob = await store.get_session("bob", "device")
    assert carol is not None and (carol.state, carol.deleted_reason, carol.secret) == (
        "deleted",
        "replaced",
        SECRET_A,
    )
    assert bob is not None and bob.deleted_reason == "replaced"
    # Even with kicking off, another user's session on the client_id is replaced.
    back = await store.issue_session("bob", "device", Platform.IOS, SECRET_A, T0 + 2, kick_platforms=None)
    assert back.ended == [("alice", "device")]


async def test_get_list_and_end_sessions(store: Store) -> None:
    assert await store.get_session("alice", "c1") is None
    assert await store.list_sessions("alice") == []
    await store.issue_session("alice", "c1", Platform.IOS, SECRET_A, T0, kick_platforms=None)
    await store.issue_session("alice", "c2", Platform.MACOS, SECRET_B, T0 + 10, kick_platforms=None)
    await store.issue_session("bob", "c3", Platform.MACOS, SECRET_B, T0 + 20, kick_platforms=None)
    assert [s.client_id for s in await store.list_sessions("alice")] == ["c2", "c1"]

    assert await store.end_session("alice", "c2", "destroyed", T0 + 30) is True
    assert await store.end_session("alice", "c2", "destroyed", T0 + 31) is False  # no longer active
    assert await store.end_session("alice", "nope", "kicked", T0) is False
    ended = await store.get_session("alice", "c2")
    assert ended == SessionRecord(
        "alice", "c2", Platform.MACOS, SECRET_B, "deleted", "destroyed", T0 + 10, T0 + 10, T0 + 10
    )
    assert [s.client_id for s in await store.list_sessions("alice")] == ["c2", "c1"]  # all states
    with pytest.raises(ValueError):
        await store.end_session("alice", "c1", "bored", T0)


async def test_touch_sessions_moves_last_seen_forward_only(store: Store) -> None:
    await store.issue_session("alice", "c1", Platform.IOS, SECRET_A, T0, kick_platforms=None)
    await store.issue_session("bob", "c2", Platform.IOS, SECRET_A, T0, kick_platforms=None)
    await store.touch_sessions([("alice", "c1"), ("bob", "c2"), ("ghost", "c9")], T0 + 100)
    await store.touch_sessions([("alice", "c1")], T0 + 50)  # an older time never moves it back
    await store.touch_sessions([], T0 + 200)
    assert [(s.last_seen, s.issued_at) for s in await store.list_sessions("alice")] == [(T0 + 100, T0)]
    assert [s.last_seen for s in await store.list_sessions("bob")] == [T0 + 100]


# ------------------------------------------------------------------ writer


@pytest.mark.sqlite_only
async def test_one_failing_op_in_a_batch_rolls_back_only_itself(store: Store, db_path: Path) -> None:
    await make_items_table(store)
    results: dict[int, Any] = {}
    commits_before = store.writer.commits
    async with trio.open_nursery() as nursery:
        async with held_writer(store.writer):
            for n in range(30):
                op = insert_then_fail if n == 7 else insert_item
                nursery.start_soon(capture, results, n, store.run(op, n))
            await wait_until(lambda: store.writer.queued == 30)
    # The holding op's batch, then all 30 ops in ONE transaction.
    assert store.writer.commits == commits_before + 2
    assert isinstance(results.pop(7), ValueError)
    assert results == {n: n for n in range(30) if n != 7}
    assert peek(db_path, "SELECT n FROM items ORDER BY n") == [(n,) for n in range(30) if n != 7]
    assert await store.run(insert_item, 100) == 100  # the thread survived


@pytest.mark.sqlite_only
async def test_result_arrives_only_after_commit(store: Store, db_path: Path) -> None:
    seen: list[list[tuple[Any, ...]]] = []

    async def create_and_look(user_id: str) -> None:
        await store.create_user(UserRecord(user_id))
        seen.append(peek(db_path, "SELECT user_id FROM users WHERE user_id = ?", (user_id,)))

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(create_and_look, f"u{i}")
    assert len(seen) == 20 and all(len(rows) == 1 for rows in seen)


@pytest.mark.sqlite_only
async def test_failed_commit_fails_every_op_of_the_batch(store: Store, db_path: Path) -> None:
    await store.run(create_table, "CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    await store.run(
        create_table,
        "CREATE TABLE child (id INTEGER PRIMARY KEY,"
        " parent_id INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)",
    )

    def add_parent(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO parent (id) VALUES (1)")
        return "ok"

    def add_orphan(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO child (parent_id) VALUES (99)")  # fails only at COMMIT
        return "ok"

    results: dict[str, Any] = {}
    async with trio.open_nursery() as nursery:
        async with held_writer(store.writer):
            nursery.start_soon(capture, results, "parent", store.run(add_parent))
            nursery.start_soon(capture, results, "orphan", store.run(add_orphan))
            await wait_until(lambda: store.writer.queued == 2)
    assert isinstance(results["parent"], StorageError)
    assert isinstance(results["orphan"], StorageError)
    assert peek(db_path, "SELECT count(*) FROM parent") == [(0,)]
    assert await store.run(add_parent) == "ok"  # the next batch starts clean


@pytest.mark.sqlite_only
async def test_op_that_ends_the_transaction_does_not_take_later_ops_down(store: Store, db_path: Path) -> None:
    await make_items_table(store)

    def rogue(conn: sqlite3.Connection) -> None:
        conn.execute("ROLLBACK")  # against the rules: ops must not control transactions

    results: dict[str, Any] = {}
    async with trio.open_nursery() as nursery:
        async with held_writer(store.writer):
            nursery.start_soon(capture, results, "before", store.run(insert_item, 1))
            await wait_until(lambda: store.writer.queued == 1)
            nursery.start_soon(capture, results, "rogue", store.run(rogue))
            await wait_until(lambda: store.writer.queued == 2)
            nursery.start_soon(capture, results, "after", store.run(insert_item, 3))
            await wait_until(lambda: store.writer.queued == 3)
    # The earlier op's write was lost with the transaction: it must not be acknowledged.
    assert isinstance(results["before"], StorageError)
    assert isinstance(results["rogue"], StorageError)
    assert results["after"] == 3
    assert peek(db_path, "SELECT n FROM items") == [(3,)]


@pytest.mark.sqlite_only
async def test_op_errors_are_values_including_base_exceptions(store: Store) -> None:
    def interrupt(conn: sqlite3.Connection) -> None:
        raise KeyboardInterrupt

    def bad_read(conn: sqlite3.Connection) -> None:
        conn.execute("SELECT * FROM no_such_table")

    with pytest.raises(StorageError) as caught:
        await store.run(interrupt)
    assert isinstance(caught.value.__cause__, KeyboardInterrupt)
    with pytest.raises(sqlite3.OperationalError):
        await store.run(bad_read, read=True)
    assert await store.get_user("nobody") is None


@pytest.mark.sqlite_only
async def test_batches_are_bounded(db_path: Path) -> None:
    writer = Writer(db_path, max_batch=3)
    await writer.start()
    try:
        async with trio.open_nursery() as nursery:
            async with held_writer(writer):
                for _ in range(7):
                    nursery.start_soon(writer.submit, lambda conn: None)
                await wait_until(lambda: writer.queued == 7)
        assert writer.commits == 1 + 3  # the hold, then 3 + 3 + 1
    finally:
        await writer.aclose()


@pytest.mark.sqlite_only
async def test_aclose_commits_queued_ops_then_refuses_new_ones(db_path: Path) -> None:
    results: dict[int, Any] = {}
    async with open_store(db_path) as store:
        async with trio.open_nursery() as nursery:
            async with held_writer(store.writer):
                for i in range(10):
                    nursery.start_soon(capture, results, i, store.create_user(UserRecord(f"u{i}")))
                await wait_until(lambda: store.writer.queued == 10)
                nursery.start_soon(store.aclose)
                await wait_until(lambda: store.writer.queued == 11)  # the stop marker, after the ops
        assert results == {i: True for i in range(10)}
        with pytest.raises(StorageError):
            await store.get_user("u1")
    assert peek(db_path, "SELECT count(*) FROM users") == [(10,)]
    async with open_store(db_path) as store:
        assert len(await store.get_users([f"u{i}" for i in range(10)])) == 10


async def test_cancelled_caller_op_still_runs(store: Store) -> None:
    async with held_writer(store.writer):
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(store.create_user, UserRecord("late"))
                await wait_until(lambda: store.writer.queued == 1)
                scope.cancel()
    # Reads go to reader connections, which see only what has committed; the
    # writer runs operations in order, so once a later no-op has returned the
    # cancelled caller's operation has committed too (or never will).
    await store.writer.submit(lambda conn: None)
    assert await store.get_user("late") == UserRecord("late")


@pytest.mark.sqlite_only
async def test_the_wal_starts_over_under_steady_load(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that never pauses must still let the WAL restart, or the file grows without end.

    SQLite restarts the WAL only when a write transaction begins with every frame
    copied into the database; the checkpointer alone never gets there while the
    writer commits back to back. The WAL header counts restarts (bytes 12-15).
    """
    monkeypatch.setattr(storage.writer, "CHECKPOINT_INTERVAL_SECONDS", 0.005)
    monkeypatch.setattr(storage.writer, "WAL_RESTART_FRAMES", 1)
    wal = db_path.with_name(db_path.name + "-wal")

    def restarts() -> int:
        with wal.open("rb") as f:
            return int.from_bytes(f.read(16)[12:16], "big")

    def ignore(result: object, error: BaseException | None) -> None:
        assert error is None

    def insert_blob(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO blobs (b) VALUES (randomblob(3000))")  # about a page each

    async with open_store(db_path) as store:
        await store.run(create_table, "CREATE TABLE blobs (b BLOB)")
        first, n = restarts(), 0
        with trio.fail_after(15):
            # Keep the writer busy: a backlog of operations that never runs dry.
            while restarts() < first + 3:
                assert n < 200_000, "the WAL never started over"
                while store.writer.queued < 2000:
                    store.writer.submit_nowait(insert_blob, callback=ignore)
                    n += 1
                await trio.lowlevel.checkpoint()


@pytest.mark.sqlite_only
async def test_a_new_database_gets_small_pages_and_an_existing_one_keeps_its_own(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.db"
    async with open_store(fresh):
        pass
    assert peek(fresh, "PRAGMA page_size") == [(storage.sqlite.connect.PAGE_SIZE,)]
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as conn:
        conn.execute("PRAGMA page_size=4096")
        conn.execute("CREATE TABLE t (x)")
    async with open_store(old) as store:
        await store.create_user(UserRecord("u"))
    assert peek(old, "PRAGMA page_size") == [(4096,)]
