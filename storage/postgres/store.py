"""A ``Store`` on PostgreSQL: the same writer, readers and query functions, on psycopg connections.

``open_postgres`` is what ``storage.open_store`` runs for a ``postgresql://`` URL. Everything above the
connections is the SQLite store's own code: the writer thread and its group commit (many operations per
transaction, acknowledged only after the COMMIT came back), the reader connections (a pull never waits
behind sends), the query functions. What is PostgreSQL's:

- Connections: psycopg 3's sync API on the storage threads (its async API needs asyncio; trio never
  waits on the database). The writer's connection is opened by ``connect_writer``, each reader's by
  ``connect_reader``; both through ``storage.postgres.connection.connect`` (one-line errors, password
  masked). A lost connection is replaced before the next batch or read (``Writer._usable``: backoff
  from 0.1 s doubling to 5 s; meanwhile writes answer 250 and nothing is acked).
- One owner per database (until several gateways may share one): the writer's connection holds a
  session advisory lock (``ADVISORY_LOCK_KEY``) for its whole life, the counterpart of SQLite's lock
  file. The server drops it when the connection ends in any way; a reconnecting writer takes it again
  and, if another gateway took it meanwhile, keeps refusing writes rather than writing beside it.
- A cluster (``shared``: several gateways on one database, ``server.cluster``): the writer holds the same
  advisory lock in its *shared* form, so cluster nodes run beside each other but never beside a single
  owner (which holds it exclusively), and seqs come from the database (``storage.postgres.seqs``).
  ``before_commit`` is called in each batch's transaction, just before COMMIT, with the heads the batch
  reserved and the batch's results (the cluster's notices go out there: ``gateway.cluster.postgres.notify``).
- The inline commit on the trio thread is SQLite's only (``PostgresEngine.inline_commit``).
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from pathlib import Path
from typing import Final

from storage import sessions
from storage.errors import StorageError
from storage.inboxes import InboxState
from storage.postgres.connection import connect
from storage.postgres.engine import POSTGRES, PgTx, wrap
from storage.postgres.seqs import OwnedInboxState, SharedInboxState, prepare_shared, prepare_single
from storage.postgres.url import mask_password
from storage.readers import Readers
from storage.sealing import SecretSeal
from storage.writer import Writer

log = logging.getLogger("ember.storage")

#: ``before_commit(tx, heads, results)``: called in a batch's transaction before its COMMIT (a cluster's notices).
BeforeCommit = Callable[[PgTx, dict[str, int], list[object]], None]

#: How the writer's ``application_name`` ends: the gateway's own pid, for the refusal of a second one.
_GATEWAY_PID: Final = re.compile(r"\(pid (\d+)\)$")

#: The session advisory lock the writer holds (``pg_try_advisory_lock``): "Embr" in ASCII. One 32-bit
#: key, so ``pg_locks`` shows it as classid 0, objid this.
ADVISORY_LOCK_KEY: Final = 0x456D6272


def connect_writer(url: str, shared: bool = False) -> PgTx:
    """The writer's connection, holding the one-owner advisory lock (``shared``: its shared form, a cluster node).

    Raises:
        StorageError: The server cannot be reached or refuses (one line), or another gateway holds the lock
            (a single owner; or, for a single owner, any gateway).
    """
    tx = wrap(connect(url, autocommit=True))
    try:
        # The writer's session says whose it is (pg_stat_activity): a refused second gateway names it.
        tx.execute(
            "SELECT set_config('application_name', current_setting('application_name') || ?, false)",
            (f" (pid {os.getpid()})",),
        )
        take = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
        row = tx.execute(f"SELECT {take}(?)", (ADVISORY_LOCK_KEY,)).fetchone()
        if not (row and row[0]) and shared:
            raise StorageError(
                f"database {mask_password(url)} is used by a gateway that is not a cluster node {_holder(tx)}:"
                " stop it, or start it with server.cluster = true too"
            )
        if not (row and row[0]):
            raise StorageError(
                f"database {mask_password(url)} is already used by another Ember process {_holder(tx)}:"
                " only one gateway may write a database. Stop that one, or give this one another database"
            )
    except BaseException:
        tx.close()
        raise
    return tx


def _holder(tx: PgTx) -> str:
    """Who holds the advisory lock, as far as ``pg_stat_activity`` tells this user: "(pid N) on host"."""
    row = tx.execute(
        "SELECT a.pid, a.application_name, COALESCE(host(a.client_addr), 'a local socket')"
        " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = ? LIMIT 1",
        (ADVISORY_LOCK_KEY,),
    ).fetchone()
    if row is None:
        return "(its session is not visible to this database user)"
    server_pid, application, address = row
    gateway = _GATEWAY_PID.search(application or "")
    who = f"pid {gateway.group(1)}" if gateway else f"application {application or '?'}"
    return f"({who}) from {address}, server pid {server_pid}"


def connect_reader(url: str) -> PgTx:
    return wrap(connect(url, autocommit=True))


def _prepare(seal: SecretSeal | None, shared: bool, tx: PgTx) -> None:
    """The writer's setup (the schema is migrated before: ``storage.postgres.schema.migrate_database``):
    the seq table's start (``storage.postgres.seqs``), and with a key, seal what older versions left in clear."""
    if shared:
        prepare_shared(tx)
    else:
        prepare_single(tx)
    if seal is None:
        return
    sealed = sessions.seal_unsealed(tx, seal)  # type: ignore[arg-type]
    if sealed:
        log.info("sealed %d session secrets that an older version had stored in clear", sealed)
    if not sessions.opens_with(tx, seal):  # type: ignore[arg-type]
        log.warning(
            "the stored session secrets were sealed under another token.key (the key changed, or the"
            " database came from another server): every existing session gets -6 SecretKeyMismatch"
            " until its device gets a new token"
        )


@asynccontextmanager
async def open_postgres(
    url: str,
    *,
    callback_context: Callable[[], AbstractContextManager[object]],
    commit_delay_ms: float,
    readers: int,
    max_queued: int,
    seal: SecretSeal | None,
    shared: bool = False,
    before_commit: BeforeCommit | None = None,
) -> AsyncIterator[tuple[Writer, InboxState, Readers]]:
    """The writer (migrated, holding the lock), its inbox state and the readers, for a ``Store``.

    ``shared``: a cluster node (module docstring); ``before_commit(tx, heads, results)`` runs in each batch's
    transaction before COMMIT, ``heads`` the users whose inboxes the batch wrote (user → highest seq).
    """
    label = Path(mask_password(url))  # names the threads and the log lines; never the password
    inboxes: InboxState = SharedInboxState() if shared else OwnedInboxState()
    hook = None
    if before_commit is not None and isinstance(inboxes, SharedInboxState):
        shared_inboxes = inboxes

        def hook(tx: PgTx, results: list[object]) -> None:
            before_commit(tx, shared_inboxes.take_batch_heads(), results)

    writer = Writer(
        label,
        before_commit=hook,
        setup=functools.partial(_prepare, seal, shared),
        callback_context=callback_context,
        commit_delay_ms=commit_delay_ms,
        on_rollback=inboxes.forget,
        max_queued=max_queued,
        engine=POSTGRES,
        connect=functools.partial(connect_writer, url, shared),
    )
    await writer.start()
    try:
        pool = Readers(label, count=readers, engine=POSTGRES, connect=functools.partial(connect_reader, url))
        await pool.start()
        try:
            yield writer, inboxes, pool
        finally:
            await pool.aclose()
    finally:
        await writer.aclose()


__all__ = ["ADVISORY_LOCK_KEY", "connect_reader", "connect_writer", "open_postgres"]
