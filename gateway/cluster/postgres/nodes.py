"""Node identity: this gateway claims its ``server.node_id`` and keeps it with a lease.

The id is the existing ``server.node_id`` (0..1023), which also goes into every message id this node makes
(``gateway.ids``): two nodes with one id would mint colliding message ids, so the cluster needs exactly that
id to be unique, and uses it as the node's name (channel ``ember_node_<id>``, presence rows).

A node claims its id at start: it gets the row if there is none or its lease has run out; if another live
node holds it, ``NodeIdTaken`` names that node (host, pid, start time) in one line and this one must not
start. It then renews the lease every ``HEARTBEAT_SECONDS`` with ONE statement (its single row), and that
one row is the lease of all its presence rows too: a presence row counts only while its node's lease runs
(``presence``). A node that died stops counting for anyone LEASE_SECONDS after its last heartbeat at the
latest, so between 2 and 4 seconds after its death with the defaults (2 s heartbeat, 4 s lease).

A restart of a node that was SIGKILLed within the last lease is refused too (its old lease still runs);
``claim`` can wait up to one lease for it to run out (``wait_seconds``), which is what ``serve`` should pass.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import psycopg
import trio

from gateway.cluster.postgres.database import ClusterDatabase, LeaseClock, database_time
from gateway.cluster.postgres.tables import NODES, PRESENCE, ROOM_MEMBERS, Connection

#: The tables whose rows belong to a node and die with its lease.
_PER_NODE = (PRESENCE, ROOM_MEMBERS)

HEARTBEAT_SECONDS = 2.0
LEASE_SECONDS = 2 * HEARTBEAT_SECONDS

# The lease clock: the caller's time if it gives one (tests), else the database's.
NOW = "COALESCE(%(now)s::timestamptz, statement_timestamp())"


@dataclass(frozen=True)
class NodeHolder:
    """Who holds a node id, as its row says."""

    node_id: int
    host: str
    pid: int
    started_at: datetime
    lease_until: datetime


class NodeIdTaken(Exception):
    """Another live node holds this node id: this one must not start."""

    def __init__(self, holder: NodeHolder) -> None:
        self.holder = holder
        super().__init__(
            f"server.node_id {holder.node_id} is held by a running gateway (host {holder.host}, pid {holder.pid}, "
            f"started {holder.started_at.isoformat(timespec='seconds')}, lease until "
            f"{holder.lease_until.isoformat(timespec='seconds')}): give each node its own server.node_id"
        )


class NodeLease:
    """This node's claim on its id: ``claim`` at start, ``renew`` every heartbeat, ``release`` at shutdown.

    Each method takes the connection it runs on (``ClusterDatabase.run`` passes it), so tests may drive two
    nodes in one process, each with its own connection, and move the lease clock by hand.
    """

    def __init__(
        self,
        node_id: int,
        *,
        lease_seconds: float = LEASE_SECONDS,
        clock: LeaseClock = database_time,
        host: str | None = None,
        pid: int | None = None,
    ) -> None:
        self.node_id = node_id
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.host = host if host is not None else socket.gethostname()
        self.pid = pid if pid is not None else os.getpid()
        # Tells this start from an earlier one of the same id: a renew only extends our own claim.
        self.incarnation = secrets.token_hex(8)

    def _params(self) -> dict[str, object]:
        return {
            "node": self.node_id,
            "incarnation": self.incarnation,
            "host": self.host,
            "pid": self.pid,
            "lease": self.lease_seconds,
            "now": self.clock(),
        }

    def claim(self, conn: Connection, wait_seconds: float = 0.0, sleep: Callable[[float], None] = time.sleep) -> None:
        """Take the node id, or raise ``NodeIdTaken`` (after retrying for ``wait_seconds`` if given).

        The sessions a previous holder of this id left in the presence table are deleted: their
        connections died with it.
        """
        deadline = time.monotonic() + wait_seconds
        while True:
            holder = self._try_claim(conn)
            if holder is None:
                return
            if time.monotonic() >= deadline:
                raise NodeIdTaken(holder)
            sleep(min(0.25, max(0.0, deadline - time.monotonic())))

    def _try_claim(self, conn: Connection) -> NodeHolder | None:
        with conn.transaction():
            claimed = conn.execute(
                f"""INSERT INTO {NODES} (node_id, incarnation, host, pid, started_at, lease_until)
                    VALUES (%(node)s, %(incarnation)s, %(host)s, %(pid)s, {NOW},
                            {NOW} + make_interval(secs => %(lease)s))
                    ON CONFLICT (node_id) DO UPDATE SET
                        incarnation = EXCLUDED.incarnation, host = EXCLUDED.host, pid = EXCLUDED.pid,
                        started_at = EXCLUDED.started_at, lease_until = EXCLUDED.lease_until
                    WHERE {NODES}.lease_until <= {NOW} OR {NODES}.incarnation = EXCLUDED.incarnation
                    RETURNING node_id""",
                self._params(),
            ).fetchone()
            if claimed is not None:
                for table in _PER_NODE:
                    conn.execute(f"DELETE FROM {table} WHERE node_id = %s", (self.node_id,))
                return None
            row = conn.execute(
                f"SELECT node_id, host, pid, started_at, lease_until FROM {NODES} WHERE node_id = %s",
                (self.node_id,),
            ).fetchone()
        assert row is not None  # the conflict was on this very row, and only its holder deletes it
        return NodeHolder(*row)

    def renew(self, conn: Connection) -> bool:
        """Extend the lease (one statement: it covers all of this node's presence rows).

        False if the id is no longer ours (our lease ran out while we were cut off and another node took
        the id): this node must stop serving. The same transaction deletes the presence rows of nodes
        whose lease ran out (they no longer count anyway; this keeps the table to live sessions).
        """
        params = self._params()
        with conn.transaction():
            renewed = conn.execute(
                f"""UPDATE {NODES} SET lease_until = {NOW} + make_interval(secs => %(lease)s)
                    WHERE node_id = %(node)s AND incarnation = %(incarnation)s""",
                params,
            ).rowcount
            for table in _PER_NODE:
                conn.execute(
                    f"DELETE FROM {table} WHERE node_id IN (SELECT node_id FROM {NODES} WHERE lease_until <= {NOW})",
                    params,
                )
        return renewed == 1

    def release(self, conn: Connection) -> None:
        """Give the id back at a clean shutdown: this node's sessions and lease end now, not at expiry."""
        with conn.transaction():
            owned = conn.execute(
                f"DELETE FROM {NODES} WHERE node_id = %(node)s AND incarnation = %(incarnation)s", self._params()
            ).rowcount
            if owned:
                for table in _PER_NODE:
                    conn.execute(f"DELETE FROM {table} WHERE node_id = %s", (self.node_id,))

    async def keep(
        self,
        db: ClusterDatabase,
        on_lost: Callable[[], None],
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        """Renew every heartbeat until cancelled; call ``on_lost`` and return once the lease is gone.

        Gone means another node took the id, or no renew succeeded for a whole lease (the database was out
        of reach: the other nodes already count this one as dead, so it must not keep serving stale state).
        """
        last_renewed = trio.current_time()
        while True:
            await trio.sleep(heartbeat_seconds)
            try:
                if not await db.run(self.renew):
                    on_lost()
                    return
                last_renewed = trio.current_time()
            except psycopg.Error:  # the database out of reach: try again next beat (run() reconnects)
                if trio.current_time() - last_renewed >= self.lease_seconds:
                    on_lost()
                    return
