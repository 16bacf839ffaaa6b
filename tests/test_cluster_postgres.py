"""The cluster's building blocks on a real PostgreSQL (issue 24): node ids, presence, notices.

Whole gateways cannot run on PostgreSQL yet, so a "node" here is its objects (a ``NodeLease``, a
``PresenceTable``, a ``NoticeListener``), each with its own connections, several in one test process. The
lease clock is moved by hand (``LeaseClock``), never slept on; notices are awaited, never waited for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import trio

from gateway.cluster.local import Router
from gateway.cluster.postgres import notices
from gateway.cluster.postgres.database import ClusterDatabase, connect
from gateway.cluster.postgres.listener import NoticeListener
from gateway.cluster.postgres.node import ClusterNode
from gateway.cluster.postgres.nodes import LEASE_SECONDS, NodeIdTaken, NodeLease
from gateway.cluster.postgres.notices import (
    MAX_PAYLOAD_BYTES,
    CloseUserNotice,
    InboxNotice,
    KickNotice,
    ReplaceNotice,
    RoomChangedNotice,
    RoomNotice,
    UserStatusNotice,
    channel_name,
    decode,
    encode,
    encode_inbox,
    send_notice,
)
from gateway.cluster.postgres.notify import notify_holders
from gateway.cluster.postgres.presence import PresenceTable
from gateway.cluster.postgres.tables import NODES, PRESENCE, Connection, ensure_tables
from protocol.codes import ConnectionStatus, Platform, platform_class

#: The PostgreSQL pass would repeat this module unchanged: it runs on the private PostgreSQL server it names.
pytestmark = pytest.mark.own_backend


@pytest.fixture
def url(pg_empty_url: str) -> str:
    """A database of this test's own (tests/conftest.py), with the cluster's tables: a cluster of nobody."""
    with connect(pg_empty_url) as conn:
        ensure_tables(conn)
    return pg_empty_url


class LeaseClock:
    """The lease clock of every node in a test, moved by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Node:
    """One node's cluster parts, on its own connection."""

    def __init__(self, url: str, node_id: int, clock: LeaseClock, host: str = "") -> None:
        self.conn: Connection = connect(url)
        self.lease = NodeLease(node_id, clock=clock, host=host or f"host-{node_id}", pid=1000 + node_id)
        self.presence = PresenceTable(node_id, clock=clock)

    def start(self) -> Node:
        self.lease.claim(self.conn)
        return self

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def clock() -> LeaseClock:
    return LeaseClock()


@pytest.fixture
def nodes(url: str, clock: LeaseClock) -> Iterator[dict[int, Node]]:
    made: dict[int, Node] = {}
    yield made
    for node in made.values():
        node.close()


def start_nodes(url: str, clock: LeaseClock, made: dict[int, Node], *ids: int) -> list[Node]:
    for node_id in ids:
        made[node_id] = Node(url, node_id, clock).start()
    return [made[node_id] for node_id in ids]


# --- node identity ---------------------------------------------------------------------------------


def test_a_second_node_with_the_same_id_is_refused_naming_the_first(url, clock, nodes):
    (first,) = start_nodes(url, clock, nodes, 1)
    second = nodes[99] = Node(url, 1, clock, host="other-host")
    with pytest.raises(NodeIdTaken) as refused:
        second.lease.claim(second.conn)
    message = str(refused.value)
    assert "\n" not in message
    assert "server.node_id 1" in message and "host host-1" in message and "pid 1001" in message
    assert "started 2026-01-01T00:00:00" in message
    # The first keeps its id, renewing as before; a different id starts fine beside it.
    assert first.lease.renew(first.conn)
    start_nodes(url, clock, nodes, 2)


def test_an_id_whose_lease_ran_out_is_taken_and_its_old_holder_learns_it_lost_it(url, clock, nodes):
    (dead,) = start_nodes(url, clock, nodes, 1)
    dead.presence.register(dead.conn, "alice", "phone", Platform.ANDROID)
    clock.advance(LEASE_SECONDS - 0.5)
    restarted = nodes[99] = Node(url, 1, clock, host="host-1b")
    with pytest.raises(NodeIdTaken):  # still inside the dead node's lease
        restarted.lease.claim(restarted.conn)
    clock.advance(1)
    restarted.lease.claim(restarted.conn)
    # The previous holder's sessions died with it; if it was only cut off, its next renew says it lost the id.
    assert restarted.presence.offline(restarted.conn, ["alice"]) == ["alice"]
    assert not dead.lease.renew(dead.conn)
    assert restarted.lease.renew(restarted.conn)


async def test_keep_calls_on_lost_once_another_node_took_the_id(url, clock, nodes, autojump_clock):
    (cut_off,) = start_nodes(url, clock, nodes, 1)
    clock.advance(LEASE_SECONDS + 1)
    taker = nodes[99] = Node(url, 1, clock, host="taker")
    taker.lease.claim(taker.conn)
    lost = trio.Event()
    db = await ClusterDatabase.open(url)
    try:
        with trio.fail_after(60):
            await cut_off.lease.keep(db, lost.set)
    finally:
        await db.aclose()
    assert lost.is_set()


# --- presence ------------------------------------------------------------------------------------


def test_presence_across_two_nodes(url, clock, nodes):
    a, b = start_nodes(url, clock, nodes, 1, 2)
    phone = a.presence.register(a.conn, "alice", "phone", Platform.IOS)
    b.presence.register(b.conn, "bob", "desk", Platform.WINDOWS)
    b.presence.register(b.conn, "alice", "desk", Platform.WINDOWS)
    for node in (a, b):  # the same answer from every node, in the order asked, duplicates kept
        assert node.presence.offline(node.conn, ["carol", "alice", "bob", "carol"]) == ["carol", "carol"]
        assert node.presence.online_clients(node.conn, "alice") == [
            ("desk", Platform.WINDOWS),
            ("phone", Platform.IOS),
        ]
        assert node.presence.holders(node.conn, ["alice", "bob", "carol"]) == {1: {"alice"}, 2: {"alice", "bob"}}
    assert a.presence.unregister(a.conn, "alice", "phone", phone.generation)
    assert b.presence.online_clients(b.conn, "alice") == [("desk", Platform.WINDOWS)]
    assert b.presence.session_node(b.conn, "alice", "desk") == 2
    assert b.presence.session_node(b.conn, "alice", "phone") is None
    assert a.presence.offline(a.conn, []) == []


def test_an_older_connection_ending_keeps_the_newer_row_of_its_session(url, clock, nodes):
    a, b = start_nodes(url, clock, nodes, 1, 2)
    old = a.presence.register(a.conn, "alice", "phone", Platform.IOS)
    new = b.presence.register(b.conn, "alice", "phone", Platform.IOS)
    assert new.generation > old.generation and new.replaced_on == 1
    assert not a.presence.unregister(a.conn, "alice", "phone", old.generation)  # not A's row any more
    assert a.presence.session_node(a.conn, "alice", "phone") == 2
    # Back on node 1 with a third connection: the second one's end (on node 2) leaves the third's row.
    third = a.presence.register(a.conn, "alice", "phone", Platform.IOS)
    assert third.replaced_on == 2
    assert not a.presence.unregister(a.conn, "alice", "phone", old.generation)
    assert a.presence.session_node(a.conn, "alice", "phone") == 1


def test_a_dead_nodes_sessions_stop_counting_within_its_lease(url, clock, nodes):
    dying, alive = start_nodes(url, clock, nodes, 1, 2)
    dying.presence.register(dying.conn, "alice", "phone", Platform.IOS)
    alive.presence.register(alive.conn, "bob", "phone", Platform.IOS)
    # Node 1 dies now (no more renews); node 2 keeps beating every 2 s.
    clock.advance(LEASE_SECONDS / 2)
    assert alive.lease.renew(alive.conn)
    assert alive.presence.offline(alive.conn, ["alice", "bob"]) == []
    clock.advance(LEASE_SECONDS / 2)  # node 1's last lease has run out: its rows no longer count
    assert alive.presence.offline(alive.conn, ["alice", "bob"]) == ["alice"]
    assert alive.presence.online_clients(alive.conn, "alice") == []
    assert alive.presence.holders(alive.conn, ["alice", "bob"]) == {2: {"bob"}}
    assert alive.lease.renew(alive.conn)
    # That heartbeat also deleted the dead node's rows; the live node's stay.
    assert alive.presence.rows_here(alive.conn) == 1
    assert dying.presence.rows_here(alive.conn) == 0


# --- notices -------------------------------------------------------------------------------------


def test_payloads_round_trip_and_stay_under_the_notify_limit():
    for notice in (
        InboxNotice(3, {"alice": 41, "bøb": 7}),
        InboxNotice(3, {"alice": 41, "bøb": 7}, {"alice": 39}),
        ReplaceNotice(3, "alice", "phone", 12),
        RoomNotice(3, "lobby", 17),
        RoomChangedNotice(3, "lobby"),
        UserStatusNotice(3, "alice", 1),
        KickNotice(3, "alice", "phone", ConnectionStatus.KICKED_OFF),
        CloseUserNotice(3, "alice", ConnectionStatus.REJECTED),
    ):
        assert decode(encode(notice)) == notice
    assert encode(InboxNotice(2, {"alice": 41, "bob": 7})) == '{"v":1,"n":2,"k":"inbox","u":{"alice":41,"bob":7}}'
    # A batch that stored alice's 39..41: the first goes along, so the other node pushes all three.
    assert encode_inbox(2, {"alice": 41, "bob": 7}, {"alice": 39, "bob": 7}) == [
        '{"v":1,"n":2,"k":"inbox","u":{"alice":41,"bob":7},"f":{"alice":39}}'
    ]
    many = {f"{'ü' * 60}{i:04d}": 10**12 + i for i in range(2000)}  # 64-character ids of 2-byte characters
    payloads = encode_inbox(1, many)
    assert len(payloads) > 1 and all(len(p.encode()) <= MAX_PAYLOAD_BYTES for p in payloads)
    merged: dict[str, int] = {}
    for payload in payloads:
        notice = decode(payload)
        assert isinstance(notice, InboxNotice)
        merged |= notice.seqs
    assert merged == many and list(merged) == list(many)
    for garbage in ("", "null", "[]", '{"v":2,"n":1,"k":"inbox","u":{}}', '{"v":1,"n":1,"k":"zap"}', '{"v":1}'):
        assert decode(garbage) is None
    assert channel_name(1023) == "ember_node_1023"
    with pytest.raises(ValueError):
        channel_name(1024)


class Ears:
    """A node's listener in a test: notices in order, and an event per resync."""

    def __init__(self, url: str, node_id: int, **options: object) -> None:
        self.resynced = trio.Event()
        self.listener = NoticeListener(url, node_id, self._resync, **options)  # type: ignore[arg-type]

    def _resync(self) -> None:
        self.resynced.set()

    async def next(self) -> notices.Notice:
        with trio.fail_after(10):
            return await self.listener.notices.receive()


def marker(conn: Connection, node_id: int, n: int) -> None:
    """A committed notice that proves, when it arrives, that nothing sent before it is still on the way."""
    send_notice(conn, node_id, CloseUserNotice(0, f"marker-{n}", 0))


async def test_a_notice_arrives_if_and_only_if_its_transaction_commits(url, clock, nodes):
    writer, holder = start_nodes(url, clock, nodes, 1, 2)
    holder.presence.register(holder.conn, "bob", "desk", Platform.WINDOWS)
    ears = Ears(url, 2)
    async with trio.open_nursery() as nursery:
        await nursery.start(ears.listener.run)
        with pytest.raises(RuntimeError), writer.conn.transaction():
            notify_holders(writer.conn, writer.presence, {"bob": 5})
            raise RuntimeError("the batch failed: rolled back")
        with writer.conn.transaction():
            notify_holders(writer.conn, writer.presence, {"bob": 6})
        assert await ears.next() == InboxNotice(1, {"bob": 6})  # the rolled-back one (seq 5) never came
        marker(writer.conn, 2, 1)
        assert await ears.next() == CloseUserNotice(0, "marker-1", 0)
        nursery.cancel_scope.cancel()
    assert ears.listener.received == 2 and ears.listener.resyncs == 0


async def test_a_batch_sends_one_notice_per_node_holding_recipients_and_names_the_offline(url, clock, nodes):
    writer, two, three = start_nodes(url, clock, nodes, 1, 2, 3)
    members = {f"m{i:02d}": 100 + i for i in range(30)}
    for i, user_id in enumerate(members):
        if i % 3 == 1:
            two.presence.register(two.conn, user_id, "phone", Platform.ANDROID)
            two.presence.register(two.conn, user_id, "desk", Platform.WINDOWS)  # two devices: still one entry
        elif i % 3 == 2:
            three.presence.register(three.conn, user_id, "phone", Platform.ANDROID)
        elif i % 2 == 0:
            writer.presence.register(writer.conn, user_id, "phone", Platform.ANDROID)
    ears2, ears3 = Ears(url, 2), Ears(url, 3)
    async with trio.open_nursery() as nursery:
        await nursery.start(ears2.listener.run)
        await nursery.start(ears3.listener.run)
        with writer.conn.transaction():
            result = notify_holders(writer.conn, writer.presence, members)
        assert result.notices == {2: 1, 3: 1}  # none to the writer's own node
        assert result.offline == [u for i, u in enumerate(members) if i % 3 == 0 and i % 2 == 1]
        got2, got3 = await ears2.next(), await ears3.next()
        assert got2 == InboxNotice(1, {u: s for i, (u, s) in enumerate(members.items()) if i % 3 == 1})
        assert got3 == InboxNotice(1, {u: s for i, (u, s) in enumerate(members.items()) if i % 3 == 2})
        for node_id, ears in ((2, ears2), (3, ears3)):  # and only one each
            marker(writer.conn, node_id, node_id)
            assert await ears.next() == CloseUserNotice(0, f"marker-{node_id}", 0)
        nursery.cancel_scope.cancel()


async def test_a_batch_too_large_for_one_payload_is_split_and_all_of_it_arrives(url, clock, nodes):
    writer, holder = start_nodes(url, clock, nodes, 1, 2)
    members = {f"{'x' * 56}{i:08d}": i for i in range(600)}
    with holder.conn.transaction():
        for user_id in members:
            holder.presence.register(holder.conn, user_id, "phone", Platform.ANDROID)
    ears = Ears(url, 2)
    async with trio.open_nursery() as nursery:
        await nursery.start(ears.listener.run)
        with writer.conn.transaction():
            result = notify_holders(writer.conn, writer.presence, members)
        assert result.notices[2] > 1
        merged: dict[str, int] = {}
        for _ in range(result.notices[2]):
            notice = await ears.next()
            assert isinstance(notice, InboxNotice)
            merged |= notice.seqs
        assert merged == members
        nursery.cancel_scope.cancel()


async def test_a_login_elsewhere_tells_the_node_holding_the_session_or_its_platform_class(url, clock, nodes):
    a, b = start_nodes(url, clock, nodes, 1, 2)
    ears = Ears(url, 1)
    async with trio.open_nursery() as nursery:
        await nursery.start(ears.listener.run)
        old = a.presence.register(a.conn, "alice", "tablet", Platform.IPAD)
        a.presence.register(a.conn, "alice", "iphone", Platform.IOS)
        # The same device reconnects through node 2: node 1 closes its older connection quietly.
        moved = b.presence.register(b.conn, "alice", "tablet", Platform.IPAD)
        assert await ears.next() == ReplaceNotice(2, "alice", "tablet", moved.generation)
        assert moved.generation > old.generation
        # An Android phone logs in on node 2: the one-device rule's kick reaches the iPhone on node 1.
        android = b.presence.register(
            b.conn,
            "alice",
            "android",
            Platform.ANDROID,
            kick_platforms=platform_class(Platform.ANDROID),
            kick_status=ConnectionStatus.KICKED_OFF,
        )
        assert android.kicked_elsewhere == [(1, "iphone")] and android.kick_here == []
        assert await ears.next() == KickNotice(2, "alice", "iphone", ConnectionStatus.KICKED_OFF)
        # Multi-endpoint mode (no class given): nobody is told anything.
        b.presence.register(b.conn, "alice", "android2", Platform.ANDROID)
        marker(b.conn, 1, 1)
        assert await ears.next() == CloseUserNotice(0, "marker-1", 0)
        nursery.cancel_scope.cancel()


async def test_the_listener_reconnects_after_its_connection_is_killed_and_asks_for_a_resync(url, clock, nodes):
    (writer,) = start_nodes(url, clock, nodes, 1)
    ears = Ears(url, 2)
    async with trio.open_nursery() as nursery:
        await nursery.start(ears.listener.run)
        first_pid = ears.listener.backend_pid
        writer.conn.execute("SELECT pg_terminate_backend(%s)", (first_pid,))
        with trio.fail_after(10):
            await ears.resynced.wait()
        assert ears.listener.reconnects == 1 and ears.listener.backend_pid != first_pid
        marker(writer.conn, 2, 1)  # and it hears again
        assert await ears.next() == CloseUserNotice(0, "marker-1", 0)
        nursery.cancel_scope.cancel()
    assert ears.listener.resyncs == 1


async def test_a_full_queue_drops_notices_and_asks_for_a_resync(url, clock, nodes):
    (writer,) = start_nodes(url, clock, nodes, 1)
    ears = Ears(url, 2, capacity=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(ears.listener.run)
        with writer.conn.transaction():  # nobody reads: two fit, the third is dropped
            for n in range(5):
                marker(writer.conn, 2, n)
        with trio.fail_after(10):
            await ears.resynced.wait()
        assert [await ears.next(), await ears.next()] == [CloseUserNotice(0, f"marker-{n}", 0) for n in (0, 1)]
        # Reading again makes room: the rest (each dropped or kept, as the race went) and a last marker come.
        marker(writer.conn, 2, 99)
        kept = []
        while (notice := await ears.next()) != CloseUserNotice(0, "marker-99", 0):
            kept.append(notice)
        nursery.cancel_scope.cancel()
    listener = ears.listener
    assert listener.dropped >= 1 and listener.received + listener.dropped == 6 and listener.resyncs >= 1
    assert kept == sorted(kept, key=lambda n: int(n.user_id.split("-")[1]))  # order kept among what was kept


def test_tables_are_unlogged_and_created_idempotently(url):
    with connect(url) as conn:
        ensure_tables(conn)  # a second node starting: nothing changes, nothing fails
        kinds = dict(
            conn.execute(
                "SELECT relname, relpersistence FROM pg_class WHERE relname = ANY(%s)", ([NODES, PRESENCE],)
            ).fetchall()
        )
    assert kinds == {NODES: "u", PRESENCE: "u"}


def test_bad_input_never_reaches_sql_as_text(url, clock, nodes):
    (a,) = start_nodes(url, clock, nodes, 1)
    hostile = "x'); DROP TABLE ember_cluster_nodes; --"
    a.presence.register(a.conn, hostile, "c", Platform.IOS)
    assert a.presence.offline(a.conn, [hostile, "y"]) == ["y"]
    with pytest.raises(ValueError):
        channel_name(-1)


# --- a node put together (ClusterNode), with stand-in connections ------------------------------------


class Device:
    """A connection stand-in that records what reached it (the thing under test is the node around it)."""

    def __init__(self, user_id: str, client_id: str, platform: int) -> None:
        self.user_id, self.client_id, self.platform = user_id, client_id, platform
        self.kicked: list[ConnectionStatus] = []
        self.replaced = False
        self.last_active = 0.0
        self.changed = trio.Event()

    def push_frame_body(self, body: bytes) -> None:
        pass

    def kick(self, status: ConnectionStatus) -> None:
        self.kicked.append(status)
        self.changed.set()

    def replace(self) -> None:
        self.replaced = True
        self.changed.set()

    def go_away(self, retry_ms: int, redirect: str) -> None:
        pass

    def release_idle_keys(self) -> None:
        pass

    async def told(self) -> None:
        with trio.fail_after(10):
            await self.changed.wait()
        self.changed = trio.Event()


def cluster_node(
    url: str, node_id: int, on_inbox: Callable[[dict[str, int]], None] = lambda seqs: None, **options: object
) -> ClusterNode:
    return ClusterNode(
        url,
        node_id,
        Router(),
        on_inbox=on_inbox,
        on_resync=lambda: None,
        on_lease_lost=lambda: None,
        kick_platforms=platform_class,
        kick_status=ConnectionStatus.KICKED_OFF,
        **options,  # type: ignore[arg-type]
    )


async def test_two_nodes_share_presence_and_reach_each_others_connections(url):
    inboxes: list[dict[str, int]] = []
    inbox_came = trio.Event()

    def on_inbox(seqs: dict[str, int]) -> None:
        inboxes.append(seqs)
        inbox_came.set()

    one, two = cluster_node(url, 1), cluster_node(url, 2, on_inbox)
    async with trio.open_nursery() as nursery:
        await nursery.start(one.run)
        await nursery.start(two.run)
        with pytest.raises(NodeIdTaken, match="server.node_id 1 is held"):
            await cluster_node(url, 1, claim_wait_seconds=0).run()

        tablet_1 = Device("alice", "tablet", Platform.IPAD)
        iphone = Device("alice", "iphone", Platform.IOS)
        one.register(tablet_1)
        one.register(iphone)
        await one.written()
        assert await two.offline(["bob", "alice"]) == ["bob"]
        assert await two.online_clients("alice") == [("iphone", Platform.IOS), ("tablet", Platform.IPAD)]

        # A "replace" naming an older row than node 1's (a race the other way round) leaves it alone; the
        # kick sent after it proves it was handled.
        with connect(url) as other, other.transaction():
            send_notice(other, 1, ReplaceNotice(2, "alice", "iphone", 0))
            send_notice(other, 1, KickNotice(2, "alice", "nobody", ConnectionStatus.KICKED_OFF))
            send_notice(other, 1, KickNotice(2, "alice", "iphone", ConnectionStatus.SECRET_KEY_MISMATCH))
        await iphone.told()
        assert not iphone.replaced and iphone.kicked == [ConnectionStatus.SECRET_KEY_MISMATCH]
        iphone.kicked.clear()

        # The tablet reconnects through node 2: node 1's older connection is replaced, quietly.
        tablet_2 = Device("alice", "tablet", Platform.IPAD)
        two.register(tablet_2)
        await tablet_1.told()
        assert tablet_1.replaced and tablet_1.kicked == [] and not tablet_2.replaced
        one.unregister(tablet_1)  # as the replaced connection does when it closes
        await one.written()
        assert await one.online_clients("alice") == [("iphone", Platform.IOS), ("tablet", Platform.IPAD)]

        # An Android phone logs in on node 2: the one-device rule reaches the iPhone on node 1 (-7).
        android = Device("alice", "android", Platform.ANDROID)
        two.register(android)
        await iphone.told()
        assert iphone.kicked == [ConnectionStatus.KICKED_OFF]
        one.unregister(iphone)

        # An admin kick and a forbid served by node 1 reach node 2's connections.
        one.kick("alice", "tablet", ConnectionStatus.SECRET_KEY_MISMATCH)
        await tablet_2.told()
        assert tablet_2.kicked == [ConnectionStatus.SECRET_KEY_MISMATCH]
        one.close_user("alice", ConnectionStatus.REJECTED)
        await android.told()
        assert android.kicked == [ConnectionStatus.REJECTED]

        # A batch stored by node 1 for alice reaches node 2's on_inbox.
        with connect(url) as writer, writer.transaction():
            notify_holders(writer, PresenceTable(1), {"alice": 9, "bob": 3})
        with trio.fail_after(10):
            await inbox_came.wait()
        nursery.cancel_scope.cancel()
    assert inboxes == [{"alice": 9}]
    with connect(url) as conn:  # both nodes gave their ids and sessions back at the clean stop
        assert conn.execute(f"SELECT count(*) FROM {NODES}").fetchone() == (0,)
        assert conn.execute(f"SELECT count(*) FROM {PRESENCE}").fetchone() == (0,)


def test_the_pusher_joins_touching_ranges_of_queued_notices_and_keeps_gaps_apart():
    """Notices that queued while a read ran are read together; a gap between two ranges of one user may
    be another node's messages (pushed by that node), so it is never read over."""
    from gateway.cluster.postgres.wiring import _merge

    merged: dict[str, list[tuple[int, int]]] = {}
    for wanted in ({"a": (5, 5), "b": (1, 2)}, {"a": (6, 8)}, {"a": (10, 10), "b": (3, 3)}, {"a": (0, 0)}):
        _merge(merged, wanted)
    assert merged == {"a": [(5, 8), (10, 10), (0, 0)], "b": [(1, 3)]}
