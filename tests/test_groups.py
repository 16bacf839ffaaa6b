"""Hosted groups over real sockets and a real database (SPEC §8): operations, notifications, group messages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trio

from protocol.codes import ErrorCode as E
from protocol.codes import GroupMemberType as T
from tests.harness import Gateway, start_gateway
from tests.test_admin_messages import Admin
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
    code, result = await groups.create("owner", gid, fields, list(members), admin=fields.get("type") == 3)
    assert code == 0, code
    assert result == {"group_id": gid}
    if "mgr" in members:
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


# (operation, caller, group fields, expected code). The group: owner, mgr (manager), ann and bob (normal);
# dan is no member. Each case runs on a fresh group.
def _cases() -> list[tuple[str, str, dict[str, int], int]]:
    n0, n1, n2 = {"type": 0, "join_type": 0}, {"type": 0, "join_type": 1}, {"type": 0, "join_type": 2}
    r, o = {"type": 2}, {"type": 3}
    return [
        ("add cat", "owner", n0, 0), ("add cat", "mgr", n0, 0), ("add cat", "ann", n0, 0),
        ("add cat", "dan", n0, E.NOT_IN_GROUP), ("add dan", "dan", n0, 0), ("add dan", "dan", n1, E.NOT_IN_GROUP),
        ("add dan", "dan", r, E.NOT_IN_GROUP), ("add cat", "ann", n1, 0), ("add cat", "ann", n2, E.NOT_RIGHT),
        ("add cat", "mgr", n2, 0), ("add cat", "ann", r, E.NOT_RIGHT), ("add cat", "mgr", r, 0),
        ("add cat", "owner", o, E.NOT_RIGHT), ("add ann", "owner", n0, E.ALREADY_IN_GROUP),
        ("add ghost", "owner", n0, E.NOT_EXIST),
        ("kick bob", "owner", n0, 0), ("kick bob", "mgr", n0, 0), ("kick bob", "ann", n0, E.NOT_RIGHT),
        ("kick bob", "dan", n0, E.NOT_IN_GROUP), ("kick owner", "mgr", n0, E.NOT_RIGHT),
        ("kick mgr", "owner", n0, 0), ("kick dan", "owner", n0, E.NOT_IN_GROUP),
        ("kick owner", "owner", n0, E.INVALID_PARAMETER), ("kick bob", "owner", o, E.NOT_RIGHT),
        ("kick bob", "mgr", r, 0),
        ("quit", "ann", n0, 0), ("quit", "owner", n0, E.NOT_RIGHT), ("quit", "dan", n0, E.NOT_IN_GROUP),
        ("quit", "ann", o, E.NOT_RIGHT), ("quit", "mgr", r, 0),
        ("dismiss", "owner", n0, 0), ("dismiss", "mgr", n0, E.NOT_RIGHT), ("dismiss", "ann", n0, E.NOT_RIGHT),
        ("dismiss", "owner", o, E.NOT_RIGHT),
        ("transfer ann", "owner", n0, 0), ("transfer ann", "mgr", n0, E.NOT_RIGHT),
        ("transfer dan", "owner", n0, E.NOT_IN_GROUP), ("transfer owner", "owner", n0, E.INVALID_PARAMETER),
        ("transfer ann", "dan", n0, E.NOT_IN_GROUP),
        ("name", "ann", n0, 0), ("name", "ann", r, E.NOT_RIGHT), ("name", "mgr", r, 0),
        ("name", "dan", n0, E.NOT_IN_GROUP), ("portrait", "ann", n0, 0), ("portrait", "ann", o, E.NOT_RIGHT),
        ("extra", "ann", n0, E.NOT_RIGHT), ("extra", "mgr", n0, 0), ("mute", "ann", n0, E.NOT_RIGHT),
        ("mute", "mgr", r, 0), ("join_type", "ann", n0, E.NOT_RIGHT), ("join_type", "mgr", n0, 0),
        ("type2", "mgr", n0, E.NOT_RIGHT), ("type2", "owner", n0, 0), ("type3", "owner", n0, E.NOT_RIGHT),
        ("managers ann", "owner", n0, 0), ("managers ann", "mgr", n0, E.NOT_RIGHT),
        ("managers owner", "owner", n0, E.INVALID_PARAMETER), ("managers dan", "owner", n0, E.NOT_IN_GROUP),
        ("silence ann", "mgr", n0, 0), ("silence bob", "ann", n0, E.NOT_RIGHT),
        ("silence owner", "mgr", n0, E.NOT_RIGHT), ("silence mgr", "owner", n0, E.NOT_RIGHT),
        ("allow ann", "mgr", r, 0), ("allow bob", "ann", n0, E.NOT_RIGHT), ("allow mgr", "owner", n0, E.NOT_RIGHT),
        ("alias ann", "ann", r, 0), ("alias bob", "ann", n0, E.NOT_RIGHT), ("alias ann", "mgr", n0, 0),
        ("alias owner", "mgr", n0, E.NOT_RIGHT), ("alias mgr", "owner", n0, 0), ("alias dan", "owner", n0, E.NOT_IN_GROUP),
        ("mextra ann", "ann", n0, 0), ("mextra bob", "ann", n0, E.NOT_RIGHT), ("mextra owner", "owner", o, 0),
    ]  # fmt: skip


async def run_op(gw: Gateway, op: str, caller: str, gid: str, **kw: Any) -> int:
    groups = gw.services.groups
    verb, _, who = op.partition(" ")
    calls = {
        "add": lambda: groups.add(caller, gid, [who], **kw),
        "kick": lambda: groups.kick(caller, gid, [who], **kw),
        "quit": lambda: groups.quit(caller, gid, **kw),
        "dismiss": lambda: groups.dismiss(caller, gid, **kw),
        "transfer": lambda: groups.transfer(caller, gid, who, **kw),
        "name": lambda: groups.modify(caller, gid, "name", "new name", **kw),
        "portrait": lambda: groups.modify(caller, gid, "portrait", "https://p/1.png", **kw),
        "extra": lambda: groups.modify(caller, gid, "extra", '{"k":1}', **kw),
        "mute": lambda: groups.modify(caller, gid, "mute", 1, **kw),
        "join_type": lambda: groups.modify(caller, gid, "join_type", 2, **kw),
        "type2": lambda: groups.modify(caller, gid, "type", 2, **kw),
        "type3": lambda: groups.modify(caller, gid, "type", 3, **kw),
        "managers": lambda: groups.set_managers(caller, gid, [who], True, **kw),
        "silence": lambda: groups.silence(caller, gid, [who], True, **kw),
        "allow": lambda: groups.allow(caller, gid, [who], True, **kw),
        "alias": lambda: groups.member_alias(caller, gid, who, "nick", **kw),
        "mextra": lambda: groups.member_extra(caller, gid, who, '{"x":2}', **kw),
    }
    code, _ = await calls[verb]()
    return code


async def test_permissions_and_codes_by_role_and_group_type(gw: Gateway) -> None:
    failures = []
    for number, (op, caller, fields, expected) in enumerate(_cases()):
        gid = f"p{number}"
        await make_group(gw, gid, **fields)
        before = await gw.services.groups.members("owner", gid, limit=500)
        code = await run_op(gw, op, caller, gid)
        if code != expected:
            failures.append((op, caller, fields, code, expected))
        elif code != 0:
            # A refusal changes nothing: same member list, and no notification beyond the setup's.
            assert await gw.services.groups.members("owner", gid, limit=500) == before
    assert failures == []


async def test_unknown_group_and_existing_id(gw: Gateway) -> None:
    groups = gw.services.groups
    for op in ("add cat", "kick bob", "quit", "dismiss", "transfer ann", "name", "managers ann", "alias ann"):
        assert await run_op(gw, op, "owner", "nope") == E.NOT_EXIST, op
    await make_group(gw, "g1")
    assert (await groups.create("ann", "g1", {}, []))[0] == E.GROUP_ALREADY_EXISTS
    assert (await groups.create("ann", "g2", {"type": 3}, []))[0] == E.NOT_RIGHT
    assert (await groups.create("ann", "g2", {"type": 3}, [], admin=True))[0] == 0
    assert (await groups.dismiss("owner", "g1"))[0] == 0
    assert (await groups.info("g1"))[0] == E.NOT_EXIST
    assert (await groups.create("ann", "g1", {}, []))[0] == E.GROUP_ALREADY_EXISTS  # the id stays taken


async def test_member_limit_on_create_and_add(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path, group={"max_members": 3})
    for user in USERS:
        await gw.user(user)
    groups = gw.services.groups
    assert (await groups.create("owner", "big", {}, ["ann", "bob", "cat"]))[0] == E.GROUP_EXCEEDS_MAX_MEMBERS
    assert (await groups.create("owner", "g", {}, ["ann", "bob"]))[0] == 0
    assert (await groups.add("owner", "g", ["cat"]))[0] == E.GROUP_EXCEEDS_MAX_MEMBERS
    assert (await groups.kick("owner", "g", ["bob"]))[0] == 0
    assert (await groups.add("owner", "g", ["cat"]))[0] == 0


async def test_every_operation_notifies_with_its_content(gw: Gateway) -> None:
    await make_group(gw, "g")
    watcher = await Device.connect(gw, "mgr")  # a member throughout
    expected: list[tuple[str, str, int, dict[str, Any]]] = [
        ("add cat", "owner", 105, {"ms": ["cat"]}),
        ("name", "ann", 110, {"n": "new name"}),
        ("portrait", "ann", 112, {"n": "https://p/1.png"}),
        ("extra", "owner", 122, {"n": '{"k":1}'}),
        ("mute", "owner", 113, {"n": "1"}),
        ("join_type", "owner", 114, {"n": "2"}),
        ("silence ann", "owner", 118, {"n": "1", "ms": ["ann"]}),
        ("allow bob", "owner", 119, {"n": "1", "ms": ["bob"]}),
        ("alias ann", "owner", 111, {"n": "nick", "m": "ann"}),
        ("mextra bob", "bob", 123, {"n": '{"x":2}', "m": "bob"}),
        ("managers cat", "owner", 117, {"n": "1", "ms": ["cat"]}),
        ("kick ann", "owner", 106, {"ms": ["ann"]}),
        ("quit", "bob", 107, {}),
        ("transfer cat", "owner", 109, {"m": "cat"}),
        ("dismiss", "cat", 108, {}),
    ]
    for op, caller, kind, values in expected:
        assert await run_op(gw, op, caller, "g") == 0, op
        push = await watcher.push()
        content = push.data["message"]["content"]
        assert (content["type"], content["persist_flag"]) == (kind, 1), op
        assert push.data["message"]["from"] == caller
        assert data(push) == {"g": "g", "o": caller, **values}, op
    await watcher.aclose()


async def test_a_kicked_member_gets_its_kick_notification_and_nothing_after(gw: Gateway) -> None:
    await make_group(gw, "g")
    bob = await Device.connect(gw, "bob")
    ann = await Device.connect(gw, "ann")
    assert await run_op(gw, "kick bob", "owner", "g") == 0
    kick = await bob.push()
    assert kick.data["message"]["content"]["type"] == 106 and data(kick)["ms"] == ["bob"]
    assert (await ann.push()).data["message"]["content"]["type"] == 106
    assert (await group_send(ann, "g", "after the kick")).code == 0
    assert (await group_send(bob, "g", "still here?")).code == E.NOT_IN_GROUP
    assert await run_op(gw, "name", "ann", "g") == 0
    assert (await ann.push()).data["message"]["content"]["type"] == 110  # ann saw it; bob must not
    pulled = await bob.pull_all()
    assert pulled[-1]["message"]["content"]["type"] == 106
    assert all(m["message"]["content"]["type"] != 1 for m in pulled)
    assert not [p for p in bob.pushes if p.topic == "msg"]
    assert (await bob.call("load_remote_history", conv={"type": 1, "target": "g"})).code == E.NOT_IN_GROUP
    # Dismiss reaches everyone then left, and the group is gone.
    assert await run_op(gw, "dismiss", "owner", "g") == 0
    assert (await ann.push()).data["message"]["content"]["type"] == 108
    assert (await group_send(ann, "g", "anyone?")).code == E.NOT_EXIST
    for d in (bob, ann):
        await d.aclose()


async def test_custom_notify_content_replaces_the_default_and_keeps_the_type(gw: Gateway) -> None:
    await make_group(gw, "g")
    ann = await Device.connect(gw, "ann")
    bob = await Device.connect(gw, "bob")
    quiet = {"type": 1, "persist_flag": 0, "content": "bob left quietly"}
    assert (await bob.call("quit_group", group_id="g", notify_content=quiet)).code == 0
    push = await ann.push()
    content = push.data["message"]["content"]
    assert content["type"] == 107 and content["persist_flag"] == 0 and content["content"] == "bob left quietly"
    assert json.loads(content["data"]) == {"g": "g", "o": "bob"}  # the default data, kept
    bad = await ann.call("set_group_member_alias", group_id="g", alias="x", notify_content={"persist_flag": 2})
    assert bad.code == E.INVALID_PARAMETER
    # Clients may not send notification types themselves.
    forged = await ann.call("send_message", conv={"type": 1, "target": "g"}, content={"type": 105, "data": b"{}"})
    assert forged.code == E.INVALID_PARAMETER
    for d in (ann, bob):
        await d.aclose()


async def test_to_users_mentions_mute_silence_and_recall(gw: Gateway) -> None:
    await make_group(gw, "g", members=("mgr", "ann", "bob", "cat"))
    ann, bob, cat, mgr = [await Device.connect(gw, u) for u in ("ann", "bob", "cat", "mgr")]
    ack = await group_send(ann, "g", "just for bob", to_users=["bob"])
    assert ack.code == 0
    assert (await bob.push()).data["message"]["to_users"] == ["bob"]
    assert (await group_send(ann, "g", "to a stranger", to_users=["dan"])).code == E.NOT_IN_GROUP
    mention = {"type": 1, "searchable_content": "hi @dan", "mentioned_type": 1, "mentioned_targets": ["dan"]}
    assert (await ann.call("send_message", conv={"type": 1, "target": "g"}, content=mention)).code == E.NOT_IN_GROUP
    mention["mentioned_targets"] = ["cat"]
    assert (await ann.call("send_message", conv={"type": 1, "target": "g"}, content=mention)).code == 0
    for user, device in (("cat", cat), ("bob", bob), ("mgr", mgr)):
        history = (await device.call("load_remote_history", conv={"type": 1, "target": "g"})).result["messages"]
        seen = [m["content"].get("searchable_content") for m in history if m["content"]["type"] == 1]
        assert seen == (["hi @dan", "just for bob"] if user == "bob" else ["hi @dan"]), user
        pulled = [m["message"]["content"].get("searchable_content") for m in await device.pull_all()]
        assert ("just for bob" in pulled) == (user == "bob")
    # Mute: only owner, managers and allowed members; silenced never.
    assert await run_op(gw, "mute", "owner", "g") == 0
    assert await run_op(gw, "allow cat", "owner", "g") == 0
    assert (await group_send(ann, "g", "muted?")).code == E.GROUP_MUTED
    assert (await group_send(mgr, "g", "manager speaks")).code == 0
    assert (await group_send(cat, "g", "allowed speaks")).code == 0
    assert await run_op(gw, "silence bob", "owner", "g") == 0
    assert (await group_send(bob, "g", "silenced")).code == E.NOT_RIGHT
    # Recall: the sender, or a manager; not another member.
    sent = await group_send(cat, "g", "oops")
    assert (await ann.call("recall_message", message_id=sent.result["message_id"])).code == E.NOT_RIGHT
    assert (await mgr.call("recall_message", message_id=sent.result["message_id"])).code == 0
    notice = await ann.push()
    while notice.data["message"]["content"]["type"] != 80:
        notice = await ann.push()
    assert notice.data["message"]["conv"]["target"] == "g"
    for d in (ann, bob, cat, mgr):
        await d.aclose()


async def test_history_starts_at_the_members_join_time(gw: Gateway) -> None:
    await make_group(gw, "g")
    owner = await Device.connect(gw, "owner")
    assert (await group_send(owner, "g", "before dan")).code == 0
    gw.clock.advance(1.0)
    assert await run_op(gw, "add dan", "owner", "g") == 0
    assert (await group_send(owner, "g", "after dan")).code == 0
    dan = await Device.connect(gw, "dan")
    history = (await dan.call("load_remote_history", conv={"type": 1, "target": "g"})).result["messages"]
    assert [m["content"].get("searchable_content") for m in history] == ["after dan", None]  # and the add
    for d in (owner, dan):
        await d.aclose()


async def test_members_sync_by_version_paged_with_tombstones(gw: Gateway) -> None:
    await make_group(gw, "g", members=("mgr", "ann", "bob", "cat", "dan"))
    ann = await Device.connect(gw, "ann")

    async def fetch(since: int, limit: int = 2) -> tuple[int, list[dict[str, Any]]]:
        rows: list[dict[str, Any]] = []
        after_version, after_user = 0, ""
        while True:
            page = (await ann.call("get_group_members", group_id="g", since_version=since,
                                   after_version=after_version, after_user=after_user, limit=limit)).result  # fmt: skip
            rows += page["members"]
            if len(page["members"]) < limit:
                return page["member_version"], rows
            after_version, after_user = rows[-1]["version"], rows[-1]["user_id"]

    version, rows = await fetch(0)
    assert sorted(r["user_id"] for r in rows) == ["ann", "bob", "cat", "dan", "mgr", "owner"]
    assert {r["user_id"]: r["type"] for r in rows}["mgr"] == T.MANAGER
    assert await run_op(gw, "kick dan", "owner", "g") == 0
    assert await run_op(gw, "alias ann", "ann", "g") == 0
    new_version, changed = await fetch(version)
    assert new_version == version + 2
    assert [(r["user_id"], r["type"]) for r in changed] == [("dan", T.REMOVED), ("ann", T.NORMAL)]
    assert changed[1]["alias"] == "nick"
    _, full = await fetch(0)
    assert "dan" not in [r["user_id"] for r in full]  # a device holding nothing gets no tombstones
    mine = (await ann.call("get_my_groups")).result["groups"]
    assert [g["group_id"] for g in mine] == ["g"] and mine[0]["member_version"] == new_version
    await make_group(gw, "h", members=("ann", "cat"))
    assert (await ann.call("get_common_groups", user_id="cat")).result == {"group_ids": ["g", "h"]}
    assert (await ann.call("get_common_groups", user_id="dan")).result == {"group_ids": []}
    await ann.aclose()


async def test_group_sends_get_250_while_the_fan_out_backlog_is_full(nursery: trio.Nursery, tmp_path) -> None:
    """Past group.max_fanout_backlog queued owners a group send is refused before it is stored; private sends
    are not; once the backlog drains the same send (same client_msg_id) is stored and pushed."""
    gw = await start_gateway(nursery, tmp_path, group={"max_fanout_backlog": 3})
    for user in USERS:
        await gw.user(user)
    await make_group(gw, "g", members=("ann", "bob"))
    ann, bob = await Device.connect(gw, "ann"), await Device.connect(gw, "bob")
    fanout = gw.services.messages.fanout
    # A big delivery in progress ahead of everything: a real queue entry of 5 owners, pushed a step per pass
    # until released (as a 2,000-member message would be, without 2,000 connections in a test).
    released = trio.Event()

    def big_delivery() -> Iterator[None]:
        while not released.is_set():
            yield

    fanout.add(big_delivery(), 5)
    assert fanout.queued_owners == 5 and gw.services.messages.fanout_backlogged
    refused = await group_send(ann, "g", "wait", client_msg_id="m1")
    assert refused.code == E.OVER_FREQUENCY
    private = await ann.call(
        "send_message", conv={"type": 0, "target": "bob"}, content={"type": 1, "searchable_content": "psst"}
    )
    assert private.code == 0  # private sends are not refused (their push waits behind the big one)
    assert fanout.queued_owners == 5 + 2
    released.set()
    with trio.fail_after(5):
        while fanout.pending:  # noqa: ASYNC110 - the fan-out advances a chunk per pass
            await trio.lowlevel.checkpoint()
    assert fanout.queued_owners == 0
    assert (await bob.push()).data["message"]["content"]["searchable_content"] == "psst"
    ack = await group_send(ann, "g", "wait", client_msg_id="m1")
    assert ack.code == 0 and ack.result["message_id"] != private.result["message_id"]
    assert (await bob.push()).data["message"]["content"]["searchable_content"] == "wait"
    # The refused send left nothing behind: bob's inbox holds the group's creation notice, psst, and wait once.
    texts = [m["message"]["content"].get("searchable_content") for m in await bob.pull_all()]
    assert texts == [None, "psst", "wait"]
    for device in (ann, bob):
        await device.aclose()


async def test_the_sdk_resends_a_group_message_refused_for_the_backlog(nursery: trio.Nursery, tmp_path) -> None:
    """client.Messages.send retries a 250 with backoff and the same client_msg_id: one message, stored once."""
    from client import Conversation
    from tests.storage_helpers import wait_until
    from tests.test_client_sync import sdk

    gw = await start_gateway(nursery, tmp_path, group={"max_fanout_backlog": 1})
    for user in USERS:
        await gw.user(user)
    await make_group(gw, "g", members=("ann", "bob"))
    released = trio.Event()

    def big_delivery() -> Iterator[None]:
        while not released.is_set():
            yield

    fanout, metrics = gw.services.messages.fanout, gw.services.metrics
    fanout.add(big_delivery(), 1)
    with trio.fail_after(10):
        async with sdk(gw, "ann", backoff=(0.05, 0.2)) as ann:
            async with trio.open_nursery() as inner:
                acks: list[Any] = []

                async def send() -> None:
                    acks.append(await ann.messages.send(Conversation(1, "g"), {"type": 1, "searchable_content": "hi"}))

                inner.start_soon(send)
                await wait_until(lambda: metrics.requests.get(("send_message", E.OVER_FREQUENCY), 0) >= 1)
                assert acks == []  # refused, and being retried
                released.set()
            assert len(acks) == 1
    page = await gw.services.store.pull("bob", 0, 10)
    texts = [m.content.get("searchable_content") for _, m in page.messages]
    assert texts.count("hi") == 1  # stored once, though sent twice or more


async def test_a_held_info_version_goes_stale_with_every_change_of_the_member_count(gw: Gateway) -> None:
    """§13.1: ``member_count`` is an info field, so adding, kicking and quitting move ``info_version``; a device
    asking with the version it holds gets the new count, not "unchanged". Client requests and the admin API."""
    await make_group(gw, "g", members=("ann", "bob"))
    ann, owner, bob = [await Device.connect(gw, user) for user in ("ann", "owner", "bob")]
    held = (await ann.call("get_group_info", group_id="g")).result

    async def info_after(change: Any) -> dict[str, Any]:
        nonlocal held
        assert await change() == 0
        answer = (await ann.call("get_group_info", group_id="g", info_version=held["info_version"])).result
        assert answer["info_version"] > held["info_version"] and answer["group"] is not None, answer
        held = answer["group"]
        return held

    async def code_of(response: Any) -> int:
        return (await response).code

    async with httpx.AsyncClient() as http:
        admin = Admin(gw, http)

        async def admin_call(action: str, payload: dict[str, Any]) -> int:
            return (await admin.call(action, payload))["code"]

        assert held["group"]["member_count"] == 3
        held = held["group"]
        steps = [
            (lambda: code_of(owner.call("add_group_members", group_id="g", user_ids=["cat"])), 4),
            (lambda: code_of(owner.call("kick_group_members", group_id="g", user_ids=["cat"])), 3),
            (lambda: code_of(bob.call("quit_group", group_id="g")), 2),
            (lambda: admin_call("group/add", {"group_id": "g", "user_ids": ["dan", "eve"]}), 4),
            (lambda: admin_call("group/kick", {"group_id": "g", "user_ids": ["dan"]}), 3),
            (lambda: admin_call("group/quit", {"group_id": "g", "user_id": "eve"}), 2),
        ]
        for change, count in steps:
            assert (await info_after(change))["member_count"] == count
        # A member's own fields change no info field: the held version stays current.
        assert await run_op(gw, "alias ann", "ann", "g") == 0
        same = (await ann.call("get_group_info", group_id="g", info_version=held["info_version"])).result
        assert same["group"] is None and same["info_version"] == held["info_version"]
        assert await admin_call("group/dismiss", {"group_id": "g"}) == 0
    assert (await ann.call("get_group_info", group_id="g", info_version=held["info_version"])).code == E.NOT_EXIST
    for d in (ann, owner, bob):
        await d.aclose()
