"""The PostgreSQL schema: ``storage.schema``'s migrations, one for one, in PostgreSQL's dialect.

Same versions, same names, same tables, columns and indexes as SQLite's list: version N here builds
what version N builds there. ``tests/test_postgres_schema.py`` migrates a SQLite file and a PostgreSQL
database and compares the two lists and the two resulting schemas (tables, columns with their type,
nullability and default, primary keys, indexes), so a migration written for one backend and not the
other cannot land. To change the schema, append the migration to BOTH lists, under the same name.

How SQLite's types map, for every column:

- ``INTEGER`` -> ``BIGINT``: times are ms since the epoch, ids are 64-bit, seqs and versions grow for
  ever; one integer type everywhere keeps the ports of the queries free of casts.
- ``TEXT`` -> ``TEXT COLLATE "C"``: SQLite compares text byte by byte (its BINARY collation); "C" is
  the same order (code point order, for UTF-8), whatever locale the database was created with, so
  ``ORDER BY`` and the ``>`` of a paging cursor give the same rows on both backends (and the indexes
  are cheaper than a linguistic collation's). The database must be UTF8 (``migrate`` checks).
- ``BLOB`` -> ``BYTEA``.

The version is kept in a one-row table, ``schema_version`` (SQLite keeps it in ``PRAGMA
user_version``). ``migrate`` applies the missing migrations and writes the new version in ONE
transaction, under an advisory lock: gateways started at the same moment on one database take turns,
and the second finds the work done. PostgreSQL's DDL is transactional, so a failure anywhere leaves
the database as it was.

Never edit, reorder or remove a released migration: databases in the field have run it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from storage.writer import StorageError

if TYPE_CHECKING:
    import psycopg

Migration = Callable[["psycopg.Connection[Any]"], None]

#: The advisory lock (``pg_advisory_xact_lock``) that migrations run under: the bytes "emberMIG" as a
#: positive 64-bit key. Advisory locks are per database, so databases on one server do not contend.
MIGRATION_LOCK_KEY: Final = int.from_bytes(b"emberMIG", "big")

#: The one-row table holding how many migrations the database has had.
VERSION_TABLE: Final = "schema_version"

# Column types (see the module docstring): written once so that no column gets another by mistake.
TEXT: Final = 'TEXT COLLATE "C"'
INT: Final = "BIGINT"
BLOB: Final = "BYTEA"

_USER_TEXT_COLUMNS = (
    "name",
    "display_name",
    "portrait",
    "mobile",
    "email",
    "address",
    "company",
    "social",
    "extra",
)


def _v1_users_and_sessions(conn: psycopg.Connection[Any]) -> None:
    """Users (hosted user info and status) and sessions (one per user and device); see storage.schema."""
    texts = ", ".join(f"{column} {TEXT} NOT NULL DEFAULT ''" for column in _USER_TEXT_COLUMNS[:3])
    more = ", ".join(f"{column} {TEXT} NOT NULL DEFAULT ''" for column in _USER_TEXT_COLUMNS[3:])
    # The column order is SQLite's (sqlite-utils keeps the dict's): name, display_name, portrait,
    # gender, mobile, ..., extra, status, created_at, updated_at.
    conn.execute(
        f"CREATE TABLE users (user_id {TEXT} PRIMARY KEY NOT NULL, {texts},"
        f" gender {INT} NOT NULL DEFAULT 0, {more},"
        f" status {INT} NOT NULL DEFAULT 0, created_at {INT} NOT NULL DEFAULT 0,"
        f" updated_at {INT} NOT NULL DEFAULT 0)"
    )
    conn.execute(
        f"CREATE TABLE sessions (user_id {TEXT} NOT NULL, client_id {TEXT} NOT NULL,"
        f" platform {INT} NOT NULL, secret {BLOB} NOT NULL, state {TEXT} NOT NULL DEFAULT 'active',"
        f" deleted_reason {TEXT}, created_at {INT} NOT NULL, issued_at {INT} NOT NULL,"
        f" last_seen {INT} NOT NULL, deleted_at {INT}, PRIMARY KEY (user_id, client_id))"
    )
    # The name sqlite-utils gave it on SQLite.
    conn.execute("CREATE INDEX idx_sessions_client_id ON sessions (client_id)")


def _v2_messages(conn: psycopg.Connection[Any]) -> None:
    """Messages, inboxes, deletions, idempotency ids, blacklists and friends (storage.schema explains)."""
    conn.execute(
        f"CREATE TABLE messages (message_id {INT} PRIMARY KEY,"
        f" conv_type {INT} NOT NULL, conv_target {TEXT} NOT NULL, conv_line {INT} NOT NULL,"
        f" conv_key {TEXT} NOT NULL, from_user {TEXT} NOT NULL, content {BLOB} NOT NULL,"
        f" server_time {INT} NOT NULL, to_users {TEXT}, persist_flag {INT} NOT NULL, only_for {TEXT})"
    )
    conn.execute("CREATE INDEX messages_conversation ON messages (conv_type, conv_key, conv_line, message_id)")
    conn.execute(
        f"CREATE TABLE inbox (user_id {TEXT} NOT NULL, seq {INT} NOT NULL, message_id {INT} NOT NULL,"
        " PRIMARY KEY (user_id, seq))"
    )
    conn.execute(
        f"CREATE TABLE deleted_messages (user_id {TEXT} NOT NULL, message_id {INT} NOT NULL,"
        f" deleted_at {INT} NOT NULL, PRIMARY KEY (user_id, message_id))"
    )
    conn.execute(
        f"CREATE TABLE client_message_ids (from_user {TEXT} NOT NULL, client_msg_id {TEXT} NOT NULL,"
        f" message_id {INT} NOT NULL, server_time {INT} NOT NULL, seq {INT} NOT NULL,"
        " PRIMARY KEY (from_user, client_msg_id))"
    )
    conn.execute(
        f"CREATE TABLE blacklist (user_id {TEXT} NOT NULL, target {TEXT} NOT NULL, created_at {INT} NOT NULL,"
        " PRIMARY KEY (user_id, target))"
    )
    conn.execute(
        f"CREATE TABLE friends (user_id {TEXT} NOT NULL, friend_id {TEXT} NOT NULL,"
        f" alias {TEXT} NOT NULL DEFAULT '', extra {TEXT} NOT NULL DEFAULT '', created_at {INT} NOT NULL,"
        f" updated_at {INT} NOT NULL, PRIMARY KEY (user_id, friend_id))"
    )


def _v3_merged_indexes(conn: psycopg.Connection[Any]) -> None:
    """The inbox log (``inbox_recent``) and the conversation index as a table (storage.schema explains).

    ``inbox_recent`` has no key, as on SQLite: it is an append-only log that the merge empties.
    """
    conn.execute(
        f"CREATE TABLE inbox_recent (user_id {TEXT} NOT NULL, seq {INT} NOT NULL, message_id {INT} NOT NULL)"
    )
    conn.execute(
        f"CREATE TABLE conversation_index (conv_type {INT} NOT NULL, conv_key {TEXT} NOT NULL,"
        f" conv_line {INT} NOT NULL, message_id {INT} NOT NULL,"
        " PRIMARY KEY (conv_type, conv_key, conv_line, message_id))"
    )
    conn.execute(
        "INSERT INTO conversation_index (conv_type, conv_key, conv_line, message_id)"
        " SELECT conv_type, conv_key, conv_line, message_id FROM messages"
    )
    conn.execute("DROP INDEX messages_conversation")


def _v4_relations(conn: psycopg.Connection[Any]) -> None:
    """Friend requests, versioned friends and blacklists, user settings (storage.schema explains).

    Rows written before this migration get versions 1..n per user, in key order ("C" order, as SQLite's).
    """
    conn.execute(
        f"CREATE TABLE relation_heads (user_id {TEXT} NOT NULL, stream {TEXT} NOT NULL,"
        f" version {INT} NOT NULL, PRIMARY KEY (user_id, stream))"
    )
    conn.execute(
        f"CREATE TABLE relation_tombstones (user_id {TEXT} NOT NULL, stream {TEXT} NOT NULL,"
        f" scope {INT} NOT NULL, item {TEXT} NOT NULL, version {INT} NOT NULL,"
        " PRIMARY KEY (user_id, stream, scope, item))"
    )
    conn.execute("CREATE INDEX relation_tombstones_version ON relation_tombstones (user_id, stream, version)")
    for table, key, stream in (("friends", "friend_id", "friend"), ("blacklist", "target", "blacklist")):
        # Table, column and stream names are this module's constants, never input.
        conn.execute(f"ALTER TABLE {table} ADD COLUMN version {INT} NOT NULL DEFAULT 0")
        conn.execute(
            f"UPDATE {table} SET version = (SELECT COUNT(*) FROM {table} t"
            f" WHERE t.user_id = {table}.user_id AND t.{key} <= {table}.{key})"
        )
        conn.execute(
            "INSERT INTO relation_heads (user_id, stream, version)"
            f" SELECT user_id, '{stream}', MAX(version) FROM {table} GROUP BY user_id"
        )
        conn.execute(f"CREATE INDEX {table}_version ON {table} (user_id, version)")
    conn.execute(
        f"CREATE TABLE friend_requests (from_user {TEXT} NOT NULL, to_user {TEXT} NOT NULL,"
        f" reason {TEXT} NOT NULL, extra {TEXT} NOT NULL, status {INT} NOT NULL, is_read {INT} NOT NULL,"
        f" created_at {INT} NOT NULL, updated_at {INT} NOT NULL,"
        f" from_version {INT} NOT NULL, to_version {INT} NOT NULL, PRIMARY KEY (from_user, to_user))"
    )
    conn.execute("CREATE INDEX friend_requests_from ON friend_requests (from_user, from_version)")
    conn.execute("CREATE INDEX friend_requests_to ON friend_requests (to_user, to_version)")
    conn.execute(
        f"CREATE TABLE user_settings (user_id {TEXT} NOT NULL, scope {INT} NOT NULL, key {TEXT} NOT NULL,"
        f" value {TEXT} NOT NULL, updated_at {INT} NOT NULL, version {INT} NOT NULL,"
        " PRIMARY KEY (user_id, scope, key))"
    )
    conn.execute("CREATE INDEX user_settings_version ON user_settings (user_id, version)")


def _v5_groups(conn: psycopg.Connection[Any]) -> None:
    """Hosted groups and their members, removed members kept as tombstones (storage.schema explains)."""
    conn.execute(
        f"CREATE TABLE groups (group_id {TEXT} PRIMARY KEY, name {TEXT} NOT NULL DEFAULT '',"
        f" portrait {TEXT} NOT NULL DEFAULT '', owner {TEXT} NOT NULL, extra {TEXT} NOT NULL DEFAULT '',"
        f" type {INT} NOT NULL DEFAULT 0, join_type {INT} NOT NULL DEFAULT 0, mute {INT} NOT NULL DEFAULT 0,"
        f" dismissed {INT} NOT NULL DEFAULT 0, info_version {INT} NOT NULL, member_version {INT} NOT NULL,"
        f" member_count {INT} NOT NULL, created_at {INT} NOT NULL, updated_at {INT} NOT NULL)"
    )
    conn.execute(
        f"CREATE TABLE group_members (group_id {TEXT} NOT NULL, user_id {TEXT} NOT NULL, type {INT} NOT NULL,"
        f" alias {TEXT} NOT NULL DEFAULT '', extra {TEXT} NOT NULL DEFAULT '', join_time {INT} NOT NULL,"
        f" version {INT} NOT NULL, updated_at {INT} NOT NULL, PRIMARY KEY (group_id, user_id))"
    )
    conn.execute("CREATE INDEX group_members_by_user ON group_members (user_id, group_id)")
    conn.execute("CREATE INDEX group_members_by_version ON group_members (group_id, version, user_id)")


def _v6_chatrooms(conn: psycopg.Connection[Any]) -> None:
    """Chatrooms the admin API created (members and recent messages live in memory only)."""
    conn.execute(
        f"CREATE TABLE chatrooms (chatroom_id {TEXT} PRIMARY KEY, title {TEXT} NOT NULL,"
        f" portrait {TEXT} NOT NULL, extra {TEXT} NOT NULL, state {INT} NOT NULL, created_at {INT} NOT NULL,"
        f" updated_at {INT} NOT NULL)"
    )


def _v7_channels(conn: psycopg.Connection[Any]) -> None:
    """Channels, their listeners (managers flagged) and, for private ones, the invited."""
    conn.execute(
        f"CREATE TABLE channels (channel_id {TEXT} PRIMARY KEY, name {TEXT} NOT NULL, portrait {TEXT} NOT NULL,"
        f" description {TEXT} NOT NULL, extra {TEXT} NOT NULL, owner {TEXT} NOT NULL, private {INT} NOT NULL,"
        f" callback {TEXT} NOT NULL, callback_only {INT} NOT NULL, info_version {INT} NOT NULL,"
        f" state {INT} NOT NULL, created_at {INT} NOT NULL, updated_at {INT} NOT NULL)"
    )
    conn.execute("CREATE INDEX channels_by_owner ON channels (owner, channel_id)")
    conn.execute(
        f"CREATE TABLE channel_listeners (channel_id {TEXT} NOT NULL, user_id {TEXT} NOT NULL,"
        f" manager {INT} NOT NULL, listened_at {INT} NOT NULL, PRIMARY KEY (channel_id, user_id))"
    )
    conn.execute("CREATE INDEX channel_listeners_by_user ON channel_listeners (user_id, channel_id)")
    conn.execute(
        f"CREATE TABLE channel_invites (channel_id {TEXT} NOT NULL, user_id {TEXT} NOT NULL,"
        f" invited_at {INT} NOT NULL, PRIMARY KEY (channel_id, user_id))"
    )


def _v8_push_tokens(conn: psycopg.Connection[Any]) -> None:
    """Device push tokens, one per session."""
    conn.execute(
        f"CREATE TABLE push_tokens (user_id {TEXT} NOT NULL, client_id {TEXT} NOT NULL,"
        f" push_type {INT} NOT NULL, token {TEXT} NOT NULL, updated_at {INT} NOT NULL,"
        " PRIMARY KEY (user_id, client_id))"
    )


def _v9_sealed_session_secrets(conn: psycopg.Connection[Any]) -> None:
    """The sessions whose secret an older version wrote in clear; the store seals them at open."""
    conn.execute(
        f"CREATE TABLE unsealed_sessions (user_id {TEXT} NOT NULL, client_id {TEXT} NOT NULL,"
        " PRIMARY KEY (user_id, client_id))"
    )
    conn.execute("INSERT INTO unsealed_sessions (user_id, client_id) SELECT user_id, client_id FROM sessions")


def _v10_tombstone_retention(conn: psycopg.Connection[Any]) -> None:
    """When each relation tombstone was made, the streams' purge horizons, and the two age indexes."""
    conn.execute(f"ALTER TABLE relation_tombstones ADD COLUMN deleted_at {INT} NOT NULL DEFAULT 0")
    # Tombstones older than this migration count from it, as on SQLite.
    conn.execute("UPDATE relation_tombstones SET deleted_at = (extract(epoch FROM clock_timestamp()) * 1000)::bigint")
    conn.execute("CREATE INDEX relation_tombstones_age ON relation_tombstones (deleted_at)")
    conn.execute(f"ALTER TABLE relation_heads ADD COLUMN horizon {INT} NOT NULL DEFAULT 0")
    conn.execute(f"ALTER TABLE groups ADD COLUMN member_horizon {INT} NOT NULL DEFAULT 0")
    conn.execute("CREATE INDEX group_members_removed ON group_members (updated_at) WHERE type = 4")


def _v11_robots(conn: psycopg.Connection[Any]) -> None:
    """Robots: ``users.type`` (1 for a robot) and a row per robot (owner, secret, callback, extra)."""
    conn.execute(f"ALTER TABLE users ADD COLUMN type {INT} NOT NULL DEFAULT 0")
    conn.execute(
        f"CREATE TABLE robots (robot_id {TEXT} PRIMARY KEY, owner {TEXT} NOT NULL, secret {TEXT} NOT NULL,"
        f" callback {TEXT} NOT NULL, robot_extra {TEXT} NOT NULL, created_at {INT} NOT NULL,"
        f" updated_at {INT} NOT NULL)"
    )
    conn.execute("CREATE INDEX robots_by_owner ON robots (owner, robot_id)")


def _v12_conversation_list(conn: psycopg.Connection[Any]) -> None:
    """Each user's conversations, newest listed message first (``storage.conversation_table``; SQLite's v12):
    ``messages.persist_flag`` set from each message's content first, then both tables filled from ``inbox``."""
    import msgpack

    from storage import conversation_table as table

    stale = []
    for message_id, content, flag in conn.execute("SELECT message_id, content, persist_flag FROM messages"):
        now = msgpack.unpackb(bytes(content)).get("persist_flag", table.DEFAULT_FLAG)
        if now != flag:
            stale.append((now, message_id))
    with conn.cursor() as cursor:
        cursor.executemany("UPDATE messages SET persist_flag = %s WHERE message_id = %s", stale)
    conn.execute(
        f"CREATE TABLE conversation_inbox (user_id {TEXT} NOT NULL, conv_type {INT} NOT NULL, conv_key {TEXT} NOT NULL,"
        f" conv_line {INT} NOT NULL, message_id {INT} NOT NULL,"
        " PRIMARY KEY (user_id, conv_type, conv_key, conv_line, message_id))"
    )
    conn.execute(
        f"CREATE TABLE conversations (user_id {TEXT} NOT NULL, conv_type {INT} NOT NULL, conv_key {TEXT} NOT NULL,"
        f" conv_line {INT} NOT NULL, last_id {INT} NOT NULL, PRIMARY KEY (user_id, conv_type, conv_key, conv_line))"
    )
    conn.execute("CREATE INDEX conversations_by_last ON conversations (user_id, last_id)")
    conn.execute("CREATE INDEX conversations_by_conversation ON conversations (conv_type, conv_key, conv_line, user_id)")
    # The fill of storage.conversation_table.rebuild, in PostgreSQL's spelling (ON CONFLICT DO NOTHING).
    conn.execute(
        "INSERT INTO conversation_inbox (user_id, conv_type, conv_key, conv_line, message_id)"
        " SELECT i.user_id, m.conv_type, m.conv_key, m.conv_line, m.message_id"
        f" FROM inbox i JOIN messages m ON m.message_id = i.message_id WHERE m.conv_type <> {table.PRIVATE}"
        " ON CONFLICT DO NOTHING"
    )
    conn.execute(
        "INSERT INTO conversation_index (conv_type, conv_key, conv_line, message_id)"
        " SELECT m.conv_type, m.conv_key, m.conv_line, m.message_id FROM messages m"
        " WHERE m.message_id IN (SELECT message_id FROM inbox) ON CONFLICT DO NOTHING"
    )
    not_deleted = table._NOT_DELETED.format(user="i.user_id", message="i.message_id")
    conn.execute(
        "INSERT INTO conversations (user_id, conv_type, conv_key, conv_line, last_id)"
        " SELECT i.user_id, m.conv_type, m.conv_key, m.conv_line,"
        f" MAX(CASE WHEN {table._LISTED} AND {not_deleted} THEN i.message_id ELSE 0 END)"
        " FROM inbox i JOIN messages m ON m.message_id = i.message_id"
        " GROUP BY i.user_id, m.conv_type, m.conv_key, m.conv_line"
    )


def _v13_message_search(conn: psycopg.Connection[Any]) -> None:
    """Message search's tables (SQLite's v13): the token log ``search_recent``, the inbox index search looks
    up, and ``message_search``. On SQLite that last one is an FTS5 table; here it is a plain table of the same
    columns (keyed by message id), filled with the same tokens (``storage.search``); v14 indexes it."""
    import msgpack

    from storage.search import index_row

    conn.execute(
        f"CREATE TABLE search_recent (message_id {INT} PRIMARY KEY, bi {TEXT} NOT NULL, uni {TEXT} NOT NULL,"
        f" words {TEXT} NOT NULL, content_type {INT} NOT NULL)"
    )
    conn.execute("CREATE INDEX inbox_by_message ON inbox (user_id, message_id)")
    conn.execute(
        f"CREATE TABLE message_search (message_id {INT} PRIMARY KEY, bi {TEXT} NOT NULL, uni {TEXT} NOT NULL,"
        f" words {TEXT} NOT NULL, content_type {INT} NOT NULL)"
    )
    rows = []
    for message_id, content in conn.execute("SELECT message_id, content FROM messages ORDER BY message_id"):
        row = index_row(message_id, msgpack.unpackb(bytes(content)))
        if row is not None:
            rows.append((row.message_id, row.doc.bi, row.doc.uni, row.doc.words, row.content_type))
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO message_search (message_id, bi, uni, words, content_type) VALUES (%s, %s, %s, %s, %s)", rows
        )


def _v14_search_index(conn: psycopg.Connection[Any]) -> None:
    """The GIN index that answers a search (``storage.search_pg``): over the tokens of each ``message_search``
    row as a ``tsvector``. Building it reads the rows already there, so a database at v13 comes out indexed;
    SQLite's v14 has nothing to do (its FTS5 table is its index)."""
    from storage.search_pg import V14_INDEX

    conn.execute(V14_INDEX)


def _v15_search_lexemes(conn: psycopg.Connection[Any]) -> None:
    """Search's vector stored (``message_search.lexemes``, filled in the same INSERT as the row), and the GIN
    index on it in place of v14's on the expression. PostgreSQL 15 costed v14's expression (~20 µs a row) as
    nearly free and walked the primary key filtering by it: seconds for a rare term on 200,000 messages
    (bench/RESULTS.md). A stored vector costs ~1 µs to test and has its own statistics (a target of
    ``STATISTICS_TARGET``), which the windowed query of ``storage.search_pg`` leans on. The rows already
    there get their vector from their token lists, so nothing needs reindexing. SQLite's v15 has nothing to do."""
    from storage.search_pg import CREATE_INDEX, LEXEMES, STATISTICS_TARGET

    conn.execute("ALTER TABLE message_search ADD COLUMN lexemes tsvector")
    conn.execute(f"UPDATE message_search SET lexemes = {LEXEMES}")
    conn.execute("ALTER TABLE message_search ALTER COLUMN lexemes SET NOT NULL")
    conn.execute(f"ALTER TABLE message_search ALTER COLUMN lexemes SET STATISTICS {int(STATISTICS_TARGET)}")
    conn.execute("DROP INDEX message_search_lexemes")
    conn.execute(CREATE_INDEX)


#: Every migration ever released, oldest first, named as in ``storage.schema.MIGRATIONS``. Append only.
MIGRATIONS: Final[tuple[Migration, ...]] = (
    _v1_users_and_sessions,
    _v2_messages,
    _v3_merged_indexes,
    _v4_relations,
    _v5_groups,
    _v6_chatrooms,
    _v7_channels,
    _v8_push_tokens,
    _v9_sealed_session_secrets,
    _v10_tombstone_retention,
    _v11_robots,
    _v12_conversation_list,
    _v13_message_search,
    _v14_search_index,
    _v15_search_lexemes,
)

#: The version of a fully migrated database.
SCHEMA_VERSION: Final = len(MIGRATIONS)


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The database's schema version: 0 for a database Ember never migrated."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (VERSION_TABLE,)).fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute(f"SELECT version FROM {VERSION_TABLE}").fetchone()
    return 0 if row is None else int(row[0])


def migrate(conn: psycopg.Connection[Any], *, label: str = "the PostgreSQL database") -> int:
    """Bring the database up to ``SCHEMA_VERSION``, in one transaction; a no-op when it is there.

    Args:
        conn: A connection outside any transaction (autocommit or not).
        label: How errors name the database (the masked URL, say).

    Returns:
        The version the database had before (0 for an empty database).

    Raises:
        StorageError: The database's schema is newer than this code's (running old code on it could
            corrupt it), or the database is not UTF8.
    """
    from psycopg import pq  # only here: importing this module needs no driver

    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise StorageError("migrate needs a connection outside any transaction")
    encoding = conn.execute("SHOW server_encoding").fetchone()
    if encoding is None or encoding[0] != "UTF8":
        found = None if encoding is None else encoding[0]
        raise StorageError(f"{label} has encoding {found}: Ember needs a UTF8 database (CREATE DATABASE ... ENCODING 'UTF8')")
    with conn.transaction():
        # Held to the end of this transaction: a second gateway starting now waits here, then sees
        # the version this one wrote.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        before = schema_version(conn)
        if before > SCHEMA_VERSION:
            raise StorageError(
                f"{label} has schema version {before}, newer than this build's {SCHEMA_VERSION}:"
                " run the Ember that wrote it (or a newer one)"
            )
        if before < SCHEMA_VERSION:
            for migration in MIGRATIONS[before:]:
                migration(conn)
            _write_version(conn, SCHEMA_VERSION)
    return before


def _write_version(conn: psycopg.Connection[Any], version: int) -> None:
    """Make ``version`` the one-row table's only row (creating the table on the first migration)."""
    # ``one_row`` can only be TRUE and is the key: the table cannot hold a second row.
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (one_row BOOLEAN PRIMARY KEY DEFAULT TRUE"
        f" CHECK (one_row), version {INT} NOT NULL)"
    )
    conn.execute(
        f"INSERT INTO {VERSION_TABLE} (one_row, version) VALUES (TRUE, %s)"
        " ON CONFLICT (one_row) DO UPDATE SET version = EXCLUDED.version",
        (version,),
    )


def migrate_database(url: str) -> int:
    """Connect to the database ``url`` names, ``migrate`` it and disconnect: a store's first step.

    Returns:
        The version the database had before.

    Raises:
        StorageError: One line, the password masked: no connection (see ``connection.connect``), a
            schema newer than this build's, or a migration the server refused (say the role may not
            create tables in the schema).
    """
    import psycopg

    from storage.postgres.connection import connect, one_line
    from storage.postgres.url import mask_password

    label = f"PostgreSQL database {mask_password(url)}"
    with connect(url, autocommit=True) as conn:
        try:
            return migrate(conn, label=label)
        except psycopg.Error as exc:
            raise StorageError(f"{label}: migrating the schema failed: {one_line(exc, url)}") from None
