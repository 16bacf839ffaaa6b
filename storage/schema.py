"""The database schema, as an ordered list of migrations.

``PRAGMA user_version`` holds how many migrations a database has had. Opening a
database applies the missing ones, all in one transaction, and bumps the
version in that same transaction: a crash mid-way leaves the old schema intact.

To change the schema, write a function that takes a ``sqlite_utils.Database``
and append it to ``MIGRATIONS``::

    def _v2_messages(db: Database) -> None:
        db.table("messages").create({...}, pk="message_id")

Never edit, reorder or remove a migration that has been released: databases in
the field have already run it. sqlite-utils ``Table.create`` / ``transform``
nest inside our transaction (they use savepoints when one is open).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Final

import msgpack
from sqlite_utils import Database

from storage import conversation_table, search_fts5
from storage.errors import StorageError

Migration = Callable[[Database], None]

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


def _v1_users_and_sessions(db: Database) -> None:
    """Users (hosted user info and status) and sessions (one per user and device)."""
    users: dict[str, type] = {
        "user_id": str,
        "name": str,
        "display_name": str,
        "portrait": str,
        "gender": int,
        "mobile": str,
        "email": str,
        "address": str,
        "company": str,
        "social": str,
        "extra": str,  # JSON text or ''
        "status": int,  # protocol.codes.UserStatus
        "created_at": int,  # ms since the epoch
        "updated_at": int,
    }
    db.table("users").create(
        users,
        pk="user_id",
        not_null=set(users),
        defaults={
            **{column: "" for column in _USER_TEXT_COLUMNS},
            "gender": 0,
            "status": 0,  # protocol.codes.UserStatus.NORMAL
            "created_at": 0,
            "updated_at": 0,
        },
    )

    sessions = db.table("sessions")
    sessions.create(
        {
            "user_id": str,
            "client_id": str,
            "platform": int,
            "secret": bytes,  # 32 bytes (sealed since v9: 60); kept after deletion to tell -7 from -6
            "state": str,  # 'active' | 'deleted'
            "deleted_reason": str,  # NULL while active; see records.END_REASONS
            "created_at": int,
            "issued_at": int,
            "last_seen": int,
            # Not in SessionRecord: when the session was deleted, for operators
            # and for a future clean-up of old deleted rows.
            "deleted_at": int,
        },
        pk=("user_id", "client_id"),
        not_null={
            "user_id",
            "client_id",
            "platform",
            "secret",
            "state",
            "created_at",
            "issued_at",
            "last_seen",
        },
        defaults={"state": "active"},
    )
    # A new token deletes other users' sessions on the same client_id.
    sessions.create_index(["client_id"])


def _v2_messages(db: Database) -> None:
    """Messages, per-user inboxes (the sync log), deletions, idempotency ids, blacklists and friends.

    The write path is what shapes this: a send writes the message once, one
    narrow ``inbox`` row per recipient (the sync log: user, seq → message), and
    one entry in the message's conversation index. A commit costs mostly per
    page it writes and every inbox row lands on its owner's page, so inbox rows
    carry nothing else and have no secondary index (per-recipient conversation
    columns with their own index doubled the writer's CPU per message).

    History by conversation reads ``messages`` through ``messages_conversation``
    (since v3, the ``conversation_index`` table). ``conv_key`` is the
    conversation's one name for both sides: for a private chat, the two user
    ids sorted and joined by a newline, which no id contains.
    Delete-for-me is a row in ``deleted_messages``, which pulls and history skip;
    inbox rows are never removed, so a user's highest seq never goes back.
    """
    db.execute(
        "CREATE TABLE messages (message_id INTEGER PRIMARY KEY,"  # 64-bit, time-ordered (gateway.ids)
        " conv_type INTEGER NOT NULL, conv_target TEXT NOT NULL, conv_line INTEGER NOT NULL,"
        " conv_key TEXT NOT NULL, from_user TEXT NOT NULL,"
        " content BLOB NOT NULL,"  # the validated content map, MessagePack
        " server_time INTEGER NOT NULL,"
        " to_users TEXT,"  # JSON array, or NULL for everyone in the conversation
        " persist_flag INTEGER NOT NULL,"
        " only_for TEXT)"  # set when it reached only this user (a blacklist drop reaches only the sender)
    )
    db.execute("CREATE INDEX messages_conversation ON messages (conv_type, conv_key, conv_line, message_id)")
    db.execute(
        "CREATE TABLE inbox (user_id TEXT NOT NULL, seq INTEGER NOT NULL, message_id INTEGER NOT NULL,"
        " PRIMARY KEY (user_id, seq)) WITHOUT ROWID"
    )
    db.execute(
        "CREATE TABLE deleted_messages (user_id TEXT NOT NULL, message_id INTEGER NOT NULL,"
        " deleted_at INTEGER NOT NULL, PRIMARY KEY (user_id, message_id)) WITHOUT ROWID"
    )
    db.execute(
        "CREATE TABLE client_message_ids (from_user TEXT NOT NULL, client_msg_id TEXT NOT NULL,"
        " message_id INTEGER NOT NULL, server_time INTEGER NOT NULL, seq INTEGER NOT NULL,"
        " PRIMARY KEY (from_user, client_msg_id)) WITHOUT ROWID"
    )
    db.execute(
        "CREATE TABLE blacklist (user_id TEXT NOT NULL, target TEXT NOT NULL, created_at INTEGER NOT NULL,"
        " PRIMARY KEY (user_id, target)) WITHOUT ROWID"
    )
    # Friendship lands fully with the relations work; sending only asks "is B a friend of A?".
    db.execute(
        "CREATE TABLE friends (user_id TEXT NOT NULL, friend_id TEXT NOT NULL, alias TEXT NOT NULL DEFAULT '',"
        " extra TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
        " PRIMARY KEY (user_id, friend_id)) WITHOUT ROWID"
    )


def _v3_merged_indexes(db: Database) -> None:
    """Inbox rows and the conversation index are written many at a time, through a log.

    A send's inbox rows go to ``inbox_recent`` (a rowid table: appended rows
    share its last page) and reach ``inbox`` when the writer merges the log;
    the conversation index becomes a table the same merge fills, since an index
    on ``messages`` is written with every insert. ``storage.inboxes`` explains
    why (pages per commit) and how reads see both parts.
    """
    db.execute(
        "CREATE TABLE inbox_recent (user_id TEXT NOT NULL, seq INTEGER NOT NULL, message_id INTEGER NOT NULL)"
    )
    db.execute(
        "CREATE TABLE conversation_index (conv_type INTEGER NOT NULL, conv_key TEXT NOT NULL,"
        " conv_line INTEGER NOT NULL, message_id INTEGER NOT NULL,"
        " PRIMARY KEY (conv_type, conv_key, conv_line, message_id)) WITHOUT ROWID"
    )
    db.execute(
        "INSERT INTO conversation_index (conv_type, conv_key, conv_line, message_id)"
        " SELECT conv_type, conv_key, conv_line, message_id FROM messages ORDER BY 1, 2, 3, 4"
    )
    db.execute("DROP INDEX messages_conversation")


def _v4_relations(db: Database) -> None:
    """Friend requests, synced versions of friends and blacklists, user settings (``storage.relations``).

    Every user has a head per stream (``relation_heads``); each changed row takes the next version
    of its owner's stream, and a deletion leaves a tombstone with the version it took, so a device
    pulls "what changed since version v" in pages, deletions included. Rows written before this
    migration get versions 1..n per user, in key order.
    """
    db.execute(
        "CREATE TABLE relation_heads (user_id TEXT NOT NULL, stream TEXT NOT NULL, version INTEGER NOT NULL,"
        " PRIMARY KEY (user_id, stream)) WITHOUT ROWID"
    )
    db.execute(
        "CREATE TABLE relation_tombstones (user_id TEXT NOT NULL, stream TEXT NOT NULL, scope INTEGER NOT NULL,"
        " item TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (user_id, stream, scope, item)) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX relation_tombstones_version ON relation_tombstones (user_id, stream, version)")
    for table, key, stream in (("friends", "friend_id", "friend"), ("blacklist", "target", "blacklist")):
        db.execute(f"ALTER TABLE {table} ADD COLUMN version INTEGER NOT NULL DEFAULT 0")
        db.execute(
            f"UPDATE {table} SET version = (SELECT COUNT(*) FROM {table} t"
            f" WHERE t.user_id = {table}.user_id AND t.{key} <= {table}.{key})"
        )
        db.execute(
            "INSERT INTO relation_heads (user_id, stream, version)"
            f" SELECT user_id, '{stream}', MAX(version) FROM {table} GROUP BY user_id"
        )
        db.execute(f"CREATE INDEX {table}_version ON {table} (user_id, version)")
    db.execute(
        "CREATE TABLE friend_requests (from_user TEXT NOT NULL, to_user TEXT NOT NULL, reason TEXT NOT NULL,"
        " extra TEXT NOT NULL, status INTEGER NOT NULL,"  # 0 sent, 1 accepted, 2 rejected
        " is_read INTEGER NOT NULL,"  # read by to_user
        " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
        " from_version INTEGER NOT NULL, to_version INTEGER NOT NULL,"  # its version in each side's stream
        " PRIMARY KEY (from_user, to_user)) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX friend_requests_from ON friend_requests (from_user, from_version)")
    db.execute("CREATE INDEX friend_requests_to ON friend_requests (to_user, to_version)")
    db.execute(
        "CREATE TABLE user_settings (user_id TEXT NOT NULL, scope INTEGER NOT NULL, key TEXT NOT NULL,"
        " value TEXT NOT NULL, updated_at INTEGER NOT NULL, version INTEGER NOT NULL,"
        " PRIMARY KEY (user_id, scope, key)) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX user_settings_version ON user_settings (user_id, version)")


def _v5_groups(db: Database) -> None:
    """Hosted groups (SPEC §8): the group, and one row per member, removed members kept as tombstones.

    ``info_version`` counts changes of the group's own fields and ``member_version`` changes of its
    member list; a member row carries the ``member_version`` of its last change (``version``), so that
    a device holding version v fetches only the rows above it (tombstones included: type 4).
    ``group_members_by_user`` serves "my groups" and "groups in common".
    """
    db.execute(
        "CREATE TABLE groups (group_id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '',"
        " portrait TEXT NOT NULL DEFAULT '', owner TEXT NOT NULL, extra TEXT NOT NULL DEFAULT '',"
        " type INTEGER NOT NULL DEFAULT 0, join_type INTEGER NOT NULL DEFAULT 0, mute INTEGER NOT NULL DEFAULT 0,"
        " dismissed INTEGER NOT NULL DEFAULT 0,"
        " info_version INTEGER NOT NULL, member_version INTEGER NOT NULL, member_count INTEGER NOT NULL,"
        " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL) WITHOUT ROWID"
    )
    db.execute(
        "CREATE TABLE group_members (group_id TEXT NOT NULL, user_id TEXT NOT NULL, type INTEGER NOT NULL,"
        " alias TEXT NOT NULL DEFAULT '', extra TEXT NOT NULL DEFAULT '', join_time INTEGER NOT NULL,"
        " version INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
        " PRIMARY KEY (group_id, user_id)) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX group_members_by_user ON group_members (user_id, group_id)")
    db.execute("CREATE INDEX group_members_by_version ON group_members (group_id, version, user_id)")


def _v6_chatrooms(db: Database) -> None:
    """Chatrooms the admin API created: id, title, portrait, extra (JSON text or ''), state.

    Only the rooms themselves: who is in a room and its recent messages live in the
    gateway's memory (``gateway.domain.chatrooms``), never in the database.
    """
    db.execute(
        "CREATE TABLE chatrooms (chatroom_id TEXT PRIMARY KEY, title TEXT NOT NULL, portrait TEXT NOT NULL,"
        " extra TEXT NOT NULL, state INTEGER NOT NULL, created_at INTEGER NOT NULL,"
        " updated_at INTEGER NOT NULL) WITHOUT ROWID"
    )


def _v7_channels(db: Database) -> None:
    """Channels (type 3): the channel, its listeners (managers flagged) and, for private ones, the invited.

    ``info_version`` counts changes of the channel's own fields; a destroyed channel (state 1) keeps its
    row so that its id stays taken. ``channel_listeners_by_user`` serves "my listened channels",
    ``channels_by_owner`` "my channels".
    """
    db.execute(
        "CREATE TABLE channels (channel_id TEXT PRIMARY KEY, name TEXT NOT NULL, portrait TEXT NOT NULL,"
        " description TEXT NOT NULL, extra TEXT NOT NULL, owner TEXT NOT NULL, private INTEGER NOT NULL,"
        " callback TEXT NOT NULL, callback_only INTEGER NOT NULL, info_version INTEGER NOT NULL,"
        " state INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX channels_by_owner ON channels (owner, channel_id)")
    db.execute(
        "CREATE TABLE channel_listeners (channel_id TEXT NOT NULL, user_id TEXT NOT NULL,"
        " manager INTEGER NOT NULL, listened_at INTEGER NOT NULL,"
        " PRIMARY KEY (channel_id, user_id)) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX channel_listeners_by_user ON channel_listeners (user_id, channel_id)")
    db.execute(
        "CREATE TABLE channel_invites (channel_id TEXT NOT NULL, user_id TEXT NOT NULL,"
        " invited_at INTEGER NOT NULL, PRIMARY KEY (channel_id, user_id)) WITHOUT ROWID"
    )


def _v8_push_tokens(db: Database) -> None:
    """Device push tokens, one per session (``storage.push_tokens``); a table of their own, not columns
    of ``sessions``, so the session row (read at every CONNECT) stays as narrow as it was."""
    db.execute(
        "CREATE TABLE push_tokens (user_id TEXT NOT NULL, client_id TEXT NOT NULL,"
        " push_type INTEGER NOT NULL, token TEXT NOT NULL, updated_at INTEGER NOT NULL,"
        " PRIMARY KEY (user_id, client_id)) WITHOUT ROWID"
    )


def _v9_sealed_session_secrets(db: Database) -> None:
    """From v9 ``sessions.secret`` holds the secret sealed under the server's key (``storage.sealing``).

    A migration has no key, so this one only lists the rows an older version wrote in clear; the store
    seals them when it opens with its key (``storage.sessions.seal_unsealed``), in one transaction that
    also empties the list. A store never reads or writes a secret before that has run.
    """
    db.execute(
        "CREATE TABLE unsealed_sessions (user_id TEXT NOT NULL, client_id TEXT NOT NULL,"
        " PRIMARY KEY (user_id, client_id)) WITHOUT ROWID"
    )
    db.execute("INSERT INTO unsealed_sessions (user_id, client_id) SELECT user_id, client_id FROM sessions")


def _v10_tombstone_retention(db: Database) -> None:
    """Tombstones are purged after ``storage.tombstone_retention_seconds`` (``gateway.domain.tombstones``).

    A relation tombstone records when it was made (``deleted_at``; those made before this migration
    count from the migration, so every one is kept for a full retention after the upgrade); a member
    tombstone already has it (``updated_at`` of its type-4 row). Each stream keeps its *horizon*, the
    highest version of a tombstone purged from it (``relation_heads.horizon``,
    ``groups.member_horizon``): a device holding a version below it may have missed a deletion and is
    told to sync the stream again from 0. The two age indexes let a purge find the oldest tombstones
    without scanning the tables (the member one holds only tombstone rows).
    """
    db.execute("ALTER TABLE relation_tombstones ADD COLUMN deleted_at INTEGER NOT NULL DEFAULT 0")
    db.execute(
        "UPDATE relation_tombstones SET deleted_at = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
    )
    db.execute("CREATE INDEX relation_tombstones_age ON relation_tombstones (deleted_at)")
    db.execute("ALTER TABLE relation_heads ADD COLUMN horizon INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE groups ADD COLUMN member_horizon INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX group_members_removed ON group_members (updated_at) WHERE type = 4")


def _v11_robots(db: Database) -> None:
    """Robots (issue 22): a robot is a user (``users.type`` 1, so user info shows it) with a row here: its
    owner (a user), the secret that signs its robot API calls and its callbacks, a callback URL and
    ``robot_extra``. ``robots_by_owner`` serves robot/list."""
    db.execute("ALTER TABLE users ADD COLUMN type INTEGER NOT NULL DEFAULT 0")
    db.execute(
        "CREATE TABLE robots (robot_id TEXT PRIMARY KEY, owner TEXT NOT NULL, secret TEXT NOT NULL,"
        " callback TEXT NOT NULL, robot_extra TEXT NOT NULL, created_at INTEGER NOT NULL,"
        " updated_at INTEGER NOT NULL) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX robots_by_owner ON robots (owner, robot_id)")


def _v12_conversation_list(db: Database) -> None:
    """Each user's conversations, newest listed message first, so a list page costs O(page) (issue 20 point 8):
    ``conversation_inbox`` (merged inbox rows by conversation) and ``conversations`` (each one's newest listed
    message), filled here from the merged inboxes; ``storage.conversation_table`` keeps them.

    The table reads whether a message is listed from ``messages.persist_flag``; before v12 an update or a
    recall changed only the content, so the column is first set to each message's content flag (one decode
    per message, once)."""
    stale = []
    for message_id, content, flag in db.execute("SELECT message_id, content, persist_flag FROM messages"):
        now = msgpack.unpackb(content).get("persist_flag", conversation_table.DEFAULT_FLAG)
        if now != flag:
            stale.append((now, message_id))
    db.conn.executemany("UPDATE messages SET persist_flag = ? WHERE message_id = ?", stale)
    conversation_table.create(db.conn)


def _v13_message_search(db: Database) -> None:
    """Message search (issue 26): the FTS5 index ``message_search`` (one row per indexed message, the tokens
    ``storage.search`` makes), ``inbox_by_message`` (is this message in this user's inbox: search's one
    lookup per match), and every message already stored indexed. ``storage.search_fts5`` holds the SQL."""
    search_fts5.migrate(db.conn)


def _v14_search_index(db: Database) -> None:
    """Nothing on SQLite: PostgreSQL's v14 builds the GIN index its search needs, and both backends keep one
    list of versions (tests/test_postgres_schema.py compares them); the FTS5 table of v13 is SQLite's index."""


def _v15_search_lexemes(db: Database) -> None:
    """Nothing on SQLite: PostgreSQL's v15 stores its search vector as a column (``storage.search_pg``); the
    version is kept in step with PostgreSQL's list."""


#: Every migration ever released, oldest first. Append only.
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

#: The ``user_version`` of a fully migrated database.
SCHEMA_VERSION: Final = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    """The database's ``PRAGMA user_version``."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database up to ``SCHEMA_VERSION``; a no-op when it is already there.

    Runs on the writer thread, before any operation. ``conn`` must have
    ``isolation_level=None`` (we issue BEGIN/COMMIT ourselves).

    Args:
        conn: The writer's connection, outside any transaction.

    Returns:
        The version the database had before (0 for a new file).

    Raises:
        StorageError: The database was written by a newer Ember (its version is
            above ours); running old code on it could corrupt it.
    """
    # IMMEDIATE takes the write lock before reading the version, so two
    # processes opening the same new file cannot both run the migrations.
    conn.execute("BEGIN IMMEDIATE")
    try:
        before = schema_version(conn)
        if before > SCHEMA_VERSION:
            raise StorageError(f"database schema version {before} is newer than this code's {SCHEMA_VERSION}")
        if before < SCHEMA_VERSION:
            # No plugins and no recursive_triggers pragma: a schema helper must
            # not change how the connection behaves at run time.
            db = Database(conn, recursive_triggers=False, execute_plugins=False)
            for migration in MIGRATIONS[before:]:
                migration(db)
            # user_version cannot be a bound parameter; SCHEMA_VERSION is our own int.
            conn.execute(f"PRAGMA user_version = {int(SCHEMA_VERSION)}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return before
