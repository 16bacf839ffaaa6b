"""Hosted groups over real sockets and a real database (SPEC §8): operations, notifications, group messages."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from protocol.codes import ErrorCode as E
from protocol.codes import GroupMemberType as T
from tests.harness import Gateway, start_gateway
from tests.test_messaging import Device

USERS = ("owner", "mgr", "ann", "bob", "cat", "dan", "eve")


@pytest.fixture
async def gw(nursery: trio.Nursery, tmp_path) -> Gateway:
    gw = await start_gateway(nursery, tmp_path, message={"remote_history": True})
    for user in USERS:
        await gw.user(user)
    return gw


async def make_group(gw: Gateway, gid: str = "g1", members: tuple[str, ...] = ("mgr", "ann", "bob"), **fields: Any) -> str:
    groups = gw.services.groups
    code, result = await groups.create("owner", gid, fields, list(members))
    assert code == 0, code
    assert result == {"group_id": gid}
    assert (await groups.set_managers("owner", gid, ["mgr"], True))[0] == 0
    return gid


def data(notify: Any) -> dict[str, Any]:
    return json.loads(notify.data["message"]["content"]["data"])


async def group_send(device: Device, gid: str, text: str, **extra: Any) -> Any:
    return await device.call(
        "send_message", conv={"type": 1, "target": gid}, content={"type": 1, "searchable_content": text}, **extra
    )


async def test_create_send_push_pull_and_history(gw: Gateway) -> None:
    ann = await Device.connect(gw, "ann")
    created = await ann.call("create_group", name="club", members=["bob", "cat"])
    assert created.code == 0
    gid = created.result["group_id"]
    note = await ann.push()
    assert note.data["message"]["content"]["type"] == 104
    assert data(note) == {"g": gid, "o": "ann", "n": "club", "ms": ["bob", "cat"]}
    bob = await Device.connect(gw, "bob")
    ack = await group_send(ann, gid, "hello all")
    assert ack.code == 0
    push = await bob.push()
    assert push.data["message"]["content"]["searchable_content"] == "hello all"
    assert push.data["message"]["conv"] == {"type": 1, "target": gid, "line": 0}
    pulled = await bob.pull_all()
    assert [m["message"]["content"]["type"] for m in pulled] == [104, 1]
    history = await bob.call("load_remote_history", conv={"type": 1, "target": gid})
    assert [m["content"]["type"] for m in history.result["messages"]] == [1, 104]
    # A stranger can neither send nor read the history.
    eve = await Device.connect(gw, "eve")
    assert (await group_send(eve, gid, "let me in")).code == E.NOT_IN_GROUP
    assert (await eve.call("load_remote_history", conv={"type": 1, "target": gid})).code == E.NOT_IN_GROUP
    assert (await eve.call("get_group_members", group_id=gid)).code == E.NOT_IN_GROUP
    info = await eve.call("get_group_info", group_id=gid)
    assert info.code == 0 and info.result["group"]["name"] == "club"
    same = await eve.call("get_group_info", group_id=gid, info_version=info.result["info_version"])
    assert same.result["group"] is None
    for d in (ann, bob, eve):
        await d.aclose()
