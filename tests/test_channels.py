"""Channels (conversation type 3) over real sockets and a real database: posts, listeners' messages,
private channels, the codes, and the scope 8/9 settings on the user's other devices."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from protocol.codes import ErrorCode as E
from protocol.codes import SettingScope
from storage import channels as db
from tests.harness import Gateway, start_gateway
from tests.storage_helpers import peek
from tests.test_messaging import Device

USERS = ("owner", "mgr", "ann", "bob", "cat", "eve")


@pytest.fixture
async def gw(nursery: trio.Nursery, tmp_path) -> Gateway:
    gw = await start_gateway(nursery, tmp_path, message={"remote_history": True})
    for user in USERS:
        await gw.user(user)
    return gw


async def post(device: Device, cid: str, text: str, **extra: Any) -> Any:
    return await device.call(
        "send_message", conv={"type": 3, "target": cid}, content={"type": 1, "searchable_content": text}, **extra
    )


async def make_channel(owner: Device, cid: str = "news", **fields: Any) -> str:
    created = await owner.call("create_channel", channel_id=cid, name="News", **fields)
    assert created.code == 0, created
    assert created.result == {"channel_id": cid, "info_version": 1}
    return cid


def history_texts(resp: Any) -> list[str]:
    return [m["content"]["searchable_content"] for m in resp.result["messages"]]


async def test_listeners_receive_posts_and_unlisten_stops_delivery(gw: Gateway) -> None:
    owner, ann, bob, eve = [await Device.connect(gw, u) for u in ("owner", "ann", "bob", "eve")]
    cid = await make_channel(owner)
    for d in (ann, bob):
        assert (await d.call("listen_channel", channel_id=cid)).code == 0
    ack = await post(owner, cid, "first")
    assert ack.code == 0 and ack.result["seq"] >= 1
    for d in (ann, bob):
        push = await d.push()
        message = push.data["message"]
        assert message["message_id"] == ack.result["message_id"]
        assert message["conv"] == {"type": 3, "target": cid, "line": 0} and "to_users" not in message
    assert [m["message"]["message_id"] for m in await eve.pull_all()] == []  # not a listener: nothing
    # History: listeners see posts; a stranger gets 21.
    assert history_texts(await ann.call("load_remote_history", conv={"type": 3, "target": cid})) == ["first"]
    assert (await eve.call("load_remote_history", conv={"type": 3, "target": cid})).code == E.NOT_IN_CHANNEL
    # bob stops listening: the next post reaches ann only.
    assert (await bob.call("unlisten_channel", channel_id=cid)).code == 0
    assert (await bob.call("unlisten_channel", channel_id=cid)).code == E.NOT_IN_CHANNEL
    second = await post(owner, cid, "second")
    assert (await ann.push()).data["message"]["message_id"] == second.result["message_id"]
    assert [m["message"]["content"]["searchable_content"] for m in await bob.pull_all()] == ["first"]
    assert (await post(bob, cid, "hello?")).code == E.NOT_IN_CHANNEL
    for d in (owner, ann, bob, eve):
        await d.aclose()


async def test_a_listeners_message_reaches_only_the_owner(gw: Gateway) -> None:
    owner, mgr, ann, bob = [await Device.connect(gw, u) for u in ("owner", "mgr", "ann", "bob")]
    cid = await make_channel(owner)
    for d in (mgr, ann, bob):
        assert (await d.call("listen_channel", channel_id=cid)).code == 0
    assert (await owner.call("set_channel_managers", channel_id=cid, user_ids=["mgr"], is_manager=True)).code == 0
    ann_pc = await Device.connect(gw, "ann", "pc", 3)
    ack = await post(ann, cid, "dear owner")
    assert ack.code == 0
    got = (await owner.push()).data["message"]
    assert got["message_id"] == ack.result["message_id"] and got["from"] == "ann" and got["to_users"] == ["owner"]
    assert (await ann_pc.push()).data["message"]["message_id"] == ack.result["message_id"]  # the sender's devices
    # A manager's post reaches everyone (the owner too): the listener's message was pushed to nobody else.
    mpost = await post(mgr, cid, "from the desk")
    assert mpost.code == 0
    for d in (bob, ann):
        assert (await d.push()).data["message"]["message_id"] == mpost.result["message_id"]
    assert (await owner.push()).data["message"]["message_id"] == mpost.result["message_id"]
    assert [m["message"]["message_id"] for m in await bob.pull_all()] == [mpost.result["message_id"]]
    assert ack.result["message_id"] not in [m["message"]["message_id"] for m in await mgr.pull_all()]
    # History: the owner sees both, bob only the post, ann her own message and the post.
    conv = {"type": 3, "target": cid}
    assert history_texts(await owner.call("load_remote_history", conv=conv)) == ["from the desk", "dear owner"]
    assert history_texts(await bob.call("load_remote_history", conv=conv)) == ["from the desk"]
    assert history_texts(await ann.call("load_remote_history", conv=conv)) == ["from the desk", "dear owner"]
    # A listener cannot widen its reach with to_users: the message still says [owner].
    sneaky = await post(bob, cid, "to ann?", to_users=["ann"])
    assert sneaky.code == 0
    assert (await owner.push()).data["message"]["to_users"] == ["owner"]
    assert sneaky.result["message_id"] not in [m["message"]["message_id"] for m in await ann.pull_all()]
    for d in (owner, mgr, ann, bob, ann_pc):
        await d.aclose()


async def test_a_private_channel_refuses_strangers_and_admits_the_invited(gw: Gateway) -> None:
    owner, ann, eve = [await Device.connect(gw, u) for u in ("owner", "ann", "eve")]
    cid = await make_channel(owner, "club", private=True)
    for d in (ann, eve):
        assert (await d.call("listen_channel", channel_id=cid)).code == E.NOT_EXIST
        assert (await d.call("get_channel_info", channel_id=cid)).code == E.NOT_EXIST
    assert (await ann.call("invite_channel", channel_id=cid, user_ids=["ann"])).code == E.NOT_RIGHT
    assert (await owner.call("invite_channel", channel_id=cid, user_ids=["ann", "nobody"])).code == E.NOT_EXIST
    assert (await owner.call("invite_channel", channel_id=cid, user_ids=["ann"])).code == 0
    info = await ann.call("get_channel_info", channel_id=cid)
    assert info.code == 0 and info.result["channel"]["private"] is True and "callback" not in info.result["channel"]
    assert (await ann.call("listen_channel", channel_id=cid)).code == 0
    assert (await eve.call("listen_channel", channel_id=cid)).code == E.NOT_EXIST
    ack = await post(owner, cid, "members only")
    assert (await ann.push()).data["message"]["message_id"] == ack.result["message_id"]
    for d in (owner, ann, eve):
        await d.aclose()


async def test_codes_rights_info_by_version_transfer_and_destroy(gw: Gateway) -> None:
    owner, mgr, ann, eve = [await Device.connect(gw, u) for u in ("owner", "mgr", "ann", "eve")]
    assert (await ann.call("listen_channel", channel_id="nope")).code == E.NOT_EXIST
    assert (await post(ann, "nope", "x")).code == E.NOT_EXIST
    assert (await ann.call("get_channel_info", channel_id="nope")).code == E.NOT_EXIST
    cid = await make_channel(owner, callback="https://example.invalid/hook")
    assert (await owner.call("create_channel", channel_id=cid)).code == E.INVALID_PARAMETER  # taken
    bad = await owner.call("create_channel", extra="{not json")
    assert bad.code == E.INVALID_PARAMETER and bad.result["field"] == "extra"
    assert (await owner.call("listen_channel", channel_id=cid)).code == E.INVALID_PARAMETER
    for d in (mgr, ann):
        assert (await d.call("listen_channel", channel_id=cid)).code == 0
    assert (await ann.call("set_channel_managers", channel_id=cid, user_ids=["mgr"], is_manager=True)).code == E.NOT_RIGHT
    assert (await owner.call("set_channel_managers", channel_id=cid, user_ids=["eve"], is_manager=True)).code == E.NOT_IN_CHANNEL
    assert (await owner.call("set_channel_managers", channel_id=cid, user_ids=["mgr"], is_manager=True)).code == 0
    # Modify: a manager the name, not the callback; a listener nothing.
    assert (await ann.call("modify_channel", channel_id=cid, field="name", value="Mine")).code == E.NOT_RIGHT
    assert (await mgr.call("modify_channel", channel_id=cid, field="callback", value="")).code == E.NOT_RIGHT
    renamed = await mgr.call("modify_channel", channel_id=cid, field="name", value="Daily")
    assert renamed.code == 0 and renamed.result == {"info_version": 2}
    bad = await owner.call("modify_channel", channel_id=cid, field="private", value=1)
    assert bad.code == E.INVALID_PARAMETER and bad.result["field"] == "value"
    assert (await owner.call("modify_channel", channel_id=cid, field="owner", value="eve")).code == E.INVALID_PARAMETER
    # Info by version: nil when current; the callback URL only for the owner.
    info = await ann.call("get_channel_info", channel_id=cid)
    assert info.result["info_version"] == 2 and info.result["channel"]["name"] == "Daily"
    assert "callback" not in info.result["channel"] and info.result["channel"]["listener_count"] == 2
    assert (await ann.call("get_channel_info", channel_id=cid, info_version=2)).result == {"info_version": 2, "channel": None}
    mine = await owner.call("get_channel_info", channel_id=cid)
    assert mine.result["channel"]["callback"] == "https://example.invalid/hook"
    # Destroy and transfer: the owner only.
    assert (await mgr.call("destroy_channel", channel_id=cid)).code == E.NOT_RIGHT
    assert (await ann.call("transfer_channel", channel_id=cid, new_owner="ann")).code == E.NOT_RIGHT
    assert (await owner.call("transfer_channel", channel_id=cid, new_owner="ghost")).code == E.NOT_EXIST
    assert (await owner.call("transfer_channel", channel_id=cid, new_owner="ann")).code == 0
    assert (await owner.call("destroy_channel", channel_id=cid)).code == E.NOT_RIGHT
    assert (await owner.call("get_my_channels")).result == {"owned": [], "listened": [{"channel_id": cid, "info_version": 3}]}
    assert (await ann.call("get_my_channels")).result == {"owned": [{"channel_id": cid, "info_version": 3}], "listened": []}
    ack = await post(ann, cid, "new owner here")
    assert ack.code == 0
    assert (await owner.push()).data["message"]["message_id"] == ack.result["message_id"]  # now a listener
    assert (await ann.call("destroy_channel", channel_id=cid)).code == 0
    for d in (owner, ann):
        assert (await d.call("get_channel_info", channel_id=cid)).code == E.NOT_EXIST
        assert (await d.call("get_my_channels")).result == {"owned": [], "listened": []}
    assert (await post(ann, cid, "gone")).code == E.NOT_EXIST
    assert (await mgr.call("listen_channel", channel_id=cid)).code == E.NOT_EXIST
    assert (await eve.call("put_setting", scope=9, key=cid, value="1")).code == E.INVALID_PARAMETER  # server's
    for d in (owner, mgr, ann, eve):
        await d.aclose()


async def sync_settings(device: Device) -> dict[tuple[int, str], str]:
    items = (await device.call("sync_settings", after=0)).result["items"]
    return {(i["scope"], i["key"]): i["value"] for i in items if not i["deleted"]}


async def test_settings_8_and_9_reach_the_users_other_device(gw: Gateway) -> None:
    ann_phone = await Device.connect(gw, "ann", "phone", 2)
    ann_pc = await Device.connect(gw, "ann", "pc", 3)
    owner = await Device.connect(gw, "owner")
    owner_pc = await Device.connect(gw, "owner", "pc", 3)
    cid = await make_channel(owner)
    head = await owner_pc.push("head")
    assert head.data["stream"] == "setting"
    assert await sync_settings(owner_pc) == {(int(SettingScope.MY_CHANNEL), cid): "1"}
    assert (await ann_phone.call("listen_channel", channel_id=cid)).code == 0
    head = await ann_pc.push("head")
    assert head.data == {"stream": "setting", "head": head.data["head"]}
    assert await sync_settings(ann_pc) == {(int(SettingScope.LISTENED_CHANNEL), cid): "1"}
    assert (await ann_phone.call("unlisten_channel", channel_id=cid)).code == 0
    await ann_pc.push("head")
    assert await sync_settings(ann_pc) == {}
    items = (await ann_pc.call("sync_settings", after=head.data["head"])).result["items"]
    assert [(i["scope"], i["key"], i["deleted"]) for i in items] == [(9, cid, True)]
    for d in (ann_phone, ann_pc, owner, owner_pc):
        await d.aclose()


async def test_callback_only_channel_hands_listener_messages_to_the_hook(gw: Gateway) -> None:
    owner, ann = [await Device.connect(gw, u) for u in ("owner", "ann")]
    cid = await make_channel(owner, callback="https://example.invalid/in", callback_only=True)
    assert (await ann.call("listen_channel", channel_id=cid)).code == 0
    hook = gw.services.channels.callbacks
    ack = await post(ann, cid, "to the bot")
    assert ack.code == 0
    [event] = hook.take()
    assert (event.url, event.channel_id) == ("https://example.invalid/in", cid)
    assert event.message["message_id"] == ack.result["message_id"] and event.message["to_users"] == ["owner"]
    # Stored for the sender only: not in the owner's inbox, nor in the owner's history.
    rows = peek(
        gw.config.storage.path,
        "SELECT user_id FROM inbox_recent WHERE message_id = ? UNION SELECT user_id FROM inbox WHERE message_id = ?",
        (ack.result["message_id"], ack.result["message_id"]),
    )
    assert rows == [("ann",)]
    conv = {"type": 3, "target": cid}
    assert history_texts(await owner.call("load_remote_history", conv=conv)) == []
    assert history_texts(await ann.call("load_remote_history", conv=conv)) == ["to the bot"]
    # A resend of the same client_msg_id is not handed over twice.
    again = await post(ann, cid, "to the bot", client_msg_id="k1")
    await post(ann, cid, "to the bot", client_msg_id="k1")
    assert again.code == 0 and len(hook.take()) == 1
    for d in (owner, ann):
        await d.aclose()


async def test_a_post_to_2000_listeners_lands_once_in_every_inbox(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path)
    users = [f"l{i:04d}" for i in range(2000)]
    await gw.services.store.run(db.bulk_create_for_tests_and_bench, "big", "boss", users, gw.clock.now_ms())
    online = [await Device.connect(gw, u) for u in users[:10]]
    boss = await Device.connect(gw, "boss")
    ack = await post(boss, "big", "to all")
    assert ack.code == 0
    for device in online:
        assert (await device.push()).data["message"]["message_id"] == ack.result["message_id"]
    message_id = ack.result["message_id"]
    counts = dict(
        peek(
            gw.config.storage.path,
            "SELECT user_id, COUNT(*) FROM (SELECT user_id FROM inbox WHERE message_id = ?"
            " UNION ALL SELECT user_id FROM inbox_recent WHERE message_id = ?) AS found GROUP BY user_id",
            (message_id, message_id),
        )
    )
    assert counts == dict.fromkeys([*users, "boss"], 1)
    assert peek(gw.config.storage.path, "SELECT COUNT(*) FROM messages WHERE message_id = ?", (message_id,)) == [(1,)]
    for device in (*online, boss):
        await device.aclose()


async def test_to_users_recall_and_delete_of_channel_messages(gw: Gateway) -> None:
    owner, ann, bob = [await Device.connect(gw, u) for u in ("owner", "ann", "bob")]
    cid = await make_channel(owner)
    for d in (ann, bob):
        assert (await d.call("listen_channel", channel_id=cid)).code == 0
    assert (await post(owner, cid, "x", to_users=["eve"])).code == E.NOT_IN_CHANNEL  # not a listener
    few = await post(owner, cid, "just ann", to_users=["ann"])
    assert few.code == 0
    assert (await ann.push()).data["message"]["to_users"] == ["ann"]
    everyone = await post(owner, cid, "all")
    assert (await bob.push()).data["message"]["message_id"] == everyone.result["message_id"]  # not "just ann"
    await ann.push()
    # Delete-for-me: bob's copy goes, ann's stays; a non-holder cannot delete it.
    assert (await bob.call("delete_message", message_id=everyone.result["message_id"])).code == 0
    assert (await bob.call("delete_message", message_id=few.result["message_id"])).code == E.NOT_EXIST
    conv = {"type": 3, "target": cid}
    assert history_texts(await bob.call("load_remote_history", conv=conv)) == []
    # Recall: only the sender; the notice reaches those who still have it.
    assert (await ann.call("recall_message", message_id=everyone.result["message_id"])).code == E.NOT_RIGHT
    assert (await owner.call("recall_message", message_id=everyone.result["message_id"])).code == 0
    notice = (await ann.push()).data["message"]
    assert notice["content"]["type"] == 80 and notice["conv"] == {"type": 3, "target": cid, "line": 0}
    seen = (await ann.call("load_remote_history", conv=conv)).result["messages"]
    assert [m["content"]["type"] for m in seen] == [80, 80, 1]  # the notice, the recalled post, "just ann"
    assert "to_users" not in seen[0]
    for d in (owner, ann, bob):
        await d.aclose()


async def test_a_channel_is_a_conversation_with_unread_posts(gw: Gateway) -> None:
    owner, ann = [await Device.connect(gw, u) for u in ("owner", "ann")]
    cid = await make_channel(owner)
    assert (await ann.call("listen_channel", channel_id=cid)).code == 0
    await post(owner, cid, "one")
    last = await post(owner, cid, "two")
    listed = (await ann.call("get_conversations")).result["conversations"]
    assert [(c["conv"], c["unread"]) for c in listed] == [({"type": 3, "target": cid, "line": 0}, 2)]
    assert (await ann.call("mark_read", conv={"type": 3, "target": cid}, message_id=last.result["message_id"])).code == 0
    assert (await ann.call("get_conversations")).result["conversations"][0]["unread"] == 0
    for d in (owner, ann):
        await d.aclose()


async def test_a_callback_only_channel_posts_to_its_url_when_the_host_is_allowed(
    nursery: trio.Nursery, tmp_path
) -> None:
    """The listener's message reaches the channel's callback URL over real HTTP, signed; a callback naming a
    host the operator did not list in callback.channel_hosts is never contacted (counted as refused)."""
    from tests.http_receiver import Receiver

    receiver = await Receiver().start(nursery)
    gw = await start_gateway(
        nursery, tmp_path,
        callback={"secret": "hook-secret", "channel_hosts": f"127.0.0.1:{receiver.port}", "retry_base_ms": 10},
    )  # fmt: skip
    for user in ("owner", "ann"):
        await gw.user(user)
    owner, ann = [await Device.connect(gw, u) for u in ("owner", "ann")]
    allowed = await make_channel(owner, "bot", callback=receiver.url, callback_only=True)
    elsewhere = await make_channel(owner, "other", callback="http://127.0.0.2:9/hook", callback_only=True)
    for cid in (allowed, elsewhere):
        assert (await ann.call("listen_channel", channel_id=cid)).code == 0
    ack = await post(ann, elsewhere, "never sent")
    assert ack.code == 0
    ack = await post(ann, allowed, "to the bot")
    assert ack.code == 0
    [request] = await receiver.wait_for(1)
    assert request.signed_by("hook-secret")
    body = request.json
    assert (body["channel_id"], body["message_id"], body["sender"]) == ("bot", str(ack.result["message_id"]), "ann")
    assert body["content"]["searchable_content"] == "to the bot"
    assert body["content"]["persist_flag"] == 3  # as docs/ADMIN_API.md's example shows: the validated content
    assert gw.services.webhooks.channel_refused == 1 and receiver.connections == 1
    for d in (owner, ann):
        await d.aclose()
