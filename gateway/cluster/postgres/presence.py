"""Presence on PostgreSQL: one row per live session, on whichever node holds its connection.

A row (user, client, platform, node, generation) is written when a connection passes its handshake
(``register``) and deleted when it ends (``unregister``, only if the row is still that connection's: a
newer connection of the session, on any node, has a larger generation). A row counts only while its node's
lease runs (``nodes``): there is no per-row lease to renew, so the heartbeat stays one statement however
many sessions a node holds, and a dead node's rows stop counting when its lease runs out.

Every query asks about many users at once where the caller has many (``offline``, ``holders``): one round
trip per delivery, never one per user. Each method takes the connection it runs on and is one transaction
(or a savepoint, inside the caller's).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.cluster.postgres.database import LeaseClock, database_time
from gateway.cluster.postgres.nodes import NOW
from gateway.cluster.postgres.notices import KickNotice, ReplaceNotice, send_notice
from gateway.cluster.postgres.tables import NODES, PRESENCE, Connection

# Rows of live nodes only: joined to the node's lease.
_LIVE = f"{PRESENCE} p JOIN {NODES} n ON n.node_id = p.node_id AND n.lease_until > {NOW}"


@dataclass
class Registration:
    """What writing a session's row found and did."""

    generation: int  # this connection's row; unregister passes it back
    replaced_on: int | None = None  # the other node told to close its older connection of the session
    # Same-class sessions of the user with a live connection (the one-device rule), by node: those on
    # other nodes were sent a "kick"; those on this node are the caller's to kick.
    kicked_elsewhere: list[tuple[int, str]] = field(default_factory=list)
    kick_here: list[str] = field(default_factory=list)


class PresenceTable:
    """This node's view of the presence table (``node_id`` is this node)."""

    def __init__(self, node_id: int, clock: LeaseClock = database_time) -> None:
        self.node_id = node_id
        self.clock = clock

    def register(
        self,
        conn: Connection,
        user_id: str,
        client_id: str,
        platform: int,
        *,
        kick_platforms: frozenset[int] | None = None,
        kick_status: int = -6,
    ) -> Registration:
        """Write the session's row for this node; tell a node holding it or a same-class session.

        ``kick_platforms``: the platform class of the one-device rule (None in multi-endpoint mode). The
        token issue already ended those sessions and kicked their connections (``gateway.domain.sessions``); a
        same-class connection still live here means that kick was lost on the way (a listener gap), so
        it is sent again, with the same ``kick_status`` (-7 with kickoff events, else -6).
        The notices go out in this transaction: they exist only if the row committed.
        """
        now = self.clock()
        with conn.transaction():
            generation, old_node = self._write_row(conn, user_id, client_id, platform)
            result = Registration(generation=generation)
            if old_node is not None and old_node != self.node_id:
                result.replaced_on = old_node
                send_notice(conn, old_node, ReplaceNotice(self.node_id, user_id, client_id, generation))
            if kick_platforms:
                same_class = conn.execute(
                    f"""SELECT p.client_id, p.node_id FROM {_LIVE}
                        WHERE p.user_id = %(u)s AND p.client_id <> %(c)s AND p.platform = ANY(%(class)s)""",
                    {"u": user_id, "c": client_id, "class": sorted(kick_platforms), "now": now},
                ).fetchall()
                for other_client, node in same_class:
                    if node == self.node_id:
                        result.kick_here.append(other_client)
                    else:
                        result.kicked_elsewhere.append((node, other_client))
                        send_notice(conn, node, KickNotice(self.node_id, user_id, other_client, kick_status))
        return result

    def _write_row(self, conn: Connection, user_id: str, client_id: str, platform: int) -> tuple[int, int | None]:
        """Make the session's row this node's with a new generation; (generation, node it was on before).

        The old row is locked before it is overwritten so its node is known for sure; if there was none and
        another node inserts one at the same moment, the loser of the insert goes round again and finds it.
        """
        key = {"u": user_id, "c": client_id, "p": platform, "node": self.node_id}
        while True:
            old = conn.execute(
                f"SELECT node_id FROM {PRESENCE} WHERE user_id = %(u)s AND client_id = %(c)s FOR UPDATE", key
            ).fetchone()
            if old is not None:
                row = conn.execute(
                    f"""UPDATE {PRESENCE} SET platform = %(p)s, node_id = %(node)s,
                            generation = nextval('{PRESENCE}_generation')
                        WHERE user_id = %(u)s AND client_id = %(c)s RETURNING generation""",
                    key,
                ).fetchone()
                assert row is not None  # locked above
                return row[0], old[0]
            row = conn.execute(
                f"""INSERT INTO {PRESENCE} (user_id, client_id, platform, node_id, generation)
                    VALUES (%(u)s, %(c)s, %(p)s, %(node)s, nextval('{PRESENCE}_generation'))
                    ON CONFLICT (user_id, client_id) DO NOTHING RETURNING generation""",
                key,
            ).fetchone()
            if row is not None:
                return row[0], None

    def unregister(self, conn: Connection, user_id: str, client_id: str, generation: int) -> bool:
        """Delete the session's row if it is still the one ``register`` wrote (not a newer connection's)."""
        with conn.transaction():
            deleted = conn.execute(
                f"""DELETE FROM {PRESENCE}
                    WHERE user_id = %s AND client_id = %s AND node_id = %s AND generation = %s""",
                (user_id, client_id, self.node_id, generation),
            ).rowcount
        return deleted == 1

    def offline(self, conn: Connection, user_ids: Iterable[str]) -> list[str]:
        """Those of ``user_ids`` with no live connection on any node, in the order given (one query)."""
        wanted = list(user_ids)
        if not wanted:
            return []
        online = {
            user_id
            for (user_id,) in conn.execute(
                f"SELECT DISTINCT p.user_id FROM {_LIVE} WHERE p.user_id = ANY(%(users)s)",
                {"users": wanted, "now": self.clock()},
            )
        }
        return [user_id for user_id in wanted if user_id not in online]

    def online_clients(self, conn: Connection, user_id: str) -> list[tuple[str, int]]:
        """(client_id, platform) of the user's live connections on every node, by client id."""
        rows = conn.execute(
            f"SELECT p.client_id, p.platform FROM {_LIVE} WHERE p.user_id = %(u)s ORDER BY p.client_id",
            {"u": user_id, "now": self.clock()},
        ).fetchall()
        return [(client_id, platform) for client_id, platform in rows]

    def holders(self, conn: Connection, user_ids: Iterable[str]) -> dict[int, set[str]]:
        """node → those of ``user_ids`` with a live connection there (one query)."""
        by_node: dict[int, set[str]] = {}
        wanted = list(user_ids)
        if wanted:
            for user_id, node in conn.execute(
                f"SELECT DISTINCT p.user_id, p.node_id FROM {_LIVE} WHERE p.user_id = ANY(%(users)s)",
                {"users": wanted, "now": self.clock()},
            ):
                by_node.setdefault(node, set()).add(user_id)
        return by_node

    def session_node(self, conn: Connection, user_id: str, client_id: str) -> int | None:
        """The live node holding that session's connection, if any (where a kick must go)."""
        row = conn.execute(
            f"SELECT p.node_id FROM {_LIVE} WHERE p.user_id = %(u)s AND p.client_id = %(c)s",
            {"u": user_id, "c": client_id, "now": self.clock()},
        ).fetchone()
        return None if row is None else row[0]

    def rows_here(self, conn: Connection) -> int:
        """How many sessions this node holds in the table (a /metrics figure)."""
        row = conn.execute(f"SELECT count(*) FROM {PRESENCE} WHERE node_id = %s", (self.node_id,)).fetchone()
        return 0 if row is None else row[0]
