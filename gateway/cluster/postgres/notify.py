"""The storage writer's hook: in the transaction that stores a batch, wake the nodes holding its recipients.

``notify_holders`` runs inside that transaction, after the batch's rows are written and before COMMIT, so
a notice exists if and only if its messages committed (PostgreSQL delivers NOTIFY at commit and drops it at
rollback). It costs two statements per batch whatever the batch holds: one query finds the live nodes of
all the recipients, one ``SELECT pg_notify(...)`` over an array sends one "inbox" notice per node (more only
if one node's users overflow a payload). A 2,000-member group message with members on three nodes sends
three notices, not 2,000.

The same query answers the push decision for the whole cluster: the recipients found on no live node are
the batch's offline users, so the node that stored the batch sends their pushes, once, and no other node
asks again (``BatchNotified.offline``).

storage/ may not import the gateway (the layers contract), so the writer does not import this: the
gateway hands it to the PostgreSQL store as a callable (``notify_holders`` bound to this node with
``functools.partial``) when it opens the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.cluster.postgres.notices import channel_name, encode_inbox
from gateway.cluster.postgres.presence import PresenceTable
from gateway.cluster.postgres.tables import Connection


@dataclass
class BatchNotified:
    offline: list[str]  # recipients with no live connection on any node (push candidates), in order
    notices: dict[int, int] = field(default_factory=dict)  # node → notices sent to it


def notify_holders(
    conn: Connection,
    presence: PresenceTable,
    recipients: Mapping[str, int],
    firsts: Mapping[str, int] | None = None,
) -> BatchNotified:
    """Notify every other live node holding one of ``recipients`` (user → highest seq in the batch).

    ``firsts``: each recipient's lowest seq in the batch (so the other node pushes every one, in order).
    This node's own recipients get no notice (the writer's node pushes to them directly) but count as
    online. Call it inside the batch's transaction.
    """
    if not recipients:
        return BatchNotified(offline=[])
    by_node = presence.holders(conn, recipients)
    online = set().union(*by_node.values()) if by_node else set()
    result = BatchNotified(offline=[user_id for user_id in recipients if user_id not in online])
    channels: list[str] = []
    payloads: list[str] = []
    for node, users in sorted(by_node.items()):
        if node == presence.node_id:
            continue
        node_payloads = encode_inbox(
            presence.node_id, {u: recipients[u] for u in recipients if u in users}, dict(firsts or {})
        )
        result.notices[node] = len(node_payloads)
        channels.extend(channel_name(node) for _ in node_payloads)
        payloads.extend(node_payloads)
    if payloads:
        conn.execute(
            "SELECT pg_notify(c, p) FROM unnest(%s::text[], %s::text[]) AS t(c, p)", (channels, payloads)
        )
    return result
