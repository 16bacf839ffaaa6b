"""Tombstone retention (gateway/domain/tombstones.py): old tombstones go, and a device that missed them resyncs from 0.

Real gateway, real SQLite file, the SDK over real sockets, a ``ManualClock`` moved by months. The purge is run
with ``services.tombstones.purge()`` (what the periodic task runs), except in the test of the task itself.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import trio

import client
from client import RelationsChanged
from client.groups import GroupSynced
from gateway.domain.tombstones import Purged
from tests import harness
from tests.harness import Gateway, start_gateway
from tests.test_messaging import Device
from tests.test_relations_sync import copy_of, server_copy

LIMIT = 10
DAY = 86400
RETENTION_DAYS = 90  # the default
APP = 1000  # an app's own setting scope


@pytest.fixture
async def gw(nursery: trio.Nursery, tmp_path) -> Gateway:
    gw = await start_gateway(nursery, tmp_path, client={"request_rate_limit": 100_000})
    for user in ("alice", "bob", "carol", "dave", "eve"):
        await gw.user(user)
    return gw


def sdk(gw: Gateway, user: str, device: str = "phone", **kwargs: Any) -> AbstractAsyncContextManager[client.Client]:
    kwargs.setdefault("sync_relations", True)
    return harness.sdk(gw, user, device, **kwargs)


async def tombstones(gw: Gateway) -> dict[str, Any]:
    """Every tombstone in the database, and the horizons."""

    def read(conn: Any) -> dict[str, Any]:
        return {
            "relations": set(conn.execute("SELECT user_id, stream, item FROM relation_tombstones").fetchall()),
            "members": set(conn.execute("SELECT group_id, user_id FROM group_members WHERE type = 4").fetchall()),
            "horizons": {
                (user, stream): h
                for user, stream, h in conn.execute("SELECT user_id, stream, horizon FROM relation_heads")
                if h
            },
            "member_horizons": dict(conn.execute("SELECT group_id, member_horizon FROM groups").fetchall()),
        }

    return await gw.services.store.read(read)


async def server_members(gw: Gateway, group_id: str) -> dict[str, int]:
    def read(conn: Any) -> dict[str, int]:
        rows = conn.execute("SELECT user_id, type FROM group_members WHERE group_id = ? AND type != 4", (group_id,))
        return dict(rows.fetchall())

    return await gw.services.store.read(read)


async def ok(result: Any) -> None:
    code = (await result)[0] if not isinstance(result, int) else result
    assert code == 0, code


async def make_group(gw: Gateway, members: list[str]) -> None:
    code, _ = await gw.services.groups.create("alice", "g", {"name": "club"}, members)
    assert code == 0, code


async def test_tombstones_older_than_the_retention_are_removed_and_newer_ones_kept(gw: Gateway) -> None:
    store, relations, groups = gw.services.store, gw.services.relations, gw.services.groups
    await store.add_friends("alice", ["bob", "carol"], gw.clock.now_ms())
    for target in ("dave", "eve"):
        assert await relations.set_blacklist("alice", target, True, None) == 0
    for key in ("k1", "k2"):
        assert (await relations.put_setting("alice", APP, key, "v", None))[0] == 0
    await make_group(gw, ["bob", "carol", "dave"])
    # Day 0: the old deletions.
    assert await relations.delete_friend("alice", "bob", None) == 0
    assert await relations.set_blacklist("alice", "dave", False, None) == 0
    assert (await relations.put_setting("alice", APP, "k1", "", None))[0] == 0
    assert (await groups.kick("alice", "g", ["bob"]))[0] == 0
    # Day 60: newer ones.
    gw.clock.advance(60 * DAY)
    assert await relations.delete_friend("alice", "carol", None) == 0
    assert (await relations.put_setting("alice", APP, "k2", "", None))[0] == 0
    assert (await groups.kick("alice", "g", ["carol"]))[0] == 0
    before = await tombstones(gw)
    assert len(before["relations"]) == 7 and before["members"] == {("g", "bob"), ("g", "carol")}

    gw.clock.advance(RETENTION_DAYS * DAY - 60 * DAY - 1)  # a second short of day 0's retention: nothing goes
    assert await gw.services.tombstones.purge() == Purged(0, 0)
    gw.clock.advance(2)
    assert await gw.services.tombstones.purge() == Purged(relations=4, members=1)
    after = await tombstones(gw)
    assert after["relations"] == {
        ("alice", "friend", "carol"), ("carol", "friend", "alice"), ("alice", "setting", "k2"),
    }  # fmt: skip
    assert after["members"] == {("g", "carol")}
    # Each stream's horizon is the highest version purged from it (alice's friend stream: bob's deletion, 3).
    assert after["horizons"] == {
        ("alice", "friend"): 3, ("bob", "friend"): 2, ("alice", "blacklist"): 3, ("alice", "setting"): 3,
    }  # fmt: skip
    assert after["member_horizons"] == {"g": 2}
    # The live rows are untouched.
    assert set((await server_copy(gw, "alice"))["blacklist"]) == {"eve"}
    assert await server_members(gw, "g") == {"alice": 2, "dave": 0}
    # Day 150: the newer ones go too.
    gw.clock.advance(60 * DAY)
    assert await gw.services.tombstones.purge() == Purged(relations=3, members=1)


async def test_the_reset_answers_on_the_wire(gw: Gateway) -> None:
    """Below the horizon a sync answers the stream from 0 with ``reset: true``; at or above it, as before."""
    relations = gw.services.relations
    await gw.services.store.add_friends("alice", ["bob", "carol"], gw.clock.now_ms())  # versions 1, 2
    assert await relations.delete_friend("alice", "bob", None) == 0  # 3
    await make_group(gw, ["bob", "carol"])  # member version 1
    assert (await gw.services.groups.kick("alice", "g", ["bob"]))[0] == 0  # 2
    assert (await gw.services.groups.add("alice", "g", ["dave"]))[0] == 0  # 3
    gw.clock.advance(RETENTION_DAYS * DAY + 1)
    assert await gw.services.tombstones.purge() == Purged(relations=2, members=1)
    alice = await Device.connect(gw, "alice")
    carol_row = {"friend_id": "carol", "alias": "", "extra": "", "version": 2, "deleted": False}

    reset = (await alice.call("sync_friends", after=1)).result
    assert reset["reset"] is True and reset["head"] == 3
    assert [{k: i[k] for k in carol_row} for i in reset["items"]] == [carol_row]  # from 0: no tombstones left
    assert (await alice.call("sync_friends", after=3)).result == {"items": [], "head": 3}  # at the horizon
    assert "reset" not in (await alice.call("sync_friends", after=0)).result
    # A sync from 0 in progress (its first page's head sent along) is not reset, even from below the horizon.
    assert "reset" not in (await alice.call("sync_friends", after=2, full_sync_head=3)).result
    assert "reset" in (await alice.call("sync_friends", after=2, full_sync_head=2)).result
    bad = await alice.call("sync_friends", after=1, full_sync_head=-1)
    assert bad.code == 251

    members = (await alice.call("get_group_members", group_id="g", since_version=1, after_version=1,
                                after_user="zz", limit=500)).result  # fmt: skip
    assert members["reset"] is True and members["member_version"] == 3
    assert sorted(m["user_id"] for m in members["members"]) == ["alice", "carol", "dave"]  # from the start
    current = (await alice.call("get_group_members", group_id="g", since_version=2)).result
    assert "reset" not in current and [m["user_id"] for m in current["members"]] == ["dave"]
    await alice.aclose()


async def test_a_device_from_before_the_horizon_is_reset_and_ends_with_the_servers_state(gw: Gateway) -> None:
    store, relations, groups = gw.services.store, gw.services.relations, gw.services.groups
    with trio.fail_after(LIMIT):
        await store.add_friends("alice", ["bob", "carol"], gw.clock.now_ms())
        await make_group(gw, ["bob", "carol", "dave"])
        async with sdk(gw, "alice") as phone:
            await phone.relations.set_blacklist("dave", True)
            await phone.relations.set_blacklist("eve", True)
            await phone.relations.put_setting(APP, "k1", "1")
            await phone.relations.put_setting(APP, "k2", "2")
            kept = phone.relations.snapshot()  # what the app persists
            assert set(kept.friends) == {"bob", "carol"} and set(kept.blacklist) == {"dave", "eve"}
        async with sdk(gw, "bob", sync_relations=False) as bob_phone:
            assert set(await bob_phone.groups.members("g")) == {"alice", "bob", "carol", "dave"}

            # While the phones are away: deletions (soon purged) and other changes.
            async with sdk(gw, "alice", "desk") as desk:
                await desk.relations.delete_friend("bob")
                await desk.relations.set_blacklist("dave", False)
                await desk.relations.put_setting(APP, "k1", "")
                await desk.relations.put_setting(APP, "k3", "3")
            # A custom notification without ``ms``: bob's cache cannot apply the kick, only the sync can.
            silent = {"type": 0, "data": b'{"g":"g","o":"alice"}', "persist_flag": 1}
            assert (await groups.kick("alice", "g", ["carol"], notify_content=silent))[0] == 0
            gw.clock.advance(RETENTION_DAYS * DAY + 1)
            await store.add_friends("alice", ["dave"], gw.clock.now_ms())
            assert (await relations.put_setting("alice", APP, "k2", "22", None))[0] == 0
            assert (await groups.add("alice", "g", ["eve"]))[0] == 0
            purged = await gw.services.tombstones.purge()
            assert purged.relations >= 3 and purged.members == 1

            async with sdk(gw, "alice", relations_snapshot=kept) as phone:  # converged when connect() returns
                expected = await server_copy(gw, "alice")
                assert copy_of(phone) == expected
                assert set(expected["friends"]) == {"carol", "dave"} and expected["blacklist"] == {"eve"}
                assert expected["settings"] == {(APP, "k2"): "22", (APP, "k3"): "3"}
                assert phone.relations.resets == 3  # friend, blacklist, setting; requests have no tombstones
                changed = set()
                while True:
                    try:
                        event = phone.events().receive_nowait()
                    except trio.WouldBlock:
                        break
                    if isinstance(event, RelationsChanged):
                        changed.add(event.stream)
                assert {"friend", "blacklist", "setting"} <= changed

            synced_before = bob_phone.groups.resets
            members = await bob_phone.groups.members("g")
            assert {u: m.type for u, m in members.items()} == await server_members(gw, "g")
            assert set(members) == {"alice", "bob", "dave", "eve"}  # carol's removal came through the reset
            assert bob_phone.groups.resets == synced_before + 1
            event = None
            while True:
                try:
                    event = bob_phone.groups.events().receive_nowait()
                except trio.WouldBlock:
                    break
            assert isinstance(event, GroupSynced)
            assert "eve" in event.members_changed and event.members_removed == ("carol",)


async def test_a_device_within_the_horizon_syncs_by_version_as_before(gw: Gateway) -> None:
    store, groups = gw.services.store, gw.services.groups
    with trio.fail_after(LIMIT):
        await store.add_friends("alice", ["bob", "carol"], gw.clock.now_ms())
        await make_group(gw, ["bob", "carol"])
        async with sdk(gw, "alice") as phone, sdk(gw, "bob", sync_relations=False) as bob_phone:
            await phone.relations.delete_friend("bob")
            await phone.relations.put_setting(APP, "k1", "1")
            await phone.relations.put_setting(APP, "k1", "")
            assert (await groups.kick("alice", "g", ["carol"]))[0] == 0
            assert set(await bob_phone.groups.members("g")) == {"alice", "bob"}  # holds the kick's version
            kept = phone.relations.snapshot()
            gw.clock.advance(RETENTION_DAYS * DAY + 1)
            purged = await gw.services.tombstones.purge()
            assert purged == Purged(relations=3, members=1)  # alice's and bob's friend, alice's setting

            await store.add_friends("alice", ["eve"], gw.clock.now_ms())
            assert (await groups.add("alice", "g", ["dave"]))[0] == 0
            async with sdk(gw, "alice", "phone2", relations_snapshot=kept) as again:
                assert copy_of(again) == await server_copy(gw, "alice")
                assert set(again.relations.friends) == {"carol", "eve"}
                assert again.relations.resets == 0 and again.relations.pages == 1  # one page: eve's row
            members = await bob_phone.groups.members("g")
            assert set(members) == {"alice", "bob", "dave"} and bob_phone.groups.resets == 0


async def test_a_stream_longer_than_a_page_syncs_from_0_past_a_horizon(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The horizon lies beyond the first page's last version: the pages of a sync from 0 must not each be
    answered ``reset`` (the SDK sends its first page's head as ``full_sync_head``)."""
    monkeypatch.setattr(client.relations, "SYNC_LIMIT", 2)
    relations = gw.services.relations
    for n in range(6):
        assert (await relations.put_setting("alice", APP, f"k{n}", "v", None))[0] == 0  # versions 1..6
    assert (await relations.put_setting("alice", APP, "k3", "", None))[0] == 0  # 7: a tombstone
    gw.clock.advance(RETENTION_DAYS * DAY + 1)
    assert await gw.services.tombstones.purge() == Purged(relations=1)
    with trio.fail_after(LIMIT):
        async with sdk(gw, "alice") as phone:
            assert set(phone.relations.settings) == {(APP, f"k{n}") for n in (0, 1, 2, 4, 5)}
            assert phone.relations.resets == 0 and phone.relations.versions["setting"] == 7
            assert phone.relations.pages == 4  # versions 1-2, 3 and 5, 6, then an empty page: the head


async def test_retention_0_keeps_tombstones_for_good(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path, storage={"tombstone_retention_seconds": 0})
    for user in ("alice", "bob"):
        await gw.user(user)
    await gw.services.store.add_friends("alice", ["bob"], gw.clock.now_ms())
    assert await gw.services.relations.delete_friend("alice", "bob", None) == 0
    gw.clock.advance(3650 * DAY)
    assert await gw.services.tombstones.purge() == Purged()
    assert len((await tombstones(gw))["relations"]) == 2


async def test_the_purge_runs_by_itself_every_interval(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path, storage={"tombstone_purge_interval_seconds": 0.01})
    for user in ("alice", "bob"):
        await gw.user(user)
    await gw.services.store.add_friends("alice", ["bob"], gw.clock.now_ms())
    assert await gw.services.relations.delete_friend("alice", "bob", None) == 0
    gw.clock.advance(RETENTION_DAYS * DAY + 1)
    purge = gw.services.tombstones
    with trio.fail_after(LIMIT):
        # A pass under way may have read the clock before it moved: the one after it has not.
        await purge.wait_for_pass(purge.passes + 1)
    assert (await tombstones(gw))["relations"] == set()
