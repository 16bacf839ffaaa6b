"""The admin API's replay store for a cluster: a nonce spent on one node is spent on every node.

Behind one admin address (a load balancer) a signed request replayed within the window could reach a
node that has not seen its nonce; so a cluster node spends each nonce in the shared database too:
``INSERT ... ON CONFLICT DO UPDATE ... WHERE expired`` returns a row only for the first spend of a
nonce in its window (one statement, atomic across nodes), on this node or another. The database out of reach: the
request is refused as "full" (429, code 250: retryable), never let through unchecked. Expired rows are
deleted every ``PRUNE_EVERY`` spends. The table (``tables.ADMIN_NONCES``) is logged: a database crash
does not forget a nonce.
"""

from __future__ import annotations

from typing import Literal

import psycopg
import trio

from gateway.cluster.postgres.database import ClusterDatabase
from gateway.cluster.postgres.tables import ADMIN_NONCES, Connection

PRUNE_EVERY = 1000

#: ``gateway.admin.auth.Verdict`` (not imported: the admin package sits above this one).
Verdict = Literal["ok", "reused", "full"]


class ClusterNonces:
    """``NonceStore`` (``gateway.admin.auth``) over the shared database. ``run`` it in a nursery."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._db: ClusterDatabase | None = None
        self._spent = 0
        self.unavailable = 0  # refusals because the database did not answer

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._db = await ClusterDatabase.open(self._url)
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            db, self._db = self._db, None
            await db.aclose()

    async def spend(self, nonce: str, expires_at_ms: int, now_ms: int) -> Verdict:
        if self._db is None:
            self.unavailable += 1
            return "full"
        self._spent += 1
        prune = self._spent % PRUNE_EVERY == 0
        try:
            first = await self._db.run(_spend, nonce, expires_at_ms, now_ms, prune)
        except psycopg.Error:
            self.unavailable += 1
            return "full"
        return "ok" if first else "reused"


def _spend(conn: Connection, nonce: str, expires_at_ms: int, now_ms: int, prune: bool) -> bool:
    with conn.transaction():
        if prune:
            conn.execute(f"DELETE FROM {ADMIN_NONCES} WHERE expires_at < %s", (now_ms,))
        row = conn.execute(
            f"""INSERT INTO {ADMIN_NONCES} (nonce, expires_at) VALUES (%s, %s)
                ON CONFLICT (nonce) DO UPDATE SET expires_at = EXCLUDED.expires_at
                WHERE {ADMIN_NONCES}.expires_at < %s
                RETURNING 1""",
            (nonce, expires_at_ms, now_ms),
        ).fetchone()
    return row is not None
