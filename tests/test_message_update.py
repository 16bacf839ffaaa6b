"""Message update (issue 22): the stored content is replaced for every holder; an update notice (type 81) goes
to every holder's inbox, pushed live as ``message_updated`` and pulled by devices that were offline."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import msgpack
import pytest
import trio

from client import Conversation
from protocol.codes import ContentType, ErrorCode
from tests.harness import Gateway, start_gateway
from tests.test_admin_messages import Admin
from tests.test_client_sync import sdk, take
from tests.test_messaging import Device
from tests.test_robots import make_robot

UPDATE = int(ContentType.UPDATE)


@pytest.fixture
async def gw(nursery: trio.Nursery, tmp_path) -> Gateway:
    gw = await start_gateway(nursery, tmp_path, message={"client_update_types": "1"})
    for user in ("boss", "ann", "bob"):
        await gw.user(user)
    return gw


@pytest.fixture
async def admin(gw: Gateway) -> AsyncIterator[Admin]:
    async with httpx.AsyncClient() as http:
        yield Admin(gw, http)


async def test_a_robots_update_reaches_an_online_device_by_push_and_an_offline_one_by_pull(
    gw: Gateway, admin: Admin
) -> None:
    robot = await make_robot(admin, None)
    phone = await Device.connect(gw, "ann", "phone")
    tablet = await Device.connect(gw, "ann", "tablet", platform=3)
    sent = await robot.send_text({"type": 0, "target": "ann"}, "draft")
    message_id = int(sent["result"]["message_id"])
    for device in (phone, tablet):
        assert (await device.push()).data["message"]["message_id"] == message_id
    had = (await tablet.call("pull", after_seq=0)).result["head"]
    await tablet.aclose()  # offline while the robot edits
    new = {"type": 1, "searchable_content": "final"}
    updated = await robot.call("message/update", {"message_id": str(message_id), "content": new})
    assert updated["code"] == 0
    notice_id = int(updated["result"]["notice_id"])
    push = await phone.push("message_updated")
    notice = push.data["message"]
    assert notice["message_id"] == notice_id and notice["from"] == "bot" and push.data["seq"] == had + 1
    assert notice["content"]["type"] == UPDATE
    assert msgpack.unpackb(notice["content"]["data"]) == {**new, "persist_flag": 3}
    # The tablet comes back: its pull brings the notice, and the original now reads as updated.
    tablet = await Device.connect(gw, "ann", "tablet", platform=3)
    pulled = (await tablet.call("pull", after_seq=had)).result["messages"]
    assert [m["message"]["message_id"] for m in pulled] == [notice_id]
    original = (await tablet.call("pull", after_seq=0)).result["messages"][0]["message"]
    assert original["message_id"] == message_id and original["content"]["searchable_content"] == "final"
    # Only its own messages: another's is 248; a recalled one is gone (253).
    other = await phone.send_text("bob", "mine")
    refused = await robot.call("message/update", {"message_id": str(other.result["message_id"]), "content": new})
    assert refused["code"] == ErrorCode.NOT_RIGHT
    assert (await robot.call("message/recall", {"message_id": str(message_id)}))["code"] == 0
    gone = await robot.call("message/update", {"message_id": str(message_id), "content": new})
    assert gone["code"] == ErrorCode.NOT_EXIST
    for device in (phone, tablet):
        await device.aclose()


async def test_the_admin_api_updates_any_message_and_may_not_distribute(gw: Gateway, admin: Admin) -> None:
    bob = await Device.connect(gw, "bob")
    sent = await admin.send("ann", "bob", "typo")
    await bob.push()
    mid = sent["result"]["message_id"]
    quiet = await admin.call(
        "message/update", {"message_id": mid, "content": {"type": 1, "searchable_content": "fixed"}, "distribute": False}
    )
    assert quiet["result"] == {"message_id": mid, "notice_id": "0"}
    [entry] = (await bob.call("pull", after_seq=0)).result["messages"]  # no notice: stored content only
    assert entry["message"]["content"]["searchable_content"] == "fixed"
    loud = await admin.call("message/update", {"message_id": mid, "content": {"type": 2, "content": "x"}})
    assert loud["code"] == 0
    push = await bob.push("message_updated")
    assert msgpack.unpackb(push.data["message"]["content"]["data"])["type"] == 2
    reserved = await admin.call("message/update", {"message_id": mid, "content": {"type": UPDATE}})
    assert reserved["code"] == ErrorCode.INVALID_PARAMETER and reserved["msg"].startswith("content.type")
    assert (await admin.call("message/update", {"message_id": "12345", "content": {"type": 1}}))["code"] == 253
    await bob.aclose()


async def test_a_user_updates_its_own_message_of_an_allowed_type_and_the_sdk_hands_over_the_new_content(
    gw: Gateway,
) -> None:
    async with sdk(gw, "ann") as ann, sdk(gw, "bob") as bob:
        ack = await ann.messages.send(Conversation(0, "bob"), {"type": 1, "searchable_content": "v1"})
        [first] = await take(bob, 1)
        assert first.message_id == ack.message_id
        await ann.messages.update(ack.message_id, {"type": 1, "searchable_content": "v2"})
        [notice] = await take(bob, 1)
        assert notice.updated_message_id == ack.message_id
        assert notice.updated_content is not None and notice.updated_content["searchable_content"] == "v2"
        with pytest.raises(Exception) as refused:  # into a type that is not listed either
            await ann.messages.update(ack.message_id, {"type": 2, "content": "other"})
        assert getattr(refused.value, "code", None) == ErrorCode.NOT_RIGHT
        voice = await ann.messages.send(Conversation(0, "bob"), {"type": 2, "content": "blob"})
        with pytest.raises(Exception) as refused:  # type 2 is not in message.client_update_types
            await ann.messages.update(voice.message_id, {"type": 2, "content": "other"})
        assert getattr(refused.value, "code", None) == ErrorCode.NOT_RIGHT


async def test_by_default_users_may_update_nothing(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path)
    for user in ("ann", "bob"):
        await gw.user(user)
    ann = await Device.connect(gw, "ann")
    ack = await ann.send_text("bob", "hi")
    answer = await ann.call("update_message", message_id=ack.result["message_id"], content={"type": 1})
    assert answer.code == ErrorCode.NOT_RIGHT
    await ann.aclose()
