"""The SDK's message sync (client.messages) against a real in-process gateway over sockets.

Each test drives the real server; where a test needs a network fault it makes a real
one: a connection the gateway drops (``Router.connection(...).replace()``), pushes the
gateway does not deliver, an ack lost with its connection, a reconnect the gateway
refuses for a while (-9, the device clock). Nothing sleeps to "probably" see
something: tests wait on the SDK's stream or status, each bounded by trio.fail_after.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import trio

import client
from client import (
    ConnectionStatus,
    Conversation,
    ConversationType,
    ErrorCode,
    Message,
    Notify,
    RequestFailed,
    StatusChanged,
)
from client.messages import PULL_LIMIT
from storage.messages import Outgoing
from tests import harness
from tests.harness import Gateway, start_gateway

S = ConnectionStatus
TO_BOB = Conversation(ConversationType.PRIVATE, "bob")
LIMIT = 10  # seconds for any one test


def text(body: str, **more: Any) -> dict[str, Any]:
    return {"type": 1, "searchable_content": body, **more}


def texts(messages: list[Message]) -> list[str]:
    return [m.content.get("searchable_content", "") for m in messages]


@pytest.fixture
async def gw(nursery: trio.Nursery, tmp_path) -> Gateway:
    gw = await start_gateway(nursery, tmp_path, client={"request_rate_limit": 100_000})
    for user in ("alice", "bob"):
        await gw.user(user)
    return gw


def sdk(
    gw: Gateway, user: str, device: str = "phone", platform: int = 2, **kwargs: Any
) -> AbstractAsyncContextManager[client.Client]:
    """``harness.sdk``, syncing messages by default."""
    kwargs.setdefault("sync_messages", True)
    return harness.sdk(gw, user, device, platform, **kwargs)


async def take(c: client.Client, n: int) -> list[Message]:
    stream = c.messages.received()
    return [await anext(stream) for _ in range(n)]


async def assert_nothing_else(sender: client.Client, receiver: client.Client) -> None:
    """A message sent now is the next one the receiver gets: nothing (no duplicate) was waiting."""
    ack = await sender.messages.send(Conversation(0, receiver.user_id), text("sentinel"))
    (got,) = await take(receiver, 1)
    assert (got.message_id, texts([got])) == (ack.message_id, ["sentinel"])


async def statuses(c: client.Client) -> list[ConnectionStatus]:
    """The statuses on the event stream so far (non-blocking)."""
    seen = []
    while True:
        try:
            event = c.events().receive_nowait()
        except trio.WouldBlock:
            return seen
        if isinstance(event, StatusChanged):
            seen.append(event.status)


async def test_an_offline_recipient_gets_everything_in_order_exactly_once(gw: Gateway) -> None:
    count = 250
    with trio.fail_after(LIMIT):
        async with sdk(gw, "alice", sync_messages=False) as alice:
            for i in range(count):
                await alice.messages.send(TO_BOB, text(f"m{i}"))
            async with sdk(gw, "bob") as bob:
                # connect() returns after the catch-up: several pages, pulled while RECEIVING.
                assert bob.connack is not None and bob.connack.heads["msg"] == count
                assert bob.messages.pulls == -(-count // PULL_LIMIT) >= 3
                assert await statuses(bob) == [S.CONNECTING, S.RECEIVING, S.CONNECTED]
                assert bob.messages.last_seq == 0  # nothing handed to the app yet
                got = await take(bob, count)
                assert texts(got) == [f"m{i}" for i in range(count)]
                assert [m.seq for m in got] == list(range(1, count + 1))
                assert len({m.message_id for m in got}) == count
                assert {(m.from_user, m.conv) for m in got} == {("alice", TO_BOB)}
                assert bob.messages.last_seq == count
                await assert_nothing_else(alice, bob)
                saved = bob.messages.last_seq
            # The app persisted last_seq; while it was away, three more came.
            for i in range(3):
                await alice.messages.send(TO_BOB, text(f"later{i}"))
            async with sdk(gw, "bob", last_seq=saved) as bob:
                got = await take(bob, 3)
                assert texts(got) == ["later0", "later1", "later2"]
                assert [m.seq for m in got] == [saved + 1, saved + 2, saved + 3]
                await assert_nothing_else(alice, bob)


async def test_live_pushes_are_delivered_in_order_without_pulling(gw: Gateway) -> None:
    with trio.fail_after(LIMIT):
        async with sdk(gw, "alice", sync_messages=False) as alice, sdk(gw, "bob") as bob:
            acks = [await alice.messages.send(TO_BOB, text(f"live{i}")) for i in range(50)]
            got = await take(bob, 50)
            assert texts(got) == [f"live{i}" for i in range(50)]
            assert [m.message_id for m in got] == [a.message_id for a in acks]
            assert [m.seq for m in got] == list(range(1, 51))
            assert bob.messages.pulls == 0
            assert bob.messages.last_seq == 50
            # The raw pushes were the sync's: none reached the event stream.
            assert not [e for e in await _drain(bob) if isinstance(e, Notify)]


async def _drain(c: client.Client) -> list[Any]:
    out = []
    while True:
        try:
            out.append(c.events().receive_nowait())
        except trio.WouldBlock:
            return out


async def test_a_gap_in_the_pushes_is_healed_by_pulling(gw: Gateway, monkeypatch) -> None:
    service = gw.services.messages
    deliver = service.deliver
    losing = True

    def lossy(msg: Any, result: Any, origin: Any) -> None:
        if not losing:
            deliver(msg, result, origin)

    monkeypatch.setattr(service, "deliver", lossy)
    with trio.fail_after(LIMIT):
        async with sdk(gw, "alice", sync_messages=False) as alice, sdk(gw, "bob") as bob:
            await _drain(bob)
            for i in range(3):
                await alice.messages.send(TO_BOB, text(f"lost{i}"))  # stored; the pushes never leave
            losing = False
            await alice.messages.send(TO_BOB, text("pushed"))  # seq 4 arrives while bob is at 0
            got = await take(bob, 4)
            assert texts(got) == ["lost0", "lost1", "lost2", "pushed"]
            assert [m.seq for m in got] == [1, 2, 3, 4]
            assert bob.messages.pulls == 1
            assert await statuses(bob) == [S.RECEIVING, S.CONNECTED]
            await assert_nothing_else(alice, bob)


async def test_a_slow_app_makes_the_sdk_pull_later_not_buffer_everything(gw: Gateway) -> None:
    with trio.fail_after(LIMIT):
        async with (
            sdk(gw, "alice", sync_messages=False) as alice,
            sdk(gw, "bob", message_buffer=4) as bob,
        ):
            for i in range(30):
                await alice.messages.send(TO_BOB, text(f"s{i}"))
            # Every push was on bob's socket before alice's last ack, so before this PONG.
            await bob.ping()
            assert len(bob.messages._buffer) == 4 and bob.messages.pulls == 0
            assert bob.messages.last_seq == 0
            got = await take(bob, 30)
            assert texts(got) == [f"s{i}" for i in range(30)]
            assert [m.seq for m in got] == list(range(1, 31))
            assert bob.messages.pulls >= 1
            await assert_nothing_else(alice, bob)


async def test_own_messages_are_not_handed_back_but_reach_the_other_devices(gw: Gateway) -> None:
    to_alice = Conversation(ConversationType.PRIVATE, "alice")
    with trio.fail_after(LIMIT):
        async with (
            sdk(gw, "alice", "phone", platform=2) as phone,
            sdk(gw, "alice", "desktop", platform=3) as desktop,
            sdk(gw, "bob") as bob,
        ):
            for i in range(3):
                await phone.messages.send(TO_BOB, text(f"a{i}"))
            assert (await take(bob, 3))[-1].seq == 3
            for i in range(2):
                await bob.messages.send(to_alice, text(f"b{i}"))
            last = await phone.messages.send(TO_BOB, text("a3"))
            # The phone's inbox is a0 a1 a2 b0 b1 a3; it gets only what it did not send,
            # and its acks moved the sync past its own seqs, so no gap and no pull.
            got = await take(phone, 2)
            assert [(m.seq, m.from_user) for m in got] == [(4, "bob"), (5, "bob")]
            assert last.seq == 6 and phone.messages.last_seq == 6 and phone.messages.pulls == 0
            # Alice's other device gets everything in her inbox, hers included.
            got = await take(desktop, 6)
            assert texts(got) == ["a0", "a1", "a2", "b0", "b1", "a3"]
            assert [m.seq for m in got] == list(range(1, 7))
            await assert_nothing_else(bob, phone)


async def test_holes_in_the_inbox_are_stepped_over(gw: Gateway) -> None:
    with trio.fail_after(LIMIT):
        async with sdk(gw, "alice", sync_messages=False) as alice:
            acks = [await alice.messages.send(TO_BOB, text(f"m{i}")) for i in range(4)]
            async with sdk(gw, "bob") as phone:
                await take(phone, 4)
                for ack in acks[1::2]:  # delete-for-me: seqs 2 and 4 become holes
                    await phone.messages.delete(ack.message_id)
            async with sdk(gw, "bob", "desktop", platform=3) as desktop:
                got = await take(desktop, 2)
                assert [(m.seq, texts([m])[0]) for m in got] == [(1, "m0"), (3, "m2")]
                # Seq 4 is a hole at the end: one more, empty, page and the head says so.
                assert desktop.messages.last_seq == 4 and desktop.messages.pulls == 2
                await assert_nothing_else(alice, desktop)  # the next push is next: no pull
                assert desktop.messages.pulls == 2


async def test_a_connack_head_behind_the_device_is_believed(gw: Gateway) -> None:
    """A head below the device's position (a database restored from a backup older than what
    the device saw) must not hide the next messages below the tail."""
    store = gw.services.store
    with trio.fail_after(LIMIT):
        async with sdk(gw, "alice", sync_messages=False) as alice:
            for i in range(2):
                await alice.messages.send(TO_BOB, text(f"m{i}"))
            async with sdk(gw, "bob") as bob:
                newest = (await take(bob, 2))[-1]
                await bob.messages.delete(newest.message_id)
                saved = bob.messages.last_seq
            assert saved == 2
            # Restore "a backup" that lacks bob's newest inbox row, and let the gateway reload heads.
            for table in ("inbox", "inbox_recent"):  # merged or still in the log
                await store.run(lambda conn, t=table: conn.execute(f"DELETE FROM {t} WHERE user_id = 'bob' AND seq = 2"))
            await store.writer.submit(lambda conn: store._inboxes.forget())
            async with sdk(gw, "bob", last_seq=saved) as bob:
                head = bob.connack.heads["msg"]
                ack = await alice.messages.send(TO_BOB, text("after the head went back"))
                (got,) = await take(bob, 1)
                assert (got.message_id, got.seq) == (ack.message_id, head + 1)
                await assert_nothing_else(alice, bob)


async def test_a_reconnect_mid_stream_catches_up(gw: Gateway) -> None:
    """Bob's connection is cut after 40 messages; the gateway refuses him (-9) while 30 more
    are sent; then alice keeps sending while he reconnects, pulls and gets pushes at once."""
    skew = [0]
    total = 150
    bob_down = trio.Event()

    def bob_clock() -> int:
        return gw.clock.now_ms() + skew[0]

    async def send_all(alice: client.Client) -> None:
        for i in range(total):
            if i == 60:
                await bob_down.wait()
            if i == 90:
                skew[0] = 0  # let bob back in, mid-stream
            await alice.messages.send(TO_BOB, text(f"r{i}"))

    async def watch(bob: client.Client) -> None:
        await bob.wait_status(S.TIME_INCONSISTENT)  # bob is out and cannot get back in
        bob_down.set()

    with trio.fail_after(LIMIT):
        async with (
            sdk(gw, "alice", sync_messages=False) as alice,
            sdk(gw, "bob", clock=bob_clock) as bob,
            trio.open_nursery() as nursery,
        ):
            first_connack = bob.connack
            nursery.start_soon(watch, bob)
            nursery.start_soon(send_all, alice)
            got: list[Message] = []
            stream = bob.messages.received()
            while len(got) < total:
                got.append(await anext(stream))
                if len(got) == 40:
                    skew[0] = 10 * 86_400_000  # beyond server.max_clock_skew_seconds
                    conn = gw.services.delivery.node.connection("bob", "bob-phone")
                    conn.replace()
            assert texts(got) == [f"r{i}" for i in range(total)]
            assert [m.seq for m in got] == list(range(1, total + 1))
            assert bob.connack is not first_connack
            assert bob.messages.pulls >= 1
            seen = await statuses(bob)
            assert S.SERVER_DOWN in seen and S.TIME_INCONSISTENT in seen
            await assert_nothing_else(alice, bob)


async def test_a_send_whose_ack_is_lost_with_the_connection_is_resent_once(gw: Gateway, monkeypatch) -> None:
    service = gw.services.messages
    send_nowait = service.send_nowait
    tries: list[str | None] = []
    lost_acks: list[Any] = []

    def ack_lost_once(msg: Any, reply: Any, origin_client: Any) -> None:
        tries.append(msg.client_msg_id)
        if len(tries) > 1:
            send_nowait(msg, reply, origin_client)
            return
        conn = gw.services.delivery.node.connection(msg.from_user, origin_client)

        def drop_connection_instead(code: int, result: Any) -> None:
            lost_acks.append((code, result))  # committed, but the ack never leaves
            conn.replace()

        send_nowait(msg, drop_connection_instead, origin_client)

    monkeypatch.setattr(service, "send_nowait", ack_lost_once)
    with trio.fail_after(LIMIT):
        async with sdk(gw, "alice", sync_messages=False) as alice, sdk(gw, "bob") as bob:
            await _drain(alice)
            ack = await alice.messages.send(TO_BOB, text("exactly once"))
            assert len(tries) == 2 and tries[0] == tries[1] == ack.client_msg_id
            assert len(ack.client_msg_id) == 32  # generated by the SDK
            [(code, original)] = lost_acks
            assert code == 0
            assert (ack.message_id, ack.server_time, ack.seq) == (
                original["message_id"],
                original["server_time"],
                original["seq"],
            )
            assert S.SERVER_DOWN in await statuses(alice)
            (got,) = await take(bob, 1)
            assert (got.message_id, texts([got])) == (ack.message_id, ["exactly once"])
            await assert_nothing_else(alice, bob)


async def test_large_messages_are_pulled_in_pages_that_fit_a_frame(gw: Gateway) -> None:
    """Legal messages can add up to more than the 256 KiB frame limit in one pull page of the
    default size: the server cuts pages by bytes, so the SDK never loses its connection over it."""
    big = text("x" * 16_000, data=b"y" * 65_000)  # ~81 KB each, within the server's limits
    with trio.fail_after(LIMIT):
        async with sdk(gw, "alice", sync_messages=False) as alice:
            for _ in range(5):
                await alice.messages.send(TO_BOB, big)
            async with sdk(gw, "bob") as bob:
                got = await take(bob, 5)
                assert [m.seq for m in got] == [1, 2, 3, 4, 5]
                assert all(m.content["data"] == big["data"] for m in got)
                assert S.SERVER_DOWN not in await statuses(bob)
                assert bob.messages.pulls >= 2  # more than one page was needed
                await assert_nothing_else(alice, bob)


async def test_transparent_messages_are_delivered_live_and_never_pulled(gw: Gateway) -> None:
    with trio.fail_after(LIMIT):
        async with sdk(gw, "alice", sync_messages=False) as alice:
            async with sdk(gw, "bob") as bob:
                typing = await alice.messages.send(TO_BOB, text("typing", persist_flag=4))
                assert typing.seq == 0
                await alice.messages.send(TO_BOB, text("after"))
                got = await take(bob, 2)
                assert texts(got) == ["typing", "after"]
                assert [(m.seq, m.transparent) for m in got] == [(0, True), (1, False)]
                assert bob.messages.last_seq == 1  # transparent ones are not counted
            # Another device of bob's catches up from the inbox: only the stored message.
            async with sdk(gw, "bob", "desktop", platform=3) as desktop:
                (got,) = await take(desktop, 1)
                assert texts([got]) == ["after"] and desktop.messages.pulls == 1
                await assert_nothing_else(alice, desktop)


async def test_a_recall_arrives_as_a_type_80_message(gw: Gateway) -> None:
    with trio.fail_after(LIMIT):
        async with sdk(gw, "alice", sync_messages=False) as alice, sdk(gw, "bob") as bob:
            ack = await alice.messages.send(TO_BOB, text("oops"))
            (original,) = await take(bob, 1)
            recall = await alice.messages.recall(ack.message_id)
            (notice,) = await take(bob, 1)
            assert notice.content_type == 80
            assert notice.recalled_message_id == original.message_id == ack.message_id
            assert (notice.message_id, notice.seq, notice.from_user) == (recall.message_id, 2, "alice")
            with pytest.raises(RequestFailed) as info:
                await alice.messages.recall(ack.message_id)
            assert info.value.code == ErrorCode.NOT_EXIST
        # A device that syncs later sees the notice in the original's place, then the notice.
        async with sdk(gw, "bob", "desktop", platform=3) as desktop:
            got = await take(desktop, 2)
            assert [(m.seq, m.content_type) for m in got] == [(1, 80), (2, 80)]
            assert got[0].message_id == ack.message_id and "oops" not in repr(got)


async def test_delete_history_and_blacklist_wrappers(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path, message={"remote_history": True})
    for user in ("alice", "bob"):
        await gw.user(user)
    with trio.fail_after(LIMIT):
        async with (
            sdk(gw, "alice", sync_messages=False) as alice,
            sdk(gw, "bob", "phone", platform=2) as phone,
            sdk(gw, "bob", "desktop", platform=3) as desktop,
        ):
            acks = [await alice.messages.send(TO_BOB, text(f"h{i}")) for i in range(3)]
            history = await phone.messages.history(Conversation(0, "alice"), count=2)
            assert texts(history) == ["h2", "h1"] and {m.seq for m in history} == {0}
            older = await phone.messages.history(Conversation(0, "alice"), before_id=history[-1].message_id)
            assert texts(older) == ["h0"]

            await phone.messages.delete(acks[1].message_id)
            async for event in desktop.events():
                if isinstance(event, Notify) and event.topic == client.MESSAGE_DELETED_TOPIC:
                    assert event.data == {"message_id": acks[1].message_id}
                    break
            with pytest.raises(RequestFailed) as info:
                await phone.messages.delete(acks[1].message_id)
            assert info.value.code == ErrorCode.NOT_EXIST

            await phone.messages.set_blacklist("alice", True)
            assert await desktop.messages.get_blacklist() == ["alice"]
            with pytest.raises(RequestFailed) as info:
                await alice.messages.send(TO_BOB, text("blocked"))
            assert info.value.code == ErrorCode.IN_BLACKLIST
            await phone.messages.set_blacklist("alice", False)
            assert await phone.messages.get_blacklist() == []


async def test_received_needs_the_sync_and_ends_with_the_client(gw: Gateway) -> None:
    with trio.fail_after(LIMIT):
        async with sdk(gw, "bob", sync_messages=False) as plain:
            with pytest.raises(RuntimeError):
                plain.messages.received()
        async with sdk(gw, "bob") as bob:
            pass
        assert [m async for m in bob.messages.received()] == []


async def test_a_pull_refused_for_frequency_waits_and_catches_up(nursery: trio.Nursery, tmp_path) -> None:
    """Pulls are charged by what they return (docs/PROTOCOL.md §8.1): with a limit of 3 a fourth 100-message
    page is refused (250) in the first 5 s window; the SDK waits, pulls again and still gets everything."""
    gw = await start_gateway(nursery, tmp_path, client={"request_rate_limit": 3})
    for user in ("alice", "bob"):
        await gw.user(user)
    count = 450
    with trio.fail_after(3 * LIMIT):
        async with trio.open_nursery() as senders:
            for i in range(count):
                msg = Outgoing(i + 1, gw.clock.now_ms(), TO_BOB, "alice", text(f"m{i}"), 3)
                senders.start_soon(gw.services.store.send_private, msg, gw.services.messages.policy)
        async with sdk(gw, "bob") as bob:
            got = await take(bob, count)
            assert [m.seq for m in got] == list(range(1, count + 1))
            assert bob.messages.pulls == 5  # pages of 100, 100, 100, 100, 50 (a refused pull is not counted)
            # It waited on the same connection: no reconnect (a new connection would get a fresh window).
            assert await statuses(bob) == [S.CONNECTING, S.RECEIVING, S.CONNECTED]
