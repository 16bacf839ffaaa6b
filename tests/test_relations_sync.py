"""Every device of a user keeps the same friends, requests, blacklist and settings (SPEC §7, §9), with the SDK.

Real gateway, real sockets, the SDK's ``sync_relations``; waits are on the SDK's copy
(``Relations.wait_until``), each bounded by ``trio.fail_after``.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import trio

import client
from client import RelationsChanged
from protocol.codes import SettingScope
from storage import relations
from tests import harness
from tests.harness import Gateway, start_gateway

LIMIT = 10
DAY = 86400


@pytest.fixture
async def gw(nursery: trio.Nursery, tmp_path) -> Gateway:
    gw = await start_gateway(nursery, tmp_path, client={"request_rate_limit": 100_000})
    for user in ("alice", "bob", "carol", "dave"):
        await gw.user(user)
    return gw


def sdk(
    gw: Gateway, user: str, device: str = "phone", platform: int = 2, **kwargs: Any
) -> AbstractAsyncContextManager[client.Client]:
    """``harness.sdk``, syncing relations by default."""
    kwargs.setdefault("sync_relations", True)
    return harness.sdk(gw, user, device, platform, **kwargs)


def copy_of(c: client.Client) -> dict[str, Any]:
    r = c.relations
    return {
        "friends": {f: (x.alias, x.extra) for f, x in r.friends.items()},
        "requests": {k: (x.status, x.read, x.reason) for k, x in r.requests.items()},
        "blacklist": set(r.blacklist),
        "settings": {k: s.value for k, s in r.settings.items()},
    }


async def server_copy(gw: Gateway, user: str) -> dict[str, Any]:
    store = gw.services.store

    def read(conn: Any) -> dict[str, Any]:
        requests = conn.execute(
            "SELECT from_user, to_user, status, is_read, reason FROM friend_requests WHERE from_user = ? OR to_user = ?",
            (user, user),
        ).fetchall()
        return {
            "friends": {f["friend_id"]: (f["alias"], f["extra"]) for f in relations.list_friends(conn, user)},
            "requests": {(a, b): (s, bool(r), why) for a, b, s, r, why in requests},
            "blacklist": set(relations.get_blacklist(conn, user)),
            "settings": {(s["scope"], s["key"]): s["value"] for s in relations.list_settings(conn, user)},
        }

    return await store.read(read)


async def test_two_devices_see_each_others_changes_and_a_third_converges_a_month_later(gw: Gateway) -> None:
    top = int(SettingScope.CONVERSATION_TOP)
    with trio.fail_after(LIMIT):
        async with (
            sdk(gw, "alice") as alice,
            sdk(gw, "bob", "phone", 2) as phone,
            sdk(gw, "bob", "desk", 3) as desk,
        ):
            await alice.relations.send_request("bob", reason="it's alice")
            await desk.relations.wait_until(lambda: ("alice", "bob") in desk.relations.requests)
            assert desk.relations.unread_request_count == 1

            await phone.relations.handle_request("alice", accept=True)
            await desk.relations.wait_until(lambda: "alice" in desk.relations.friends)
            await desk.relations.wait_until(lambda: desk.relations.requests[("alice", "bob")].status == 1)
            await alice.relations.wait_until(lambda: "bob" in alice.relations.friends)
            await alice.relations.wait_until(lambda: alice.relations.requests[("alice", "bob")].status == 1)

            await phone.relations.set_alias("alice", "Al")
            await desk.relations.wait_until(lambda: desk.relations.friends["alice"].alias == "Al")
            assert alice.relations.friends["bob"].alias == ""  # the owner's view only

            await phone.relations.set_blacklist("carol", True)
            await desk.relations.wait_until(lambda: "carol" in desk.relations.blacklist)

            await phone.relations.put_setting(top, "0-alice-0", "1")
            await desk.relations.wait_until(lambda: desk.relations.setting(top, "0-alice-0") == "1")

            # Deletions, seen by the desk too, then a third device comes a month later.
            await phone.relations.put_setting(top, "0-dave-0", "1")
            await phone.relations.put_setting(top, "0-dave-0", "")
            await phone.relations.set_blacklist("dave", True)
            await phone.relations.set_blacklist("dave", False)
            await gw.services.store.add_friends("bob", ["carol", "dave"], gw.clock.now_ms())
            await desk.relations.delete_friend("dave")
            await phone.relations.wait_until(lambda: set(phone.relations.friends) == {"alice", "carol"})
            await desk.relations.wait_until(lambda: copy_of(desk) == copy_of(phone))
            expected = await server_copy(gw, "bob")
            assert copy_of(phone) == copy_of(desk) == expected
            assert expected["friends"] == {"alice": ("Al", ""), "carol": ("", "")}
            assert expected["blacklist"] == {"carol"} and expected["settings"] == {(top, "0-alice-0"): "1"}
            versions = dict(phone.relations.versions)

        gw.clock.advance(30 * DAY)
        async with sdk(gw, "bob", "pad", 8) as pad:  # converged by the time connect() returns
            assert copy_of(pad) == expected
            assert pad.relations.versions == versions


async def test_a_device_resuming_from_its_versions_gets_deletions_as_tombstones(gw: Gateway) -> None:
    with trio.fail_after(LIMIT):
        async with sdk(gw, "bob", "phone") as phone:
            await gw.services.store.add_friends("bob", ["alice", "carol"], gw.clock.now_ms())
            await phone.relations.sync()
            kept = phone.relations.snapshot()  # what the app persists
        async with sdk(gw, "bob", "desk", 3) as desk:
            await desk.relations.delete_friend("alice")
        async with sdk(gw, "bob", "phone", relations_snapshot=kept) as phone:
            assert set(phone.relations.friends) == {"carol"}
            assert phone.relations.pages == 1  # only the friend stream was behind: one page, the tombstone


async def test_five_thousand_friends_sync_in_pages(gw: Gateway) -> None:
    friends = [f"f{i:04d}" for i in range(5000)]
    await gw.services.store.add_friends("bob", friends, gw.clock.now_ms())
    with trio.fail_after(LIMIT * 3):
        async with sdk(gw, "bob") as bob:
            assert set(bob.relations.friends) == set(friends)
            assert copy_of(bob) == await server_copy(gw, "bob")
            assert bob.relations.versions["friend"] == 5000
            # Only the friend stream was behind (the others' heads are 0): ten pages of 500, none of 5000.
            assert bob.relations.pages == 5000 // client.relations.SYNC_LIMIT


async def test_changes_come_to_the_event_stream(gw: Gateway) -> None:
    with trio.fail_after(LIMIT):
        async with sdk(gw, "bob", "phone") as phone, sdk(gw, "bob", "desk", 3) as desk:
            events = desk.events()
            await phone.relations.put_setting(1000, "theme", "dark")
            async for event in events:
                if isinstance(event, RelationsChanged):
                    assert event == RelationsChanged("setting", 1)
                    break


async def test_connack_heads_carry_the_four_streams(gw: Gateway) -> None:
    store, now = gw.services.store, gw.clock.now_ms()
    await store.add_friends("bob", ["alice", "carol"], now)
    await store.set_blacklist("bob", "dave", True, now)
    token = await gw.token("bob", "bob-desk", 3)
    async with client.connect(gw.host, gw.port, token, clock=gw.clock.now_ms) as c:
        assert c.connack is not None
        assert c.connack.heads == {"msg": 0, "friend": 2, "friend_request": 0, "blacklist": 1, "setting": 0}


async def test_an_sdk_syncing_relations_against_a_gateway_without_hosting(
    nursery: trio.Nursery, tmp_path
) -> None:
    gw = await start_gateway(nursery, tmp_path, friend={"hosting": False})
    await gw.user("bob")
    with trio.fail_after(LIMIT):
        async with sdk(gw, "bob", "phone") as phone, sdk(gw, "bob", "desk", 3) as desk:
            await phone.relations.put_setting(
                17, "dnd", "22:00-07:00"
            )  # settings are not relations: they work
            await desk.relations.wait_until(lambda: desk.relations.setting(17, "dnd") == "22:00-07:00")
            with pytest.raises(client.RequestFailed) as refused:
                await phone.relations.send_request("alice")
            assert refused.value.code == 220
            await desk.relations.sync()  # the friend streams answer 220: the copy stays empty, no error
            assert desk.relations.friends == {}


async def test_a_page_never_outgrows_a_frame(nursery: trio.Nursery, tmp_path) -> None:
    """40 settings of 2 000 bytes with 16 KiB frames: the server cuts pages at ¾ of a frame; the SDK goes on."""
    gw = await start_gateway(
        nursery, tmp_path, server={"max_frame_bytes": 16384}, setting={"max_value_bytes": 4096}
    )
    await gw.user("bob")
    for n in range(40):
        await gw.services.relations.put_setting("bob", 1000, f"k{n:02d}", "v" * 2000, None)
    with trio.fail_after(LIMIT):
        async with sdk(gw, "bob") as bob:
            assert len(bob.relations.settings) == 40
            assert bob.relations.versions["setting"] == 40
            assert bob.relations.pages >= 40 * 2000 // (16384 * 3 // 4)
