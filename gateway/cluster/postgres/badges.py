"""Push badges of a cluster: one counter row per offline user, in the shared database.

A push request carries the recipient's badge: how many pushes it was sent since it was last online. With
several nodes the storing node of each message sends its push, and a device may come online on any node,
so a per-process count would start again at 1 on every node and be reset only on the node the device
came back to. Here the count is a row of ``ember_cluster_badges`` (UNLOGGED: after a database crash the
next push counts from 1, as after a restart of one process): ``bump`` is one ``INSERT … ON CONFLICT DO
UPDATE … RETURNING`` on the node's reader connection (the push sender awaits a read for the device tokens
anyway); ``clear`` is queued with the node's presence writes, so it is in order with the connect that
caused it. A bump that races a clear for the same user (a push sent while the user connects) may leave a
count of 1 where 0 was meant: the next push says 2. No row is kept for a user who is online.
"""

from __future__ import annotations

from gateway.cluster.postgres.node import ClusterNode
from gateway.cluster.postgres.tables import BADGES, Connection


def _bump(db: Connection, user_id: str) -> int:
    row = db.execute(
        f"""INSERT INTO {BADGES} (user_id, badge) VALUES (%s, 1)
            ON CONFLICT (user_id) DO UPDATE SET badge = {BADGES}.badge + 1 RETURNING badge""",
        (user_id,),
    ).fetchone()
    assert row is not None  # an upsert always returns its row
    return int(row[0])


class ClusterBadges:
    """``gateway.cluster.BadgeCounter`` in the shared database (module docstring)."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node

    async def bump(self, user_id: str) -> int:
        return await self.node.query(_bump, user_id)

    def clear(self, user_id: str) -> None:
        def delete(db: Connection) -> None:
            db.execute(f"DELETE FROM {BADGES} WHERE user_id = %s", (user_id,))

        self.node.queue_write(delete)

    def users(self) -> int:
        return 0  # the counts are rows of the database, not this process's memory
