"""SQLite's and PostgreSQL's migration lists are one schema: same versions, same tables, columns, indexes.

A migration added to one backend and not the other fails here: the version lists are compared by
name (this needs no server), then a SQLite file and a PostgreSQL database are migrated and their
schemas read back from each one's catalog and compared, and a database at an older version with rows
in it is migrated on both and the rows compared, so the data migrations agree as well.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlite_utils import Database

from storage import schema as sqlite_schema
from storage.postgres import schema as pg_schema
from storage.postgres.connection import connect
from tests import pg

#: The PostgreSQL pass would repeat this module unchanged: it runs on the private PostgreSQL server it names.
pytestmark = pytest.mark.own_backend

# A column as both catalogs can tell it: (name, type, NOT NULL, default); a table: its columns in
# order, its primary key and its other indexes (name -> columns, unique, partial predicate).
Column = tuple[str, str, bool, str | None]

_SQLITE_TYPES = {"INTEGER": "bigint", "TEXT": "text", "BLOB": "bytea"}


def test_both_backends_list_the_same_migrations_under_the_same_names() -> None:
    names = [m.__name__ for m in sqlite_schema.MIGRATIONS]
    assert [m.__name__ for m in pg_schema.MIGRATIONS] == names, (
        "storage.schema.MIGRATIONS and storage.postgres.schema.MIGRATIONS differ: add the migration to both"
    )
    assert pg_schema.SCHEMA_VERSION == sqlite_schema.SCHEMA_VERSION
    assert all(name.startswith(f"_v{i}_") for i, name in enumerate(names, 1)), names


#: Search's index (v13) is each backend's own: an FTS5 virtual table on SQLite (with its shadow tables
#: message_search_data, _idx, _content, _docsize, _config), a plain table of the same columns keyed by
#: message id on PostgreSQL, with v15's stored vector of its tokens (``lexemes``, PostgreSQL's only) and the
#: GIN index on it (docs/ARCHITECTURE.md, "Search"). Compared by column names only.
SEARCH_INDEX = "message_search"
_SEARCH_COLUMNS = ["bi", "uni", "words", "content_type"]
_PG_SEARCH_VECTOR = "lexemes"


def _sqlite_schema(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]  # fmt: skip
        out: dict[str, Any] = {}
        for table in tables:
            if table.startswith(SEARCH_INDEX + "_"):
                continue  # FTS5's shadow tables
            info = conn.execute(f"PRAGMA table_info({table})").fetchall()  # cid, name, type, notnull, dflt, pk
            if table == SEARCH_INDEX:
                out[table] = [row[1] for row in info]
                continue
            pk = [row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5])]
            columns = [
                (name, _SQLITE_TYPES[typ.upper()], bool(notnull) or name in pk, _default(dflt))
                for _, name, typ, notnull, dflt, _ in info
            ]
            indexes = {}
            for _, name, unique, origin, partial in conn.execute(f"PRAGMA index_list({table})"):
                if origin == "pk":
                    continue
                cols = [r[2] for r in conn.execute(f"PRAGMA index_info({name})")]
                sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()[0]
                predicate = _predicate(sql.split(" WHERE ", 1)[1]) if partial else None
                indexes[name] = (cols, bool(unique), predicate)
            out[table] = {"columns": columns, "primary_key": pk, "indexes": indexes}
        return out
    finally:
        conn.close()


def _pg_schema(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    tables = [r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        " AND table_type = 'BASE TABLE' AND table_name <> %s ORDER BY table_name", (pg_schema.VERSION_TABLE,))]  # fmt: skip
    for table in tables:
        if table == SEARCH_INDEX:  # keyed by message_id where FTS5 has its rowid
            names = [r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND table_name = %s ORDER BY ordinal_position", (table,))]  # fmt: skip
            assert names[0] == "message_id" and names[-1] == _PG_SEARCH_VECTOR, names
            out[table] = names[1:-1]
            continue
        columns = [
            (name, typ, nullable == "NO", _default(dflt))
            for name, typ, nullable, dflt in conn.execute(
                "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position", (table,))
        ]  # fmt: skip
        indexes, pk = {}, []
        for name, cols, unique, primary, predicate in conn.execute(
            "SELECT i.relname, ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(attnum, n)"
            "   JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum ORDER BY k.n),"
            " x.indisunique, x.indisprimary, pg_get_expr(x.indpred, x.indrelid)"
            " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = %s::regclass",
            (table,),
        ):
            if primary:
                pk = list(cols)
            else:
                indexes[name] = (list(cols), unique, None if predicate is None else _predicate(predicate))
        out[table] = {"columns": columns, "primary_key": pk, "indexes": indexes}
    return out


def _default(text: str | None) -> str | None:
    """A column default as both catalogs agree on it: ``''::text`` (PostgreSQL) and ``''`` (SQLite) alike."""
    if text is None:
        return None
    return re.sub(r"::[a-z ]+$", "", text)


def _predicate(text: str) -> str:
    """A partial index's condition without the parentheses and spaces each catalog adds its own way."""
    return re.sub(r"[()\s]", "", text).lower()


def test_a_migrated_sqlite_file_and_a_migrated_postgresql_database_have_the_same_schema(
    tmp_path: Path, pg_empty_url: str
) -> None:
    db = tmp_path / "ember.db"
    conn = sqlite3.connect(db, isolation_level=None)
    sqlite_schema.migrate(conn)
    conn.close()
    with connect(pg_empty_url, autocommit=True) as pconn:
        assert pg_schema.migrate(pconn) == 0
        on_pg = _pg_schema(pconn)
        collations = pconn.execute(
            "SELECT table_name, column_name, collation_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND data_type = 'text'").fetchall()  # fmt: skip
    on_sqlite = _sqlite_schema(db)
    assert sorted(on_pg) == sorted(on_sqlite), "the two backends have different tables"
    for table in on_sqlite:
        assert on_pg[table] == on_sqlite[table], f"table {table} differs between SQLite and PostgreSQL"
    assert on_sqlite[SEARCH_INDEX] == _SEARCH_COLUMNS
    # SQLite compares text byte by byte: every PostgreSQL text column must too (storage.postgres.schema).
    assert collations and all(c == "C" for _, _, c in collations), [r for r in collations if r[2] != "C"]


# --- data migrations: an old database with rows in it, upgraded on both backends --------------------

#: Rows written at version 2 (users and sessions of v1, messages and relations of v2). The friend ids
#: are in an order where byte order and a linguistic collation disagree ("B" < "a" < "b" < "é" by
#: bytes), which the v4 migration's per-user versions depend on.
_V2_ROWS: dict[str, list[tuple[Any, ...]]] = {
    "users": [("alice", "Alice", "", "", 0, "", "", "", "", "", "", 0, 1, 2), ("bob", "", "", "", 1, "", "", "", "", "", "", 0, 3, 4)],
    "sessions": [("alice", "c1", 2, b"\x01" * 32, "active", None, 5, 5, 6, None),
                 ("bob", "c2", 1, b"\x02" * 32, "deleted", "logout", 5, 5, 6, 7)],
    "messages": [(101, 1, "bob", 0, "alice\nbob", "alice", b"\x81\xa1t\x01", 1000, None, 1, None),
                 (102, 1, "alice", 0, "alice\nbob", "bob", b"\x80", 1001, '["alice"]', 1, "alice")],
    "inbox": [("alice", 1, 101), ("bob", 1, 101), ("alice", 2, 102)],
    "friends": [("alice", f, "", "", 9, 9) for f in ("b", "é", "a", "B")] + [("bob", "alice", "al", "", 9, 9)],
    "blacklist": [("bob", "z", 8), ("bob", "Z", 8)],
    "deleted_messages": [("bob", 101, 11)],
    "client_message_ids": [("alice", "cm-1", 101, 1000, 1)],
}


def _sqlite_at(path: Path, version: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    db = Database(conn, recursive_triggers=False, execute_plugins=False)
    for migration in sqlite_schema.MIGRATIONS[:version]:
        migration(db)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.execute("COMMIT")
    return conn


def _pg_at(url: str, version: int) -> psycopg.Connection[Any]:
    conn = connect(url, autocommit=True)
    with conn.transaction():
        for migration in pg_schema.MIGRATIONS[:version]:
            migration(conn)
        pg_schema._write_version(conn, version)
    return conn


def _contents(rows: Any) -> list[tuple[Any, ...]]:
    return sorted((tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows), key=repr)


def test_an_old_database_with_rows_upgrades_to_the_same_rows_on_both_backends(
    tmp_path: Path, pg_empty_url: str
) -> None:
    lite = _sqlite_at(tmp_path / "old.db", 2)
    pconn = _pg_at(pg_empty_url, 2)
    try:
        for table, rows in _V2_ROWS.items():
            width = len(rows[0])
            lite.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * width)})", rows)
            with pconn.cursor() as cur:
                cur.executemany(f"INSERT INTO {table} VALUES ({', '.join(['%s'] * width)})", rows)
        assert sqlite_schema.migrate(lite) == 2
        assert pg_schema.migrate(pconn) == 2
        for table in sorted(_sqlite_schema(tmp_path / "old.db")):
            on_sqlite = _contents(lite.execute(f"SELECT * FROM {table}"))
            on_pg = _contents(pconn.execute(f"SELECT * FROM {table}"))
            assert on_pg == on_sqlite, f"table {table} differs after the upgrade"
        # The v4 versions followed byte order, as SQLite's did: "B" < "a" < "b" < "é".
        assert pconn.execute("SELECT friend_id FROM friends WHERE user_id = 'alice' ORDER BY version").fetchall() == [
            ("B",), ("a",), ("b",), ("é",)]  # fmt: skip
    finally:
        lite.close()
        pconn.close()


# --- the version, and gateways migrating at the same moment --------------------------------------


def test_migrate_creates_the_schema_once_and_then_does_nothing(pg_empty_url: str) -> None:
    assert pg_schema.migrate_database(pg_empty_url) == 0
    assert pg_schema.migrate_database(pg_empty_url) == pg_schema.SCHEMA_VERSION
    with connect(pg_empty_url) as conn:
        assert pg_schema.schema_version(conn) == pg_schema.SCHEMA_VERSION
        assert conn.execute(f"SELECT count(*) FROM {pg_schema.VERSION_TABLE}").fetchone() == (1,)


def test_gateways_starting_together_migrate_one_after_the_other(pg_empty_url: str) -> None:
    """Two migrations of one empty database at once: the advisory lock makes the second wait, then
    find the schema there. Without it, both create the tables and the second fails on a duplicate."""
    results: dict[str, int | BaseException] = {}

    def migrate(name: str) -> None:
        try:
            results[name] = pg_schema.migrate_database(pg_empty_url)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            results[name] = exc

    with connect(pg_empty_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (pg_schema.MIGRATION_LOCK_KEY,))
        threads = [threading.Thread(target=migrate, args=(name,)) for name in ("first", "second")]
        for thread in threads:
            thread.start()
        # Both are inside migrate, waiting for the lock the holder has (the catalog says so).
        _wait_for(lambda: _advisory_waiters(holder) == 2)
        holder.execute("SELECT pg_advisory_unlock(%s)", (pg_schema.MIGRATION_LOCK_KEY,))
        for thread in threads:
            thread.join(30)
    assert sorted(results.values(), key=repr) == sorted([0, pg_schema.SCHEMA_VERSION], key=repr), results


def _advisory_waiters(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database ="
        " (SELECT oid FROM pg_database WHERE datname = current_database())").fetchone()  # fmt: skip
    return 0 if row is None else int(row[0])


def _wait_for(predicate: Any) -> None:
    # Polling on purpose: the waiters are other connections' state, seen only through the catalog.
    import time

    deadline = time.monotonic() + 20
    while not predicate():
        assert time.monotonic() < deadline, "the migrations never waited for the advisory lock"
        time.sleep(0.01)


def test_a_newer_schema_is_refused_and_left_alone(pg_url: str) -> None:
    with connect(pg_url, autocommit=True) as conn:
        conn.execute(f"UPDATE {pg_schema.VERSION_TABLE} SET version = %s", (pg_schema.SCHEMA_VERSION + 1,))
    with pytest.raises(Exception, match=f"schema version {pg_schema.SCHEMA_VERSION + 1}, newer than this build's") as info:
        pg_schema.migrate_database(pg_url)
    assert "\n" not in str(info.value) and pg.masked(pg_url) in str(info.value)
    with connect(pg_url) as conn:
        assert pg_schema.schema_version(conn) == pg_schema.SCHEMA_VERSION + 1
