"""The per-user conversation table (schema v12) through a real gateway: every door that changes a conversation.

Real gateway, real sockets, the SDK, the admin API over real HTTP. After each operation ``agrees`` asks the
gateway for the list (``get_conversations``, answered from ``storage.conversation_table``) and holds it to
the one-pass scan of the same database (``storage.conversations.list_by_scan``, how the list was computed
before the table), and each test also says what the list must show. ``merged`` moves the inbox log into the
tables through the writer, as a busy gateway's merge does, so that the table's rows are what a page reads
(with a few messages everything would still be in the log, which a page reads directly).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

import client
from client import Conversation
from gateway.domain.conversations import answer_of, classifier
from storage import conversations as db
from tests.harness import Gateway, start_gateway
from tests.test_admin_messages import Admin
from tests.test_conversations import sdk, text

LIMIT = 10
BOB = Conversation(0, "bob")
ALICE = Conversation(0, "alice")
CLUB = Conversation(1, "club")


@pytest.fixture
async def gw(nursery: trio.Nursery, tmp_path: Any) -> Gateway:
    gw = await start_gateway(nursery, tmp_path, client={"request_rate_limit": 100_000}, message={"roaming": True})
    for user in ("alice", "bob", "carol"):
        await gw.user(user)
    return gw


async def club(gw: Gateway) -> None:
    """carol's group with bob and alice (its creation notice is everyone's first message in it)."""
    code, _ = await gw.services.groups.create("carol", "club", {"name": "Club"}, ["bob", "alice"], admin=True)
    assert code == 0


@pytest.fixture
async def admin(gw: Gateway) -> AsyncIterator[Admin]:
    async with httpx.AsyncClient() as http:
        yield Admin(gw, http)


async def merged(gw: Gateway) -> None:
    """Merge the inbox log now, on the writer (what a send does once the log is long enough)."""
    await gw.services.store.run_with_inboxes(lambda conn, inboxes: inboxes.merge(conn))


async def agrees(gw: Gateway, c: client.Client, min_time: int = 0) -> list[tuple[Conversation, int, int]]:
    """The gateway's list for ``c``'s user equals the scan's; returns (conversation, last id, unread) of it."""
    user = c.user_id
    answer = (await c.request("get_conversations", limit=200)).result
    scan = await gw.services.store.read(db.list_by_scan, user, 0, 200, min_time, classifier(user))
    assert answer == answer_of(scan)
    return [
        (Conversation(r["conv"]["type"], r["conv"]["target"], r["conv"]["line"]), r["last_message"]["message_id"], r["unread"])
        for r in answer["conversations"]
    ]


async def test_delete_for_me_and_for_everyone_move_the_last_message_back(gw: Gateway, admin: Admin) -> None:
    with trio.fail_after(LIMIT):
        async with sdk(gw, "alice") as alice, sdk(gw, "bob") as bob:
            ids = [(await alice.messages.send(BOB, text(f"m{i}"))).message_id for i in range(3)]
            await merged(gw)
            assert await agrees(gw, bob) == [(ALICE, ids[2], 3)]
            await bob.messages.delete(ids[2])  # for bob only
            assert await agrees(gw, bob) == [(ALICE, ids[1], 2)]
            assert await agrees(gw, alice) == [(BOB, ids[2], 0)]
            gone = await admin.call("message/delete", {"message_id": str(ids[1])})  # for everyone
            assert gone["code"] == 0, gone
            assert await agrees(gw, bob) == [(ALICE, ids[0], 1)]
            assert await agrees(gw, alice) == [(BOB, ids[2], 0)]
            assert (await admin.call("message/delete", {"message_id": str(ids[2])}))["code"] == 0
            assert await agrees(gw, alice) == [(BOB, ids[0], 0)]
            assert (await admin.call("message/delete", {"message_id": str(ids[0])}))["code"] == 0
            assert await agrees(gw, alice) == [] and await agrees(gw, bob) == []


async def test_recall_and_content_updates_that_hide_or_show_the_last_message(gw: Gateway, admin: Admin) -> None:
    with trio.fail_after(LIMIT):
        async with sdk(gw, "alice") as alice, sdk(gw, "bob") as bob:
            first = (await alice.messages.send(BOB, text("one"))).message_id
            second = (await alice.messages.send(BOB, text("two"))).message_id
            await merged(gw)
            hide = {"message_id": str(second), "content": text("two", persist_flag=0), "distribute": False}
            assert (await admin.call("message/update", hide))["code"] == 0
            assert await agrees(gw, bob) == [(ALICE, first, 1)]  # a hidden message is not the last
            show = {"message_id": str(second), "content": text("two again"), "distribute": False}
            assert (await admin.call("message/update", show))["code"] == 0
            assert await agrees(gw, bob) == [(ALICE, second, 2)]
            # A recall replaces the content (shown, not counted) and adds the notice, the new last message.
            ack = await alice.messages.recall(second)
            await merged(gw)
            [(conv, notice, unread)] = await agrees(gw, bob)
            assert (conv, unread) == (ALICE, 1) and notice > second
            # A hidden message recalled is shown (the recall content's flag is 1): with the newer notices
            # deleted, it is the last message.
            hidden = (await alice.messages.send(BOB, text("quiet", persist_flag=0))).message_id
            await merged(gw)
            assert (await agrees(gw, bob))[0][1] == notice
            recalled = await admin.call("message/recall", {"operator": "alice", "message_id": str(hidden)})
            assert recalled["code"] == 0, recalled
            await merged(gw)
            for newer in (notice, int(recalled["result"]["notice_id"])):
                assert (await admin.call("message/delete", {"message_id": str(newer)}))["code"] == 0
            assert await agrees(gw, bob) == [(ALICE, hidden, 1)]
            assert await agrees(gw, alice) == [(BOB, hidden, 0)]
            assert ack is not None


async def test_clearing_a_conversation_takes_it_off_the_list_until_the_next_message(gw: Gateway) -> None:
    await club(gw)
    with trio.fail_after(LIMIT):
        async with sdk(gw, "alice") as alice, sdk(gw, "bob") as bob:
            for i in range(3):
                await alice.messages.send(BOB, text(f"m{i}"))
            await bob.messages.send(CLUB, text("club"))
            await merged(gw)
            await bob.conversations.wait_until(lambda: bob.conversations.get(ALICE) is not None)
            assert await bob.conversations.clear(ALICE) == 3
            assert [conv for conv, _, _ in await agrees(gw, bob)] == [CLUB]
            again = (await alice.messages.send(BOB, text("again"))).message_id
            await merged(gw)
            assert [(conv, last) for conv, last, _ in await agrees(gw, bob)][0] == (ALICE, again)
            assert [conv for conv, _, _ in await agrees(gw, alice)] == [BOB, CLUB]  # alice cleared nothing


async def test_a_former_member_keeps_the_group_and_its_rows_follow_deletes_even_after_the_purge(
    gw: Gateway, admin: Admin
) -> None:
    """Kicked, bob holds the group's messages up to then; a delete for everyone of his last one must move his
    row though he is no member any more, also once his member tombstone is purged (no group row names him)."""
    await club(gw)
    with trio.fail_after(LIMIT):
        async with sdk(gw, "carol") as carol, sdk(gw, "bob") as bob:
            before = (await carol.messages.send(CLUB, text("early"))).message_id
            last_seen = (await carol.messages.send(CLUB, text("last bob sees"))).message_id
            await carol.groups.kick("club", ["bob"])
            after = (await carol.messages.send(CLUB, text("after bob"))).message_id
            await merged(gw)
            [(conv, bob_last, _)] = await agrees(gw, bob)
            assert conv == CLUB and last_seen <= bob_last < after  # the kick notice may be his last
            assert (await agrees(gw, carol))[0][:2] == (CLUB, after)
            # The purge removes bob's member tombstone: nothing in the group's tables names him now.
            gw.clock.advance(gw.config.storage.tombstone_retention_seconds + 60)
            purged = await gw.services.tombstones.purge()
            assert purged.members == 1
            for message_id in (bob_last, last_seen):
                if message_id != before:
                    assert (await admin.call("message/delete", {"message_id": str(message_id)}))["code"] == 0
            assert await agrees(gw, bob) == [(CLUB, before, 1)]
            await agrees(gw, carol)


async def test_a_device_reset_by_the_purge_rebuilds_the_list_the_table_answers(gw: Gateway) -> None:
    """Read marks are settings: a device that syncs from before the purge horizon gets the settings again from 0
    (``reset``), and the list it rebuilds (read marks and unread counts from the table) is the scan's."""
    await club(gw)
    with trio.fail_after(LIMIT):
        async with sdk(gw, "alice") as alice, sdk(gw, "bob") as bob:
            ids = [(await alice.messages.send(BOB, text(f"m{i}"))).message_id for i in range(4)]
            await bob.messages.send(CLUB, text("club"))
            await merged(gw)
            await bob.conversations.wait_until(lambda: bob.conversations.get(ALICE) is not None)
            await bob.conversations.mark_read(ALICE, ids[1])
            assert (ALICE, ids[3], 2) in await agrees(gw, bob)
            # A setting deleted leaves a tombstone; purged, a device from before it syncs from 0 with reset.
            await bob.relations.put_setting(1, "club-setting", "1")
            await bob.relations.put_setting(1, "club-setting", "")
            gw.clock.advance(gw.config.storage.tombstone_retention_seconds + 60)
            assert (await gw.services.tombstones.purge()).relations >= 1
        async with sdk(gw, "bob", "tablet", 3) as tablet:
            await tablet.conversations.rebuild()
            rows = await agrees(gw, tablet)
            assert (ALICE, ids[3], 2) in rows
            infos = {
                i.conv: (i.last_message.message_id if i.last_message else 0, i.unread)
                for i in tablet.conversations.conversations()
            }
            assert {conv: (last, unread) for conv, last, unread in rows} == infos


async def test_a_robots_conversation_is_listed_and_stays_after_the_robot_is_destroyed(gw: Gateway, admin: Admin) -> None:
    from tests.test_robots import make_robot

    await gw.user("boss")
    with trio.fail_after(LIMIT):
        robot = await make_robot(admin, None)
        async with sdk(gw, "alice") as alice:
            asked = (await alice.messages.send(Conversation(0, "bot"), text("hello bot"))).message_id
            sent = await robot.call("message/send", {"conv": {"type": 0, "target": "alice"}, "content": text("hi")})
            assert sent["code"] == 0, sent
            reply = int(sent["result"]["message_id"])
            await merged(gw)
            assert await agrees(gw, alice) == [(Conversation(0, "bot"), reply, 1)]
            assert asked < reply
            assert (await admin.call("robot/destroy", {"robot_id": "bot"}))["code"] == 0
            assert await agrees(gw, alice) == [(Conversation(0, "bot"), reply, 1)]


async def test_roaming_off_lists_from_the_table_what_the_window_holds(nursery: trio.Nursery, tmp_path: Any) -> None:
    gw = await start_gateway(nursery, tmp_path, client={"request_rate_limit": 100_000}, message={"roaming": False})
    for user in ("alice", "bob", "carol"):
        await gw.user(user)
    window_ms = gw.config.message.compensate_seconds * 1000
    with trio.fail_after(LIMIT):
        async with sdk(gw, "alice") as alice, sdk(gw, "bob") as bob, sdk(gw, "carol") as carol:
            old = (await alice.messages.send(BOB, text("old"))).message_id
            gw.clock.advance(gw.config.message.compensate_seconds / 2)
            await carol.messages.send(BOB, text("carol"))
            await merged(gw)
            rows = await agrees(gw, bob, gw.clock.now_ms() - window_ms)
            assert [conv for conv, _, _ in rows] == [Conversation(0, "carol"), ALICE] and rows[1][1] == old
            gw.clock.advance(gw.config.message.compensate_seconds * 0.75)  # alice's message is out of the window
            rows = await agrees(gw, bob, gw.clock.now_ms() - window_ms)
            assert rows == [(Conversation(0, "carol"), rows[0][1], 1)]
            again = (await alice.messages.send(BOB, text("again"))).message_id  # in the log, not merged
            rows = await agrees(gw, bob, gw.clock.now_ms() - window_ms)
            assert rows[0] == (ALICE, again, 1)  # only the young message counts
            gw.clock.advance(gw.config.message.compensate_seconds * 2)
            assert await agrees(gw, bob, gw.clock.now_ms() - window_ms) == []
