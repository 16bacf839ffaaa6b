"""``PostgresEngine``: the ``storage.engine.Engine`` of a PostgreSQL database, and ``PgTx``, its handle.

The storage modules' statements are written once, with ``?`` placeholders, for both databases. Here
each text is converted once (``convert_param_style``, cached) to PostgreSQL's own ``$1, $2, ...``:
the connections use psycopg's ``RawCursor``, which passes ``$n`` to the server as written, so no ``%``
in a statement needs escaping and SQLite's numbered ``?1`` maps to ``$1`` as it is. ``PgTx`` gives
a psycopg connection the few methods of ``sqlite3.Connection`` the query functions use (``execute``,
``executemany``, ``in_transaction``, ``total_changes``), so a query function runs on either.

What differs, and where it is handled (docs/ARCHITECTURE.md, "Storage engines"):

- ``IN`` lists: ``= ANY(?)`` over an array (SQLite: ``json_each`` over a JSON array); pairs of keys:
  ``unnest(?::text[], ?::text[])``; "a JSON array holds this string": ``jsonb @>``.
- Booleans: SQLite has none (``True`` is stored as 1), and the schema keeps flags as integers on both,
  so a Python ``bool`` parameter is sent as an integer here too (``_BoolAsInt``).
- Transactions: an error aborts the whole transaction until a ROLLBACK (or a ROLLBACK TO a savepoint
  taken before it); so reads on the writer get a savepoint as writes do (``reads_need_savepoint``),
  and ``commit`` checks the status first: PostgreSQL answers the COMMIT of an aborted transaction with
  a ROLLBACK, not an error, and an ack sent for it would be a false one.
- Errors worth a retry (``is_retryable``: deadlock 40P01, serialization failure 40001) and those that
  are the database's state rather than the operation (``is_transient``: those two, the connection
  lost, the server shutting down or starting, disk full, lock timeouts): answered 250, never an ack.

psycopg is imported when this module is, which only a PostgreSQL ``storage.url`` does.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, cast

import psycopg
from psycopg import pq
from psycopg.types.numeric import Int8Dumper

from storage.engine import Engine, Tx, register

#: SQLSTATEs of a transaction that may well succeed when run again as it is.
RETRYABLE_SQLSTATES: Final = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected

#: SQLSTATE classes and codes that say the database, not the operation, failed: answered 250.
_TRANSIENT_CLASSES: Final = ("08",)  # connection exceptions
_TRANSIENT_SQLSTATES: Final = frozenset(
    {
        *RETRYABLE_SQLSTATES,
        "57P01",  # admin_shutdown (the server is stopping, or the backend was terminated)
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (starting up, or recovering)
        "55P03",  # lock_not_available (lock_timeout)
        "57014",  # query_canceled (statement_timeout)
        "53100",  # disk_full
        "53200",  # out_of_memory
        "53300",  # too_many_connections
        "25P03",  # idle_in_transaction_session_timeout
    }
)

_ACTIVE: Final = (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR, pq.TransactionStatus.ACTIVE)


#: From this many rows a bulk insert is a COPY rather than an ``executemany``. Measured on one batch's
#: message and inbox rows (bench_insert, PostgreSQL 15 on loopback, a busy 2-core machine): client CPU per
#: message at 10 rows 165-194 us executemany, 122-126 unnest arrays, 76-88 COPY; at 100 rows 82-87, 45-46,
#: 15; at 1 row all alike (the round trips).
COPY_MIN_ROWS: Final = 8

_PLAIN_INSERT: Final = re.compile(r"INSERT INTO (\w+) \(([\w, ]+)\) VALUES \((\?(?:, \?)*)\)")


@functools.lru_cache(maxsize=64)
def _copy_statement(sql: str) -> str | None:
    """The COPY that loads what the plain INSERT ``sql`` inserts, or None for any other statement."""
    found = _PLAIN_INSERT.fullmatch(sql)
    if found is None or found.group(2).count(",") != found.group(3).count(","):
        return None
    return f"COPY {found.group(1)} ({found.group(2)}) FROM STDIN"


def _plain_insert(sql: str) -> tuple[str, list[str]] | None:
    """(table, columns) of the plain INSERT ``sql``, or None for any other statement."""
    found = _PLAIN_INSERT.fullmatch(sql)
    if found is None or found.group(2).count(",") != found.group(3).count(","):
        return None
    return found.group(1), [column.strip() for column in found.group(2).split(",")]


#: Each table's column types, for the ``unnest`` casts: every table of the schema read at the first use
#: (one round trip per process; the schema is fixed while a gateway runs, migrations run before it serves).
_COLUMN_TYPES: dict[str, dict[str, str]] = {}

_READ_COLUMN_TYPES: Final = (
    "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
    " JOIN pg_class c ON c.oid = a.attrelid"
    " WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r' AND a.attnum > 0"
    " AND NOT a.attisdropped"
)


def _unnest_statement(pg: PgTx, sql: str) -> str | None:
    """The ``INSERT ... SELECT FROM unnest(arrays)`` that inserts what the plain INSERT ``sql`` inserts, one
    array parameter per column (None for any other statement)."""
    plain = _plain_insert(sql)
    if plain is None:
        return None
    table, columns = plain
    types = _COLUMN_TYPES.get(table)
    if types is None:  # the first use, or a table made since (tests): read them all again
        for name, column, kind in pg.raw.execute(_READ_COLUMN_TYPES).fetchall():
            _COLUMN_TYPES.setdefault(name, {})[column] = kind
        types = _COLUMN_TYPES.get(table)
        if types is None or not set(columns) <= types.keys():
            return None  # not a table of this schema (a temporary one): executemany
    arrays = ", ".join(f"${n}::{types[column]}[]" for n, column in enumerate(columns, 1))
    return f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"


class _BoolAsInt(Int8Dumper):
    """``True``/``False`` as 1/0: flags are integer columns on both databases, as SQLite stores them."""

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


@functools.lru_cache(maxsize=4096)
def convert_param_style(sql: str) -> str:
    """``sql`` with its ``?`` / ``?N`` placeholders as ``$n`` (outside quotes), converted once per text.

    A bare ``?`` takes the number after the largest used so far, as SQLite numbers them.
    """
    out: list[str] = []
    i, n, top = 0, len(sql), 0
    quote = ""
    while i < n:
        ch = sql[i]
        if quote:
            out.append(ch)
            if ch == quote:
                quote = ""
            i += 1
            continue
        if ch in "'\"":
            quote = ch
            out.append(ch)
            i += 1
            continue
        if ch != "?":
            out.append(ch)
            i += 1
            continue
        j = i + 1
        while j < n and sql[j].isdigit():
            j += 1
        number = int(sql[i + 1 : j]) if j > i + 1 else top + 1
        top = max(top, number)
        out.append(f"${number}")
        i = j
    return "".join(out)


class PgTx:
    """A psycopg connection (autocommit: transactions are the writer's own BEGIN/COMMIT) that the
    storage modules can use as they use a ``sqlite3.Connection``.

    The writer's BEGIN is deferred (``begin_pending``): it goes out in one pipeline with the
    transaction's first statement, so that a batch does not pay a round trip for BEGIN alone.
    """

    __slots__ = ("raw", "total_changes", "begin_pending", "pipelines")

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        #: Statements run (the writer asks whether a batch wrote; on PostgreSQL only for the disk-full state).
        self.total_changes = 0
        #: ``PostgresEngine.begin`` was called and BEGIN has not been sent yet: the next statement sends it.
        self.begin_pending = False
        #: How many ``PostgresEngine.pipeline`` blocks are open (COPY cannot run inside one).
        self.pipelines = 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        self.total_changes += 1
        if self.begin_pending:
            self.begin_pending = False
            # One round trip for both; an error of either is raised here, at the pipeline's sync.
            with self.raw.pipeline():
                self.raw.execute("BEGIN")
                return self.raw.execute(convert_param_style(sql), params or None)
        return self.raw.execute(convert_param_style(sql), params or None)

    def execute_unprepared(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        """``execute``, never as a prepared statement: the plan is made for these very values each time.

        psycopg prepares a statement run 5 times, and PostgreSQL may then keep a generic plan, one made without
        the values. For search (``storage.search_pg``) the right plan depends on them (a rare term: the GIN
        index; a common one in a narrow id window: the primary key), and a generic plan measured 10-50 times
        slower (bench/RESULTS.md, "PostgreSQL search in id windows")."""
        self.total_changes += 1
        return self.raw.execute(convert_param_style(sql), params or None, prepare=False)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> psycopg.Cursor[Any]:
        self.total_changes += 1
        cursor = self.raw.cursor()
        if self.begin_pending:
            self.begin_pending = False
            with self.raw.pipeline():
                self.raw.execute("BEGIN")
                cursor.executemany(convert_param_style(sql), rows)
            return cursor
        # psycopg runs executemany in pipeline mode: one round trip for all rows, not one per row.
        cursor.executemany(convert_param_style(sql), rows)
        return cursor

    def send_begin_in_pipeline(self) -> None:
        """Queue a deferred BEGIN in the open pipeline (no round trip of its own)."""
        if self.begin_pending:
            self.begin_pending = False
            self.raw.execute("BEGIN")

    def send_begin(self) -> None:
        """Send a deferred BEGIN now (before a statement that does not go through ``execute``)."""
        if self.begin_pending:
            self.begin_pending = False
            self.raw.execute("BEGIN")

    @property
    def in_transaction(self) -> bool:
        """A transaction is open (aborted included); False once the connection is broken."""
        if self.raw.broken or self.raw.closed:
            return False
        return self.begin_pending or self.raw.info.transaction_status in _ACTIVE

    @property
    def status(self) -> pq.TransactionStatus:
        return _status(cast(Tx, self))

    def close(self) -> None:
        self.raw.close()


def wrap(raw: psycopg.Connection[Any]) -> PgTx:
    """``raw`` set up the way every Ember connection is (``$n`` placeholders, bools as ints), as a ``PgTx``."""
    raw.cursor_factory = psycopg.RawCursor
    raw.adapters.register_dumper(bool, _BoolAsInt)
    return PgTx(raw)


def sqlstate(exc: BaseException | None) -> str | None:
    return getattr(exc, "sqlstate", None) if isinstance(exc, psycopg.Error) else None


class PostgresEngine(Engine):
    name = "postgres"
    # A single gateway holds the advisory lock exclusively (storage.postgres.store), so its in-memory heads
    # are the truth's copy as on SQLite. A cluster node's store (``server.cluster``) holds it shared and
    # reserves seqs in the database instead (storage.postgres.seqs.SharedInboxState), whatever this says.
    single_writer = True
    inline_commit = False  # a commit is a round trip to the server: never on the trio thread
    wal_checkpoints = False
    reads_need_savepoint = True
    pipelined = True
    errors = (psycopg.Error,)

    def convert_param_style(self, sql: str) -> str:
        return convert_param_style(sql)

    def in_list(self, column: str, values: Collection[Any]) -> tuple[str, tuple[Any, ...]]:
        # The array's type is the values': ids are text, conversation types and lines are integers
        # (a text[] against a BIGINT column is "operator does not exist: bigint = text"). An empty
        # list is sent untyped, and PostgreSQL gives it the column's type.
        items = list(values)
        if not items:
            return f"{column} = ANY(?)", (items,)
        numeric = all(isinstance(v, int) and not isinstance(v, bool) for v in items)
        return f"{column} = ANY(?::{'bigint' if numeric else 'text'}[])", (items,)

    def pairs(self, alias: str, values: Collection[tuple[Any, Any]]) -> tuple[str, str, str, tuple[Any, ...]]:
        firsts = [pair[0] for pair in values]
        seconds = [pair[1] for pair in values]
        return f"unnest(?::text[], ?::text[]) AS {alias}(a, b)", f"{alias}.a", f"{alias}.b", (firsts, seconds)

    def json_array_contains(self, column: str) -> str:
        return f"(({column})::jsonb @> jsonb_build_array(?::text))"

    def insert_many(self, tx: Tx, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        pg = cast(PgTx, tx)
        if len(rows) < COPY_MIN_ROWS:
            tx.executemany(sql, rows)
            return
        if pg.pipelines:
            # COPY cannot run in pipeline mode (and costs two round trips of its own): inside a pipeline
            # the rows go as ONE statement of column arrays, which rides the pipeline's round trip and
            # costs the client less than an executemany of a statement per row.
            unnest = _unnest_statement(pg, sql)
            if unnest is None:
                tx.executemany(sql, rows)
                return
            pg.total_changes += 1
            pg.send_begin_in_pipeline()
            pg.raw.execute(unnest, [list(column) for column in zip(*rows, strict=True)])
            return
        copy = _copy_statement(sql)
        if copy is None:
            tx.executemany(sql, rows)
            return
        pg.send_begin()
        pg.total_changes += 1
        with pg.raw.cursor().copy(copy) as loading:
            for row in rows:
                loading.write_row(row)

    def begin(self, tx: Tx) -> None:
        # Deferred: sent with the first statement (``PgTx.execute``), one round trip less per batch.
        pg = cast(PgTx, tx)
        if pg.raw.broken or pg.raw.closed:
            raise psycopg.OperationalError("the connection is closed")
        pg.begin_pending = True

    @contextmanager
    def pipeline(self, tx: Tx) -> Iterator[None]:
        pg = cast(PgTx, tx)
        pg.pipelines += 1
        try:
            with pg.raw.pipeline():
                if pg.begin_pending:  # the deferred BEGIN rides the pipeline too
                    pg.begin_pending = False
                    pg.raw.execute("BEGIN")
                yield
        finally:
            pg.pipelines -= 1

    def begin_read(self, tx: Tx) -> None:
        # READ COMMITTED (the default) takes a snapshot per statement; a read of several statements
        # (a pull: the inbox, the log, the head) must see one state, as on SQLite.
        tx.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def end_read(self, tx: Tx) -> None:
        self.rollback(tx)

    @contextmanager
    def savepoint(self, tx: Tx, name: str) -> Iterator[None]:
        if not name.isidentifier():  # formatted into the statement: names are ours, never input
            raise ValueError(f"not a savepoint name: {name!r}")
        tx.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            if tx.in_transaction:  # ROLLBACK TO also clears an aborted state
                tx.execute(f"ROLLBACK TO {name}")
                tx.execute(f"RELEASE {name}")
            raise
        tx.execute(f"RELEASE {name}")

    def transaction_failed(self, tx: Tx) -> bool:
        # Aborted (an error not undone by a ROLLBACK TO), gone, or the connection with it.
        return _status(tx) != pq.TransactionStatus.INTRANS

    def commit(self, tx: Tx) -> None:
        pg = cast(PgTx, tx)
        if pg.begin_pending:  # no statement ran since BEGIN: there is nothing to commit
            pg.begin_pending = False
            return
        status = _status(tx)
        if status == pq.TransactionStatus.INERROR:
            # COMMIT would be answered ROLLBACK, without an error: say so instead.
            self.rollback(tx)
            raise psycopg.errors.InFailedSqlTransaction("the transaction was aborted before its commit")
        try:
            tx.execute("COMMIT")
        except psycopg.Error:
            self.rollback(tx)
            raise
        if _status(tx) != pq.TransactionStatus.IDLE:  # never seen; an ack must not go out on a doubt
            self.rollback(tx)
            raise psycopg.OperationalError(f"the transaction is still {_status(tx).name} after COMMIT")

    def rollback(self, tx: Tx) -> None:
        pg = cast(PgTx, tx)
        if pg.begin_pending:  # BEGIN was never sent
            pg.begin_pending = False
            return
        if not tx.in_transaction:
            return
        try:
            tx.execute("ROLLBACK")
        except psycopg.Error:
            pass  # the connection broke: the server ends the transaction with it

    def is_retryable(self, exc: BaseException) -> bool:
        return sqlstate(exc) in RETRYABLE_SQLSTATES

    def is_disk_full(self, exc: BaseException | None) -> bool:
        return sqlstate(exc) == "53100"

    def is_transient(self, exc: BaseException | None) -> bool:
        if not isinstance(exc, psycopg.Error):
            return False
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and exc.sqlstate is None:
            return True  # the connection is gone (no server answer to take a code from)
        code = exc.sqlstate or ""
        return code in _TRANSIENT_SQLSTATES or code.startswith(_TRANSIENT_CLASSES)

    def is_broken(self, tx: Tx) -> bool:
        raw = tx.raw  # type: ignore[attr-defined]
        return bool(raw.broken or raw.closed)


def _status(tx: Tx) -> pq.TransactionStatus:
    raw = tx.raw  # type: ignore[attr-defined]
    if raw.broken or raw.closed:
        return pq.TransactionStatus.UNKNOWN
    if tx.begin_pending:  # type: ignore[attr-defined]
        return pq.TransactionStatus.INTRANS
    status: pq.TransactionStatus = raw.info.transaction_status
    return status


POSTGRES: Final = PostgresEngine()

register(PgTx, POSTGRES)
