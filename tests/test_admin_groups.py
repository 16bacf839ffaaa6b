"""Admin API for hosted groups over real HTTP (Hypercorn) against a real gateway, with live clients watching."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from protocol.codes import ErrorCode
from tests.harness import OPENAPI_TIMEOUT, Gateway, start_gateway
from tests.test_admin_messages import Admin
from tests.test_messaging import Device


@pytest.fixture
async def gw(nursery: trio.Nursery, tmp_path) -> Gateway:
    gw = await start_gateway(nursery, tmp_path)
    for user in ("boss", "ann", "bob", "cat"):
        await gw.user(user)
    return gw


@pytest.fixture
async def admin(gw: Gateway) -> AsyncIterator[Admin]:
    async with httpx.AsyncClient() as http:
        yield Admin(gw, http)


def data(push: Any) -> dict[str, Any]:
    return json.loads(push.data["message"]["content"]["data"])


async def test_group_lifecycle_through_the_admin_api(gw: Gateway, admin: Admin) -> None:
    ann = await Device.connect(gw, "ann")
    created = await admin.call(
        "group/create", {"owner": "boss", "group_id": "org", "name": "Org", "type": 3, "members": ["ann", "bob"]}
    )
    assert created == {"code": 0, "msg": "success", "result": {"group_id": "org"}}
    assert (await ann.push()).data["message"]["content"]["type"] == 104
    # Organization groups change membership only here: a client's add is refused.
    assert (await ann.call("add_group_members", group_id="org", user_ids=["cat"])).code == ErrorCode.NOT_RIGHT
    assert (await admin.call("group/add", {"group_id": "org", "user_ids": ["cat"]}))["code"] == 0
    push = await ann.push()
    assert push.data["message"]["from"] == "boss" and data(push) == {"g": "org", "o": "boss", "ms": ["cat"]}
    assert (await admin.call("group/add", {"group_id": "org", "user_ids": ["cat"]}))["code"] == ErrorCode.ALREADY_IN_GROUP
    assert (await admin.call("group/modify", {"group_id": "org", "field": "name", "value": "Org 2"}))["code"] == 0
    assert data(await ann.push())["n"] == "Org 2"
    bad = await admin.call("group/modify", {"group_id": "org", "field": "extra", "value": "{not json"})
    assert bad["code"] == ErrorCode.INVALID_PARAMETER
    got = await admin.call("group/get", {"group_id": "org"})
    assert got["result"]["name"] == "Org 2" and got["result"]["member_count"] == 4 and got["result"]["type"] == 3
    quiet = {"type": 0, "persist_flag": 0, "content": "quiet"}
    kicked = await admin.call(
        "group/kick", {"group_id": "org", "user_ids": ["ann"], "operator": "boss", "notify_content": quiet}
    )
    assert kicked["code"] == 0
    note = await ann.push()
    assert note.data["message"]["content"]["type"] == 106 and note.data["message"]["content"]["persist_flag"] == 0
    members = await admin.call("group/members", {"group_id": "org", "since_version": 1})
    assert {r["user_id"]: r["type"] for r in members["result"]["members"]}["ann"] == 4
    assert (await admin.call("group/user_groups", {"user_id": "bob"}))["result"]["groups"][0]["group_id"] == "org"
    assert (await admin.call("group/common", {"user_id": "bob", "other": "cat"}))["result"] == {"group_ids": ["org"]}
    assert (await admin.call("group/quit", {"group_id": "org", "user_id": "boss"}))["code"] == ErrorCode.NOT_RIGHT
    assert (await admin.call("group/transfer", {"group_id": "org", "new_owner": "bob"}))["code"] == 0
    assert (await admin.call("group/quit", {"group_id": "org", "user_id": "boss"}))["code"] == 0
    assert (await admin.call("group/dismiss", {"group_id": "org"}))["code"] == 0
    assert (await admin.call("group/get", {"group_id": "org"}))["code"] == ErrorCode.NOT_EXIST
    assert (await admin.call("group/dismiss", {"group_id": "nope"}))["code"] == ErrorCode.NOT_EXIST
    await ann.aclose()


async def test_every_group_endpoint_is_typed_in_openapi(gw: Gateway, admin: Admin) -> None:
    response = await admin.http.get(f"{gw.running.admin_url}/openapi.json", timeout=OPENAPI_TIMEOUT)
    paths = response.json()["paths"]
    group_paths = sorted(p for p in paths if p.startswith("/admin/group/"))
    assert len(group_paths) == 16
    for path in group_paths:
        op = paths[path]["post"]
        assert "requestBody" in op and "$ref" in json.dumps(op["responses"]["200"]), path


async def test_ember_admin_group_commands(nursery: trio.Nursery, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main
    from gateway.clock import Clock

    gw = await start_gateway(nursery, tmp_path, clock=Clock())  # the CLI signs with the wall clock
    for user in ("boss", "ann", "bob"):
        await gw.user(user)
    base = ["admin", "--url", gw.running.admin_url, "--secret", gw.config.admin.secret, "group"]

    async def ember(*argv: str) -> tuple[int, Any]:
        code = await trio.to_thread.run_sync(main, [*base, *argv])
        out = capsys.readouterr()
        return code, json.loads(out.out or out.err)

    code, out = await ember("create", "boss", "--id", "g", "--name", "G", "--members", "ann")
    assert (code, out["result"]) == (0, {"group_id": "g"})
    assert (await ember("add", "g", "bob"))[0] == 0
    code, out = await ember("add", "g", "bob")
    assert (code, out["code"]) == (1, ErrorCode.ALREADY_IN_GROUP)
    assert (await ember("modify", "g", "mute", "1"))[0] == 0
    assert (await ember("managers", "g", "ann"))[0] == 0
    code, out = await ember("members", "g")
    assert {r["user_id"]: r["type"] for r in out["result"]["members"]} == {"boss": 2, "ann": 1, "bob": 0}
    assert (await ember("get", "g"))[1]["result"]["mute"] == 1
    assert (await ember("common", "ann", "bob"))[1]["result"] == {"group_ids": ["g"]}
    assert (await ember("kick", "g", "bob"))[0] == 0
    assert (await ember("user-groups", "bob"))[1]["result"]["groups"] == []
    assert (await ember("transfer", "g", "ann"))[0] == 0
    assert (await ember("quit", "g", "boss"))[0] == 0
    assert (await ember("dismiss", "g"))[0] == 0
