"""The storage writer: one thread, one SQLite connection, many operations per transaction.

Why this shape: SQLite commits cost a disk sync each, so writing one row per
transaction caps out around 30k rows/s while 1000 rows per transaction reach
~170k (TRIO-NOTES). A trio -> thread round trip costs ~110 µs, so hopping to a
thread per operation would cost more than the SQL itself. Hence:

* The trio side collects operations in a list and hands the list to the
  thread once per pass of trio's scheduler (a small system task puts it on a
  ``queue.SimpleQueue``), so the thread wakes once for everything the
  connections read in that pass, not once per operation: under load, waking
  the thread and passing the interpreter lock back and forth per operation
  cost more than the SQL. An awaiting caller waits on a ``trio.Event``.
* The writer thread blocks on the queue, drains whatever else is already
  queued and runs it in ONE ``BEGIN IMMEDIATE ... COMMIT`` (up to
  ``max_batch`` operations per transaction). Each operation runs inside its
  own SAVEPOINT, so an operation that raises rolls back only its own changes
  (an operation alone in its transaction needs none: the ROLLBACK is its own).
* After the COMMIT the thread hands the whole batch back to trio with ONE
  ``run_sync_soon`` call, which sets each operation's event.

Small batches at light load run on the trio thread instead ("inline"). At
2,000 messages a second a pass of the scheduler brings a send or two, and the
round trip to the thread and back (queue, thread wake-up, interpreter lock
hand-offs, ``run_sync_soon`` and trio's wake-up socket) cost more CPU than the
SQL: bench pairs --rate 2000 spent ~230 µs of gateway CPU per message. So when
every operation of a pass was submitted with ``inline=True`` (the caller's
promise that it is small and bounded: a private send, a CONNECT read), there
are at most ``INLINE_MAX_OPS`` of them, nothing is on its way to or in the
thread, and the durability is ``NORMAL`` (a commit writes to the page cache and
does not sync; under ``FULL`` every commit would sync on the trio thread, so
``FULL`` never runs inline), the flusher runs the batch itself, in the same
transaction code, on the same connection, and calls the callbacks at once.
The thread and the loop never use the connection at once: the thread holds
``_conn_lock`` from taking a list until it is back at its queue, and the trio
side only try-locks it (and never while anything handed to the thread is still
unreported, so submission order is kept: at light load such a batch is held on the
trio side and runs inline once the thread's work is reported, rather than queued
behind it, which made the thread's next batch and drew the batches after it there
too). Anything that could take long goes
to the thread as before: bigger batches, a batch whose sends could merge the
inbox log (``inline_ok``), a WAL restart that is due, a write lock another
process holds (inline, ``BEGIN IMMEDIATE`` does not wait for it).

Acknowledged means committed: a caller gets its result only once the COMMIT
succeeded. If the COMMIT fails, every operation of the batch that had succeeded
gets a ``StorageError`` instead.

When things go wrong (docs/ARCHITECTURE.md, "Storage layout"): a submit is
refused at once past ``max_queued`` waiting operations (``WriterBacklogged``),
once closing, or once the thread has died (an exception outside any batch: it
is logged with its traceback and every unreported caller gets a
``StorageError``). A full disk (SQLITE_FULL, by error code) fails the batch's
callers with ``StorageFull`` and puts the writer in the ``disk_full`` state
until a write commits again with room on the file system; every batch retries,
and a probe does while nobody writes. Both are ``StorageRetryLater``: nothing
was written, and the gateway answers 250.

An operation is a plain function ``fn(conn, *args)`` run on the writer thread.
It must not manage transactions itself (no BEGIN/COMMIT/ROLLBACK; savepoints are
fine), must return materialized values (not cursors), and must not block on
anything but the database: while it runs, every other caller waits. A rule's
refusal is ``storage.engine.Refused(code)``: the writer undoes the operation's
writes as for any exception and raises it to the caller, but does not reload
the in-memory state (``on_rollback``) for it: a rule refuses before it writes.

Grouped operations: the hot path (a message send) may also name a ``group``
function, ``group(conn, [args, ...]) -> [result, ...]``, that does the work of
many consecutive operations of the same kind at once: a few ``executemany``
calls instead of a handful of statements each, and no savepoint per operation.
It must return exactly what calling ``fn`` on each ``args`` in turn would have.
If it raises, its writes are rolled back and each operation runs alone, so an
error still reaches only the operation it belongs to.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Final, TypeVar

import trio

from storage.commit_stats import CommitStats
from storage.engine import Engine, Refused, is_transient

# The errors live with the seam (every backend raises them); imported from here by older code.
from storage.errors import StorageError as StorageError
from storage.errors import StorageFull as StorageFull
from storage.errors import StorageRetryLater as StorageRetryLater
from storage.errors import WriterBacklogged as WriterBacklogged
from storage.sqlite.connect import SYNCHRONOUS_MODES, connect_checkpointer, connect_writer, passive_checkpoint
from storage.sqlite.engine import SQLITE

T = TypeVar("T")

log = logging.getLogger("ember.storage")

#: Largest number of operations committed in one transaction. Past ~1000 rows
#: per commit the throughput gain flattens, while the latency of the first op
#: in the batch keeps growing.
DEFAULT_MAX_BATCH: Final = 1000

#: A batch this big means heavy load: the next one waits ``commit_delay_ms`` to gather more.
LINGER_MIN_OPS: Final = 64

#: Most operations a batch run on the trio thread may hold (see the module docstring). A private
#: send costs ~30 µs there and a commit ~50-100 µs, so a batch pauses the loop ~1 ms at most.
INLINE_MAX_OPS: Final = 32

#: WAL checkpoints run on their own thread and connection this often, never inside a commit:
#: SQLite's automatic checkpoint runs in the COMMIT that crosses its threshold, and every ack
#: of that batch waited behind it (bench: p99 32 ms at 2000 msg/s, 8.8 ms with this). Once a
#: second rather than more often: a hot page (an inbox's last) is copied once per checkpoint.
CHECKPOINT_INTERVAL_SECONDS: Final = 1.0
#: When a checkpoint finds at least this many frames in the WAL, the writer thread finishes it
#: between two batches so that the WAL starts over (see ``_finish_checkpoint``).
WAL_RESTART_FRAMES: Final = 1000
#: How long a statement waits for a lock held by another connection (a reader
#: or an admin tool) before failing with "database is locked".
DEFAULT_BUSY_TIMEOUT_MS: Final = 5000

#: Most operations that may wait for the writer thread (submitted, not yet taken); past it a
#: submit raises ``WriterBacklogged``. ``storage.max_queued_operations`` sets it for the gateway.
DEFAULT_MAX_QUEUED: Final = 20_000

#: After the database connection is lost, the first try to open a new one waits this long; each
#: failed try doubles the wait, up to the most. (SQLite never loses its connection.)
RECONNECT_MIN_SECONDS: Final = 0.1
RECONNECT_MAX_SECONDS: Final = 5.0

#: While the disk is full the writer says so in the log at most this often (every failed batch would).
DISK_FULL_LOG_SECONDS: Final = 10.0
#: While the disk is full and nothing else writes, a probe write is tried this often, so that the
#: state (``/health``, the metric) clears soon after space is freed even on an idle gateway.
DISK_FULL_PROBE_SECONDS: Final = 1.0
#: The disk-full state ends with a write that commits while the file system has this much free.
#: Without a margin it flickered: a failed commit leaves the blocks it did get in the WAL file, so
#: the next, smaller write (a probe) fits in them and commits while the sends still fail.
DISK_FULL_CLEAR_BYTES: Final = 1 << 20

# Put on the queue by aclose(); always the last item ever queued, because the
# trio side refuses new operations once it is closing.
_STOP: Final = object()

# One fixed name is enough: operations run one after another, never nested.
_SAVEPOINT: Final = "ember_op"


#: Called on the trio thread once an operation's batch has committed (or failed):
#: ``callback(result, error)`` with exactly one of them meaningful.
Callback = Callable[[Any, "BaseException | None"], None]

#: Runs many operations of one kind together: ``group(conn, [args, ...]) -> [result, ...]``.
Group = Callable[[sqlite3.Connection, list[tuple[Any, ...]]], list[Any]]

#: Savepoint around a group; distinct from the per-operation one it falls back to.
_GROUP_SAVEPOINT: Final = "ember_group"


class _Op:
    """One submitted operation and, once its batch has committed, its outcome.

    Either ``done`` (an awaiting caller) or ``callback`` (``submit_nowait``) reports it.
    """

    __slots__ = ("fn", "args", "read", "group", "inline", "result", "error", "done", "callback")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        read: bool,
        callback: Callback | None = None,
        group: Group | None = None,
        inline: bool = False,
    ) -> None:
        self.fn = fn
        self.args = args
        self.read = read
        self.group = group
        self.inline = inline
        self.result: Any = None
        self.error: BaseException | None = None
        self.callback = callback
        self.done = trio.Event() if callback is None else None


class Writer:
    """Owns the database connection and its thread; runs operations in group commits.

    Use ``storage.open_store`` rather than this class directly; tests and later
    services may reach it as ``Store.writer`` for ``commits`` and ``queued``.

    Attributes:
        path: The database file.
        commits: Number of transactions committed so far (migrations excluded),
            counted before the batch's callers are woken. For tests and metrics.
        committed_ops: Operations those transactions committed (their average
            batch size is ``committed_ops / commits``).
        inline_batches: Batches run on the trio thread (see the module docstring).
        inline_ops: Operations in those batches.
        inline_longest_s: The longest such batch, wall time, callbacks excluded: the
            longest pause of the trio loop that running inline has caused (with any
            wait for the interpreter lock, or for a CPU on a busy machine).
        inline_longest_cpu_s: The most CPU time (the trio thread's) such a batch took.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        max_batch: int = DEFAULT_MAX_BATCH,
        setup: Callable[[sqlite3.Connection], object] | None = None,
        callback_context: Callable[[], AbstractContextManager[object]] = nullcontext,
        commit_delay_ms: float = 0.0,
        on_rollback: Callable[[], None] | None = None,
        inline_max_ops: int = INLINE_MAX_OPS,
        inline_ok: Callable[[int], bool] | None = None,
        max_queued: int = DEFAULT_MAX_QUEUED,
        engine: Engine = SQLITE,
        connect: Callable[[], Any] | None = None,
        before_commit: Callable[[Any, list[Any]], None] | None = None,
    ) -> None:
        """Prepare a writer; nothing touches the disk until ``start``.

        Args:
            path: The SQLite database file (created if missing).
            synchronous: ``"NORMAL"`` (survives a process crash; a power loss may
                lose the last commits) or ``"FULL"`` (survives a power loss too).
            busy_timeout_ms: Wait this long for locks held by other connections.
            max_batch: Most operations per transaction.
            setup: Run once on the writer thread right after connecting, e.g. the
                schema migrations (what it returns is ignored). An exception in it makes ``start`` fail.
            commit_delay_ms: Under heavy load (the previous batch had at least
                ``LINGER_MIN_OPS`` operations), how long a batch waits for more
                operations before it runs. Bigger batches cost less CPU per
                operation; 0 never waits. Light load never waits.
            callback_context: Entered on the trio thread around each batch's
                ``submit_nowait`` callbacks (the gateway corks its sockets there,
                so a batch's replies to one client leave in one write).
            on_rollback: Called on the writer thread whenever writes are undone
                (an operation or a group raised, or a transaction failed), so that
                state the operations keep in memory can be reloaded from the database.
                Under inline batches it runs on the trio thread, holding the connection.
            inline_max_ops: Most operations in a batch run on the trio thread; 0 never
                runs one there. ``FULL`` durability never does.
            inline_ok: Asked on the trio thread, holding the connection, before a batch
                of ``n`` inline operations would run there: False sends it to the thread
                (the store says False when the sends could merge the inbox log, a pause
                of milliseconds). None: always allowed.
            max_queued: Most operations waiting for the thread (submitted, not yet taken);
                a submit past it raises ``WriterBacklogged`` (nothing queued).
            engine: The database's ``storage.engine.Engine`` (SQLite unless ``connect`` opens another):
                its transaction control, which of its errors are transient, whether the WAL
                checkpointer runs and whether batches may run inline.
            connect: Opens the writer's connection (as the engine's handle) instead of a SQLite file at
                ``path`` (then only a label for logs and thread names); called again, with backoff,
                when the connection is lost (``_usable``).
            before_commit: Called on the writer thread with the connection and the results of the
                operations about to commit, inside their transaction, just before its COMMIT (a
                cluster's notices: they must exist if and only if the batch commits). If it raises,
                the batch is rolled back and its operations fail as for a failed commit.

        Raises:
            ValueError: ``synchronous``, ``max_batch`` or ``max_queued`` is out of range.
        """
        synchronous = synchronous.upper()
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {sorted(SYNCHRONOUS_MODES)}, not {synchronous!r}")
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if max_queued < 1:
            raise ValueError("max_queued must be at least 1")
        self.path = Path(path)
        self.commits = 0
        self.committed_ops = 0
        self.stats = CommitStats()  # batch sizes and commit latencies, for /metrics
        self.inline_batches = 0
        self.inline_ops = 0
        self.inline_longest_s = 0.0
        self.inline_longest_cpu_s = 0.0
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._max_batch = max_batch
        self._setup = setup
        self._callback_context = callback_context
        self._commit_delay = commit_delay_ms / 1000
        self._on_rollback = on_rollback or (lambda: None)
        self._before_commit = before_commit
        #: Why every submit is refused with ``StorageRetryLater`` (250), or "" (a cluster node that lost its
        #: lease: the other nodes count it dead, so it must not write as if it were alive).
        self.suspended = ""
        self._engine = engine
        self._open = connect
        self._inline_max = inline_max_ops if synchronous == "NORMAL" and engine.inline_commit else 0
        # The connection is lost (``engine.is_broken``): no new one is tried before ``_reconnect_at``
        # (time.monotonic()); the wait doubles with each failure, up to RECONNECT_MAX_SECONDS.
        self._reconnect_at = 0.0
        self._reconnect_wait = 0.0
        self._reconnect_log = _Every(DISK_FULL_LOG_SECONDS)
        self._inline_ok = inline_ok
        # Whoever uses the connection holds this: the thread from taking a list off the queue until
        # it waits on the queue again, the trio thread for an inline batch (it only try-locks).
        self._conn_lock = threading.Lock()
        self._conn: Any = None  # set by the thread once connected
        self._current: Any = None  # the thread's connection, for its close at the end
        self._conn_waits = True  # the connection's busy_timeout is busy_timeout_ms (inline: 0)
        # Operations handed to the thread whose batch has not been reported yet; trio thread only.
        # While any are, nothing runs inline: it would commit, and report, ahead of them.
        self._in_thread = 0
        # Trio side: operations not yet handed to the thread, and the flusher that hands them over.
        self._pending: list[_Op] = []
        # ``_pending`` is being held for an inline run after the thread's work is reported (``_hand_over``):
        # each submit then wakes the flusher, so that a list no longer fit to be held goes to the thread.
        self._holding = False
        self._gathering = 0  # depth of ``gathering()`` blocks: while inside, their end hands over, not the flusher
        self._gathering_block = _Gathering(self)
        self._flush_due = trio.Event()
        self._flusher = trio.CancelScope()
        # Lists of operations (or _STOP), one per hand-over.
        self._queue: queue.SimpleQueue[list[_Op] | object] = queue.SimpleQueue()
        self._submitted = 0  # operations (and the stop marker) submitted; counted on the trio thread
        self._taken = 0  # ... and taken by the writer thread; counted there
        self._token: trio.lowlevel.TrioToken | None = None
        self._thread: threading.Thread | None = None
        self._ready = trio.Event()
        self._stopped = trio.Event()
        self._startup_error: BaseException | None = None
        self._closing = False
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()
        self._wal_restart_wanted = False  # set by the checkpointer, acted on by the writer thread
        # A submit is refused once ``queued`` reaches this: ``max_queued``, or -1 once the writer is closing
        # or dead, so that the hot path pays one comparison for all three (``_refuse`` tells them apart).
        self._room = max_queued
        self._max_queued = max_queued
        self._failure: BaseException | None = None  # what stopped the writer thread, if it died
        # The ops the thread has taken and not reported yet (``_taken_ops[_reported:]``), so that if the
        # thread dies their callers still hear of it. Thread side, two assignments per round.
        self._taken_ops: list[_Op] = []
        self._reported = 0
        # Disk full (SQLITE_FULL): set by whichever thread holds the connection when a batch meets it,
        # cleared by the next batch that commits a write. Read by /health and /metrics.
        self._disk_full = False
        self._full_refusals = 0  # operations failed for it since the last log line
        self._full_log = _Every(DISK_FULL_LOG_SECONDS)
        self._checkpoint_log = _Every(DISK_FULL_LOG_SECONDS)
        self._full_since = 0.0  # time.monotonic() when it began
        self._full_logged = False  # the current episode's "full" line was logged: so will its end be
        self._probing = False  # a probe task is running (trio thread)

    @property
    def closing(self) -> bool:
        """True once ``aclose`` has begun: new operations are refused."""
        return self._closing

    @property
    def disk_full(self) -> bool:
        """The last batch that tried to write met SQLITE_FULL; cleared by the next one that commits a write."""
        return self._disk_full

    @property
    def failure(self) -> BaseException | None:
        """What stopped the writer thread, if an internal error did; every operation is refused since."""
        return self._failure

    @property
    def queued(self) -> int:
        """Operations submitted but not yet taken by the writer thread (approximate, for tests).

        The stop marker that ``aclose`` queues behind the last operation counts as one.
        """
        return self._submitted - self._taken

    # ----------------------------------------------------------------- trio side

    async def start(self) -> None:
        """Start the thread, connect and run ``setup``; return once it is ready.

        Raises:
            StorageError: The database could not be opened or set up.
        """
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.Thread(
            target=self._main,
            name=f"ember-storage-writer:{self.path.name}",
            # A forgotten aclose() must not hang interpreter exit; SQLite's
            # atomic commit keeps the file consistent if the thread is cut off.
            daemon=True,
        )
        self._thread.start()
        # Shielded: if we gave up waiting, nobody would ever stop the thread.
        # Opening and migrating take bounded time.
        with trio.CancelScope(shield=True):
            await self._ready.wait()
        if self._startup_error is not None:
            self._closing, self._room = True, -1
            await self._wait_stopped()
            if self._open is not None and isinstance(self._startup_error, StorageError):
                raise self._startup_error  # already one line naming what failed (and no password)
            raise StorageError(f"cannot open database {self.path}") from self._startup_error
        if self._engine.wal_checkpoints:
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name=f"ember-storage-checkpoint:{self.path.name}", daemon=True
            )
            self._checkpointer.start()
        trio.lowlevel.spawn_system_task(self._flush_loop, name=f"ember-storage-flusher:{self.path.name}")

    async def submit(self, fn: Callable[..., T], *args: Any, read: bool = False) -> T:
        """Run ``fn(conn, *args)`` in the writer's next transaction and return its result.

        If the caller is cancelled while waiting, the operation still runs (it is
        already queued and may already be executing) and its result is dropped.

        Args:
            fn: The operation; see the module docstring for its rules.
            *args: Passed to ``fn`` after the connection.
            read: ``fn`` only reads. Skips the per-operation savepoint; a read op
                that writes and then raises would leave its partial writes in
                the batch, so only set this for true reads.

        Returns:
            What ``fn`` returned, once the transaction it ran in has committed.

        Raises:
            StorageFull: The disk is full; nothing was written (a subclass of ``StorageRetryLater``).
            WriterBacklogged: ``max_queued`` operations already wait; nothing was queued (likewise).
            StorageError: The writer is closed or its thread died, or the batch failed to commit.
            Exception: Whatever ``fn`` raised (its changes were rolled back).
        """
        if self._submitted - self._taken >= self._room or self.suspended:
            self._refuse()
        op = _Op(fn, args, read)
        self._enqueue(op)
        assert op.done is not None
        await op.done.wait()
        if op.error is not None:
            raise op.error
        return op.result

    def submit_nowait(
        self,
        fn: Callable[..., Any],
        *args: Any,
        callback: Callback,
        read: bool = False,
        group: Group | None = None,
        inline: bool = False,
    ) -> None:
        """Queue ``fn(conn, *args)`` and return at once; ``callback(result, error)`` reports it.

        The callback runs on the trio thread, after the commit, and in the
        order the operations were submitted: a caller that queues two writes
        sees their outcomes in that order. This is the hot path for messages:
        no task waits, and the reply and the pushes go out from the callback.
        A callback must not block or raise (an exception is logged and dropped).

        ``group``, if given, runs this operation together with the consecutive
        ones that name the same group (see the module docstring).

        ``inline``: the operation is small and bounded (a few rows, no long scan),
        so it may run on the trio thread under light load (see the module docstring).

        Raises:
            WriterBacklogged: ``max_queued`` operations already wait; nothing was queued.
            StorageError: The writer is closed, or its thread died.
        """
        if self._submitted - self._taken >= self._room or self.suspended:
            self._refuse()
        self._enqueue(_Op(fn, args, read, callback, group, inline))

    def _refuse(self) -> None:
        """Raise why no operation can be queued now (``_room`` says that one cannot)."""
        if self._failure is not None:
            raise _storage_error("the storage writer stopped after an internal error", self._failure)
        if self._closing:
            raise StorageError("the store is closed")
        if self.suspended:
            raise StorageRetryLater(self.suspended)
        raise WriterBacklogged(f"{self._max_queued} storage operations are already waiting")

    def _enqueue(self, op: _Op) -> None:
        self._pending.append(op)
        self._submitted += 1
        if (len(self._pending) == 1 or self._holding) and not self._gathering:
            self._flush_due.set()  # the flusher runs once the tasks already running this pass are done

    def gathering(self) -> _Gathering:
        """``with writer.gathering():`` operations submitted inside are handed over when it ends, by the caller.

        The read poller wraps each pass in this: the sends its reads submit then run (inline, at light
        load) in the poller's own task step, instead of waking the flusher task, which costs a task
        step and one more round of trio's loop (an ``epoll_wait``) per pass. Nested blocks are one.
        """
        return self._gathering_block

    async def _flush_loop(self) -> None:
        """Hand the pending operations to the thread, one list per pass of the scheduler."""
        with self._flusher:
            while True:
                await self._flush_due.wait()
                self._flush_due = trio.Event()
                self._hand_over()

    def _hand_over(self) -> None:
        if self._pending:
            ops = self._pending
            if self._in_thread and self._in_thread + len(ops) <= self._inline_max and self._fits_inline(ops):
                # Light load (all the thread has, and this, would fit one inline batch): held, not queued
                # behind the thread's batch, it runs inline once that batch is reported (``_wake_from_thread``),
                # after it, so the order holds. Queued, it would make the thread's next batch, and the batches
                # arriving meanwhile would follow it there, and so on. Under heavy load the thread's batches
                # are big and its commits cheaper per operation: there the list is queued as before.
                self._holding = True
                return
            self._pending, self._holding = [], False
            if (
                not self._in_thread
                and not self._wal_restart_wanted  # the thread finishes the checkpoint after its batch
                and self._fits_inline(ops)
                and self._run_inline(ops)
            ):
                return
            self._in_thread += len(ops)
            self._queue.put(ops)

    def _fits_inline(self, ops: list[_Op]) -> bool:
        """Whether ``ops`` could run inline, or be held for an inline run: the thread's unreported work and a
        due WAL restart aside (``_hand_over`` checks those, differently for a hold and for a run now)."""
        return (
            len(ops) <= self._inline_max
            and self._room >= 0  # neither closing nor dead
            and all(op.inline for op in ops)
        )

    def _run_inline(self, ops: list[_Op]) -> bool:
        """Run a small batch on the trio thread and report it; False (nothing done) sends it to the thread."""
        if not self._conn_lock.acquire(blocking=False):
            return False  # the thread is still at work (a checkpoint, or batches after the first)
        try:
            conn = self._conn
            if conn is None or not (self._inline_ok is None or self._inline_ok(len(ops))):
                return False
            started, started_cpu = time.perf_counter(), time.thread_time()
            try:
                if self._conn_waits:
                    conn.execute("PRAGMA busy_timeout=0")
                    self._conn_waits = False
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error:
                # Locked by another process (an admin tool?): the thread waits for it, not the loop.
                # (Any other error: the thread meets it too, and reports it to every caller.)
                return False
            self._taken += len(ops)
            try:
                self._run_batch(conn, ops)
            except BaseException as exc:  # noqa: BLE001 - as on the thread: every caller gets an answer
                self._abandon_batch(conn, ops, exc)
            took = time.perf_counter() - started
            # A thread's CPU time never exceeds the wall time it spans, so a batch no longer than the most
            # CPU any batch took cannot raise that figure: its second CPU clock read (a system call, not a
            # vDSO read like perf_counter's) is skipped, and at light load nearly every batch is so short.
            if took > self.inline_longest_cpu_s:
                took_cpu = time.thread_time() - started_cpu
                if took_cpu > self.inline_longest_cpu_s:
                    self.inline_longest_cpu_s = took_cpu
        finally:
            self._conn_lock.release()
        self.inline_batches += 1
        self.inline_ops += len(ops)
        if took > self.inline_longest_s:
            self.inline_longest_s = took
        self._wake(ops)
        return True

    async def aclose(self) -> None:
        """Let queued operations finish and commit, then stop the thread and close the db.

        Idempotent. Waits without blocking the trio loop, shielded from
        cancellation so the connection is really closed when this returns:
        the gateway closes its store while its nursery is being cancelled,
        and an unshielded wait for the checkpointer there used to raise
        ``Cancelled`` before the stop marker was queued, leaving the writer
        thread running (and the database open) after the store had "closed".
        """
        if self._thread is None:
            return
        with trio.CancelScope(shield=True):
            if self._checkpointer is not None:
                self._stop_checkpoints.set()
                await trio.to_thread.run_sync(self._checkpointer.join)  # at most one checkpoint's time
                self._checkpointer = None
            if not self._closing:
                self._closing, self._room = True, -1
                self._flusher.cancel()
                self._hand_over()
                self._submitted += 1
                self._queue.put(_STOP)
            await self._wait_stopped()

    async def _wait_stopped(self) -> None:
        with trio.CancelScope(shield=True):
            await self._stopped.wait()
        assert self._thread is not None
        # The thread set `_stopped` as its very last act, so this returns at once.
        self._thread.join()

    def _wake_from_thread(self, ops: list[_Op]) -> None:
        self._in_thread -= len(ops)
        self._wake(ops)
        if self._holding and not self._in_thread:
            self._hand_over()  # the batches held while the thread had work: inline now, after it

    def _wake(self, ops: list[_Op]) -> None:
        """Called on the trio thread once per batch: report every operation, in submission order."""
        with self._callback_context():
            for op in ops:
                if op.callback is not None:
                    try:
                        op.callback(op.result, op.error)
                    except Exception:  # noqa: BLE001 - one caller's bug must not starve the rest of the batch
                        log.exception("storage callback failed")
                else:
                    assert op.done is not None
                    op.done.set()
        if self._disk_full and not self._probing:
            self._probing = True
            trio.lowlevel.spawn_system_task(self._probe_space, name=f"ember-storage-probe:{self.path.name}")

    async def _probe_space(self) -> None:
        """While the disk is full, try a small write every ``DISK_FULL_PROBE_SECONDS``.

        Any batch that commits a write clears the state; this covers a gateway nobody writes to (clients
        back off after a 250), so that /health and the metric say so soon after space is freed.
        """
        try:
            while self._disk_full and self._room >= 0:
                await trio.sleep(DISK_FULL_PROBE_SECONDS)
                if not self.free_space_ok():
                    continue  # a statfs, not a write: no commit could end the state yet
                try:
                    await self.submit(space_probe)
                except StorageError:
                    pass  # still full (or closing): the loop's condition decides
        finally:
            self._probing = False

    def _writer_died(self, unreported: list[_Op]) -> None:
        """On the trio thread, once the writer thread has died: fail everything not yet reported.

        ``unreported`` are the ops the thread had taken; behind them come the lists handed over since
        (still on the queue: nobody will take them now) and the ops not handed over yet. From now on
        ``_room`` refuses every submit, so nothing joins them.
        """
        self._room = -1
        waiting = list(unreported)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, list):
                waiting.extend(item)
        self._in_thread -= len(waiting)
        waiting.extend(self._pending)
        self._pending, self._holding = [], False
        _fail(waiting, "the storage writer stopped after an internal error", self._failure)
        self._wake(waiting)

    # --------------------------------------------------------------- thread side

    def _main(self) -> None:
        conn: Any = None
        try:
            try:
                conn = self._connect()
                if self._setup is not None:
                    self._setup(conn)
            except BaseException as exc:  # noqa: BLE001 - handed to start(), which raises it
                self._startup_error = exc
                self._call_trio(self._ready.set)
                return
            self._conn = conn
            self._call_trio(self._ready.set)
            try:
                self._serve(conn)
            except BaseException as exc:  # noqa: BLE001 - callers must hear of it, or they wait forever
                self._died(exc)
        finally:
            with self._conn_lock:
                current, self._conn = self._current, None
            for each in {id(c): c for c in (conn, current) if c is not None}.values():
                with contextlib.suppress(Exception):
                    each.close()
            log.info(
                "storage writer stopped: %d operations in %d transactions;"
                " on the trio thread %d operations in %d batches, longest %.2f ms (CPU %.2f ms)",
                self.committed_ops,
                self.commits,
                self.inline_ops,
                self.inline_batches,
                self.inline_longest_s * 1000,
                self.inline_longest_cpu_s * 1000,
            )
            self._call_trio(self._stopped.set)

    def _died(self, exc: BaseException) -> None:
        """The thread's loop raised outside any batch (a bug, or a broken hook): stop for good, loudly.

        Going on could commit over in-memory state that no longer matches the database, so the writer
        refuses everything from now on; the callers of every operation not yet reported get a
        ``StorageError`` (``_writer_died``), and /health says storage is not writable.
        """
        log.critical("the storage writer thread stopped after an internal error; every write fails now", exc_info=exc)
        with self._conn_lock:
            self._conn = None  # no inline batch may use it from now on
        self._failure = exc
        self._room = -1
        unreported = self._taken_ops[self._reported :]
        self._taken_ops = []
        self._call_trio(self._writer_died, unreported)

    def _checkpoint_loop(self) -> None:
        """Copy committed WAL pages into the database file, off the commit path.

        PASSIVE never waits for the writer's lock: it copies what it can and
        leaves the rest for the next round. An error is logged and retried.
        """
        conn = connect_checkpointer(self.path, self._busy_timeout_ms)
        try:
            while not self._stop_checkpoints.wait(CHECKPOINT_INTERVAL_SECONDS):
                try:
                    _busy, wal_frames = passive_checkpoint(conn)
                except sqlite3.Error as exc:
                    if self._checkpoint_log.due():  # on a full disk it fails every round
                        log.warning("WAL checkpoint failed: %s", exc)
                    continue
                if wal_frames >= WAL_RESTART_FRAMES:
                    self._wal_restart_wanted = True
        finally:
            conn.close()

    def _connect(self) -> Any:
        if self._open is not None:
            return self._open()
        return connect_writer(self.path, self._synchronous, self._busy_timeout_ms)

    def _usable(self, conn: Any) -> Any:
        """The connection the next batch runs on: ``conn``, or a new one if it was lost; None while
        the database cannot be reached (the batch is then refused at once: 250, nothing written).

        A lost connection is reopened before the next batch, not in a loop of its own: the next try
        waits RECONNECT_MIN_SECONDS, doubling with each failure up to RECONNECT_MAX_SECONDS, and the
        batches that come meanwhile are refused without a try (clients resend on 250).
        """
        if conn is not None and not self._engine.is_broken(conn):
            return conn
        now = time.monotonic()
        if now < self._reconnect_at:
            return None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
            self._conn = None
        try:
            fresh = self._connect()
        except Exception as exc:  # noqa: BLE001 - every failure is a try that failed; the next waits longer
            self._reconnect_wait = min(RECONNECT_MAX_SECONDS, max(RECONNECT_MIN_SECONDS, self._reconnect_wait * 2))
            self._reconnect_at = time.monotonic() + self._reconnect_wait
            if self._reconnect_log.due():
                log.warning(
                    "storage: the database connection is lost and a new one failed (%s); writes answer 250"
                    " until it is back (next try in %.1f s)",
                    exc,
                    self._reconnect_wait,
                )
            return None
        self._conn = self._current = fresh
        self._reconnect_wait = 0.0
        self._on_rollback()  # what is kept in memory is reloaded from what the database has
        log.warning("storage: connected to the database again; writes commit again")
        return fresh

    def _call_trio(self, fn: Callable[..., object], *args: object) -> bool:
        """``run_sync_soon`` that reports False instead of raising when trio has exited."""
        assert self._token is not None
        try:
            self._token.run_sync_soon(fn, *args)
        except trio.RunFinishedError:
            return False
        return True

    def _serve(self, conn: Any) -> None:
        stopping = False
        last_batch_ops = 0
        self._current = conn
        while not stopping:
            item = self._queue.get()  # the only blocking wait: nothing to do
            with self._conn_lock:  # the trio thread runs nothing inline while this is held
                conn = self._usable(conn)
                if conn is None:
                    stopping, last = self._refuse_queued(item)
                    last_batch_ops = 0
                else:
                    stopping, last_batch_ops, last = self._serve_queued(conn, item, last_batch_ops)
                if last_batch_ops < 0:
                    return  # trio is gone: nobody is left to wait for results
                if self._wal_restart_wanted:
                    if last and not self._report(last):
                        return
                    last = []
                    self._finish_checkpoint(conn)
            # Released before the last batch's callers hear of it: they often submit again at
            # once, and that batch can then run inline instead of finding the connection taken
            # (which sent it here, and the next one after it, and so on).
            if last and not self._report(last):
                return

    def _report(self, batch: list[_Op]) -> bool:
        """Hand a batch's outcomes to the trio thread; False if trio has exited."""
        self._reported += len(batch)  # first: should the thread die after this, these are not failed twice
        return self._call_trio(self._wake_from_thread, batch)

    def _take_queued(self, item: object) -> tuple[bool, list[_Op]]:
        """``item`` and every list queued behind it: (the stop marker was among them, their operations)."""
        stopping = False
        ops: list[_Op] = []
        while True:
            if item is _STOP:
                stopping = True
                self._taken += 1
                break
            assert isinstance(item, list)
            ops.extend(item)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
        self._taken += len(ops)
        self._taken_ops, self._reported = ops, 0
        return stopping, ops

    def _refuse_queued(self, item: object) -> tuple[bool, list[_Op]]:
        """No connection (the database is unreachable): every queued operation fails, nothing written."""
        stopping, ops = self._take_queued(item)
        for op in ops:
            op.result = None
            op.error = StorageRetryLater("the database is unreachable; nothing was written")
        return stopping, ops

    def _serve_queued(self, conn: Any, item: object, last_batch_ops: int) -> tuple[bool, int, list[_Op]]:
        """Run ``item`` and whatever else is queued, reporting every batch but the last.

        Returns (stop marker seen, operations run or -1 if trio is gone, the last batch).
        """
        if not self._conn_waits:  # an inline batch set it to 0: here, waiting for a lock is fine
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
            self._conn_waits = True
        if last_batch_ops >= LINGER_MIN_OPS and self._commit_delay:
            # Heavy load: more work is surely on its way, and a commit's cost is mostly per
            # page written, so wait a moment for a bigger batch. Under light load a wait would
            # only add latency (the rate-2000 bench's p99), so it commits at once.
            time.sleep(self._commit_delay)
        stopping, ops = self._take_queued(item)
        last: list[_Op] = []
        for start in range(0, len(ops), self._max_batch):
            if last and not self._report(last):
                return stopping, -1, []
            last = ops[start : start + self._max_batch]
            try:
                self._run_batch(conn, last)
            except BaseException as exc:  # noqa: BLE001 - a bug must not kill the thread and hang all callers
                self._abandon_batch(conn, last, exc)
        return stopping, len(ops), last

    def _finish_checkpoint(self, conn: sqlite3.Connection) -> None:
        """Copy the WAL's last few frames, between two batches, so that the WAL can start over.

        SQLite restarts the WAL from its beginning only when a write transaction
        begins with every frame already copied into the database. Under steady
        load the checkpointer thread never gets there (a batch commits while it
        copies), so the WAL grew without end: 445 MB after 120k messages, and
        every page lookup slowed down as it searched the WAL's growing index
        (a send's storage CPU doubled). The checkpointer has copied nearly
        everything; the writer copies the rest (its own latest commits), and its
        next ``BEGIN IMMEDIATE`` restarts the WAL. This costs a batch a
        checkpoint's two syncs, once per ``WAL_RESTART_FRAMES`` or so.
        """
        try:
            busy, _frames = passive_checkpoint(conn)
        except sqlite3.Error as exc:
            if self._checkpoint_log.due():
                log.warning("WAL checkpoint failed: %s", exc)
            return
        self._wal_restart_wanted = busy  # the checkpointer was at work: try after the next batch

    def _abandon_batch(self, conn: sqlite3.Connection, ops: list[_Op], exc: BaseException) -> None:
        """The batch broke outside any op (e.g. SAVEPOINT hit an I/O error): fail it whole."""
        # Roll back, or the next batch's COMMIT would commit writes that these
        # callers were told failed.
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except self._engine.errors:
            pass  # nothing more to do; the next BEGIN will report a broken connection
        failed = [op for op in ops if op.error is None]  # an op's own error stands: its writes were rolled back
        _fail(failed, "internal error in the storage writer", exc)
        if _is_full(exc):
            self._note_full(len(failed))
        elif is_transient(exc):  # e.g. the connection was lost mid-batch: 250, and a line (not a traceback)
            self._note_failure("a batch failed", exc, len(failed))
        else:
            log.error("storage: a batch of %d operations failed outside any of them", len(ops), exc_info=exc)
        self._on_rollback()

    def _run_batch(self, conn: Any, ops: list[_Op]) -> None:
        """Run ``ops`` in one transaction; leave each one's result or error on it."""
        started = time.perf_counter()
        changes = conn.total_changes  # rows written before this batch: did it write any (``_space_back``)?
        # Ops that succeeded inside the open transaction: their results only
        # stand if the COMMIT does.
        pending: list[_Op] = []
        index = 0
        alone_until = 0  # ops before this index run one at a time: their group raised
        while index < len(ops):
            op = ops[index]
            end = index + 1
            if op.group is not None and index >= alone_until:
                while end < len(ops) and ops[end].group is op.group:
                    end += 1
            if not conn.in_transaction:
                try:
                    self._engine.begin(conn)
                except self._engine.errors as exc:
                    # Most likely locked by another process past busy_timeout:
                    # retrying per op would multiply that wait, so give up on
                    # the rest of the batch.
                    _fail(ops[index:], "could not start a transaction", exc)
                    self._note_failure("could not start a transaction", exc, len(ops) - index)
                    return
            first = index
            if end - index > 1:
                grouped = self._run_group(conn, ops[index:end], alone=index == 0 and end == len(ops))
                if not grouped:
                    alone_until = end  # rolled back: now each op, so only its own error reaches it
            else:
                self._run_one(conn, op, alone=len(ops) == 1)
                grouped = True
            if grouped:
                pending.extend(done for done in ops[index:end] if done.error is None)
                index = end
            if self._engine.transaction_failed(conn):
                # SQLite itself rolls the whole transaction back on some errors
                # (disk full, I/O error), or the op ended it against the rules,
                # or an op alone in its transaction raised (``_run_one``).
                # Either way the earlier ops' writes are lost or unknown.
                # Disk full is the usual reason: then they are told so, and may retry.
                cause = next((done.error for done in ops[first:end] if done.error is not None), None)
                _fail(pending, "the transaction was aborted by another operation in its batch", cause)
                if pending and _is_full(cause):
                    self._note_full(len(pending))
                if pending or not isinstance(cause, Refused):  # a refusal alone changed no memory
                    self._on_rollback()
                pending = []
                # PostgreSQL keeps an aborted transaction open (every statement fails until a ROLLBACK):
                # end it, so that the next operation begins afresh. (SQLite's is already gone: a no-op.)
                self._engine.rollback(conn)
        if self._engine.transaction_failed(conn):
            return
        try:
            if self._before_commit is not None and pending:
                self._before_commit(conn, [op.result for op in pending])
            self._engine.commit(conn)  # rolls back if it fails: the next batch begins afresh
        except self._engine.errors as exc:
            # e.g. a deferred foreign key violation, or an I/O error.
            self._engine.rollback(conn)  # before_commit's failure leaves it open (commit's own does not)
            self._on_rollback()
            _fail(pending, "commit failed", exc)
            self._note_failure("commit failed", exc, len(pending))
            return
        self.commits += 1
        self.committed_ops += len(pending)
        self.stats.observe(len(pending), time.perf_counter() - started)
        if (
            self._disk_full
            and (conn.total_changes != changes or any(op.fn is space_probe for op in ops))
            and self.free_space_ok()
        ):
            self._space_back()

    def _note_failure(self, what: str, exc: BaseException, ops: int) -> None:
        """A BEGIN or COMMIT failed and ``ops`` operations with it: disk full, or worth a line of its own."""
        if _is_full(exc):
            self._note_full(ops)
        elif is_transient(exc):  # the connection lost, the server restarting: one line per 10 s at most
            if self._reconnect_log.due():
                log.warning("storage: %s: %s (%d operations answered 250)", what, " ".join(str(exc).split()), ops)
        else:
            log.error("storage: %s: %s (%d operations failed)", what, exc, ops)

    def _note_full(self, ops: int) -> None:
        """SQLITE_FULL failed ``ops`` operations: the writer is in the disk-full state until a write commits."""
        if not self._disk_full:
            self._disk_full = True
            self._full_since = time.monotonic()
        self._full_refusals += ops
        if self._full_log.due():
            log.error(
                "storage: the disk is full (SQLITE_FULL) under %s: %d operations refused (250) since the last"
                " such line; writes commit again as soon as space is freed",
                self.path,
                self._full_refusals,
            )
            self._full_refusals = 0
            self._full_logged = True

    def _space_back(self) -> None:
        self._disk_full = False
        if self._full_logged:  # at most one pair of lines per DISK_FULL_LOG_SECONDS, like the first
            self._full_logged = False
            log.warning(
                "storage: writes commit again under %s, after %.1f s of a full disk (%d more operations refused)",
                self.path,
                time.monotonic() - self._full_since,
                self._full_refusals,
            )
            self._full_refusals = 0

    def free_space_ok(self) -> bool:
        """The database's file system has ``DISK_FULL_CLEAR_BYTES`` free (True where that cannot be asked)."""
        if not hasattr(os, "statvfs"):  # Windows: then the first write that commits ends the state
            return True
        try:
            fs = os.statvfs(self.path.parent)
        except OSError:
            return True
        return fs.f_bavail * fs.f_frsize >= DISK_FULL_CLEAR_BYTES

    def _op_error(self, exc: BaseException) -> BaseException:
        """What an op's caller gets for the exception it raised (a full disk is not the op's own fault)."""
        if _is_full(exc):
            self._note_full(1)
            return _storage_error("the disk is full", exc)
        if is_transient(exc):  # the database failed it (connection lost, deadlock), not the operation
            return _storage_error("the database could not run the operation", exc)
        return _as_deliverable(exc)

    def _run_group(self, conn: Any, ops: list[_Op], alone: bool = False) -> bool:
        """Run consecutive ops of one group in one call; False (nothing written) if it raised.

        ``alone``: the group is the whole batch, so rolling the transaction back undoes exactly its
        writes and no savepoint is needed (two statements fewer; a light-load batch is one group);
        ``_run_batch`` then begins a new transaction for the ops run one by one. (Inline, with
        ``busy_timeout`` 0, that BEGIN fails if another process took the write lock in between: the batch's
        callers then get a StorageError and resend, instead of waiting. A group raises only on a bug or a
        broken constraint, so this is the rare path of a rare path.)
        """
        group = ops[0].group
        assert group is not None
        if not alone:
            conn.execute(f"SAVEPOINT {_GROUP_SAVEPOINT}")
        try:
            results = group(conn, [op.args for op in ops])
            if len(results) != len(ops):
                raise RuntimeError(f"group {group.__name__} gave {len(results)} results for {len(ops)} ops")
        except Exception as exc:  # noqa: BLE001 - the ops run again one by one and get their own errors
            if conn.in_transaction:
                if alone:
                    conn.execute("ROLLBACK")
                else:
                    conn.execute(f"ROLLBACK TO {_GROUP_SAVEPOINT}")
                    conn.execute(f"RELEASE {_GROUP_SAVEPOINT}")
            self._on_rollback()
            if _is_full(exc):  # each op alone would meet it too: fail them all at once
                _fail(ops, "the disk is full", exc)
                self._note_full(len(ops))
                return True
            log.debug("group %s failed; running its %d operations one by one", group.__name__, len(ops), exc_info=True)
            return False
        if not alone:
            conn.execute(f"RELEASE {_GROUP_SAVEPOINT}")
        for op, result in zip(ops, results, strict=True):
            op.result = result
        return True

    def _run_one(self, conn: Any, op: _Op, alone: bool = False) -> None:
        if op.read and not self._engine.reads_need_savepoint:
            try:
                op.result = op.fn(conn, *op.args)
            except BaseException as exc:  # noqa: BLE001 - delivered to the caller
                op.error = self._op_error(exc)
            return
        if alone:
            # The only op of its transaction: rolling the transaction back undoes exactly its
            # writes, so it needs no savepoint (two statements fewer; at light load most
            # batches hold one send).
            try:
                op.result = op.fn(conn, *op.args)
            except BaseException as exc:  # noqa: BLE001 - delivered to the caller
                op.error = self._op_error(exc)
                op.result = None
                if conn.in_transaction:
                    conn.execute("ROLLBACK")  # _run_batch sees the transaction gone and reloads state
            return
        conn.execute(f"SAVEPOINT {_SAVEPOINT}")
        try:
            op.result = op.fn(conn, *op.args)
        except BaseException as exc:  # noqa: BLE001 - delivered to the caller
            op.error = self._op_error(exc)
            op.result = None
            # The error may already have destroyed the whole transaction, in
            # which case the savepoint is gone too (the caller checks that).
            if conn.in_transaction:
                conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
                conn.execute(f"RELEASE {_SAVEPOINT}")
            if not isinstance(exc, Refused):  # a rule refuses before it changes memory (``Refused``)
                self._on_rollback()
        else:
            if conn.in_transaction and self._engine.transaction_failed(conn):
                # PostgreSQL: the op swallowed a database error, and the transaction is aborted. Its
                # result cannot stand; undoing it to its savepoint lets the batch go on. (Never on SQLite.)
                op.result = None
                op.error = StorageError("the operation left its transaction aborted; nothing of it was written")
                conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
                self._on_rollback()
            if conn.in_transaction:
                conn.execute(f"RELEASE {_SAVEPOINT}")


class _Gathering:
    """``Writer.gathering``'s block; a class rather than a ``@contextmanager`` since it is entered every pass."""

    __slots__ = ("_writer",)

    def __init__(self, writer: Writer) -> None:
        self._writer = writer

    def __enter__(self) -> None:
        self._writer._gathering += 1

    def __exit__(self, *exc_info: object) -> None:
        writer = self._writer
        writer._gathering -= 1
        if not writer._gathering and writer._pending:
            writer._hand_over()


def _as_deliverable(exc: BaseException) -> BaseException:
    """An op's exception as its caller should see it.

    Ordinary exceptions go back as they are. Anything else (SystemExit, a stray
    trio.Cancelled) would mean something quite different once re-raised in a
    trio task, so it is wrapped.
    """
    if isinstance(exc, Exception):
        return exc
    return _storage_error("operation raised a non-Exception", exc)


def _is_full(exc: BaseException | None) -> bool:
    """SQLITE_FULL ("database or disk is full"), by its error code (the extended code's low byte)."""
    return isinstance(exc, StorageFull) or SQLITE.is_disk_full(exc)


def _storage_error(message: str, cause: BaseException | None) -> StorageError:
    """``StorageError(message)`` caused by ``cause``, and worded with it; ``StorageFull`` for a full disk."""
    if cause is None:
        return StorageError(message)
    # A cause already classified (the op that aborted the batch got a ``StorageRetryLater`` for a lost
    # connection) keeps its kind for the batch's other ops: they were not at fault either, and may resend.
    retry = isinstance(cause, StorageRetryLater) or is_transient(cause)
    kind = StorageFull if _is_full(cause) else StorageRetryLater if retry else StorageError
    error = kind(f"{message}: {cause}")
    error.__cause__ = cause
    return error


def space_probe(conn: sqlite3.Connection) -> None:
    """An operation that changes nothing yet writes a page at its commit: does the disk take a write?

    Setting ``user_version`` to its own value rewrites the database header's page, so the commit appends
    a WAL frame: it fails with SQLITE_FULL when the disk is full, and once it commits the writer leaves
    that state. (An empty transaction commits on a full disk too: it writes nothing.)
    """
    if not isinstance(conn, sqlite3.Connection):
        # PostgreSQL: taking a transaction id makes the COMMIT write (and flush) a WAL record, so it fails
        # where the server cannot write; a standby refuses it outright. (The /health probe's write.)
        conn.execute("SELECT txid_current()")
        return
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    conn.execute(f"PRAGMA user_version = {version}")  # an int read from SQLite, not caller text


class _Every:
    """``due()`` is True at most once per ``seconds``: for log lines that could come with every batch."""

    __slots__ = ("_next", "_seconds")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._next = float("-inf")

    def due(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self._seconds
        return True


def _fail(ops: list[_Op], message: str, cause: BaseException | None) -> None:
    for op in ops:
        op.result = None
        op.error = _storage_error(message, cause)
