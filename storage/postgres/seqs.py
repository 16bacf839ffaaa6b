"""Inbox sequence numbers from the database, for several writers on one PostgreSQL (a cluster, issue 24).

A single gateway hands each user's seqs out of its writer's memory (``storage.inboxes.InboxState``): right
while one process owns the database (the advisory lock of ``storage.postgres.store``). Several gateways
(``server.cluster``) share it, so no memory may be the truth's copy. ``SharedInboxState`` keeps the same
interface and takes the numbers from a table instead:

- ``ember_inbox_heads`` (user_id, head, step): each user's highest seq given out. ``reserve`` takes the
  numbers of every user of a send group in ONE statement, ``INSERT ... ON CONFLICT DO UPDATE SET head =
  head + step ... RETURNING``, its rows sorted by user: the statement locks each user's row until the
  transaction ends, in user order, so two writers reserving for overlapping users queue rather than
  deadlock, and neither can give a seq twice. One sorted statement is not enough, though: a writer's
  transaction holds several send groups (and merges that upsert other rows after each), so its second
  reservation can wait for a row another writer's first took while that one waits for a row of its own
  first. Measured: two writers sending to one user deadlocked every second (each detected only after
  PostgreSQL's ``deadlock_timeout``, 1 s: 480 sends took 64 s). So every reservation first takes the
  transaction-scoped advisory lock ``SEND_LOCK``: from a writer's first reservation to its COMMIT, no
  other writer reserves. That serialises the nodes' send transactions in the database (their CPU work,
  the crypto, dispatch and pushes, stays parallel); group commit makes each such transaction large.
  A user with no row yet starts from the inbox's own
  ``MAX(seq)`` (the tables are the truth; inbox rows are never deleted, so that is the last seq given). A
  rollback undoes the reservation with the rows, so none is skipped on commit.
- The table is a cache of ``MAX(seq)`` kept in the database, not data: outside the schema migrations
  (which must stay alike on both backends), created by a clustered writer at start, dropped by a
  single-owner one (which hands seqs out of memory and would leave its rows stale). Losing it loses
  nothing.
- The inbox log (``inbox_recent``) is merged at every append (``merge_at`` is 1): a merge moves the whole
  log, and under READ COMMITTED another writer's committed rows could be moved twice or deleted unmoved if
  they were allowed to wait there. Merged at every append, the log is empty at every commit, so each
  writer's merge only ever sees its own rows. It costs a batch four statements more (measured in
  bench/RESULTS.md when the cluster bench runs).
- ``batch_heads``: user → highest seq reserved since the last ``take_batch_heads``, for the cluster's
  notices (``gateway.cluster.postgres.notify``); a rolled-back reservation may stay in it, which costs the
  node that gets the notice one read that finds nothing newer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from storage.inboxes import InboxState

HEADS: Final = "ember_inbox_heads"
#: Serialises the clustered writers' start (table creation, the merge of a single owner's leftover log).
START_LOCK: Final = 0x456D6273  # "Embs"
#: Held from a writer's first seq reservation in a transaction to its end (the module docstring: deadlocks).
SEND_LOCK: Final = 0x456D6271  # "Embq"

_CREATE: Final = (
    f"CREATE TABLE IF NOT EXISTS {HEADS} (user_id TEXT PRIMARY KEY, head BIGINT NOT NULL, step BIGINT NOT NULL)"
)
# ORDER BY user: the rows are inserted, and locked, in that order (see the module docstring).
_RESERVE: Final = (
    f"INSERT INTO {HEADS} AS h (user_id, head, step)"
    " SELECT t.u, t.n + COALESCE((SELECT MAX(i.seq) FROM inbox i WHERE i.user_id = t.u), 0), t.n"
    " FROM unnest(?::text[], ?::bigint[]) AS t(u, n) ORDER BY t.u"
    " ON CONFLICT (user_id) DO UPDATE SET head = h.head + EXCLUDED.step, step = EXCLUDED.step"
    " RETURNING h.user_id, h.head, h.step"
)
_CURRENT: Final = (
    f"SELECT COALESCE((SELECT head FROM {HEADS} WHERE user_id = ?1),"
    " (SELECT MAX(seq) FROM inbox WHERE user_id = ?1), 0)"
)


class OwnedInboxState(InboxState):
    """A single owner's ``InboxState`` on PostgreSQL: seqs from memory as on SQLite, the log merged at every
    append as a cluster node's is.

    SQLite merges the log rarely (``MERGE_ROWS``): its rows share the last page of one B-tree. PostgreSQL
    gains nothing from that (a heap), and a merge of thousands of rows stalled the writer for up to a
    second under load: every send queued behind it (bench/RESULTS.md, "Session 10"). Merged at every
    append, each merge moves one batch's rows, and its statements ride the batch's pipeline
    (``storage.sends.SendBatch.write``): no round trip of their own.
    """

    def merge_at(self) -> int:
        return 1  # every append (a cluster node's for its own reason: ``SharedInboxState``)

    def may_merge(self, appends: int, rows: int) -> bool:
        return True  # never asked on PostgreSQL (no inline commits); a merge is always due


class SharedInboxState(OwnedInboxState):
    """``InboxState`` for a writer that shares the database: seqs reserved in ``ember_inbox_heads``."""

    shared = True

    def __init__(self) -> None:
        super().__init__()
        self.batch_heads: dict[str, int] = {}

    def current(self, conn: Any, user_id: str) -> int:
        row = conn.execute(_CURRENT, (user_id,)).fetchone()
        return int(row[0])

    def take(self, conn: Any, user_id: str) -> int:
        return self.reserve(conn, {user_id: 1})[user_id]

    def reserve(self, conn: Any, counts: Mapping[str, int]) -> dict[str, int]:
        if not counts:
            return {}
        users = sorted(counts)
        conn.execute("SELECT pg_advisory_xact_lock(?)", (SEND_LOCK,))  # re-taken in one transaction: no wait
        firsts: dict[str, int] = {}
        heads = self.batch_heads
        for user_id, head, step in conn.execute(_RESERVE, (users, [counts[u] for u in users])):
            firsts[user_id] = head - step + 1
            if head > heads.get(user_id, 0):
                heads[user_id] = head
        return dict(sorted(firsts.items()))

    def advance(self, taken: dict[str, int]) -> None:
        """Nothing to record: the database holds the heads."""

    # merge_at: 1, from OwnedInboxState: here also so that the log is empty at every commit (module docstring).

    def take_batch_heads(self) -> dict[str, int]:
        """The heads reserved since the last call (the batch about to commit), and start afresh."""
        heads, self.batch_heads = self.batch_heads, {}
        return heads


def prepare_shared(tx: Any) -> None:
    """A clustered writer's start: the heads table, and the inbox log a single owner may have left."""
    tx.execute("BEGIN")
    try:
        tx.execute("SELECT pg_advisory_xact_lock(?)", (START_LOCK,))
        tx.execute(_CREATE)
        if tx.execute("SELECT 1 FROM inbox_recent LIMIT 1").fetchone() is not None:
            SharedInboxState().merge(tx)
        tx.execute("COMMIT")
    except BaseException:
        tx.execute("ROLLBACK")
        raise


def prepare_single(tx: Any) -> None:
    """A single owner's start: it hands seqs out of memory, so a heads table left by a cluster would go stale."""
    tx.execute(f"DROP TABLE IF EXISTS {HEADS}")
