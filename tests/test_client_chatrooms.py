"""The SDK's chatrooms (client.chatrooms) against a real in-process gateway over sockets."""

from __future__ import annotations

import pytest
import trio

import client
from client import ChatroomLeft, Conversation, ConversationType, ErrorCode, Message, RequestFailed
from storage.records import ChatroomRecord
from tests.harness import Gateway, start_gateway
from tests.storage_helpers import wait_until
from tests.test_client_sync import LIMIT, sdk, take, text, texts


@pytest.fixture
async def gw(nursery: trio.Nursery, tmp_path) -> Gateway:
    gw = await start_gateway(nursery, tmp_path, chatroom={"idle_seconds": 3, "sweep_seconds": 0.05})
    for user in ("alice", "bob"):
        await gw.user(user)
    for room in ("lobby", "other"):
        await gw.services.chatrooms.upsert(ChatroomRecord(room, title=room.title()))
    return gw


async def next_event(c: client.Client) -> Message | ChatroomLeft:
    return await c.chatrooms.events().receive()


async def test_room_messages_come_as_chatroom_events_never_through_the_inbox_sync(gw: Gateway) -> None:
    with trio.fail_after(LIMIT):
        async with sdk(gw, "alice") as alice, sdk(gw, "bob") as bob:
            joined = await alice.chatrooms.join("lobby")
            assert (joined.chatroom_id, joined.member_count, joined.idle_seconds, joined.quit) == (
                "lobby",
                1,
                3,
                None,
            )
            assert (await bob.chatrooms.join("lobby")).member_count == 2
            pulls = bob.messages.pulls
            ack = await alice.chatrooms.send(text("hello room"))
            assert ack.seq == 0
            got = await next_event(bob)
            assert isinstance(got, Message) and got.seq == 0 and got.message_id == ack.message_id
            assert got.conv == Conversation(ConversationType.CHATROOM, "lobby") and texts([got]) == [
                "hello room"
            ]
            # The inbox sync saw nothing: no pull, and the next inbox message is the next thing received.
            sent = await alice.messages.send(Conversation(0, "bob"), text("private"))
            (private,) = await take(bob, 1)
            assert private.message_id == sent.message_id and bob.messages.pulls == pulls
            assert bob.messages.last_seq == 1

            info = await bob.chatrooms.info("lobby")
            assert (info.title, info.member_count) == ("Lobby", 2)
            page = await bob.chatrooms.members("lobby")
            assert (page.member_count, page.members) == (2, ("alice", "bob"))
            history = await bob.chatrooms.history()
            assert [m.message_id for m in history] == [ack.message_id]

            moved = await bob.chatrooms.join("other")
            assert moved.quit == "lobby" and bob.chatrooms.current == "other"
            await bob.chatrooms.quit()
            assert bob.chatrooms.current is None
            with pytest.raises(RequestFailed) as failed:
                await bob.chatrooms.join("nowhere")
            assert failed.value.code == ErrorCode.NOT_EXIST


async def test_the_sdk_keeps_its_membership_alive_and_rejoins_after_a_reconnect(gw: Gateway) -> None:
    service = gw.services.chatrooms
    with trio.fail_after(LIMIT):
        async with sdk(gw, "alice") as alice, sdk(gw, "bob") as bob:
            await alice.chatrooms.join("lobby")
            await bob.chatrooms.join("lobby")
            # Idle after 3 s: the SDK's heartbeat (a join every idle/3, at least 1 s) keeps both in. Wait for
            # bob's heartbeat too: on a busy machine it could otherwise fall behind the clock and bob expire.
            members = [service._by_device[("alice", "alice-phone")], service._by_device[("bob", "bob-phone")]]
            for _ in range(2):
                gw.clock.advance(2)
                await wait_until(lambda: all(m.last_active_ms == gw.clock.now_ms() for m in members))
            assert service.where("alice", "alice-phone") == "lobby"  # 4 s after joining
            # The gateway drops alice's connection: the new one joins the room again by itself.
            gw.services.delivery.node.connection("alice", "alice-phone").replace()
            await alice.wait_status(client.ConnectionStatus.SERVER_DOWN)
            await alice.wait_status(client.ConnectionStatus.CONNECTED)
            await wait_until(lambda: service.where("alice", "alice-phone") == "lobby")
            ack = await bob.chatrooms.send(text("welcome back"))
            got = await next_event(alice)
            assert isinstance(got, Message) and got.message_id == ack.message_id


async def test_a_device_dropped_by_the_server_gets_chatroom_left(gw: Gateway) -> None:
    with trio.fail_after(LIMIT):
        async with sdk(gw, "alice") as alice:
            await alice.chatrooms.join("lobby")
            await gw.services.chatrooms.destroy("lobby")
            left = await next_event(alice)
            assert left == ChatroomLeft("lobby", "destroyed") and alice.chatrooms.current is None
