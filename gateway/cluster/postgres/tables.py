"""The cluster's tables: who holds which node id, and which node holds which live session.

They are runtime state, not data: after a restart of the whole cluster every row is stale anyway (nobody
is connected), so they are UNLOGGED (no WAL: cheaper to write, emptied by PostgreSQL after a crash, which
is exactly right) and created by each node at start (``ensure_tables``) rather than by the schema
migrations, whose SQLite and PostgreSQL lists must stay alike (docs/ARCHITECTURE.md says why in full).

``ember_cluster_nodes``: one row per node id: the holder (host, pid, start time, a random incarnation that
tells this start from an earlier one of the same id) and its lease. A presence row counts only while its
node's lease runs: the heartbeat renews one row, not one per session.

``ember_cluster_presence``: one row per live session (user, client): its platform, the node whose
connection holds it, and a generation from a sequence, larger for a later registration, so a node told
"this session moved" closes its connection only if that connection is the older one.

``ember_cluster_rooms``, ``ember_cluster_room_members``, ``ember_cluster_room_messages``: the chatrooms'
shared state (``rooms``): each room's message counter, who is present on which node (a row counts while
its node's lease runs, as presence), and the room's last messages, which every node delivers in order.

``ember_cluster_pushes``: live-only words for devices on another node (a deletion, a relation head, a
transparent message): no inbox row stands behind them, so the writer's notice cannot carry them; the node
holding the device reads and deletes its rows on a "push" notice (``node.ClusterNode.relay_push``).

``ember_cluster_badges``: each offline user's push badge (pushes since it was last online on any node;
``badges``).
"""

from __future__ import annotations

from typing import Any

import psycopg

#: A psycopg connection in autocommit mode (``database.connect``): each block here opens its own transaction.
Connection = psycopg.Connection[Any]

NODES = "ember_cluster_nodes"
PRESENCE = "ember_cluster_presence"
ROOMS = "ember_cluster_rooms"
ROOM_MEMBERS = "ember_cluster_room_members"
ROOM_MESSAGES = "ember_cluster_room_messages"
ADMIN_NONCES = "ember_cluster_admin_nonces"
PUSHES = "ember_cluster_pushes"
BADGES = "ember_cluster_badges"

_DDL = (
    f"""CREATE UNLOGGED TABLE IF NOT EXISTS {NODES} (
        node_id     integer PRIMARY KEY,
        incarnation text NOT NULL,
        host        text NOT NULL,
        pid         integer NOT NULL,
        started_at  timestamptz NOT NULL,
        lease_until timestamptz NOT NULL
    )""",
    f"""CREATE UNLOGGED TABLE IF NOT EXISTS {PRESENCE} (
        user_id    text NOT NULL,
        client_id  text NOT NULL,
        platform   smallint NOT NULL,
        node_id    integer NOT NULL,
        generation bigint NOT NULL,
        PRIMARY KEY (user_id, client_id)
    )""",
    f"CREATE INDEX IF NOT EXISTS {PRESENCE}_node ON {PRESENCE} (node_id)",
    f"CREATE SEQUENCE IF NOT EXISTS {PRESENCE}_generation",
    # Chatrooms (gateway.cluster.postgres.rooms): a room's message counter (its row lock orders the room's
    # messages across nodes), the devices present in it and on which node, and its recent messages.
    f"""CREATE UNLOGGED TABLE IF NOT EXISTS {ROOMS} (
        chatroom_id text PRIMARY KEY,
        seq         bigint NOT NULL
    )""",
    f"""CREATE UNLOGGED TABLE IF NOT EXISTS {ROOM_MEMBERS} (
        user_id     text NOT NULL,
        client_id   text NOT NULL,
        chatroom_id text NOT NULL,
        node_id     integer NOT NULL,
        joined      bigint NOT NULL,
        PRIMARY KEY (user_id, client_id)
    )""",
    f"CREATE SEQUENCE IF NOT EXISTS {ROOM_MEMBERS}_joined",
    f"CREATE INDEX IF NOT EXISTS {ROOM_MEMBERS}_room ON {ROOM_MEMBERS} (chatroom_id, node_id)",
    # The admin API's spent nonces, until their request's timestamp leaves the window (``nonces``). Logged,
    # unlike the rest: a database crash must not forget them, or a recorded request could be replayed.
    f"""CREATE TABLE IF NOT EXISTS {ADMIN_NONCES} (
        nonce      text PRIMARY KEY,
        expires_at bigint NOT NULL
    )""",
    # Pushes for another node's devices, by the node that holds them; read and deleted there in id order.
    f"""CREATE UNLOGGED TABLE IF NOT EXISTS {PUSHES} (
        id            bigserial PRIMARY KEY,
        node_id       integer NOT NULL,
        user_id       text NOT NULL,
        except_client text,
        body          bytea NOT NULL,
        created_at    timestamptz NOT NULL DEFAULT now()
    )""",
    f"CREATE INDEX IF NOT EXISTS {PUSHES}_node ON {PUSHES} (node_id, id)",
    f"""CREATE UNLOGGED TABLE IF NOT EXISTS {BADGES} (
        user_id text PRIMARY KEY,
        badge   integer NOT NULL
    )""",
    f"""CREATE UNLOGGED TABLE IF NOT EXISTS {ROOM_MESSAGES} (
        chatroom_id   text NOT NULL,
        seq           bigint NOT NULL,
        message_id    bigint NOT NULL,
        in_history    boolean NOT NULL,
        origin_user   text,
        origin_client text,
        packed        bytea NOT NULL,
        PRIMARY KEY (chatroom_id, seq)
    )""",
    # A sender's client_msg_id, so a resend through another node (after a reconnect) is answered with the
    # first send's ack, not delivered twice: the room's row lock orders the check and the insert.
    f"ALTER TABLE {ROOM_MESSAGES} ADD COLUMN IF NOT EXISTS client_msg_id text",
    f"""CREATE INDEX IF NOT EXISTS {ROOM_MESSAGES}_resend ON {ROOM_MESSAGES} (chatroom_id, origin_user, client_msg_id)
        WHERE client_msg_id IS NOT NULL""",
)

# Two nodes starting at once may both run CREATE ... IF NOT EXISTS, which can still fail on the catalog's
# unique index in PostgreSQL; an advisory lock taken for the transaction serialises them.
_DDL_LOCK = 0x656D6265  # "embe"


def ensure_tables(conn: Connection) -> None:
    """Create the cluster's tables if they are missing (idempotent; every node runs it at start)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
        for statement in _DDL:
            conn.execute(statement)
