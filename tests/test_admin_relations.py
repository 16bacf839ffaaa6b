"""Admin API for relations over real HTTP (Hypercorn, SQLite, live clients): friends, requests, blacklist, settings."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from protocol.codes import ErrorCode
from tests.harness import OPENAPI_TIMEOUT, Gateway, start_gateway
from tests.test_admin_messages import Admin
from tests.test_messaging import Device

DAY = 86400


@pytest.fixture
async def gw(nursery: trio.Nursery, tmp_path) -> Gateway:
    gw = await start_gateway(nursery, tmp_path)
    for user in ("alice", "bob", "carol"):
        await gw.user(user)
    return gw


@pytest.fixture
async def admin(gw: Gateway) -> AsyncIterator[Admin]:
    async with httpx.AsyncClient(timeout=5) as http:
        yield Admin(gw, http)


async def test_a_request_made_and_accepted_by_the_app_server_reaches_both_users(
    gw: Gateway, admin: Admin
) -> None:
    bob = await Device.connect(gw, "bob")
    sent = await admin.call("friend/send_request", {"user_id": "alice", "target": "bob", "reason": "hi"})
    assert sent == {"code": 0, "msg": "success", "result": None}
    assert (await bob.push("head")).data == {"stream": "friend_request", "head": 1}
    again = await admin.call("friend/send_request", {"user_id": "alice", "target": "bob"})
    assert again["code"] == ErrorCode.FRIEND_ALREADY_REQUESTED
    assert (await admin.call("friend/status", {"user_id": "alice", "friend_id": "bob"}))["result"][
        "friends"
    ] is False

    handled = await admin.call(
        "friend/handle_request", {"user_id": "bob", "requester": "alice", "accept": True}
    )
    assert handled["code"] == 0
    assert (await bob.push("head")).data["stream"] in {"friend", "friend_request"}
    status = await admin.call("friend/status", {"user_id": "bob", "friend_id": "alice"})
    assert status["result"] == {"user_id": "bob", "friend_id": "alice", "friends": True}

    alias = {"user_id": "bob", "friend_id": "alice", "alias": "Al", "extra": '{"x": 1}'}
    assert (await admin.call("friend/set_alias", alias))["code"] == 0
    listed = (await admin.call("friend/list", {"user_id": "bob"}))["result"]
    assert [(f["friend_id"], f["alias"], f["extra"]) for f in listed["friends"]] == [
        ("alice", "Al", '{"x": 1}')
    ]
    assert set(listed["friends"][0]) == {"friend_id", "alias", "extra", "created_at", "updated_at", "version"}

    assert (await admin.call("friend/delete", {"user_id": "alice", "friend_id": "bob"}))["code"] == 0
    assert (await admin.call("friend/list", {"user_id": "bob"}))["result"]["friends"] == []
    gone = await admin.call("friend/delete", {"user_id": "alice", "friend_id": "bob"})
    assert gone["code"] == ErrorCode.NOT_EXIST
    await bob.aclose()


async def test_admin_relation_codes(gw: Gateway, admin: Admin) -> None:
    assert (await admin.call("friend/send_request", {"user_id": "ghost", "target": "bob"}))["code"] == 253
    assert (await admin.call("friend/send_request", {"user_id": "alice", "target": "ghost"}))["code"] == 253
    assert (await admin.call("friend/send_request", {"user_id": "alice", "target": "alice"}))["code"] == 251
    bad = await admin.call("friend/send_request", {"user_id": "alice", "target": "bob", "extra": "{"})
    assert bad["code"] == 251
    assert (
        await admin.call("friend/handle_request", {"user_id": "bob", "requester": "carol", "accept": True})
    )["code"] == 253
    assert (await admin.call("friend/send_request", {"user_id": "carol", "target": "bob"}))["code"] == 0
    gw.clock.advance(7 * DAY)
    expired = await admin.call(
        "friend/handle_request", {"user_id": "bob", "requester": "carol", "accept": True}
    )
    assert expired["code"] == ErrorCode.FRIEND_REQUEST_EXPIRED
    assert (await admin.call("friend/list", {"user_id": "ghost"}))["code"] == 253
    assert (await admin.call("friend/set_alias", {"user_id": "bob", "friend_id": "alice"}))["code"] == 251
    assert (await admin.call("friend/add", {"user_id": "bob", "friend_ids": ["alice", "ghost"]}))[
        "code"
    ] == 253
    assert (await admin.call("friend/add", {"user_id": "bob", "friend_ids": ["alice", "carol"]}))["code"] == 0
    assert (await admin.call("friend/send_request", {"user_id": "alice", "target": "bob"}))["code"] == 23


async def test_blacklist_list_and_a_set_pushed_to_the_users_devices(gw: Gateway, admin: Admin) -> None:
    bob = await Device.connect(gw, "bob")
    assert (await admin.call("blacklist/set", {"user_id": "bob", "target": "alice", "blocked": True}))[
        "code"
    ] == 0
    assert (await bob.push("head")).data == {"stream": "blacklist", "head": 1}
    assert (await admin.call("blacklist/list", {"user_id": "bob"}))["result"] == {
        "user_id": "bob",
        "user_ids": ["alice"],
    }
    request = await admin.call("friend/send_request", {"user_id": "alice", "target": "bob"})
    assert request["code"] == ErrorCode.IN_BLACKLIST
    await bob.aclose()


async def test_settings_through_the_admin_api(gw: Gateway, admin: Admin) -> None:
    bob = await Device.connect(gw, "bob")
    put = await admin.call("user/put_setting", {"user_id": "bob", "scope": 6, "key": "group-1", "value": "1"})
    assert put["result"] == {"user_id": "bob", "version": 1}
    assert (await bob.push("head")).data == {"stream": "setting", "head": 1}
    got = await admin.call("user/get_setting", {"user_id": "bob", "scope": 6, "key": "group-1"})
    assert [(s["key"], s["value"], s["version"]) for s in got["result"]["settings"]] == [("group-1", "1", 1)]
    assert (await bob.call("get_setting", scope=6, key="group-1")).result[
        "value"
    ] == "1"  # one store, both APIs
    none = await admin.call("user/get_setting", {"user_id": "bob", "scope": 6, "key": "other"})
    assert none["result"]["settings"] == []
    assert (await admin.call("user/put_setting", {"user_id": "bob", "scope": 5, "key": "k", "value": "v"}))[
        "code"
    ] == 251
    assert (await admin.call("user/put_setting", {"user_id": "ghost", "scope": 6, "key": "k", "value": "v"}))[
        "code"
    ] == 253
    await bob.aclose()


async def test_hosting_off_answers_220(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path, friend={"hosting": False})
    for user in ("alice", "bob"):
        await gw.user(user)
    async with httpx.AsyncClient(timeout=5) as http:
        admin = Admin(gw, http)
        for action, body in [
            ("friend/send_request", {"user_id": "alice", "target": "bob"}),
            ("friend/list", {"user_id": "alice"}),
            ("friend/status", {"user_id": "alice", "friend_id": "bob"}),
            ("blacklist/list", {"user_id": "alice"}),
        ]:
            assert (await admin.call(action, body))["code"] == ErrorCode.FUNCTION_DISABLED, action


async def test_every_relation_endpoint_is_typed_in_the_openapi_document(gw: Gateway, admin: Admin) -> None:
    schema = (await admin.http.get(f"{gw.running.admin_url}/openapi.json", timeout=OPENAPI_TIMEOUT)).json()
    for action in (
        "friend/send_request", "friend/handle_request", "friend/add", "friend/list", "friend/delete",
        "friend/set_alias", "friend/status", "blacklist/list", "blacklist/set", "user/put_setting",
        "user/get_setting",
    ):  # fmt: skip
        post = schema["paths"][f"/admin/{action}"]["post"]
        body = post["requestBody"]["content"]["application/json"]["schema"]
        answer = post["responses"]["200"]["content"]["application/json"]["schema"]
        assert "$ref" in body and "$ref" in answer, action
