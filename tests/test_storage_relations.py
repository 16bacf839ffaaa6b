"""storage.relations on a bare SQLite connection: the v4 migration of rows written before it, and pages."""

from __future__ import annotations

import sqlite3
import time

import pytest
from sqlite_utils import Database

from storage import relations
from storage.schema import MIGRATIONS, _v4_relations, migrate

# SQLite itself (its file, connection or PRAGMAs), not the backend-neutral store: tests/backends.py.
pytestmark = pytest.mark.sqlite_only


def _v3_database() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    db = Database(conn, recursive_triggers=False, execute_plugins=False)
    index = MIGRATIONS.index(_v4_relations)
    for migration in MIGRATIONS[:index]:
        migration(db)
    conn.execute(f"PRAGMA user_version = {index}")
    return conn


def test_rows_from_before_relations_get_versions_and_heads() -> None:
    conn = _v3_database()
    conn.executemany(
        "INSERT INTO friends (user_id, friend_id, created_at, updated_at) VALUES (?, ?, 1, 1)",
        [("alice", "bob"), ("bob", "alice"), ("alice", "carol"), ("carol", "alice")],
    )
    conn.execute("INSERT INTO blacklist (user_id, target, created_at) VALUES ('bob', 'dave', 1)")
    migrate(conn)
    assert relations.heads(conn, "alice") == {"friend": 2, "friend_request": 0, "blacklist": 0, "setting": 0}
    assert relations.heads(conn, "bob")["blacklist"] == 1
    page = relations.sync_friends(conn, "alice", 0, 10)
    assert [(i["friend_id"], i["version"]) for i in page.items] == [("bob", 1), ("carol", 2)]
    # New changes continue from the migrated heads.
    assert relations.delete_friend(conn, "alice", "bob", 2).changes == (
        relations.Change("alice", "friend", 3),
        relations.Change("bob", "friend", 2),
    )


def test_pages_interleave_rows_and_tombstones_by_version() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn)
    for user in ("u", "a", "b", "c", "d"):
        conn.execute("INSERT INTO users (user_id) VALUES (?)", (user,))
    relations.add_friends(conn, "u", ["a", "b", "c", "d"], 1)  # versions 1..4
    relations.delete_friend(conn, "u", "b", 2)  # 5: tombstone b
    relations.set_friend_fields(conn, "u", "a", 3, "A", None)  # 6: a again
    seen = []
    after = 0
    while True:
        page = relations.sync_friends(conn, "u", after, 2)
        seen += [(i["friend_id"], i["version"], i["deleted"]) for i in page.items]
        if len(page.items) < 2:
            break
        after = page.items[-1]["version"]
    assert seen == [("c", 3, False), ("d", 4, False), ("b", 5, True), ("a", 6, False)]
    assert page.head == 6


def test_tombstones_from_before_the_retention_migration_count_from_the_upgrade() -> None:
    """Tombstones made before ``deleted_at`` existed get the upgrade's time: each is kept a full retention
    after it, not purged by the first pass as if it were from 1970."""
    from storage.schema import _v10_tombstone_retention

    conn = sqlite3.connect(":memory:", isolation_level=None)
    db = Database(conn, recursive_triggers=False, execute_plugins=False)
    index = MIGRATIONS.index(_v10_tombstone_retention)
    for migration in MIGRATIONS[:index]:
        migration(db)
    conn.execute(f"PRAGMA user_version = {index}")
    conn.execute("INSERT INTO relation_heads (user_id, stream, version) VALUES ('u', 'friend', 2)")
    conn.execute("INSERT INTO relation_tombstones (user_id, stream, scope, item, version) VALUES ('u', 'friend', 0, 'f', 2)")
    before_ms = time.time_ns() // 1_000_000
    migrate(conn)
    after_ms = time.time_ns() // 1_000_000
    (deleted_at,) = conn.execute("SELECT deleted_at FROM relation_tombstones").fetchone()
    assert before_ms - 1 <= deleted_at <= after_ms + 1
    assert relations.horizon(conn, "u", "friend") == 0
    assert relations.purge_tombstones(conn, before_ms - 1, 10) == 0  # younger than any cutoff before the upgrade
    assert relations.purge_tombstones(conn, after_ms + 2, 10) == 1
    assert relations.horizon(conn, "u", "friend") == 2
    assert relations.sync_page(conn, relations.FRIEND, "u", 1, 0, 10).reset
