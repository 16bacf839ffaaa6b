"""The storage engine seam (storage.engine) over a real SQLite connection: in_list, savepoint, is_retryable,
and the in-memory SeqAllocator."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

import storage  # noqa: F401 - registers the SQLite engine
from storage.engine import Refused, SeqAllocator, engine_of, in_list, is_retryable, savepoint
from storage.inboxes import InboxState
from storage.schema import migrate
from storage.sqlite.engine import SQLITE


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = sqlite3.connect(tmp_path / "e.db", isolation_level=None)
    c.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    c.executemany("INSERT INTO t VALUES (?)", [("a",), ("b",), ("c",)])
    yield c
    c.close()


@pytest.mark.parametrize(("values", "found"), [([], set()), (["b"], {"b"}), (["a", "c", "zz"], {"a", "c"})])
def test_in_list_matches_zero_one_or_many_values(conn: sqlite3.Connection, values: list[str], found: set[str]) -> None:
    clause, params = in_list(conn, "k", values)
    assert {row[0] for row in conn.execute(f"SELECT k FROM t WHERE {clause}", params)} == found


def test_in_list_text_does_not_depend_on_the_count(conn: sqlite3.Connection) -> None:
    assert in_list(conn, "k", [])[0] == in_list(conn, "k", ["a", "b", "c"])[0]


def test_savepoint_undoes_only_its_own_writes_on_refused(conn: sqlite3.Connection) -> None:
    SQLITE.begin(conn)
    conn.execute("INSERT INTO t VALUES ('before')")
    with pytest.raises(Refused) as raised, savepoint(conn, "test_op"):
        conn.execute("INSERT INTO t VALUES ('inside')")
        raise Refused(248)
    assert raised.value.code == 248
    assert conn.in_transaction  # the outer transaction goes on
    SQLITE.commit(conn)
    assert {r[0] for r in conn.execute("SELECT k FROM t")} == {"a", "b", "c", "before"}


def test_savepoint_keeps_writes_when_nothing_raises(conn: sqlite3.Connection) -> None:
    SQLITE.begin(conn)
    with savepoint(conn, "test_op"):
        conn.execute("INSERT INTO t VALUES ('kept')")
    SQLITE.commit(conn)
    assert conn.execute("SELECT 1 FROM t WHERE k = 'kept'").fetchone() == (1,)


def test_savepoint_names_are_checked(conn: sqlite3.Connection) -> None:
    with pytest.raises(ValueError), savepoint(conn, "x; DROP TABLE t"):
        pass


def test_is_retryable_for_a_busy_database_only(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None)
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        holder.execute("CREATE TABLE t (k)")
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as busy:
            other.execute("BEGIN IMMEDIATE")
        assert is_retryable(busy.value)
        with pytest.raises(sqlite3.OperationalError) as syntax:
            other.execute("SELEC 1")
        assert not is_retryable(syntax.value)
        assert not is_retryable(ValueError("no"))
    finally:
        holder.close()
        other.close()


def test_engine_of_names_sqlite(conn: sqlite3.Connection) -> None:
    engine = engine_of(conn)
    assert engine is SQLITE and engine.single_writer and engine.convert_param_style("a = ?") == "a = ?"


def test_inbox_state_reserves_sorted_consecutive_seqs(tmp_path: Path) -> None:
    c = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    try:
        migrate(c)
        allocator: SeqAllocator = InboxState()
        assert list(allocator.reserve(c, {"zed": 2, "amy": 1})) == ["amy", "zed"]
        assert allocator.reserve(c, {"zed": 1, "amy": 3}) == {"amy": 2, "zed": 3}
        assert allocator.current(c, "amy") == 4 and allocator.current(c, "zed") == 3
    finally:
        c.close()
