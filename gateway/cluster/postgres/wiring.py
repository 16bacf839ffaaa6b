"""How ``serve`` puts a node in the cluster: the seams for ``Delivery``, the writer's hook, notices in.

- ``ClusterSeams`` is ``Presence`` and ``NoticeBus`` for ``Delivery``: registrations and kicks go through
  ``ClusterNode`` (the presence table, notices to the node holding a connection); pushes go to this node's
  Router (other nodes' devices hear of a stored message by the writer's notice, below); ``offline`` and
  ``online_clients`` stay this node's answer, synchronous as the seam is (the push decision of a stored
  message is the cluster's: ``SendResult.cluster_offline``, below; what else still asks locally is listed
  in docs/ARCHITECTURE.md). ``written`` is awaited by the handshake before CONNACK.
- ``before_commit_hook``: the PostgreSQL writer calls it in each batch's transaction: one "inbox" notice
  per other node holding a recipient (``notify.notify_holders``), and the cluster-wide offline recipients
  put on each ``SendResult`` of the batch, so the push decision is made once, by the storing node.
- ``InboxPusher``: an "inbox" notice names users and their highest new seq (and, where the batch stored
  several for one user, its first); it reads those messages and pushes each to this node's devices, in
  order (a device more than one behind pulls the rest, as docs/PROTOCOL.md §9.9 tells every client),
  rather than telling them to pull: the protocol has no "pull" push, and a push is
  what a device on the storing node gets too. After a gap (``on_resync``) it pushes each local user's
  latest message the same way: a device that missed something sees a seq past its own and pulls.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import trio

from gateway.cluster import LiveConnection
from gateway.cluster.local import Router
from gateway.cluster.postgres.node import ClusterNode
from gateway.cluster.postgres.notify import notify_holders
from gateway.cluster.postgres.presence import PresenceTable
from gateway.cluster.postgres.rooms import ClusterRooms
from gateway.cluster.postgres.tables import Connection
from protocol import codec
from protocol.codes import ConnectionStatus
from protocol.connection import encode_msg_push
from storage import Store
from storage.messages import PullResult, SendResult, pull

_UPDATE_CONTENT_TYPE = 81  # protocol.codes.ContentType.UPDATE: pushed as message_updated


class ClusterSeams:
    """``Presence`` and ``NoticeBus`` of a cluster node (module docstring)."""

    def __init__(self, node: ClusterNode, router: Router) -> None:
        self.node = node
        self.router = router
        self.push_update = router.push_update
        self.go_away = router.go_away
        self.offline = router.offline
        self.online_clients = router.online_clients
        self.offline_everywhere = node.offline
        self.online_clients_everywhere = node.online_clients
        self.written = node.written

    def push(self, user_id: str, body: bytes, except_client: str | None = None) -> int:
        """This node's devices at once; the other nodes' through the relay (a live-only word: no inbox
        row stands behind it for the writer's notice to name)."""
        self.node.relay_push(user_id, body, except_client)
        return self.router.push(user_id, body, except_client)

    def push_message(self, user_id: str, seq: int, packed_message: bytes, except_client: str | None = None) -> int:
        """A stored message (seq > 0) reaches other nodes by the writer's notice; a transparent one (seq 0,
        in no inbox) by the relay."""
        if seq == 0:
            self.node.relay_push(user_id, encode_msg_push(0, packed_message), except_client)
        return self.router.push_message(user_id, seq, packed_message, except_client)

    def register(self, conn: LiveConnection) -> None:
        self.node.register(conn)

    def unregister(self, conn: LiveConnection) -> None:
        self.node.unregister(conn)

    def kick(self, user_id: str, client_id: str, status: ConnectionStatus) -> None:
        self.node.kick(user_id, client_id, status)

    def close_user(self, user_id: str, status: ConnectionStatus) -> None:
        self.node.close_user(user_id, status)


class _PlainCursor:
    """The writer's connection with psycopg's own ``%s`` placeholders (the store's cursors take ``$n``)."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Any = None) -> psycopg.Cursor[Any]:
        return psycopg.Cursor(self.raw).execute(sql, params)


class NoticesSent:
    """How many "inbox" notices this node's writer sent (for /metrics; only the writer thread adds)."""

    count = 0


def before_commit_hook(node_id: int, sent: NoticesSent | None = None) -> Any:
    """The PostgreSQL store's ``before_commit`` for this node (runs on the writer thread)."""
    presence = PresenceTable(node_id)
    counter = sent or NoticesSent()

    def hook(tx: Any, heads: dict[str, int], results: list[object]) -> None:
        if not heads:
            return
        conn: Connection = _PlainCursor(tx.raw)  # type: ignore[assignment]
        # Each recipient's lowest seq among the batch's sends, where the batch's sends fill every seq from
        # there to its head (then the other node pushes each, and none of another batch's twice).
        lows: dict[str, int] = {}
        counts: dict[str, int] = {}
        sends = list(_send_results(results))
        for one in sends:
            for user_id, seq in one.seqs.items():
                counts[user_id] = counts.get(user_id, 0) + 1
                if seq < lows.get(user_id, seq + 1):
                    lows[user_id] = seq
        firsts = {
            user_id: low
            for user_id, low in lows.items()
            if user_id in heads and counts[user_id] == heads[user_id] - low + 1
        }
        notified = notify_holders(conn, presence, heads, firsts)
        counter.count += sum(notified.notices.values())
        offline = frozenset(notified.offline)
        for one in sends:
            one.cluster_offline = offline

    return hook


def _send_results(results: list[object]) -> Iterator[SendResult]:
    """The stored messages among a batch's results: a send's ``SendResult``, a group send's several, and
    the notification an operation stored (a group operation's ``stored``: its push decision is the
    cluster's too, not this node's)."""
    for result in results:
        for one in result if isinstance(result, tuple | list) else (result,):
            if isinstance(one, SendResult):
                yield one
            elif isinstance(stored := getattr(one, "stored", None), SendResult):
                yield stored


#: Most messages one notice has pushed per user (a longer run: the device pulls the rest, as after a gap).
PUSH_PER_NOTICE = 100


def _latest(conn: Any, wanted: dict[str, list[tuple[int, int]]]) -> list[tuple[str, PullResult]]:
    """For each user and range, the messages from the first seq to the last given (or the next they still
    have); last 0: their newest."""
    found = []
    for user_id, ranges in wanted.items():
        for first, seq in ranges:
            if seq <= 0:
                row = conn.execute("SELECT MAX(seq) FROM inbox WHERE user_id = ?", (user_id,)).fetchone()
                seq = first = row[0] or 0
                if not seq:
                    continue
            first = max(first, seq - PUSH_PER_NOTICE + 1)
            found.append((user_id, pull(conn, user_id, first - 1, seq - first + 1, 0, 2**62)))
    return found


def _merge(into: dict[str, list[tuple[int, int]]], wanted: dict[str, tuple[int, int]]) -> None:
    """Add one notice's ranges; a range that touches the user's last one joins it (one read, not two).
    Ranges that do not touch stay apart: the seqs between may be another node's, pushed already."""
    for user_id, (first, seq) in wanted.items():
        ranges = into.setdefault(user_id, [])
        if ranges and seq > 0:
            f0, s0 = ranges[-1]
            if s0 > 0 and first <= s0 + 1 and seq >= f0 - 1:
                ranges[-1] = (min(f0, first), max(s0, seq))
                continue
        if (first, seq) not in ranges:
            ranges.append((first, seq))


class InboxPusher:
    """Notices in → pushes to this node's devices, in the order the notices came (one task)."""

    def __init__(self, store: Store, router: Router) -> None:
        self.store = store
        self.router = router
        self._send, self._receive = trio.open_memory_channel[dict[str, tuple[int, int]]](4096)
        self.pushed = self.resyncs = self.dropped = 0

    def on_inbox(self, seqs: dict[str, int], firsts: dict[str, int] | None = None) -> None:
        lows = firsts or {}
        here = {
            user_id: (min(lows.get(user_id, seq), seq), seq)
            for user_id, seq in seqs.items()
            if self.router.connections(user_id)
        }
        if here:
            self._put(here)

    def on_resync(self) -> None:
        self.resyncs += 1
        users = {conn.user_id for conn in self.router.all_connections()}
        if users:
            self._put(dict.fromkeys(users, (0, 0)))

    def _put(self, wanted: dict[str, tuple[int, int]]) -> None:
        try:
            self._send.send_nowait(wanted)
        except trio.WouldBlock:
            self.dropped += 1  # the devices pull at their next push or reconnect

    async def run(self) -> None:
        async for wanted in self._receive:
            # Everything that queued meanwhile goes in the same read: under load one read serves many
            # notices (one read per notice capped a node at what one read costs: ~400/s on a busy box).
            merged: dict[str, list[tuple[int, int]]] = {}
            _merge(merged, wanted)
            while True:
                try:
                    _merge(merged, self._receive.receive_nowait())
                except trio.WouldBlock:
                    break
            try:
                found = await self.store.read(_latest, merged)
            except Exception:  # noqa: BLE001 - the database is away: these devices catch up at the next push
                self.dropped += 1
                continue
            for user_id, page in found:
                for seq, message in page.messages:
                    packed = codec.pack(message.to_wire())
                    if message.content.get("type") == _UPDATE_CONTENT_TYPE:
                        self.pushed += self.router.push_update(user_id, seq, packed)
                    else:
                        self.pushed += self.router.push_message(user_id, seq, packed)


def cluster_figures(
    node: ClusterNode, pusher: InboxPusher, sent: NoticesSent, rooms: ClusterRooms | None = None
) -> dict[str, tuple[str, str, float]]:
    """This node's cluster figures for /metrics: name → (kind, help, value)."""
    listener = node.listener
    figures: dict[str, tuple[str, str, float]] = {
        "ember_cluster_notices_sent_total": ("counter", "Inbox notices this node's writer sent to other nodes.", sent.count),
        "ember_cluster_notices_received_total": ("counter", "Notices this node's listener received.", listener.received),
        "ember_cluster_notices_dropped_total": ("counter", "Notices dropped (queue full): a resync followed.", listener.dropped),
        "ember_cluster_listener_reconnects_total": ("counter", "LISTEN connections re-established.", listener.reconnects),
        "ember_cluster_resyncs_total": ("counter", "Gaps after which every local device was told of its newest message.", listener.resyncs),
        "ember_cluster_pushes_total": ("counter", "Pushes made on other nodes' notices.", pusher.pushed),
        "ember_cluster_presence_rows": ("gauge", "Sessions this node holds in the presence table.", len(node._sessions)),
        "ember_cluster_presence_write_failures_total": ("counter", "Presence writes retried (database away).", node.write_failures),
        "ember_cluster_pushes_relayed_total": ("counter", "Live-only pushes this node wrote for other nodes' devices.", node.pushes_relayed),
        "ember_cluster_relayed_pushes_received_total": ("counter", "Relayed pushes handed to this node's devices.", node.pushes_received),
    }
    if rooms is not None:
        figures |= {
            "ember_cluster_room_messages_published_total": ("counter", "Chatroom messages this node relayed (committed).", rooms.published),
            "ember_cluster_room_messages_fetched_total": ("counter", "Chatroom messages this node read from the relay table.", rooms.fetched),
            "ember_cluster_room_messages_lost_total": ("counter", "Chatroom messages trimmed before this node read them.", rooms.lost),
            "ember_cluster_room_failures_total": ("counter", "Relay writes or reads that failed (database away).", rooms.failed),
            "ember_cluster_room_resends_total": ("counter", "Chatroom sends answered with an earlier send's ack (same client_msg_id).", rooms.resends),
        }
    return figures
