"""``Store``: the async face of the storage layer, and ``open_store`` to get one.

A write is one operation on the writer (see ``storage.writer``): it runs in
the writer thread's next group-commit transaction and returns once that
transaction has committed. A read runs on a reader connection
(``storage.readers``) and sees what has committed, without waiting behind
queued writes; the few reads that must see queued writes too say so and go
through the writer. Arguments are checked here, on the trio side, so a bad
call fails at once instead of costing a trip through the queue.
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

import trio

from protocol.codes import UserStatus
from storage import chatrooms, messages, relations, robots, sends, sessions, users
from storage.inboxes import InboxState
from storage.messages import (
    Conversation,
    Outgoing,
    PullResult,
    SendResult,
    StoredMessage,
)
from storage.readers import DEFAULT_READERS, Readers
from storage.records import (
    END_REASONS,
    SECRET_BYTES,
    USER_INFO_FIELDS,
    ChatroomRecord,
    IssueResult,
    SessionRecord,
    UserRecord,
)
from storage.schema import migrate
from storage.sealing import ROBOT_SEAL_INFO, SecretSeal
from storage.search import SearchQuery
from storage.sends import SendPolicy
from storage.sqlite.guard import DatabaseLock, check_sqlite_version, tighten_database_files
from storage.writer import DEFAULT_MAX_QUEUED, Callback, StorageError, Writer

T = TypeVar("T")

#: Messages re-indexed per writer operation by ``Store.rebuild_search``: a few ms of the writer each.
REBUILD_STEP = 500

log = logging.getLogger("ember.storage")


class Store:
    """Users and sessions over one SQLite database. Build it with ``open_store``.

    Ids (user_id, client_id) are stored as given; checking them against SPEC §1
    is the protocol layer's job. Times are milliseconds since the epoch, passed
    in by the caller so that tests can drive an injected clock.

    Attributes:
        path: The database file.
        writer: The group-commit writer (``writer.commits`` and ``writer.queued``
            are there for tests and metrics).
    """

    def __init__(
        self,
        writer: Writer,
        inboxes: InboxState,
        readers: Readers,
        seal: SecretSeal | None = None,
        robot_seal: SecretSeal | None = None,
    ) -> None:
        self.writer = writer
        self.readers = readers
        self.path: Path = writer.path
        self._inboxes = inboxes  # used only inside operations, i.e. on the writer thread
        self._seal = seal
        #: Seals robots' secrets at rest (``storage.robots`` takes it); None without a server key.
        self.robot_seal = robot_seal

    def _secrets(self) -> SecretSeal:
        if self._seal is None:
            raise StorageError("this store was opened without server_key: it cannot read or write session secrets")
        return self._seal

    async def aclose(self) -> None:
        """Commit what is queued and close the database (``open_store`` does this for you)."""
        await self.writer.aclose()
        await self.readers.aclose()

    async def run(self, fn: Callable[..., T], *args: Any, read: bool = False) -> T:
        """Run ``fn(conn, *args)`` in the writer's batch transaction: for services' own queries.

        See ``Writer.submit`` for the rules (no transaction control, return
        values not cursors, ``read=True`` only for pure reads) and for what
        cancellation does.
        """
        return await self.writer.submit(fn, *args, read=read)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run the pure read ``fn(conn, *args)`` where it does not wait behind writes.

        For reads that need no ordering with the writer's queue: they see every
        operation committed before the call, not those still queued. A read that
        must see what was queued before it (CONNECT's, in ``connect_read_nowait``)
        goes through the writer instead. ``fn`` may not write (the connection is
        query-only), and may not use writer-thread state such as ``InboxState``.
        """
        return await self.readers.run(fn, *args)

    # --------------------------------------------------------------------- users

    async def create_user(self, user: UserRecord) -> bool:
        """Insert ``user`` as given (timestamps included); False if the id exists (nothing changed)."""
        _check_user(user)
        return await self.writer.submit(users.create_user, user)

    async def update_user(self, user_id: str, now_ms: int, **fields: Any) -> bool:
        """Set some info fields (not status) and ``updated_at``; False if there is no such user.

        Raises:
            ValueError: A field name that is not a user info field.
            TypeError: A value of the wrong type (gender is an int, the rest str).
        """
        for name, value in fields.items():
            _check_info_field(name, value)
        return await self.writer.submit(users.update_user, user_id, now_ms, fields)

    async def get_user(self, user_id: str) -> UserRecord | None:
        """The user, or None."""
        return await self.read(users.get_user, user_id)

    async def get_users(self, user_ids: Sequence[str]) -> list[UserRecord]:
        """The users found among ``user_ids``, in the order asked."""
        return await self.read(users.get_users, list(user_ids))

    async def set_user_status(self, user_id: str, status: int, now_ms: int) -> list[tuple[str, str]] | None:
        """Set a user's status; forbidding (2) also ends their active sessions, atomically.

        Returns:
            None if there is no such user. Otherwise the (user_id, client_id) of
            the sessions ended with reason ``forbidden`` (always empty unless
            ``status`` is FORBIDDEN).

        Raises:
            ValueError: ``status`` is not a ``UserStatus``.
        """
        if status not in UserStatus._value2member_map_:
            raise ValueError(f"unknown user status {status!r}")
        return await self.writer.submit(users.set_user_status, user_id, int(status), now_ms)

    # ------------------------------------------------------------------ sessions

    async def issue_session(
        self,
        user_id: str,
        client_id: str,
        platform: int,
        secret: bytes,
        now_ms: int,
        *,
        kick_platforms: Collection[int] | None,
    ) -> IssueResult:
        """Make (user_id, client_id) active with a new secret and end what it displaces, in one transaction.

        Ends every other user's active session on the same client_id (reason
        ``replaced``) and, unless ``kick_platforms`` is None, this user's other
        active sessions whose platform is in it (reason ``kicked``; pass
        ``protocol.codes.platform_class(platform)`` for the one-device rule).

        Raises:
            ValueError: ``secret`` is not 32 bytes.
        """
        if not isinstance(secret, bytes) or len(secret) != SECRET_BYTES:
            raise ValueError(f"a session secret is {SECRET_BYTES} bytes")
        kick = None if kick_platforms is None else frozenset(int(p) for p in kick_platforms)
        return await self.writer.submit(
            sessions.issue_session, self._secrets(), user_id, client_id, int(platform), secret, now_ms, kick
        )

    async def get_session(self, user_id: str, client_id: str) -> SessionRecord | None:
        """The session in any state, or None."""
        return await self.read(sessions.get_session, self._secrets(), user_id, client_id)

    def connect_read_nowait(self, user_id: str, client_id: str, callback: Callback) -> None:
        """Read what a CONNECT needs; ``callback((session, user_status, inbox_head), error)`` reports it.

        Session in any state or None; user status None for no such user; inbox head 0 without a session.
        The callback runs on the trio thread in queue order, as a send's does: a send queued before this
        read is counted in the head, and one queued after it is reported after this callback.
        """
        self.writer.submit_nowait(
            sessions.connect_read,
            self._secrets(),
            self._inboxes,
            user_id,
            client_id,
            callback=callback,
            read=True,
            inline=True,
        )

    async def list_sessions(self, user_id: str) -> list[SessionRecord]:
        """All of the user's sessions, any state, newest issued first."""
        return await self.read(sessions.list_sessions, self._secrets(), user_id)

    async def end_session(self, user_id: str, client_id: str, reason: str, now_ms: int) -> bool:
        """Active → deleted with ``reason``; False if there is no active session.

        Raises:
            ValueError: ``reason`` is not one of ``records.END_REASONS``.
        """
        if reason not in END_REASONS:
            raise ValueError(f"unknown session end reason {reason!r}")
        return await self.writer.submit(sessions.end_session, user_id, client_id, reason, now_ms)

    async def touch_sessions(self, items: Sequence[tuple[str, str]], now_ms: int) -> None:
        """Move ``last_seen`` to ``now_ms`` for many (user_id, client_id) at once (never backwards)."""
        if items:
            await self.writer.submit(sessions.touch_sessions, list(items), now_ms)

    # ------------------------------------------------------------------ messages

    def send_private_nowait(self, msg: Outgoing, policy: SendPolicy, callback: Callback) -> None:
        """Queue a send (private or group); ``callback(SendResult, error)`` runs on the trio thread after commit.

        Sends queued by one task are stored, and reported, in the order queued.
        """
        self.writer.submit_nowait(
            sends.send_message,
            self._inboxes,
            msg,
            policy,
            callback=callback,
            group=sends.send_message_group,
            # A private send writes a message row and at most two inbox rows: small enough for the
            # trio thread. Any other kind may write a row per member.
            inline=msg.conv.type == messages.PRIVATE,
        )

    send_nowait = send_private_nowait

    async def send_private(self, msg: Outgoing, policy: SendPolicy) -> SendResult:
        """A send (private or group), awaited."""
        return await self.writer.submit(sends.send_message, self._inboxes, msg, policy)

    async def run_with_inboxes(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, inboxes, *args)`` on the writer: for services' writes that append to inboxes."""
        return await self.writer.submit(fn, self._inboxes, *args)

    async def pull(
        self, user_id: str, after_seq: int, limit: int, min_time: int = 0, max_bytes: int = 2**62
    ) -> PullResult:
        """The inbox after ``after_seq`` (oldest first, at most ``limit``), and the head."""
        return await self.read(messages.pull, user_id, after_seq, limit, min_time, max_bytes)

    async def pull_rows(
        self, user_id: str, after_seq: int, limit: int, min_time: int = 0, max_bytes: int = 2**62
    ) -> messages.PulledRows:
        """``pull`` with each message as stored (content still packed): for the gateway's answer."""
        return await self.read(messages.pull_rows, user_id, after_seq, limit, min_time, max_bytes)

    async def inbox_head(self, user_id: str) -> int:
        """The user's head as the writer sees it: sends queued before this call are counted."""
        return await self.writer.submit(messages.head, self._inboxes, user_id, read=True)

    async def last_message_id(self) -> int:
        """The highest message id stored (0 for none)."""
        return await self.writer.submit(messages.last_message_id, read=True)

    async def get_message(self, message_id: int) -> StoredMessage | None:
        return await self.read(messages.get_message, message_id)

    async def delete_message(self, user_id: str, message_id: int, now_ms: int) -> bool:
        """Delete-for-me: gone from this user's inbox for good; False if it was not there."""
        return await self.writer.submit(messages.delete_for_user, user_id, message_id, now_ms)

    async def delete_message_for_everyone(self, message_id: int) -> list[str] | None:
        """Delete the message from every inbox and the message itself; the users it left, or None if unknown."""
        return await self.writer.submit(messages.delete_for_everyone, message_id)

    async def recall_message(
        self,
        operator: str,
        message_id: int,
        window_ms: int,
        notice: Outgoing,
        group_recall: messages.GroupRecallCheck | None = None,
    ) -> tuple[SendResult, Outgoing | None]:
        """``messages.recall``: the result, and the notice as stored (None unless it succeeded)."""
        return await self.writer.submit(
            messages.recall, self._inboxes, operator, message_id, window_ms, notice, group_recall
        )

    async def update_message(
        self,
        operator: str | None,
        message_id: int,
        content: dict[str, Any],
        notice: Outgoing | None,
        may_update: Callable[[StoredMessage], bool] | None = None,
    ) -> SendResult:
        return await self.writer.submit(
            messages.update, self._inboxes, operator, message_id, content, notice, may_update
        )

    async def group_history(
        self, user_id: str, conv: Conversation, before_id: int, count: int
    ) -> list[StoredMessage] | None:
        """A group's history as a current member sees it; None if not a member."""
        return await self.read(messages.group_history, user_id, conv, before_id, count)

    async def remote_history(
        self, user_id: str, conv: Conversation, before_id: int, count: int
    ) -> list[StoredMessage]:
        return await self.read(messages.remote_history, user_id, conv, before_id, count)

    # ----------------------------------------------------------------- relations
    # The relation service (gateway/domain/relations.py) runs most of storage.relations through ``run`` and
    # ``read``; these few are here for the admin API and tests.

    async def search_messages(self, query: SearchQuery) -> list[StoredMessage]:
        """Messages ``query`` finds, newest first; on a reader (it needs only what committed)."""
        return await self.readers.run(messages.search, query)

    async def rebuild_search(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Re-index every stored message from its content, ``REBUILD_STEP`` messages per writer operation (so
        sends go on between steps, and index their own messages as usual); returns how many are indexed.
        ``progress(last_message_id, indexed_so_far)`` is called after each step."""
        after, total = 0, 0
        while True:
            after, done = await self.writer.submit(messages.rebuild_search_range, after, REBUILD_STEP)
            if not after:
                return total
            total += done
            if progress is not None:
                progress(after, total)

    async def set_blacklist(self, user_id: str, target: str, blocked: bool, now_ms: int) -> relations.Result:
        return await self.writer.submit(relations.set_blacklist, user_id, target, blocked, now_ms)

    async def get_blacklist(self, user_id: str) -> list[str]:
        return await self.read(relations.get_blacklist, user_id)

    async def add_friends(self, user_id: str, friend_ids: Sequence[str], now_ms: int) -> relations.Result:
        """Make ``user_id`` friends with each of ``friend_ids`` (both sides, no request), in one transaction."""
        return await self.writer.submit(relations.add_friends, user_id, list(friend_ids), now_ms)

    async def add_friendship(self, user_id: str, friend_id: str, now_ms: int) -> relations.Result:
        return await self.add_friends(user_id, [friend_id], now_ms)

    async def relation_heads(self, user_id: str) -> dict[str, int]:
        return await self.read(relations.heads, user_id)

    # ----------------------------------------------------------------- chatrooms

    async def upsert_chatroom(self, room: ChatroomRecord) -> tuple[ChatroomRecord, bool]:
        """Create a room or update an existing one's fields; returns (stored record, created)."""
        return await self.writer.submit(chatrooms.upsert_chatroom, room)

    async def delete_chatroom(self, chatroom_id: str) -> bool:
        return await self.writer.submit(chatrooms.delete_chatroom, chatroom_id)

    async def get_chatroom(self, chatroom_id: str) -> ChatroomRecord | None:
        return await self.read(chatrooms.get_chatroom, chatroom_id)

    async def list_chatrooms(self) -> list[ChatroomRecord]:
        return await self.read(chatrooms.list_chatrooms)


@asynccontextmanager
async def open_store(
    path: str | os.PathLike[str],
    *,
    synchronous: str = "NORMAL",
    callback_context: Callable[[], AbstractContextManager[object]] = nullcontext,
    commit_delay_ms: float = 0.0,
    readers: int = DEFAULT_READERS,
    max_queued: int = DEFAULT_MAX_QUEUED,
    server_key: bytes | None = None,
    url: str = "",
    cluster: bool = False,
    before_commit: Callable[[Any, dict[str, int], list[object]], None] | None = None,
) -> AsyncIterator[Store]:
    """Open (creating and migrating if needed) the database at ``path``; close it on exit.

    Must be called inside trio. Leaving the block commits whatever is still
    queued before the connection closes.

    Args:
        path: The SQLite file.
        synchronous: ``"NORMAL"`` (default; a power loss may drop the last
            commits) or ``"FULL"`` (every commit survives a power loss).

    Raises:
        StorageError: The database cannot be opened or migrated, the SQLite library is older than
            ``storage.sqlite.guard.MIN_SQLITE_VERSION``, or another store (in this process or another) has it
            open: a store holds ``<path>.lock`` exclusively for its life (see ``storage.sqlite.guard``).
        ValueError: ``synchronous`` is neither value.

    ``callback_context``, ``commit_delay_ms`` and ``max_queued`` are passed to ``Writer``;
    ``readers`` is how many reader connections serve reads.

    ``server_key`` (``token.key``'s 32 bytes) is what session secrets are sealed under
    (``storage.sealing``); at open the store seals those an older version left in clear. A store opened
    without it serves everything but sessions: their methods raise ``StorageError``.

    The database files are the owner's alone (0600): see ``storage.sqlite.guard.tighten_database_files``.

    ``url`` (``storage.url``), when set, selects PostgreSQL instead and ``path`` is not used: the
    database is migrated (``storage.postgres.schema``); connection and schema errors are one-line
    ``StorageError``s with the password masked.

    ``cluster`` (PostgreSQL only): this gateway shares the database with other nodes (``server.cluster``):
    seqs are reserved in the database, the one-owner lock is taken in its shared form, and
    ``before_commit(tx, heads, results)`` runs in each batch's transaction before COMMIT
    (``storage.postgres.store``, ``storage.postgres.seqs``).
    """
    if url:
        async with _open_postgres(
            url, callback_context, commit_delay_ms, readers, max_queued, server_key, cluster, before_commit
        ) as store:
            yield store
        return
    if cluster:
        raise StorageError("a cluster needs a PostgreSQL storage.url: SQLite has one owner per database")
    check_sqlite_version()
    seal = None if server_key is None else SecretSeal(server_key)
    robot_seal = None if server_key is None else SecretSeal(server_key, info=ROBOT_SEAL_INFO)
    with DatabaseLock(path):  # the writer's in-memory state is right only for a database's one writer
        for tightened in tighten_database_files(path):
            log.warning("%s was readable by other users: its mode is now 0600", tightened)
        async with _open_writer(
            path, synchronous, callback_context, commit_delay_ms, readers, max_queued, seal, robot_seal
        ) as store:
            yield store


@asynccontextmanager
async def _open_writer(
    path: str | os.PathLike[str],
    synchronous: str,
    callback_context: Callable[[], AbstractContextManager[object]],
    commit_delay_ms: float,
    readers: int,
    max_queued: int,
    seal: SecretSeal | None,
    robot_seal: SecretSeal | None = None,
) -> AsyncIterator[Store]:
    inboxes = InboxState()
    writer = Writer(
        path,
        synchronous=synchronous,
        setup=functools.partial(_prepare, seal, robot_seal),
        callback_context=callback_context,
        commit_delay_ms=commit_delay_ms,
        on_rollback=inboxes.forget,  # what it holds may describe writes that were just undone
        # Inline operations (private sends, CONNECT reads) append at most two inbox rows each.
        inline_ok=lambda ops: not inboxes.may_merge(appends=ops, rows=2 * ops),
        max_queued=max_queued,
    )
    await writer.start()
    try:
        pool = Readers(path, count=readers)  # after the writer: it creates and migrates the file
        await pool.start()
        try:
            yield Store(writer, inboxes, pool, seal, robot_seal)
        finally:
            await pool.aclose()
    finally:
        await writer.aclose()


@asynccontextmanager
async def _open_postgres(
    url: str,
    callback_context: Callable[[], AbstractContextManager[object]],
    commit_delay_ms: float,
    readers: int,
    max_queued: int,
    server_key: bytes | None,
    cluster: bool = False,
    before_commit: Callable[[Any, dict[str, int], list[object]], None] | None = None,
) -> AsyncIterator[Store]:
    """PostgreSQL: migrate (on a thread: libpq blocks), then the same store on psycopg connections.

    ``storage.postgres.store``: the writer (its group commit, its lock), the readers, the dialect.
    psycopg is imported only here, so SQLite needs none of it.
    """
    from storage.postgres.schema import migrate_database
    from storage.postgres.store import open_postgres

    await trio.to_thread.run_sync(migrate_database, url)
    seal = None if server_key is None else SecretSeal(server_key)
    # Robots' secrets sealed as on SQLite; no clear ones to seal at open (no release wrote PostgreSQL in clear).
    robot_seal = None if server_key is None else SecretSeal(server_key, info=ROBOT_SEAL_INFO)
    async with open_postgres(
        url,
        callback_context=callback_context,
        commit_delay_ms=commit_delay_ms,
        readers=readers,
        max_queued=max_queued,
        seal=seal,
        shared=cluster,
        before_commit=before_commit,
    ) as (writer, inboxes, pool):
        yield Store(writer, inboxes, pool, seal, robot_seal)


def _prepare(seal: SecretSeal | None, robot_seal: SecretSeal | None, conn: sqlite3.Connection) -> None:
    """The writer's setup: migrate, then (with a key) seal what older versions left in clear."""
    migrate(conn)
    if seal is None:
        return
    if robot_seal is not None:
        sealed_robots = _seal_clear_robots(conn, robot_seal)
        if sealed_robots:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the clear values' old frames leave the WAL
            log.info("sealed %d robot secrets that an older version had stored in clear", sealed_robots)
    sealed = sessions.seal_unsealed(conn, seal)
    if sealed:
        log.info("sealed %d session secrets that an older version had stored in clear", sealed)
    if not sessions.opens_with(conn, seal):
        log.warning(
            "the stored session secrets were sealed under another token.key (the key changed, or the"
            " database came from another server): every existing session gets -6 SecretKeyMismatch"
            " until its device gets a new token"
        )


def _seal_clear_robots(conn: sqlite3.Connection, robot_seal: SecretSeal) -> int:
    """``robots.seal_clear`` in a transaction of its own, with the freed clear bytes zeroed."""
    if conn.execute("SELECT 1 FROM robots WHERE secret NOT LIKE 'sealed1:%' LIMIT 1").fetchone() is None:
        return 0
    conn.execute("PRAGMA secure_delete = ON")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            sealed = robots.seal_clear(conn, robot_seal)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        conn.execute("PRAGMA secure_delete = OFF")
    return sealed


def _check_user(user: UserRecord) -> None:
    if not isinstance(user, UserRecord):
        raise TypeError(f"expected a UserRecord, got {type(user).__name__}")
    for name in USER_INFO_FIELDS:
        _check_info_field(name, getattr(user, name))
    if user.status not in UserStatus._value2member_map_:
        raise ValueError(f"unknown user status {user.status!r}")


def _check_info_field(name: str, value: object) -> None:
    expected = USER_INFO_FIELDS.get(name)
    if expected is None:
        raise ValueError(f"{name!r} is not a user info field (one of {sorted(USER_INFO_FIELDS)})")
    # bool is an int subclass, but True as a gender is a bug, not a value.
    if not isinstance(value, expected) or isinstance(value, bool):
        raise TypeError(f"user field {name!r} must be {expected.__name__}, not {type(value).__name__}")
