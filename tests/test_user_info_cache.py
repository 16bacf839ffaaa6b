"""The SDK's user-info cache (SPEC §6, FAQ 4, 9): not pushed; a refresh brings changes, and only changes."""

from __future__ import annotations

import trio

import client
from client import Notify, UserInfoUpdated
from tests.harness import Gateway, RawClient, start_gateway
from tests.test_gateway_limits import roundtrip

LIMIT = 10


def drain(c: client.Client) -> list[object]:
    """The events already on the stream (the SDK emits before the awaited call returns)."""
    out = []
    while True:
        try:
            out.append(c.events().receive_nowait())
        except trio.WouldBlock:
            return out


async def test_refresh_brings_the_new_value_once_and_an_unchanged_refresh_fires_nothing(
    nursery: trio.Nursery, tmp_path
) -> None:
    gw: Gateway = await start_gateway(nursery, tmp_path)
    await gw.user("alice", name="Alice")
    await gw.user("bob", name="Bob", updated_at=gw.clock.now_ms())
    token = await gw.token("alice")
    with trio.fail_after(LIMIT):
        async with client.connect(gw.host, gw.port, token, clock=gw.clock.now_ms) as c:
            (bob,) = await c.users.get_user_info(["bob", "nobody"])
            assert bob.get("name") == "Bob"
            assert [e.users for e in drain(c) if isinstance(e, UserInfoUpdated)] == [(bob,)]

            gw.clock.advance(1)
            assert await gw.services.store.update_user("bob", gw.clock.now_ms(), name="Robert")
            await c.ping()  # a round trip: any push would have arrived before the pong
            assert [e for e in drain(c) if isinstance(e, Notify | UserInfoUpdated)] == []  # not pushed

            asked = c.users.requests
            assert (await c.users.get_user_info(["bob"]))[0].get("name") == "Bob"  # the cache answers
            assert c.users.requests == asked

            (fresh,) = await c.users.get_user_info(["bob"], refresh=True)
            assert fresh.get("name") == "Robert"
            assert [e.users for e in drain(c) if isinstance(e, UserInfoUpdated)] == [(fresh,)]

            assert (await c.users.get_user_info(["bob"], refresh=True)) == [fresh]
            assert [e for e in drain(c) if isinstance(e, UserInfoUpdated)] == []


async def test_the_server_answers_only_changed_users_when_told_what_the_client_holds(
    nursery: trio.Nursery, tmp_path
) -> None:
    gw: Gateway = await start_gateway(nursery, tmp_path)
    await gw.user("alice")
    await gw.user("bob", updated_at=5)
    await gw.user("carol", updated_at=7)
    raw = await RawClient.connected(gw, await gw.token("alice"))
    answer = await roundtrip(
        raw, "get_user_info", {"user_ids": ["bob", "carol"], "known": {"bob": 5, "carol": 6}}
    )
    assert [u["user_id"] for u in answer.result["users"]] == ["carol"]
    assert answer.result["unchanged"] == ["bob"]
    plain = await roundtrip(raw, "get_user_info", {"user_ids": ["bob"]})
    assert "unchanged" not in plain.result and len(plain.result["users"]) == 1
    bad = await roundtrip(raw, "get_user_info", {"user_ids": ["bob"], "known": {"bob": "5"}})
    assert bad.code == 251
    await raw.aclose()
