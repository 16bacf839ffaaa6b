"""Chatrooms (conversation type 2) over real sockets: presence, one room per device, idle sweep, slow members.

Rooms are made through ``ChatroomService.upsert`` here (the admin HTTP endpoints have their own tests in
tests/test_admin_chatrooms.py); members are raw protocol clients (``tests.test_messaging.Device``).
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
import trio

from gateway.domain.chatrooms import ChatroomService
from protocol import events
from protocol.codes import ErrorCode, UserStatus
from storage.records import ChatroomRecord
from tests.harness import Gateway, start_gateway
from tests.storage_helpers import wait_until
from tests.test_messaging import Device

USERS = ("alice", "bob", "carol", "dave", "postman")


async def _close_at_end(device: Device) -> None:
    try:
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await device.aclose()


async def connect(gw: Gateway, user: str, device: str = "phone", platform: int = 2) -> Device:
    """A raw device, closed when the test's nursery ends."""
    opened = await Device.connect(gw, user, device, platform)
    gw.nursery.start_soon(_close_at_end, opened)  # type: ignore[attr-defined]
    return opened


def rooms(gw: Gateway) -> ChatroomService:
    service = gw.services.chatrooms
    assert service is not None
    return service


async def room(gw: Gateway, chatroom_id: str = "lobby", **fields: Any) -> str:
    await rooms(gw).upsert(ChatroomRecord(chatroom_id, **fields))
    return chatroom_id


async def gateway(nursery: trio.Nursery, tmp_path, **sections: Any) -> Gateway:
    gw = await start_gateway(nursery, tmp_path, **sections)
    gw.nursery = nursery  # type: ignore[attr-defined]
    for user in USERS:
        await gw.user(user)
    return gw


@pytest.fixture
async def gw(nursery: trio.Nursery, tmp_path) -> Gateway:
    return await gateway(nursery, tmp_path)


async def say(device: Device, chatroom_id: str, text: str, **extra: Any) -> events.Response:
    return await device.call(
        "send_message",
        conv={"type": 2, "target": chatroom_id},
        content={"type": 1, "searchable_content": text},
        **extra,
    )


async def joined(gw: Gateway, user: str, chatroom_id: str, device: str = "phone") -> Device:
    # Another platform class for a second device: a new token on the same class would kick the first.
    member = await connect(gw, user, device, platform=3 if device == "pc" else 2)
    answer = await member.call("join_chatroom", chatroom_id=chatroom_id)
    assert answer.code == 0, answer
    return member


async def next_text(device: Device, topic: str = "msg") -> Any:
    push = await device.push(topic)
    return push.data


def text_of(data: Any) -> str:
    return data["message"]["content"]["searchable_content"]


async def marker(gw: Gateway, device: Device, user: str) -> None:
    """A private message to ``device``'s user: the first push it gets after anything sent before."""
    sender = await connect(gw, "postman", f"to-{user}")
    assert (await sender.send_text(user, "marker")).code == 0
    await sender.aclose()


async def test_messages_reach_only_the_present_members_and_no_inbox(gw: Gateway) -> None:
    await room(gw, "lobby")
    await room(gw, "other")
    alice = await joined(gw, "alice", "lobby")
    alice_pc = await joined(gw, "alice", "lobby", "pc")
    bob = await joined(gw, "bob", "lobby")
    carol = await joined(gw, "carol", "other")
    outsider = await connect(gw, "dave")
    heads = {u: await gw.services.store.inbox_head(u) for u in USERS}

    ack = await say(alice, "lobby", "hello room")
    assert ack.code == 0 and ack.result["seq"] == 0 and ack.result["message_id"] > 0
    for member in (
        bob,
        alice_pc,
    ):  # alice's other device in the room gets it too; her sending one has the ack
        data = await next_text(member)
        assert data["seq"] == 0 and text_of(data) == "hello room"
        assert data["message"]["conv"] == {"type": 2, "target": "lobby", "line": 0}
        assert data["message"]["from"] == "alice"
    # The others' first push is the private marker sent after it: the room message never came.
    for user, device in (("carol", carol), ("dave", outsider)):
        await marker(gw, device, user)
        assert text_of(await next_text(device)) == "marker"
    await marker(gw, alice, "alice")
    assert text_of(await next_text(alice)) == "marker"

    # Nothing reached any inbox: heads unchanged (but for the markers), pulls hold only the markers.
    for user in ("alice", "bob"):
        assert await gw.services.store.inbox_head(user) == heads[user] + (user == "alice")
    assert (await bob.call("pull", after_seq=0)).result["messages"] == []
    assert rooms(gw).stats.delivered == 2 and rooms(gw).stats.sent == 1


async def test_unknown_room_is_253_and_non_members_get_20(gw: Gateway) -> None:
    await room(gw, "lobby")
    alice = await connect(gw, "alice")
    for method in (
        "join_chatroom",
        "quit_chatroom",
        "get_chatroom_info",
        "get_chatroom_members",
        "load_chatroom_history",
    ):
        assert (await alice.call(method, chatroom_id="nowhere")).code == ErrorCode.NOT_EXIST, method
    assert (await say(alice, "nowhere", "hi")).code == ErrorCode.NOT_EXIST
    assert (await say(alice, "lobby", "hi")).code == ErrorCode.NOT_IN_CHATROOM
    assert (await alice.call("quit_chatroom", chatroom_id="lobby")).code == ErrorCode.NOT_IN_CHATROOM
    for method in ("get_chatroom_members", "load_chatroom_history"):
        assert (await alice.call(method, chatroom_id="lobby")).code == ErrorCode.NOT_IN_CHATROOM, method
    info = await alice.call("get_chatroom_info", chatroom_id="lobby")  # anyone may read the info
    assert info.code == 0 and info.result["member_count"] == 0
    bad = await alice.call("join_chatroom", chatroom_id=" lobby")
    assert bad.code == ErrorCode.INVALID_PARAMETER and bad.result["field"] == "chatroom_id"


async def test_quit_and_disconnect_end_delivery(gw: Gateway) -> None:
    await room(gw, "lobby")
    alice = await joined(gw, "alice", "lobby")
    bob = await joined(gw, "bob", "lobby")
    carol = await joined(gw, "carol", "lobby")
    info = await alice.call("get_chatroom_info", chatroom_id="lobby")
    assert info.result["member_count"] == 3
    assert (await bob.call("quit_chatroom", chatroom_id="lobby")).code == 0
    await carol.aclose()  # a closed connection leaves its room
    await wait_until(lambda: rooms(gw).room_info("lobby")["member_count"] == 1)
    assert (await say(alice, "lobby", "anyone?")).code == 0
    await marker(gw, bob, "bob")
    assert text_of(await next_text(bob)) == "marker"
    assert rooms(gw).stats.delivered == 0


async def test_members_are_paged_in_join_order(gw: Gateway) -> None:
    await room(gw, "lobby")
    devices = [await joined(gw, user, "lobby") for user in ("carol", "alice", "bob")]
    await joined(gw, "alice", "lobby", "pc")  # a second device of a user: still one member
    page = await devices[0].call("get_chatroom_members", chatroom_id="lobby", count=2)
    assert page.result == {"member_count": 3, "members": ["carol", "alice"]}
    page = await devices[0].call("get_chatroom_members", chatroom_id="lobby", offset=2, count=2)
    assert page.result == {"member_count": 3, "members": ["bob"]}
    too_many = await devices[0].call("get_chatroom_members", chatroom_id="lobby", count=501)
    assert too_many.code == ErrorCode.INVALID_PARAMETER and too_many.result["field"] == "count"


async def test_joining_another_room_quits_the_first(gw: Gateway) -> None:
    await room(gw, "lobby")
    await room(gw, "other")
    alice = await joined(gw, "alice", "lobby")
    bob = await joined(gw, "bob", "lobby")
    again = await alice.call("join_chatroom", chatroom_id="lobby")  # the same room again: nothing changes
    assert again.result == {"chatroom_id": "lobby", "member_count": 2, "idle_seconds": 900}
    moved = await alice.call("join_chatroom", chatroom_id="other")
    assert moved.result == {"chatroom_id": "other", "quit": "lobby", "member_count": 1, "idle_seconds": 900}
    assert rooms(gw).where("alice", "alice-phone") == "other"
    assert (await say(alice, "lobby", "still here?")).code == ErrorCode.NOT_IN_CHATROOM
    assert (await say(bob, "lobby", "alice left")).code == 0
    await marker(gw, alice, "alice")
    assert text_of(await next_text(alice)) == "marker"
    # Another device of the same user is a member of its own.
    alice_pc = await joined(gw, "alice", "lobby", "pc")
    assert (await say(bob, "lobby", "hi pc")).code == 0
    assert text_of(await next_text(alice_pc)) == "hi pc"


async def test_reject_mode_answers_225(nursery: trio.Nursery, tmp_path) -> None:
    gw = await gateway(nursery, tmp_path, chatroom={"one_per_user": "reject"})
    await room(gw, "lobby")
    await room(gw, "other")
    alice = await joined(gw, "alice", "lobby")
    refused = await alice.call("join_chatroom", chatroom_id="other")
    assert (refused.code, refused.result) == (225, {"chatroom_id": "lobby"})  # the room it is in
    assert rooms(gw).where("alice", "alice-phone") == "lobby"
    assert (await alice.call("quit_chatroom", chatroom_id="lobby")).code == 0
    assert (await alice.call("join_chatroom", chatroom_id="other")).code == 0


async def test_an_idle_member_is_dropped_by_the_sweep(nursery: trio.Nursery, tmp_path) -> None:
    gw = await gateway(nursery, tmp_path, chatroom={"idle_seconds": 60, "sweep_seconds": 0.02})
    await room(gw, "lobby")
    alice = await joined(gw, "alice", "lobby")
    bob = await joined(gw, "bob", "lobby")
    sweeps = rooms(gw).stats.swept
    gw.clock.advance(40)
    assert (await bob.call("get_chatroom_info", chatroom_id="lobby")).code == 0  # activity: bob stays
    gw.clock.advance(21)
    quit_push = await next_text(alice, "chatroom_quit")
    assert quit_push == {"chatroom_id": "lobby", "reason": "idle"}
    assert rooms(gw).where("alice", "alice-phone") is None
    assert rooms(gw).where("bob", "bob-phone") == "lobby"
    assert rooms(gw).stats.swept == sweeps + 1
    assert (await say(alice, "lobby", "back?")).code == ErrorCode.NOT_IN_CHATROOM


async def test_a_muted_member_listens_but_cannot_send(gw: Gateway) -> None:
    await room(gw, "lobby")
    alice = await joined(gw, "alice", "lobby")
    bob = await joined(gw, "bob", "lobby")
    rooms(gw).set_user_status("alice", int(UserStatus.MUTED))
    assert (await say(alice, "lobby", "hi")).code == ErrorCode.FORBIDDEN_TO_SEND
    assert (await say(bob, "lobby", "you are muted")).code == 0
    assert text_of(await next_text(alice)) == "you are muted"
    # A user muted before joining is read as muted at the join.
    await gw.services.store.set_user_status("carol", int(UserStatus.MUTED), gw.clock.now_ms())
    carol = await joined(gw, "carol", "lobby")
    assert (await say(carol, "lobby", "hi")).code == ErrorCode.FORBIDDEN_TO_SEND


async def test_a_resend_with_the_same_client_msg_id_is_answered_not_sent_again(gw: Gateway) -> None:
    await room(gw, "lobby")
    alice = await joined(gw, "alice", "lobby")
    bob = await joined(gw, "bob", "lobby")
    first = await say(alice, "lobby", "once", client_msg_id="m-1")
    second = await say(alice, "lobby", "once", client_msg_id="m-1")
    assert first.result == second.result
    assert text_of(await next_text(bob)) == "once"
    await marker(gw, bob, "bob")
    assert text_of(await next_text(bob)) == "marker"


async def test_history_pages_back_through_recent_messages(nursery: trio.Nursery, tmp_path) -> None:
    gw = await gateway(nursery, tmp_path, chatroom={"history_size": 4})
    await room(gw, "lobby")
    alice = await joined(gw, "alice", "lobby")
    ids = [(await say(alice, "lobby", f"m{i}")).result["message_id"] for i in range(6)]
    assert (await say(alice, "lobby", "ghost")).code == 0
    transparent = await alice.call(
        "send_message",
        conv={"type": 2, "target": "lobby"},
        content={"type": 1, "searchable_content": "t", "persist_flag": 4},
    )
    assert transparent.code == 0
    page = await alice.call("load_chatroom_history", chatroom_id="lobby", count=2)
    assert [text_of({"message": m}) for m in page.result["messages"]] == ["ghost", "m5"]  # newest first
    before = page.result["messages"][-1]["message_id"]
    page = await alice.call("load_chatroom_history", chatroom_id="lobby", before_id=before, count=10)
    # history_size 4: only m3..m5 and ghost are kept; the transparent one never is.
    assert [text_of({"message": m}) for m in page.result["messages"]] == ["m4", "m3"]
    assert ids[5] == before
    bob = await connect(gw, "bob")  # not a member
    assert (await bob.call("load_chatroom_history", chatroom_id="lobby")).code == ErrorCode.NOT_IN_CHATROOM


async def test_history_off_answers_220(nursery: trio.Nursery, tmp_path) -> None:
    gw = await gateway(nursery, tmp_path, message={"chatroom_history": False})
    await room(gw, "lobby")
    alice = await joined(gw, "alice", "lobby")
    assert (await say(alice, "lobby", "gone")).code == 0
    assert (
        await alice.call("load_chatroom_history", chatroom_id="lobby")
    ).code == ErrorCode.FUNCTION_DISABLED


async def test_a_member_that_never_reads_loses_its_oldest_then_is_cut_off_while_others_keep_up(
    nursery: trio.Nursery, tmp_path
) -> None:
    gw = await gateway(
        nursery,
        tmp_path,
        client={"request_rate_limit": 100000},
        message={"max_text_bytes": 65536},
        chatroom={"member_queue": 8, "stall_seconds": 1.0},
    )
    await room(gw, "lobby")
    alice = await joined(gw, "alice", "lobby")
    bob = await joined(gw, "bob", "lobby")
    slow = await joined(gw, "carol", "lobby")
    # From here carol never reads: a small receive buffer so that the server's socket fills soon.
    slow.client.stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    service = rooms(gw)
    carol_conn = gw.services.delivery.node.connection("carol", "carol-phone")
    total = 300
    got: list[float] = []
    sent_at: list[float] = []
    most_queued = 0

    async def bob_reads() -> None:
        while len(got) < total:
            event = await bob.client.next_event()
            assert event is not None
            if isinstance(event, events.Notify) and event.topic == "msg":
                got.append(trio.current_time())

    async with trio.open_nursery() as readers:
        readers.start_soon(bob_reads)
        for i in range(total):
            sent_at.append(trio.current_time())
            assert (await say(alice, "lobby", f"{i:04d}" + "x" * 30000)).code == 0
            member = service._by_device.get(("carol", "carol-phone"))
            if member is not None:
                most_queued = max(most_queued, len(member.queue))
                assert carol_conn._outbox._queued_bytes < 1 << 20  # room traffic waits in the member queue
        with trio.fail_after(10):
            await wait_until(lambda: len(got) == total)
    # Bob got every message, each soon after it was sent, while carol was stalled.
    assert len(got) == total
    assert max(g - s for g, s in zip(got, sent_at, strict=True)) < 2.0
    stats = service.room_stats("lobby")
    assert stats is not None and stats.dropped > 0 and most_queued <= 8
    # Carol's socket never drains: after stall_seconds she is out of the room, her connection still up.
    await wait_until(lambda: service.where("carol", "carol-phone") is None)
    assert stats.cut_off == 1
    assert gw.services.delivery.node.connection("carol", "carol-phone") is carol_conn
    assert (await say(alice, "lobby", "after")).code == 0
    await slow.aclose()
