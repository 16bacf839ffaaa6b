"""Admin API for channels over real HTTP (Hypercorn) against a real gateway, with live clients listening."""

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
    for user in ("boss", "ann", "bob"):
        await gw.user(user)
    return gw


@pytest.fixture
async def admin(gw: Gateway) -> AsyncIterator[Admin]:
    async with httpx.AsyncClient() as http:
        yield Admin(gw, http)


async def test_channel_lifecycle_through_the_admin_api(gw: Gateway, admin: Admin) -> None:
    created = await admin.call(
        "channel/create", {"owner": "boss", "channel_id": "daily", "name": "Daily", "callback": "https://x.invalid/cb"}
    )
    assert created == {"code": 0, "msg": "success", "result": {"channel_id": "daily", "info_version": 1}}
    assert (await admin.call("channel/create", {"owner": "boss", "channel_id": "daily"}))["code"] == 251
    assert (await admin.call("channel/create", {"owner": "ghost"}))["code"] == ErrorCode.NOT_EXIST
    bad = await admin.call("channel/create", {"owner": "boss", "callback": "ftp://x"})
    assert bad["code"] == ErrorCode.INVALID_PARAMETER and bad["msg"].startswith("callback")
    ann, bob = await Device.connect(gw, "ann"), await Device.connect(gw, "bob")
    for d in (ann, bob):
        assert (await d.call("listen_channel", channel_id="daily")).code == 0
    info = await admin.call("channel/info", {"channel_id": "daily"})
    assert info["result"]["listener_count"] == 2 and info["result"]["callback"] == "https://x.invalid/cb"
    assert info["result"]["owner"] == "boss" and info["result"]["private"] is False
    posted = await admin.call("channel/post", {"channel_id": "daily", "content": {"type": 1, "searchable_content": "hi"}})
    assert posted["code"] == 0 and set(posted["result"]) == {"message_id", "server_time", "seq"}
    for d in (ann, bob):
        push = await d.push()
        assert str(push.data["message"]["message_id"]) == posted["result"]["message_id"]
        assert push.data["message"]["from"] == "boss"
    page = await admin.call("channel/listeners", {"channel_id": "daily", "limit": 1})
    assert page["result"]["count"] == 2 and [r["user_id"] for r in page["result"]["listeners"]] == ["ann"]
    page = await admin.call("channel/listeners", {"channel_id": "daily", "after_user": "ann"})
    assert [(r["user_id"], r["manager"]) for r in page["result"]["listeners"]] == [("bob", False)]
    assert (await admin.call("channel/destroy", {"channel_id": "daily"}))["code"] == 0
    for path in ("channel/destroy", "channel/info", "channel/listeners"):
        assert (await admin.call(path, {"channel_id": "daily"}))["code"] == ErrorCode.NOT_EXIST, path
    gone = await admin.call("channel/post", {"channel_id": "daily", "content": {"type": 1}})
    assert gone["code"] == ErrorCode.NOT_EXIST
    assert (await ann.call("get_my_channels")).result == {"owned": [], "listened": []}
    for d in (ann, bob):
        await d.aclose()


async def test_every_channel_endpoint_is_typed_in_openapi(gw: Gateway, admin: Admin) -> None:
    paths = (await admin.http.get(f"{gw.running.admin_url}/openapi.json", timeout=OPENAPI_TIMEOUT)).json()["paths"]
    channel_paths = sorted(p for p in paths if p.startswith("/admin/channel/"))
    assert channel_paths == [f"/admin/channel/{n}" for n in ("create", "destroy", "info", "listeners", "post")]
    for path in channel_paths:
        op = paths[path]["post"]
        assert "$ref" in json.dumps(op["requestBody"]) and "$ref" in json.dumps(op["responses"]["200"]), path


async def test_ember_admin_channel_commands(nursery: trio.Nursery, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main
    from gateway.clock import Clock

    gw = await start_gateway(nursery, tmp_path, clock=Clock())  # the CLI signs with the wall clock
    for user in ("boss", "ann"):
        await gw.user(user)
    base = ["admin", "--url", gw.running.admin_url, "--secret", gw.config.admin.secret, "channel"]

    async def ember(*argv: str) -> tuple[int, Any]:
        code = await trio.to_thread.run_sync(main, [*base, *argv])
        out = capsys.readouterr()
        return code, json.loads(out.out or out.err)

    code, out = await ember("create", "boss", "--id", "c", "--name", "C", "--private")
    assert (code, out["result"]) == (0, {"channel_id": "c", "info_version": 1})
    ann = await Device.connect(gw, "ann")
    assert (await ann.call("listen_channel", channel_id="c")).code == ErrorCode.NOT_EXIST  # private
    assert (await ann.call("invite_channel", channel_id="c", user_ids=["ann"])).code == ErrorCode.NOT_RIGHT
    boss = await Device.connect(gw, "boss")
    assert (await boss.call("invite_channel", channel_id="c", user_ids=["ann"])).code == 0
    assert (await ann.call("listen_channel", channel_id="c")).code == 0
    code, out = await ember("info", "c")
    assert code == 0 and out["result"]["private"] is True and out["result"]["name"] == "C"
    assert (await ember("post", "c", "hello"))[0] == 0
    assert (await ann.push()).data["message"]["content"]["searchable_content"] == "hello"
    assert (await ember("listeners", "c"))[1]["result"]["listeners"][0]["user_id"] == "ann"
    assert (await ember("destroy", "c"))[0] == 0
    code, out = await ember("info", "c")
    assert (code, out["code"]) == (1, ErrorCode.NOT_EXIST)
    for d in (ann, boss):
        await d.aclose()
