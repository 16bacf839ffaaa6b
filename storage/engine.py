"""The seam between Ember's queries and the database they run on (one ``Engine`` per kind of database).

Everything outside ``storage/`` sees a transaction only as a ``Tx``: an opaque handle that an operation
receives and passes on to the query functions (``storage.users``, ``storage.groups``, ...). Nobody
outside ``storage/`` names ``sqlite3``. What differs between databases lives behind ``Engine``:

- statement text is written once, with ``?`` placeholders, and converted once per engine
  (``Engine.convert_param_style``; SQLite keeps it as it is, PostgreSQL's driver wants ``%s``);
- an ``IN`` list of any length as ONE parameter (``in_list``), so that a statement's text does not
  depend on how many values it gets and stays in the statement cache (SQLite: ``json_each(?)`` over a
  JSON array, the plan the queries had before this module; PostgreSQL: ``= ANY(?)`` over an array);
- transactions: ``begin``, a ``savepoint`` that undoes only its own writes when what runs in it raises,
  ``transaction_failed`` (the database itself ended the transaction: every earlier write in it is
  lost), a checked ``commit`` (a failed one leaves no transaction open), and which errors are worth
  running the whole transaction again for (``is_retryable``: SQLite's busy lock, PostgreSQL's
  deadlock and serialization failures);
- capability flags (``single_writer``, ``inline_commit``) that say which of the SQLite writer's
  shortcuts are sound: an in-memory sequence allocator and running small batches on the trio thread
  are right only while one process owns the database.

A refusal of a rule (a group or channel operation the caller may not do) is ``Refused(code)``: raised
inside the writer operation, it rolls back that operation's writes (the writer does it) and reaches
the caller, who answers the code. So the gateway never issues SQL of its own.

Sequence numbers (each user's inbox seq) come from a ``SeqAllocator``: ``reserve`` takes the numbers
for several users in one call, sorted by user, which is the order a shared database must lock their
rows in (docs/ARCHITECTURE.md, "Storage engines"). Today's allocator is ``storage.inboxes.InboxState``,
in memory, right for SQLite's single writer.

The SQLite implementation is ``storage.sqlite.engine``; it registers itself when ``storage`` is imported.
Modelled on Matrix Synapse's ``synapse/storage/engines`` (``BaseDatabaseEngine``, ``convert_param_style``,
``make_in_list_sql_clause``), with Ember's plain query functions kept rather than store mixins.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Protocol, TypeAlias

#: The opaque transaction handle operations and query functions are given. For SQLite it is the
#: connection itself (its transaction is the connection's); a PostgreSQL engine will name its own
#: connection type here. Code outside ``storage/`` uses the name, never what stands behind it.
Tx: TypeAlias = sqlite3.Connection


class Refused(Exception):  # noqa: N818 - a rule's answer, not an error of the program
    """A rule refused an operation with a protocol error code (``protocol.codes.ErrorCode``).

    Raised inside a writer operation: the writer undoes that operation's writes (its savepoint, or
    its transaction when it ran alone) and raises this to the operation's caller, who answers
    ``code``. The writer does NOT reload its in-memory state for it (``on_rollback``), as it does
    for any other exception: a rule must refuse before the operation changes anything the writer
    keeps in memory (inbox heads, the inbox log), i.e. before it stores a message. Every group and
    channel operation checks first and writes after.
    """

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Engine(ABC):
    """What differs between the databases Ember runs on; one instance per kind, stateless.

    Attributes:
        name: For logs and errors ("sqlite", "postgres").
        single_writer: One process owns the database (a lock file says so): state kept in the
            writer's memory (inbox heads, the inbox log copy) is the truth's copy, never stale.
            A shared database (several gateways) has it False: sequences are reserved in the
            database (see ``SeqAllocator``).
        inline_commit: A small batch may commit on the trio thread (a commit that does not
            sync and never waits for a lock held elsewhere). SQLite under ``synchronous=NORMAL``.
        wal_checkpoints: The writer runs SQLite's WAL checkpointer (a thread of its own).
        reads_need_savepoint: A read that fails ends the whole transaction unless it ran in a
            savepoint (PostgreSQL: any error aborts the transaction; SQLite: a read's error does not).
        errors: What the driver raises (the writer catches these around BEGIN and COMMIT).
    """

    name: str
    single_writer: bool
    inline_commit: bool
    wal_checkpoints: bool = False
    reads_need_savepoint: bool = False
    #: ``pipeline`` sends statements together (then a caller sends all of a batch's before reading any).
    pipelined: bool = False
    errors: tuple[type[BaseException], ...] = ()

    @abstractmethod
    def convert_param_style(self, sql: str) -> str:
        """``sql`` written with ``?`` placeholders, in the form this engine's driver takes."""

    @abstractmethod
    def in_list(self, column: str, values: Collection[Any]) -> tuple[str, tuple[Any, ...]]:
        """A condition "``column`` is one of ``values``" as SQL text and its ONE parameter.

        The text is the same for any number of values (none included: then no row matches).
        """

    @abstractmethod
    def pairs(self, alias: str, values: Collection[tuple[Any, Any]]) -> tuple[str, str, str, tuple[Any, ...]]:
        """A table of two-column rows to join on, for "which of these (a, b) pairs are rows of t".

        Returns (the FROM item, named ``alias``; the expression of its first column; of its second;
        the parameters), the text the same for any number of pairs.
        """

    @abstractmethod
    def json_array_contains(self, column: str) -> str:
        """A condition "the JSON array of strings in text ``column`` holds the ONE parameter ``?``"."""

    def insert_many(self, tx: Tx, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run the plain ``INSERT INTO t (...) VALUES (?, ...)`` ``sql`` for every row: the hot path's bulk write.

        ``executemany`` here; an engine may load many rows another way (PostgreSQL: COPY).
        """
        tx.executemany(sql, rows)

    def pipeline(self, tx: Tx) -> AbstractContextManager[None]:
        """Statements inside the block may go to the database together, their results (and errors) due
        at the block's end or when a result is first read; SQLite runs each at once (nothing to wait on).

        For statements whose results are not needed before the next is sent: a PostgreSQL batch's
        reads and writes then cost a round trip each, not one per statement.
        """
        return nullcontext()

    def is_transient(self, exc: BaseException | None) -> bool:
        """The database's state failed the operation, not the operation itself: nothing was
        written and the same request may well succeed in a moment (answered 250).

        The connection was lost, the server is restarting, a deadlock or serialization failure.
        SQLite has none of these (its disk-full and busy cases are the writer's own, unchanged).
        """
        return False

    def is_broken(self, tx: Tx) -> bool:
        """The connection is gone: the writer opens a new one (with backoff) before its next batch."""
        return False

    def begin_read(self, tx: Tx) -> None:
        """Begin a read transaction: every statement until ``end_read`` sees one snapshot."""
        tx.execute("BEGIN")

    def end_read(self, tx: Tx) -> None:
        """End the read transaction (nothing to undo: a rollback only ends it)."""
        tx.execute("ROLLBACK")

    @abstractmethod
    def begin(self, tx: Tx) -> None:
        """Begin a write transaction (taking the write lock at once where the engine has one)."""

    @abstractmethod
    def savepoint(self, tx: Tx, name: str) -> AbstractContextManager[None]:
        """Writes inside the block are undone if it raises (the exception goes on); nestable by name."""

    @abstractmethod
    def transaction_failed(self, tx: Tx) -> bool:
        """The database ended the open transaction itself (disk full, I/O error): its writes are gone."""

    @abstractmethod
    def commit(self, tx: Tx) -> None:
        """Commit; if that fails, roll back (no transaction is left open) and raise the error."""

    @abstractmethod
    def rollback(self, tx: Tx) -> None:
        """Roll the open transaction back, if one is open."""

    @abstractmethod
    def is_retryable(self, exc: BaseException) -> bool:
        """Running the same transaction again, as it is, may well succeed (a lock, a deadlock)."""

    @abstractmethod
    def is_disk_full(self, exc: BaseException | None) -> bool:
        """The database could not write for want of space."""


class SeqAllocator(Protocol):
    """Hands out each user's inbox sequence numbers, inside the writer's transaction.

    ``reserve`` takes several users' numbers in one call and goes through the users sorted: on a
    shared database each user's head is a row locked for the transaction, and two transactions
    that lock the same rows in the same order cannot deadlock each other.
    """

    def current(self, tx: Tx, user_id: str) -> int:
        """The user's highest seq given out (0 for an empty inbox)."""
        ...

    def reserve(self, tx: Tx, counts: Mapping[str, int]) -> dict[str, int]:
        """Take ``counts[user]`` consecutive seqs for each user; return each one's first, sorted by user."""
        ...


_ENGINES: dict[type, Engine] = {}


def register(tx_type: type, engine: Engine) -> None:
    """Make ``engine`` the one for transactions of ``tx_type`` (each backend does this at import)."""
    _ENGINES[tx_type] = engine


def engine_of(tx: Tx) -> Engine:
    """The engine a transaction handle belongs to."""
    try:
        return _ENGINES[type(tx)]
    except KeyError:
        raise TypeError(f"no storage engine for {type(tx).__name__}") from None


def in_list(tx: Tx, column: str, values: Collection[Any]) -> tuple[str, tuple[Any, ...]]:
    """``engine_of(tx).in_list(column, values)``: for a query function, which has only its ``tx``."""
    return engine_of(tx).in_list(column, values)


@contextmanager
def savepoint(tx: Tx, name: str) -> Iterator[None]:
    """Writes inside the block are undone if it raises; the exception goes on (``Engine.savepoint``)."""
    with engine_of(tx).savepoint(tx, name):
        yield


def pairs(tx: Tx, alias: str, values: Collection[tuple[Any, Any]]) -> tuple[str, str, str, tuple[Any, ...]]:
    """``engine_of(tx).pairs(alias, values)``."""
    return engine_of(tx).pairs(alias, values)


def json_array_contains(tx: Tx, column: str) -> str:
    """``engine_of(tx).json_array_contains(column)``."""
    return engine_of(tx).json_array_contains(column)


def insert_many(tx: Tx, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """``engine_of(tx).insert_many(tx, sql, rows)``."""
    engine_of(tx).insert_many(tx, sql, rows)


def pipeline(tx: Tx) -> AbstractContextManager[None]:
    """``engine_of(tx).pipeline(tx)``: statements inside may go out together (``Engine.pipeline``)."""
    return engine_of(tx).pipeline(tx)


def is_transient(exc: BaseException | None) -> bool:
    """Did the database's state (not the operation) fail it? Asks every engine known (``Engine.is_transient``)."""
    return exc is not None and any(engine.is_transient(exc) for engine in _ENGINES.values())


def is_retryable(exc: BaseException) -> bool:
    """Would running the same transaction again, as it is, likely succeed? Asks every engine known."""
    return any(engine.is_retryable(exc) for engine in _ENGINES.values())
