"""The SDK's groups (client/groups.py) against a real gateway: typed operations, the cache by version, the
notifications applied to it and reported as events, and which notifications the SDK keeps."""

from __future__ import annotations

import pytest
import trio

from client import RequestFailed
from client.groups import GroupEvent, GroupSynced
from protocol.codes import ErrorCode
from tests.harness import Gateway, start_gateway
from tests.test_client_sync import sdk, take

LIMIT = 10


@pytest.fixture
async def gw(nursery: trio.Nursery, tmp_path) -> Gateway:
    gw = await start_gateway(nursery, tmp_path, client={"request_rate_limit": 100_000})
    for user in ("alice", "bob", "carol", "dan"):
        await gw.user(user)
    return gw


async def next_event(c) -> GroupEvent:
    """The next applied notification (fetches' ``GroupSynced`` events in between are skipped)."""
    with trio.fail_after(LIMIT):
        while True:
            event = await c.groups.events().receive()
            if isinstance(event, GroupEvent):
                return event


def synced(c) -> list[GroupSynced]:
    """The ``GroupSynced`` events waiting now (notifications' events are dropped)."""
    found = []
    while True:
        try:
            event = c.groups.events().receive_nowait()
        except trio.WouldBlock:
            return found
        if isinstance(event, GroupSynced):
            found.append(event)


async def test_operations_cache_and_events(gw: Gateway) -> None:
    async with sdk(gw, "alice") as alice, sdk(gw, "bob") as bob:
        gid = await alice.groups.create(["bob", "carol"], name="club")
        (created,) = await take(bob, 1)
        assert created.content_type == 104
        event = await next_event(bob)
        assert (event.group_id, event.kind, event.operator, event.data["ms"]) == (gid, 104, "alice", ["bob", "carol"])
        info = await bob.groups.info(gid)
        assert (info.name, info.owner, info.member_count) == ("club", "alice", 3)
        members = await bob.groups.members(gid)
        assert {u: m.type for u, m in members.items()} == {"alice": 2, "bob": 0, "carol": 0}
        # Notifications update the cache before the app even asks.
        await alice.groups.modify(gid, "name", "club 2")
        await alice.groups.set_managers(gid, ["bob"])
        await alice.groups.kick(gid, ["carol"])
        await take(bob, 3)
        kinds = [(await next_event(bob)).kind for _ in range(3)]
        assert kinds == [110, 117, 106]
        cached = bob.groups.cached_info(gid)
        assert cached is not None and cached.name == "club 2" and cached.member_count == 2
        assert {u: m.type for u, m in (bob.groups.cached_members(gid) or {}).items()} == {"alice": 2, "bob": 1}
        # The version sync brings only what changed, and agrees with what the notifications did.
        synced(bob)
        rows = await bob.groups.members(gid)
        assert {u: m.type for u, m in rows.items()} == {"alice": 2, "bob": 1}
        (sync,) = synced(bob)  # bob's row came back with its new version; carol's tombstone removed nothing more
        assert (sync.members_changed, sync.members_removed) == (("bob",), ())
        assert await bob.groups.members(gid) == rows and synced(bob) == []  # nothing changed: no event
        assert (await bob.groups.info(gid)).info_version > info.info_version
        assert await bob.groups.my_groups() == [gid]
        assert await bob.groups.common("alice") == [gid]
        with pytest.raises(RequestFailed) as refused:
            await bob.groups.dismiss(gid)
        assert refused.value.code == ErrorCode.NOT_RIGHT
        # Kicked: the kicked member's cache drops the group with its kick notification.
        await alice.groups.kick(gid, ["bob"])
        await take(bob, 1)
        gone = await next_event(bob)
        assert gone.kind == 106 and gone.removed and bob.groups.cached_info(gid) is None


async def test_a_persist_0_notification_is_delivered_and_applied_but_not_stored(gw: Gateway) -> None:
    async with sdk(gw, "alice") as alice, sdk(gw, "bob") as bob:
        gid = await alice.groups.create(["bob", "carol"], name="quiet")
        await take(bob, 1)
        await bob.groups.members(gid)
        async with sdk(gw, "carol") as carol:
            await take(carol, 1)
            await carol.groups.quit(gid, notify_content={"persist_flag": 0})
        (quit_note,) = await take(bob, 1)
        assert (quit_note.content_type, quit_note.content["persist_flag"]) == (107, 0)  # delivered
        events = [await next_event(bob) for _ in range(2)]
        assert [e.kind for e in events] == [104, 107]  # applied and reported
        assert "carol" not in (bob.groups.cached_members(gid) or {})
        stored = bob.groups.notifications(gid)
        assert [m.content_type for m in stored] == [104]  # the create (persist 1) is kept; the quiet quit is not
