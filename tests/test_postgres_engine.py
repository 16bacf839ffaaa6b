"""The PostgreSQL engine (storage.postgres.engine) and store (storage.postgres.store) on a real server.

The private server of ``tests.pg`` (skipped with one line where there is none): statements written once
with ``?`` for both databases, the dialect helpers, the transaction traps (an aborted transaction's
COMMIT, a failing statement inside a savepoint), and the faults: a connection cut under the writer and
the readers gets 250 answers, never an ack, and the store reconnects by itself; a second gateway on the
same database is refused, naming the holder.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio

from protocol.codes import ErrorCode
from storage import StorageRetryLater, UserRecord, open_store
from storage.engine import in_list, insert_many, json_array_contains, pairs, savepoint
from storage.errors import StorageError
from storage.messages import Conversation, Outgoing
from storage.sends import SendPolicy
from tests.storage_helpers import held_writer, wait_until

psycopg = pytest.importorskip("psycopg", reason="PostgreSQL tests need psycopg (pip install 'ember-im[postgresql]')")

from storage.postgres.engine import COPY_MIN_ROWS, POSTGRES, PgTx, convert_param_style, wrap  # noqa: E402
from storage.postgres.store import ADVISORY_LOCK_KEY, connect_writer  # noqa: E402

#: The PostgreSQL pass would repeat this module unchanged: it runs on the private PostgreSQL server it names.
pytestmark = pytest.mark.own_backend


def test_placeholders_become_numbered_once_and_quotes_are_left_alone() -> None:
    assert convert_param_style("SELECT ? FROM t WHERE a = ? AND b = '?'") == "SELECT $1 FROM t WHERE a = $2 AND b = '?'"
    # SQLite's numbered form keeps its numbers; a bare ? after it takes the next one, as in SQLite.
    assert convert_param_style("?1 = ?2 OR ?1 = ?") == "$1 = $2 OR $1 = $3"
    assert convert_param_style('SELECT "?" , ?::text[]') == 'SELECT "?" , $1::text[]'
    assert convert_param_style("a = ?") is convert_param_style("a = ?")  # converted once, then cached


@pytest.fixture
def tx(pg_url: str) -> Any:
    conn = wrap(psycopg.connect(pg_url, autocommit=True))
    conn.execute("CREATE TABLE t (k TEXT COLLATE \"C\" PRIMARY KEY, n BIGINT NOT NULL, tags TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?, ?)", [("a", 1, '["x","y"]'), ("b", 2, None), ("c", 3, '["y"]')])
    yield conn
    conn.close()


@pytest.mark.parametrize(("values", "found"), [([], set()), (["b"], {"b"}), (["a", "c", "zz"], {"a", "c"})])
def test_in_list_is_one_array_parameter(tx: PgTx, values: list[str], found: set[str]) -> None:
    clause, params = in_list(tx, "k", values)
    assert {row[0] for row in tx.execute(f"SELECT k FROM t WHERE {clause}", params)} == found
    # One text for any count of one type: one prepared plan (an empty list is sent untyped, its own text).
    assert clause == in_list(tx, "k", ["a", "b", "c", "d"] if values else [])[0]


def test_in_list_of_integers_is_an_integer_array(tx: PgTx) -> None:
    """A text[] against a BIGINT column is 'operator does not exist: bigint = text' (get_conversations' type and
    line filters answered error 4 on PostgreSQL)."""
    clause, params = in_list(tx, "n", [1, 3, 7])
    assert {row[0] for row in tx.execute(f"SELECT k FROM t WHERE {clause}", params)} == {"a", "c"}
    clause, params = in_list(tx, "n", [])
    assert list(tx.execute(f"SELECT k FROM t WHERE {clause}", params)) == []


def test_pairs_and_json_array_contains(tx: PgTx) -> None:
    table, first, second, params = pairs(tx, "j", [("a", "1"), ("b", "9"), ("c", "3")])
    rows = tx.execute(f"SELECT t.k FROM {table} JOIN t ON t.k = {first} AND t.n::text = {second}", params)
    assert sorted(row[0] for row in rows) == ["a", "c"]
    rows = tx.execute(f"SELECT k FROM t WHERE tags IS NOT NULL AND {json_array_contains(tx, 'tags')}", ("y",))
    assert sorted(row[0] for row in rows) == ["a", "c"]


def test_booleans_are_stored_as_integers_as_sqlite_stores_them(tx: PgTx) -> None:
    tx.execute("INSERT INTO t VALUES (?, ?, NULL)", ("bool", True))
    assert tx.execute("SELECT n FROM t WHERE k = 'bool'").fetchone() == (1,)


def test_a_failed_statement_in_a_savepoint_leaves_the_transaction_usable(tx: PgTx) -> None:
    POSTGRES.begin(tx)
    tx.execute("INSERT INTO t VALUES ('before', 0, NULL)")
    with pytest.raises(psycopg.errors.UniqueViolation), savepoint(tx, "op"):
        tx.execute("INSERT INTO t VALUES ('a', 0, NULL)")  # aborts the transaction, up to the savepoint
    assert not POSTGRES.transaction_failed(tx)
    POSTGRES.commit(tx)
    assert tx.execute("SELECT count(*) FROM t WHERE k = 'before'").fetchone() == (1,)


def test_the_commit_of_an_aborted_transaction_is_an_error_not_a_silent_rollback(tx: PgTx) -> None:
    """PostgreSQL answers COMMIT of an aborted transaction with ROLLBACK and no error: acks would go out."""
    POSTGRES.begin(tx)
    tx.execute("INSERT INTO t VALUES ('lost', 0, NULL)")
    with pytest.raises(psycopg.errors.UniqueViolation):
        tx.execute("INSERT INTO t VALUES ('a', 0, NULL)")
    assert POSTGRES.transaction_failed(tx)
    with pytest.raises(psycopg.Error):
        POSTGRES.commit(tx)
    assert not tx.in_transaction
    assert tx.execute("SELECT count(*) FROM t WHERE k = 'lost'").fetchone() == (0,)


def _message(message_id: int, client_msg_id: str) -> Outgoing:
    return Outgoing(
        message_id=message_id,
        server_time=1_000 + message_id,
        conv=Conversation(0, "bob"),
        from_user="alice",
        content={"type": 1, "text": "hello"},
        persist_flag=0,
        client_msg_id=client_msg_id,
    )


def _cut_connections(url: str) -> int:
    """End every other connection to the database ``url`` names, as a server restart would."""
    with psycopg.connect(url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


async def _send_until_acked(store: Any, message_id: int, client_msg_id: str) -> tuple[Any, int]:
    """Send as a client does: on 250 (StorageRetryLater) the same message again, with its id."""
    refused = 0
    for _ in range(100):
        try:
            return await store.send_private(_message(message_id, client_msg_id), SendPolicy()), refused
        except StorageRetryLater:
            refused += 1
            await trio.sleep(0.05)  # a client's resend pause; the writer's own backoff is 0.1 s
    raise AssertionError("the store never took the send again")


async def test_a_cut_connection_answers_250_then_the_store_reconnects_and_nothing_is_lost(pg_url: str) -> None:
    async with open_store("unused", url=pg_url) as store:
        for user in ("alice", "bob"):
            await store.create_user(UserRecord(user))
        first, _ = await _send_until_acked(store, 1, "m1")
        assert first.code == ErrorCode.SUCCESS and first.seqs == {"bob": 1, "alice": 1}

        assert await trio.to_thread.run_sync(_cut_connections, pg_url) >= 2  # the writer and the readers
        second, refused = await _send_until_acked(store, 2, "m2")
        assert refused >= 1  # the send met the cut connection: told to retry, not acked
        assert second.code == ErrorCode.SUCCESS and second.seqs == {"bob": 2, "alice": 2}
        again, _ = await _send_until_acked(store, 2, "m2")  # a resend of an acked message: its original ack
        assert again.duplicate and again.seqs == {"alice": 2}

        for _ in range(3):  # a reader that met the cut is replaced at its next use
            try:
                page = await store.pull("bob", 0, 10)
                break
            except StorageRetryLater:
                continue
        assert [(seq, m.message_id) for seq, m in page.messages] == [(1, 1), (2, 2)]


async def test_a_second_store_on_the_same_database_is_refused_naming_the_holder(pg_url: str) -> None:
    async with open_store("unused", url=pg_url):
        with pytest.raises(StorageError, match="already used by another Ember process") as refused:
            async with open_store("unused", url=pg_url):
                pass  # pragma: no cover - must not open
        password = urlsplit(pg_url).password
        assert f"(pid {os.getpid()})" in str(refused.value)  # the holder's own pid, as SQLite's lock file says
        assert not password or password not in str(refused.value)
    # Closed: the lock went with its connection, and the next store takes it.
    async with open_store("unused", url=pg_url):
        pass


def test_the_writer_lock_is_a_session_advisory_lock(pg_url: str) -> None:
    holder = connect_writer(pg_url)
    try:
        with psycopg.connect(pg_url, autocommit=True) as other:
            assert other.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,)).fetchone() == (False,)
    finally:
        holder.close()


def _put(conn: Any, key: str) -> str:
    conn.execute("INSERT INTO chatrooms VALUES (?, '', '', '', 0, 0, 0)", (key,))
    return key


async def _run_as_one_batch(store: Any, ops: list[tuple[str, Any, tuple[Any, ...]]]) -> dict[str, Any]:
    """Run ``(name, fn, args)`` ops in one batch of the writer (held until all are queued); each name's
    result, or the StorageError it raised."""
    outcomes: dict[str, Any] = {}

    async def run(name: str, fn: Any, *args: Any) -> None:
        try:
            outcomes[name] = await store.run(fn, *args)
        except StorageError as exc:
            outcomes[name] = exc

    async with trio.open_nursery() as nursery, held_writer(store.writer):
        for queued, (name, fn, args) in enumerate(ops, 1):
            nursery.start_soon(run, name, fn, *args)
            await wait_until(lambda queued=queued: store.writer.queued >= queued)
    return outcomes


async def test_an_aborted_transaction_fails_its_batch_and_the_next_operations_begin_afresh(pg_url: str) -> None:
    """An operation that swallows a database error leaves PostgreSQL's transaction aborted (SQLite's would
    go on): that operation fails, undone to its savepoint, and the others of its batch commit."""

    def swallow(conn: Any) -> str:
        try:
            conn.execute("SELECT no_such_column FROM chatrooms")
        except psycopg.Error:
            pass  # against the rules: the transaction is now aborted
        return "swallowed"

    async with open_store("unused", url=pg_url) as store:
        outcomes = await _run_as_one_batch(
            store, [("before", _put, ("before",)), ("swallow", swallow, ()), ("after", _put, ("after",))]
        )
        assert isinstance(outcomes["swallow"], StorageError)
        assert outcomes["before"] == "before" and outcomes["after"] == "after"
        assert [room.chatroom_id for room in await store.list_chatrooms()] == ["after", "before"]


async def test_a_connection_lost_mid_batch_tells_every_op_of_the_batch_to_retry(pg_url: str) -> None:
    """The op that met the lost connection gets 250, and so must the ops before it in its transaction: their
    writes went with the connection, through no fault of theirs (they once got a plain StorageError, which a
    sender does not resend: the restart-under-load test met it one run in a few)."""

    def lose_the_connection(conn: Any) -> None:
        conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")  # as a server restart ends it

    async with open_store("unused", url=pg_url) as store:
        outcomes = await _run_as_one_batch(store, [("before", _put, ("before",)), ("lost", lose_the_connection, ())])
        assert isinstance(outcomes["lost"], StorageRetryLater)
        assert isinstance(outcomes["before"], StorageRetryLater), outcomes["before"]
        for _ in range(50):  # the writer reconnects with backoff; the op resent commits
            try:
                assert await store.run(_put, "before") == "before"
                break
            except StorageRetryLater:
                await trio.sleep(0.05)
        assert [room.chatroom_id for room in await store.list_chatrooms()] == ["before"]


@pytest.mark.parametrize("in_pipeline", [False, True])  # in a pipeline: unnest arrays rather than COPY
@pytest.mark.parametrize("count", [1, COPY_MIN_ROWS, 3 * COPY_MIN_ROWS])
def test_insert_many_stores_the_same_rows_by_executemany_copy_or_unnest(
    pg_url: str, count: int, in_pipeline: bool
) -> None:
    conn = wrap(psycopg.connect(pg_url, autocommit=True))
    try:
        conn.execute("CREATE TABLE bulk (k TEXT NOT NULL, n BIGINT, b BYTEA, flag BIGINT)")
        rows = [(f"k{i}\n'\\", i if i % 3 else None, bytes([i % 256, 0, 255]), i % 2 == 0) for i in range(count)]
        POSTGRES.begin(conn)
        with POSTGRES.pipeline(conn) if in_pipeline else contextlib.nullcontext():
            insert_many(conn, "INSERT INTO bulk (k, n, b, flag) VALUES (?, ?, ?, ?)", rows)
        POSTGRES.commit(conn)
        stored = conn.execute("SELECT k, n, b, flag FROM bulk ORDER BY n NULLS FIRST, k").fetchall()
        expected = sorted(((k, n, b, int(f)) for k, n, b, f in rows), key=lambda r: (r[1] is not None, r[1] or 0, r[0]))
        assert stored == expected
    finally:
        conn.close()
