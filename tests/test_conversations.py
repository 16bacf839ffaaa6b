"""Conversations that agree on every device (issue 12): read marks and clearing synced as settings,
the SDK's conversation list, and the list a fresh install rebuilds from the server.

Real gateway, real sockets, the SDK with ``sync_messages`` and ``sync_relations``; every wait is on
the SDK's list (``Conversations.wait_until``), bounded by ``trio.fail_after``.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import trio

import client
from client import Conversation, ConversationInfo, ConversationsChanged, RequestFailed
from protocol.codes import ErrorCode, SettingScope
from storage import conversations as db
from storage.messages import pull_rows
from tests import harness
from tests.harness import Gateway, start_gateway

LIMIT = 10
ALICE = Conversation(0, "alice")
CAROL = Conversation(0, "carol")
CLUB = Conversation(1, "club")


def text(body: str, **more: Any) -> dict[str, Any]:
    return {"type": 1, "searchable_content": body, **more}


@pytest.fixture
async def gw(nursery: trio.Nursery, tmp_path) -> Gateway:
    gw = await start_gateway(
        nursery, tmp_path, client={"request_rate_limit": 100_000}, message={"roaming": True}
    )
    for user in ("alice", "bob", "carol"):
        await gw.user(user)
    code, _ = await gw.services.groups.create("carol", "club", {"name": "Club"}, ["bob", "alice"], admin=True)
    assert code == 0
    return gw


def sdk(
    gw: Gateway, user: str, device: str = "phone", platform: int = 2, **kwargs: Any
) -> AbstractAsyncContextManager[client.Client]:
    """``harness.sdk``, syncing messages and relations by default."""
    kwargs.setdefault("sync_messages", True)
    kwargs.setdefault("sync_relations", True)
    return harness.sdk(gw, user, device, platform, **kwargs)


def summary(infos: list[ConversationInfo]) -> list[tuple[Conversation, int, int, int]]:
    """What two devices must agree on: conversation, last message id, unread, unread mentions."""
    return [(c.conv, c.last_message.message_id if c.last_message else 0, c.unread, c.unread_mentions) for c in infos]


async def unread_is(c: client.Client, conv: Conversation, unread: int, mentions: int | None = None) -> None:
    def holds() -> bool:
        info = c.conversations.get(conv)
        got = 0 if info is None else info.unread
        return got == unread and (mentions is None or (info is not None and info.unread_mentions == mentions))

    await c.conversations.wait_until(holds)


async def test_reading_on_one_device_clears_the_other_and_a_new_install_rebuilds_the_same_list(gw: Gateway) -> None:
    with trio.fail_after(LIMIT):
        async with (
            sdk(gw, "alice") as alice,
            sdk(gw, "carol") as carol,
            sdk(gw, "bob", "phone", 2) as phone,
            sdk(gw, "bob", "pc", 3) as pc,
        ):
            for i in range(3):
                await alice.messages.send(Conversation(0, "bob"), text(f"hi {i}"))
            await carol.messages.send(CLUB, text("hello club"))
            last = await carol.messages.send(CLUB, text("@bob look", mentioned_type=1, mentioned_targets=["bob"]))
            await alice.messages.send(CLUB, text("not a mention", mentioned_type=1, mentioned_targets=["carol"]))
            await carol.messages.send(Conversation(0, "bob"), text("quiet", persist_flag=1))  # shown, not counted
            for device in (phone, pc):
                await unread_is(device, ALICE, 3)
                await unread_is(device, CLUB, 3, mentions=1)
                await unread_is(device, CAROL, 0)
                assert device.conversations.get(CAROL) is not None
            assert summary(phone.conversations.conversations()) == summary(pc.conversations.conversations())

            # Reading on the phone clears the PC's count: the mark is a setting, pushed as a head.
            assert await phone.conversations.mark_read(ALICE) > 0
            assert phone.conversations.get(ALICE).unread == 0
            await unread_is(pc, ALICE, 0)
            # Read up to the mention: the club keeps its one later message unread, everywhere.
            await pc.conversations.mark_read(CLUB, last.message_id)
            await unread_is(phone, CLUB, 1, mentions=0)
            await unread_is(pc, CLUB, 1, mentions=0)
            # A mark never moves back.
            assert await phone.conversations.mark_read(CLUB, last.message_id - 1) == last.message_id
            assert await gw.services.store.read(db.mark_of, "bob", db.READ_SCOPE, CLUB) == last.message_id

            # A message after the mark counts again on both.
            await alice.messages.send(Conversation(0, "bob"), text("again"))
            await unread_is(phone, ALICE, 1)
            await unread_is(pc, ALICE, 1)
            expected = summary(phone.conversations.conversations())

        # A third device, installed later, with no messages of its own: the server's list, counts included.
        async with sdk(gw, "bob", "ipad", 8, sync_messages=False) as ipad:
            await ipad.conversations.rebuild()
            assert summary(ipad.conversations.conversations()) == expected
            assert ipad.conversations.get(CLUB).read_to == last.message_id


async def test_the_list_filtered_by_type_equals_what_was_sent_private_group_and_channel(gw: Gateway) -> None:
    with trio.fail_after(LIMIT):
        async with sdk(gw, "alice") as alice, sdk(gw, "bob") as bob:
            sent: dict[Conversation, int] = {}
            sent[Conversation(0, "bob")] = (await alice.messages.send(Conversation(0, "bob"), text("a"))).message_id
            sent[CLUB] = (await alice.messages.send(CLUB, text("b"))).message_id
            sent[Conversation(0, "carol")] = (await alice.messages.send(Conversation(0, "carol"), text("c"))).message_id
            sent[Conversation(1, "club", 2)] = (
                await alice.messages.send(Conversation(1, "club", 2), text("line 2"))
            ).message_id
            # A channel: carol owns "news", alice listens; carol's posts reach alice's inbox like any message.
            code, _ = await gw.services.channels.create("carol", "news", {"name": "News"}, admin=True)
            assert code == 0
            assert (await gw.services.channels.listen("alice", "news", True))[0] == 0
            async with sdk(gw, "carol") as carol:
                post = await carol.messages.send(Conversation(3, "news"), text("extra! extra!"))
            sent[Conversation(3, "news")] = post.message_id
            await unread_is(alice, Conversation(3, "news"), 1)
            await unread_is(bob, Conversation(1, "club", 2), 1)
            lists = alice.conversations
            assert {c.conv: c.last_message.message_id for c in lists.conversations(types=[3])} == {
                Conversation(3, "news"): post.message_id
            }
            # FAQ §13's folding: the main list without channels, and the channel folder.
            assert {c.conv for c in lists.conversations(types=[0, 1])} | {
                c.conv for c in lists.conversations(types=[3])
            } == set(sent)
            assert {c.conv: c.last_message.message_id for c in lists.conversations(types=[0])} == {
                k: v for k, v in sent.items() if k.type == 0
            }
            assert {c.conv for c in lists.conversations(types=[1])} == {CLUB, Conversation(1, "club", 2)}
            assert {c.conv for c in lists.conversations(types=[1], lines=[2])} == {Conversation(1, "club", 2)}
            # Newest first; the sender's own messages count for nobody.
            assert [c.conv for c in lists.conversations()][0] == Conversation(3, "news")
            assert all(c.unread == 0 for c in lists.conversations(types=[0, 1]))
            # bob's view names the private chat after alice, the sender.
            assert bob.conversations.get(ALICE) is not None and bob.conversations.get(Conversation(0, "bob")) is None


async def test_top_silent_and_draft_come_from_the_synced_settings(gw: Gateway) -> None:
    with trio.fail_after(LIMIT):
        async with sdk(gw, "bob", "phone", 2) as phone, sdk(gw, "bob", "pc", 3) as pc:
            key = db.mark_key(ALICE)
            await phone.relations.put_setting(SettingScope.CONVERSATION_TOP, key, "1")
            await phone.relations.put_setting(SettingScope.CONVERSATION_DRAFT, key, "half a thought")
            await pc.conversations.wait_until(
                lambda: (info := pc.conversations.get(ALICE)) is not None and info.top and info.draft == "half a thought"
            )
            await phone.relations.put_setting(SettingScope.CONVERSATION_TOP, key, "")
            await pc.conversations.wait_until(lambda: not pc.conversations.get(ALICE).top)


async def test_clearing_a_conversation_is_synced_and_for_good(gw: Gateway) -> None:
    with trio.fail_after(LIMIT):
        async with sdk(gw, "alice") as alice, sdk(gw, "bob", "phone", 2) as phone, sdk(gw, "bob", "pc", 3) as pc:
            for i in range(4):
                await alice.messages.send(Conversation(0, "bob"), text(f"m{i}"))
            await alice.messages.send(CLUB, text("club stays"))
            await unread_is(pc, ALICE, 4)
            await unread_is(phone, ALICE, 4)
            events = pc.events()
            assert await phone.conversations.clear(ALICE) == 4
            assert phone.conversations.get(ALICE) is None
            await pc.conversations.wait_until(lambda: pc.conversations.get(ALICE) is None)
            assert pc.conversations.get(CLUB) is not None
            while not (isinstance(event := await events.receive(), ConversationsChanged) and ALICE in event.conversations):
                pass
            # For good: a new device's pull from 0 and the server's list no longer have them.
            page = await gw.services.store.read(pull_rows, "bob", 0, 100, 0, 1 << 20)
            assert [row[4] for row in page.rows if row[2] == 0] == []
            listed = await gw.services.conversations.list("bob", 0, 50)
            assert [c["conv"]["target"] for c in listed[0]["conversations"]] == ["club"]
            # A later message starts the conversation again.
            await alice.messages.send(Conversation(0, "bob"), text("after"))
            await unread_is(pc, ALICE, 1)


async def test_a_recall_takes_the_message_out_of_the_count(gw: Gateway) -> None:
    with trio.fail_after(LIMIT):
        async with sdk(gw, "alice") as alice, sdk(gw, "bob") as bob:
            await alice.messages.send(Conversation(0, "bob"), text("keep"))
            oops = await alice.messages.send(Conversation(0, "bob"), text("oops"))
            await unread_is(bob, ALICE, 2)
            await alice.messages.recall(oops.message_id)
            await unread_is(bob, ALICE, 1)
            listed, _ = await gw.services.conversations.list("bob", 0, 50)
            assert {c["conv"]["target"]: c["unread"] for c in listed["conversations"]} == {"alice": 1, "club": 0}


async def test_with_roaming_off_the_list_holds_only_what_a_new_device_may_still_see(nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path, message={"roaming": False, "compensate_seconds": 300})
    for user in ("alice", "bob", "carol"):
        await gw.user(user)
    with trio.fail_after(LIMIT):
        async with sdk(gw, "alice") as alice:
            await alice.messages.send(Conversation(0, "bob"), text("old"))
            gw.clock.advance(301)
            await alice.messages.send(Conversation(0, "carol"), text("young"))
        listed, _ = await gw.services.conversations.list("alice", 0, 50)
        assert [c["conv"]["target"] for c in listed["conversations"]] == ["carol"]


async def test_bad_marks_get_251_and_paging_walks_the_whole_list(gw: Gateway) -> None:
    with trio.fail_after(LIMIT):
        async with sdk(gw, "alice") as alice:
            for bad in ({"conv": {"type": 0, "target": "bob"}, "message_id": 0}, {"conv": {"type": 9, "target": "x"}}):
                response = await alice.request("mark_read", bad)
                assert response.code == ErrorCode.INVALID_PARAMETER
            for i in range(7):
                await gw.user(f"u{i}")
                await alice.messages.send(Conversation(0, f"u{i}"), text("x"))
            seen: list[str] = []
            before = 0
            while True:
                response = await alice.request("get_conversations", {"before": before, "limit": 3})
                assert response.ok
                rows = response.result["conversations"]
                seen += [row["conv"]["target"] for row in rows]
                if not response.result["more"]:
                    break
                before = rows[-1]["last_message"]["message_id"]
            assert seen == [f"u{i}" for i in reversed(range(7))] + ["club"]
            with pytest.raises(RequestFailed) as failed:
                await alice.conversations._call("get_conversations", limit=10_000)
            assert failed.value.code == ErrorCode.INVALID_PARAMETER


async def test_the_admin_api_marks_clears_and_lists_over_real_http(gw: Gateway) -> None:
    import httpx

    from tests.test_admin_messages import Admin

    with trio.fail_after(LIMIT):
        async with httpx.AsyncClient(timeout=5) as http, sdk(gw, "alice") as alice, sdk(gw, "bob") as bob:
            admin = Admin(gw, http)
            first = await alice.messages.send(Conversation(0, "bob"), text("one"))
            second = await alice.messages.send(Conversation(0, "bob"), text("two"))
            await unread_is(bob, ALICE, 2)
            listed = await admin.call("conversation/list", {"user_id": "bob"})
            assert listed["code"] == 0
            rows = {row["conv"]["target"]: row for row in listed["result"]["conversations"]}
            assert rows["alice"]["unread"] == 2 and rows["alice"]["last_message_id"] == str(second.message_id)
            alice_conv = {"type": 0, "target": "alice"}
            marked = await admin.call(
                "conversation/mark_read", {"user_id": "bob", "conv": alice_conv, "message_id": str(first.message_id)}
            )
            assert marked == {"code": 0, "msg": "success", "result": {"read_to": str(first.message_id)}}
            await unread_is(bob, ALICE, 1)  # bob's device got the head push and pulled the mark
            cleared = await admin.call(
                "conversation/clear", {"user_id": "bob", "conv": alice_conv, "message_id": str(second.message_id)}
            )
            assert cleared["result"] == {"deleted": 2}
            await bob.conversations.wait_until(lambda: bob.conversations.get(ALICE) is None)
            bad = await admin.call("conversation/mark_read", {"user_id": "bob", "conv": {"type": 7, "target": "x"},
                                                              "message_id": "1"})  # fmt: skip
            assert bad["code"] == ErrorCode.INVALID_PARAMETER
            unknown = await admin.call("conversation/list", {"user_id": "nobody"})
            assert unknown["code"] == ErrorCode.NOT_EXIST


async def test_a_devices_put_setting_on_the_read_mark_only_moves_it_forward(gw: Gateway) -> None:
    """Scope 11 written as a plain setting by a device follows mark_read's rule; the admin API overwrites."""
    import httpx

    from tests.test_admin_messages import Admin

    key = db.mark_key(ALICE)
    scope = SettingScope.CONVERSATION_READ

    async def mark() -> int:
        return await gw.services.store.read(db.mark_of, "bob", db.READ_SCOPE, ALICE)

    with trio.fail_after(LIMIT):
        async with httpx.AsyncClient(timeout=5) as http, sdk(gw, "alice") as alice, sdk(gw, "bob") as bob:
            first = await alice.messages.send(Conversation(0, "bob"), text("one"))
            second = await alice.messages.send(Conversation(0, "bob"), text("two"))
            moved = await bob.relations.put_setting(scope, key, str(second.message_id))
            assert await mark() == second.message_id
            # An older mark (another device, late) leaves it: the answer is the setting head as it stands.
            assert await bob.relations.put_setting(scope, key, str(first.message_id)) == moved
            assert await mark() == second.message_id
            for bad in ("not an id", "", "0", str(2**63), "²", "\u0663", "-5", " 7"):
                with pytest.raises(RequestFailed) as refused:
                    await bob.relations.put_setting(scope, key, bad)
                assert refused.value.code == ErrorCode.INVALID_PARAMETER
            assert await mark() == second.message_id
            # Other scopes are plain settings still: a device may set them back and forth.
            top = SettingScope.CONVERSATION_TOP
            await bob.relations.put_setting(top, key, "1")
            await bob.relations.put_setting(top, key, "")
            # The admin API corrects a mark: it overwrites, backwards too.
            put = await Admin(gw, http).call(
                "user/put_setting", {"user_id": "bob", "scope": int(scope), "key": key, "value": str(first.message_id)}
            )
            assert put["code"] == 0
            assert await mark() == first.message_id


async def _filtered_story(gw: Gateway) -> dict[Conversation, int]:
    """alice gets a private chat, the club on lines 0 and 2, and a channel post: conversation -> last id."""
    sent: dict[Conversation, int] = {}
    async with sdk(gw, "bob") as bob, sdk(gw, "carol") as carol:
        sent[Conversation(0, "bob")] = (await bob.messages.send(Conversation(0, "alice"), text("a"))).message_id
        sent[CLUB] = (await carol.messages.send(CLUB, text("b"))).message_id
        sent[Conversation(1, "club", 2)] = (await bob.messages.send(Conversation(1, "club", 2), text("c"))).message_id
        code, _ = await gw.services.channels.create("carol", "news", {"name": "News"}, admin=True)
        assert code == 0
        assert (await gw.services.channels.listen("alice", "news", True))[0] == 0
        sent[Conversation(3, "news")] = (await carol.messages.send(Conversation(3, "news"), text("d"))).message_id
        sent[Conversation(0, "carol", 5)] = (
            await carol.messages.send(Conversation(0, "alice", 5), text("e"))
        ).message_id
    return sent


async def _pages(c: client.Client, limit: int, **only: Any) -> list[dict[str, Any]]:
    """Every entry of ``get_conversations`` with these filters, paged ``limit`` at a time."""
    rows: list[dict[str, Any]] = []
    before = 0
    while True:
        response = await c.request("get_conversations", {"before": before, "limit": limit, **only})
        assert response.ok, response.result
        rows += response.result["conversations"]
        if not response.result["more"]:
            return rows
        before = rows[-1]["last_message"]["message_id"]


def _conv_of(row: dict[str, Any]) -> Conversation:
    return Conversation(row["conv"]["type"], row["conv"]["target"], row["conv"]["line"])


async def test_get_conversations_filters_by_type_and_line_and_pages_within_the_filter(gw: Gateway) -> None:
    with trio.fail_after(LIMIT):
        sent = await _filtered_story(gw)
        async with sdk(gw, "alice", sync_messages=False) as alice:
            everything = await _pages(alice, 50)
            assert {_conv_of(row): row["last_message"]["message_id"] for row in everything} == sent
            for only in (
                {"types": [0, 1]},  # FAQ §13: the main list without channels ...
                {"types": [3]},  # ... and the channel folder
                {"types": [1], "lines": [2]},
                {"lines": [0]},
                {"lines": [5, 2]},
                {"types": [2]},  # chatrooms are never in the list
                {"types": [0, 0, 3]},
            ):
                want = [
                    row
                    for row in everything
                    if row["conv"]["type"] in only.get("types", range(4)) and row["conv"]["line"] in only.get("lines", (0, 2, 5))
                ]
                # The same entries, counts and order as the unfiltered list, whatever the page size.
                assert await _pages(alice, 50, **only) == want, only
                assert await _pages(alice, 1, **only) == want, only
            # The SDK's rebuild asks for the same: a fresh install that wants only the channel folder.
            await alice.conversations.rebuild(types=[3])
            assert [c.conv for c in alice.conversations.conversations()] == [Conversation(3, "news")]
            await alice.conversations.rebuild(types=[0], lines=[5])
            assert {c.conv for c in alice.conversations.conversations()} == {
                Conversation(3, "news"), Conversation(0, "carol", 5)
            }


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"types": []}, "types"),
        ({"types": [9]}, "types"),
        ({"types": [-1]}, "types"),
        ({"types": ["0"]}, "types"),
        ({"types": [True]}, "types"),
        ({"types": 0}, "types"),
        ({"types": [0] * 17}, "types"),
        ({"lines": []}, "lines"),
        ({"lines": [-1]}, "lines"),
        ({"lines": [2**31]}, "lines"),
        ({"lines": [1.0]}, "lines"),
        ({"lines": {"a": 1}}, "lines"),
        ({"lines": list(range(65))}, "lines"),
    ],
)
async def test_bad_list_filters_get_251_naming_the_field(gw: Gateway, params: dict[str, Any], field: str) -> None:
    with trio.fail_after(LIMIT):
        async with sdk(gw, "alice", sync_messages=False, sync_relations=False) as alice:
            response = await alice.request("get_conversations", params)
            assert response.code == ErrorCode.INVALID_PARAMETER
            assert response.result["field"] == field


async def test_the_admin_list_takes_the_same_filters_over_real_http(gw: Gateway) -> None:
    import httpx

    from tests.test_admin_messages import Admin

    with trio.fail_after(LIMIT):
        sent = await _filtered_story(gw)
        async with httpx.AsyncClient(timeout=5) as http:
            admin = Admin(gw, http)

            async def listed(**only: Any) -> dict[Conversation, str]:
                answer = await admin.call("conversation/list", {"user_id": "alice", **only})
                assert answer["code"] == 0, answer
                return {_conv_of(row): row["last_message_id"] for row in answer["result"]["conversations"]}

            assert await listed() == {conv: str(i) for conv, i in sent.items()}
            assert set(await listed(types=[0, 1])) == {c for c in sent if c.type in (0, 1)}
            assert set(await listed(types=[3])) == {Conversation(3, "news")}
            assert set(await listed(types=[0], lines=[5])) == {Conversation(0, "carol", 5)}
            for bad, field in (({"types": [7]}, "types"), ({"lines": []}, "lines"), ({"types": ["1"]}, "types"),
                               ({"lines": [-3]}, "lines")):  # fmt: skip
                answer = await admin.call("conversation/list", {"user_id": "alice", **bad})
                assert answer["code"] == ErrorCode.INVALID_PARAMETER and field in answer["msg"], answer
