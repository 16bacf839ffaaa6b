"""Friend requests, friends, blacklist and settings over real sockets (SPEC §6, §7, §9), time from a ManualClock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from protocol import events
from protocol.codes import ErrorCode
from tests.harness import Gateway, RawClient, start_gateway
from tests.storage_helpers import held_writer, wait_until
from tests.test_messaging import Device

MINUTE = 60
DAY = 86400


_OPEN: list[Device] = []


async def started(nursery: trio.Nursery, tmp_path, **sections) -> AsyncIterator[Gateway]:
    """A gateway with users alice, bob and carol; the devices a test connected are closed after it."""
    gw = await start_gateway(nursery, tmp_path, **sections)
    for user in ("alice", "bob", "carol"):
        await gw.user(user)
    yield gw
    while _OPEN:
        await _OPEN.pop().aclose()


@pytest.fixture
async def gw(nursery: trio.Nursery, tmp_path) -> AsyncIterator[Gateway]:
    async for gw in started(nursery, tmp_path):
        yield gw


@pytest.fixture
async def gw_off(nursery: trio.Nursery, tmp_path) -> AsyncIterator[Gateway]:
    async for gw in started(nursery, tmp_path, friend={"hosting": False}):
        yield gw


@pytest.fixture
async def gw_friends_only(nursery: trio.Nursery, tmp_path) -> AsyncIterator[Gateway]:
    async for gw in started(nursery, tmp_path, message={"disable_stranger_chat": True}):
        yield gw


async def connect(gw: Gateway, user: str, device: str = "phone", platform: int = 2) -> Device:
    _OPEN.append(await Device.connect(gw, user, device, platform))
    return _OPEN[-1]


async def devices(gw: Gateway, *users: str) -> list[Device]:
    return [await connect(gw, user) for user in users]


async def request(device: Device, to: str, reason: str = "hi", **more) -> int:
    return (await device.call("send_friend_request", user_id=to, reason=reason, **more)).code


async def handle(device: Device, sender: str, accept: bool) -> int:
    return (await device.call("handle_friend_request", user_id=sender, accept=accept)).code


async def friend_ids(device: Device) -> list[str]:
    items = (await device.call("sync_friends")).result["items"]
    return sorted(i["friend_id"] for i in items if not i["deleted"])


async def test_a_pending_request_blocks_a_repeat_for_seven_days_to_the_minute(gw: Gateway) -> None:
    alice, bob = await devices(gw, "alice", "bob")
    assert await request(alice, "bob") == 0
    gw.clock.advance(7 * DAY - MINUTE)  # 6 d 23 h 59 m
    assert await request(alice, "bob") == ErrorCode.FRIEND_ALREADY_REQUESTED
    gw.clock.advance(MINUTE)  # 7 d: the window has passed
    assert await request(alice, "bob", reason="again") == 0
    items = (await bob.call("sync_friend_requests")).result["items"]
    assert [(i["from"], i["reason"], i["status"]) for i in items] == [("alice", "again", 0)]
    # The new request restarted the window.
    gw.clock.advance(7 * DAY - MINUTE)
    assert await request(alice, "bob") == ErrorCode.FRIEND_ALREADY_REQUESTED


async def test_a_rejection_blocks_new_requests_for_thirty_days(gw: Gateway) -> None:
    alice, bob = await devices(gw, "alice", "bob")
    assert await request(alice, "bob") == 0
    gw.clock.advance(DAY)
    assert await handle(bob, "alice", accept=False) == 0
    gw.clock.advance(29 * DAY)  # 29 d after the rejection (30 d after the request)
    assert await request(alice, "bob") == ErrorCode.FRIEND_REQUEST_BLOCKED
    gw.clock.advance(DAY - MINUTE)
    assert await request(alice, "bob") == ErrorCode.FRIEND_REQUEST_BLOCKED
    gw.clock.advance(MINUTE)  # 30 d
    assert await request(alice, "bob") == 0
    # Rejecting changed only the request: nobody became friends.
    assert await friend_ids(alice) == [] and await friend_ids(bob) == []


async def test_accepted_then_deleted_may_request_again(gw: Gateway) -> None:
    alice, bob = await devices(gw, "alice", "bob")
    assert await request(alice, "bob") == 0
    assert await handle(bob, "alice", accept=True) == 0
    assert await friend_ids(alice) == ["bob"] and await friend_ids(bob) == ["alice"]
    assert await request(alice, "bob") == ErrorCode.ALREADY_FRIENDS
    assert await request(bob, "alice") == ErrorCode.ALREADY_FRIENDS
    assert (await alice.call("delete_friend", user_id="bob")).code == 0
    assert await friend_ids(alice) == [] and await friend_ids(bob) == []
    assert await request(alice, "bob") == 0  # an accepted earlier request does not block
    assert (await alice.call("delete_friend", user_id="bob")).code == ErrorCode.NOT_EXIST


async def test_handling_a_request_expires_after_seven_days(gw: Gateway) -> None:
    alice, bob, carol = await devices(gw, "alice", "bob", "carol")
    assert await request(alice, "bob") == 0
    assert await request(carol, "bob") == 0
    gw.clock.advance(7 * DAY - MINUTE)
    assert await handle(bob, "carol", accept=True) == 0  # 6 d 23 h 59 m: still valid
    gw.clock.advance(MINUTE)
    assert await handle(bob, "alice", accept=True) == ErrorCode.FRIEND_REQUEST_EXPIRED
    assert await friend_ids(bob) == ["carol"]


async def test_unknown_requests_users_and_self(gw: Gateway) -> None:
    alice, bob = await devices(gw, "alice", "bob")
    assert await handle(bob, "alice", accept=True) == ErrorCode.NOT_EXIST  # none sent
    assert await request(alice, "bob") == 0
    assert await handle(alice, "bob", accept=True) == ErrorCode.NOT_EXIST  # wrong way round
    assert await handle(bob, "alice", accept=False) == 0
    assert await handle(bob, "alice", accept=True) == ErrorCode.NOT_EXIST  # already handled
    assert await request(alice, "nobody") == ErrorCode.NOT_EXIST
    assert await request(alice, "alice") == ErrorCode.INVALID_PARAMETER
    assert await request(alice, "carol", extra="{not json") == ErrorCode.INVALID_PARAMETER
    assert await request(alice, "carol", reason="x" * 2000) == ErrorCode.INVALID_PARAMETER
    assert (await alice.call("set_friend_alias", user_id="carol", alias="C")).code == ErrorCode.NOT_EXIST
    assert (
        await alice.call("set_blacklist", user_id="alice", blocked=True)
    ).code == ErrorCode.INVALID_PARAMETER


async def test_a_blacklisted_sender_cannot_request(gw: Gateway) -> None:
    alice, bob = await devices(gw, "alice", "bob")
    assert (await bob.call("set_blacklist", user_id="alice", blocked=True)).code == 0
    assert await request(alice, "bob") == ErrorCode.IN_BLACKLIST
    assert await request(bob, "alice") == 0  # only the blocked direction
    assert (await bob.call("set_blacklist", user_id="alice", blocked=False)).code == 0
    assert await request(alice, "bob") == 0


async def test_mark_read_counts_unread_received_requests(gw: Gateway) -> None:
    alice, bob, carol = await devices(gw, "alice", "bob", "carol")
    assert await request(alice, "bob") == 0
    cut = gw.clock.now_ms()
    gw.clock.advance(MINUTE)
    assert await request(carol, "bob") == 0
    assert (await bob.call("get_unread_friend_request_count")).result == {"count": 2}
    assert (await bob.call("mark_friend_requests_read", until=cut)).result == {"count": 1}
    assert (await bob.call("get_unread_friend_request_count")).result == {"count": 1}
    items = (await bob.call("sync_friend_requests")).result["items"]
    assert {i["from"]: i["read"] for i in items} == {"alice": True, "carol": False}
    assert (await bob.call("mark_friend_requests_read")).result == {"count": 1}
    assert (await bob.call("mark_friend_requests_read")).result == {"count": 0}


async def test_hosting_off_answers_220_and_messaging_still_works(gw_off: Gateway) -> None:
    gw = gw_off
    alice, bob = await devices(gw, "alice", "bob")
    calls = [
        ("send_friend_request", {"user_id": "bob"}),
        ("handle_friend_request", {"user_id": "bob", "accept": True}),
        ("mark_friend_requests_read", {}),
        ("get_unread_friend_request_count", {}),
        ("delete_friend", {"user_id": "bob"}),
        ("set_friend_alias", {"user_id": "bob", "alias": "B"}),
        ("set_friend_extra", {"user_id": "bob", "extra": "{}"}),
        ("set_blacklist", {"user_id": "bob", "blocked": True}),
        ("get_blacklist", {}),
        ("sync_friends", {}),
        ("sync_friend_requests", {}),
        ("sync_blacklist", {}),
    ]
    for name, params in calls:
        assert (await alice.call(name, **params)).code == ErrorCode.FUNCTION_DISABLED, name
    assert (await alice.call("put_setting", scope=3, key="0-bob-0", value="1")).code == 0  # settings stay
    assert (await alice.send_text("bob", "still here")).code == 0
    assert (await bob.push()).data["message"]["content"]["searchable_content"] == "still here"


async def test_deleting_a_friend_does_not_stop_messaging(gw: Gateway) -> None:
    alice, bob = await devices(gw, "alice", "bob")
    assert await request(alice, "bob") == 0 and await handle(bob, "alice", accept=True) == 0
    assert (await bob.call("delete_friend", user_id="alice")).code == 0
    assert (await alice.send_text("bob", "still talking")).code == 0


async def test_stranger_chat_off_follows_accept_and_delete(gw_friends_only: Gateway) -> None:
    gw = gw_friends_only
    alice, bob = await devices(gw, "alice", "bob")
    assert (await alice.send_text("bob", "hello?")).code == ErrorCode.NOT_RIGHT
    assert await request(alice, "bob") == 0 and await handle(bob, "alice", accept=True) == 0
    assert (await alice.send_text("bob", "friends now")).code == 0
    assert (await alice.call("delete_friend", user_id="bob")).code == 0
    assert (await bob.send_text("alice", "and now?")).code == ErrorCode.NOT_RIGHT


async def test_alias_and_extra_are_the_owners_view_only(gw: Gateway) -> None:
    alice, bob = await devices(gw, "alice", "bob")
    assert await request(alice, "bob") == 0 and await handle(bob, "alice", accept=True) == 0
    assert (await alice.call("set_friend_alias", user_id="bob", alias="Bobby")).code == 0
    assert (await alice.call("set_friend_extra", user_id="bob", extra='{"tag": 1}')).code == 0
    assert (
        await alice.call("set_friend_extra", user_id="bob", extra="nope")
    ).code == ErrorCode.INVALID_PARAMETER
    mine = [i for i in (await alice.call("sync_friends")).result["items"] if not i["deleted"]]
    theirs = [i for i in (await bob.call("sync_friends")).result["items"] if not i["deleted"]]
    assert [(i["alias"], i["extra"]) for i in mine] == [("Bobby", '{"tag": 1}')]
    assert [(i["alias"], i["extra"]) for i in theirs] == [("", "")]


async def test_settings_put_get_remove_and_bounds(gw: Gateway) -> None:
    (alice,) = await devices(gw, "alice")
    put = await alice.call("put_setting", scope=19, key="0-bob-0", value="draft text")
    assert put.code == 0 and put.result["version"] == 1
    got = await alice.call("get_setting", scope=19, key="0-bob-0")
    assert (got.result["value"], got.result["version"]) == ("draft text", 1)
    assert (await alice.call("put_setting", scope=19, key="0-bob-0", value="draft text")).result == {
        "version": 1
    }
    assert (await alice.call("put_setting", scope=19, key="0-bob-0", value="")).result == {"version": 2}
    assert (await alice.call("get_setting", scope=19, key="0-bob-0")).code == ErrorCode.NOT_EXIST
    assert (await alice.call("put_setting", scope=1000, key="mine", value="x")).code == 0
    for scope in (0, 2, 999):
        assert (
            await alice.call("put_setting", scope=scope, key="k", value="v")
        ).code == ErrorCode.INVALID_PARAMETER
    big = "é" * (gw.config.setting.max_value_bytes // 2 + 1)  # within the character bound, over the bytes
    assert (await alice.call("put_setting", scope=3, key="k", value=big)).code == ErrorCode.INVALID_PARAMETER
    assert (
        await alice.call("put_setting", scope=3, key="k" * 300, value="1")
    ).code == ErrorCode.INVALID_PARAMETER
    assert (await alice.call("put_setting", scope=3, key="k")).code == ErrorCode.INVALID_PARAMETER  # no value
    items = (await alice.call("sync_settings")).result
    assert items["head"] == 3
    assert [(i["scope"], i["key"], i["deleted"]) for i in items["items"]] == [
        (19, "0-bob-0", True),
        (1000, "mine", False),
    ]


async def test_accept_tells_both_users_live_devices_but_not_the_asking_one(gw: Gateway) -> None:
    alice = await connect(gw, "alice")
    bob_phone = await connect(gw, "bob", "phone", 2)
    bob_desk = await connect(gw, "bob", "desk", 3)
    assert await request(alice, "bob") == 0
    assert (await bob_phone.push("head")).data == {"stream": "friend_request", "head": 1}
    assert (await bob_desk.push("head")).data == {"stream": "friend_request", "head": 1}
    assert await handle(bob_phone, "alice", accept=True) == 0
    heads = {(await alice.push("head")).data["stream"] for _ in range(2)}
    assert heads == {"friend", "friend_request"}
    desk = {}
    for _ in range(2):
        data = (await bob_desk.push("head")).data
        desk[data["stream"]] = data["head"]
    assert desk == {"friend": 1, "friend_request": 2}
    # The phone that accepted got its answer, and no head push: none came with the answer, and a ping
    # round trip shows none was queued after it.
    assert bob_phone.pushes == []
    await bob_phone.client.send(bob_phone.client.proto.ping())
    assert isinstance(await bob_phone.client.next_event(), events.Pong)


async def test_a_change_racing_a_connect_is_in_the_connack_heads_or_pushed(gw: Gateway, nursery) -> None:
    """The connect's read is queued first, the change right behind it, in one batch of the writer: the
    CONNACK cannot show the change, so the head push must reach the new connection (held until its CONNACK)."""
    writer = gw.services.store.writer
    raw = await RawClient.open(gw, await gw.token("bob", "bob-desk", 3))
    assert isinstance(await raw.next_event(), events.Hello)
    async with held_writer(writer):
        await raw.send(raw.proto.connect(gw.clock.now_ms()))
        await wait_until(lambda: writer.queued == 1)  # the connect's read
        nursery.start_soon(gw.services.relations.put_setting, "bob", 1000, "k", "v", None)
        await wait_until(lambda: writer.queued == 2)
    ack = await raw.next_event()
    assert isinstance(ack, events.ConnAck) and ack.heads["setting"] == 0
    push = await raw.next_event()
    assert isinstance(push, events.Notify) and push.data == {"stream": "setting", "head": 1}
    await raw.aclose()
