"""Message search (issue 26) over a real gateway, real SQLite file and the SDK: what a user finds, and never finds."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from client import Client, Conversation, RequestFailed
from client.messages import SearchPage
from protocol.codes import ConversationType, ErrorCode
from tests.harness import Gateway, sdk, start_gateway

PRIVATE = ConversationType.PRIVATE
GROUP = ConversationType.GROUP


@pytest.fixture
async def gw(nursery: trio.Nursery, tmp_path) -> Gateway:
    gw = await start_gateway(nursery, tmp_path)
    for user in ("ann", "bob", "cat", "dan"):
        await gw.user(user)
    return gw


async def say(c: Client, target: str, text: str, conv_type: int = PRIVATE, content_type: int = 1) -> int:
    ack = await c.messages.send(Conversation(conv_type, target), {"type": content_type, "searchable_content": text})
    return ack.message_id


def texts(page: SearchPage) -> list[str]:
    return [hit.message.content["searchable_content"] for hit in page.hits]


async def test_english_is_case_insensitive_and_matches_word_prefixes(gw: Gateway) -> None:
    async with sdk(gw, "ann") as ann:
        await say(ann, "bob", "Team MEETING at noon")
        await say(ann, "bob", "lunch?")
        await say(ann, "bob", "the meetings are long")
        page = await ann.messages.search("meeting")
        assert texts(page) == ["the meetings are long", "Team MEETING at noon"]  # newest first
        assert [hit.highlights for hit in page.hits] == [((4, 11),), ((5, 12),)]
        assert page.hits[1].marked() == "Team [MEETING] at noon"
        assert texts(await ann.messages.search("MEET")) == texts(page)
        assert texts(await ann.messages.search("team noon")) == ["Team MEETING at noon"]  # every word, any order
        assert texts(await ann.messages.search("eeting")) == []  # words match from their start
        assert page.next_cursor is None


async def test_one_and_two_character_chinese_queries_find_their_messages(gw: Gateway) -> None:
    async with sdk(gw, "ann") as ann:
        await say(ann, "bob", "我们明天下午开会")
        await say(ann, "bob", "明天见")
        await say(ann, "bob", "今天。明白了")
        await say(ann, "bob", "天气不错")
        assert texts(await ann.messages.search("明")) == ["今天。明白了", "明天见", "我们明天下午开会"]
        assert texts(await ann.messages.search("明天")) == ["明天见", "我们明天下午开会"]
        assert texts(await ann.messages.search("天")) == ["天气不错", "今天。明白了", "明天见", "我们明天下午开会"]
        page = await ann.messages.search("开会")
        assert texts(page) == ["我们明天下午开会"]
        assert page.hits[0].highlights == ((6, 8),)
        # A longer run is the run itself: "天明" spans the punctuation in "今天。明白了", so it is not there.
        assert texts(await ann.messages.search("天明")) == []
        assert texts(await ann.messages.search("明天下午")) == ["我们明天下午开会"]
        assert texts(await ann.messages.search("下开")) == []


async def test_mixed_chinese_and_english(gw: Gateway) -> None:
    async with sdk(gw, "ann") as ann:
        await say(ann, "bob", "明天 Meeting 3点, 别迟到")
        await say(ann, "bob", "明天的meeting改到4点")
        await say(ann, "bob", "meeting 取消")
        page = await ann.messages.search("明天 meeting 3点")
        assert texts(page) == ["明天 Meeting 3点, 别迟到"]
        assert page.hits[0].marked() == "[明天] [Meeting] [3点], 别迟到"
        assert texts(await ann.messages.search("明天meeting")) == ["明天的meeting改到4点", "明天 Meeting 3点, 别迟到"]
        assert texts(await ann.messages.search("点 MEETING")) == ["明天的meeting改到4点", "明天 Meeting 3点, 别迟到"]


async def test_a_group_joined_later_shows_only_what_came_after_the_join(gw: Gateway) -> None:
    groups = gw.services.groups
    assert (await groups.create("ann", "g", {}, ["bob"]))[0] == 0
    async with sdk(gw, "ann") as ann, sdk(gw, "cat") as cat:
        await say(ann, "g", "roadmap draft before cat", GROUP)
        assert (await groups.add("ann", "g", ["cat"]))[0] == 0
        await say(ann, "g", "roadmap final after cat", GROUP)
        assert texts(await cat.messages.search("roadmap")) == ["roadmap final after cat"]
        assert texts(await ann.messages.search("roadmap")) == ["roadmap final after cat", "roadmap draft before cat"]
        # After leaving, what came while a member stays findable (as pull keeps it); nothing later appears.
        assert (await groups.kick("ann", "g", ["cat"]))[0] == 0
        await say(ann, "g", "roadmap after the kick", GROUP)
        assert texts(await cat.messages.search("roadmap")) == ["roadmap final after cat"]


async def test_deleted_and_recalled_messages_are_never_found(gw: Gateway) -> None:
    async with sdk(gw, "ann") as ann, sdk(gw, "bob") as bob:
        first = await say(ann, "bob", "secret plan one")
        second = await say(ann, "bob", "secret plan two")
        await say(ann, "bob", "secret plan three")
        await bob.messages.delete(first)  # for bob only
        assert texts(await bob.messages.search("secret")) == ["secret plan three", "secret plan two"]
        assert texts(await ann.messages.search("secret")) == ["secret plan three", "secret plan two", "secret plan one"]
        await ann.messages.recall(second)  # for everyone
        assert texts(await bob.messages.search("secret")) == ["secret plan three"]
        assert texts(await ann.messages.search("secret")) == ["secret plan three", "secret plan one"]
        assert texts(await ann.messages.search("plan two")) == []


async def test_other_users_private_messages_are_never_found(gw: Gateway) -> None:
    async with sdk(gw, "ann") as ann, sdk(gw, "cat") as cat:
        await say(ann, "bob", "password hint for bob")
        await say(cat, "dan", "password hint for dan")
        assert texts(await ann.messages.search("password")) == ["password hint for bob"]
        assert texts(await cat.messages.search("password")) == ["password hint for dan"]
        # Naming the conversation does not help a third party either.
        assert texts(await cat.messages.search("password", conv=Conversation(PRIVATE, "bob"))) == []
    async with sdk(gw, "bob") as bob:
        assert texts(await bob.messages.search("password")) == ["password hint for bob"]


async def test_filters_conversation_sender_type_and_time(gw: Gateway) -> None:
    assert (await gw.services.groups.create("ann", "g", {}, ["bob"]))[0] == 0
    async with sdk(gw, "ann") as ann, sdk(gw, "bob") as bob:
        t0 = gw.clock.now_ms()
        await say(ann, "bob", "report private")
        gw.clock.advance(1.0)
        await say(ann, "g", "report group", GROUP)
        gw.clock.advance(1.0)
        await say(bob, "g", "report from bob", GROUP)
        await say(ann, "bob", "report.pdf", content_type=5)  # a file message: its name is searchable_content
        assert texts(await bob.messages.search("report", conv=Conversation(GROUP, "g"))) == [
            "report from bob", "report group",
        ]  # fmt: skip
        assert texts(await bob.messages.search("report", conv=Conversation(PRIVATE, "ann"))) == [
            "report.pdf", "report private",
        ]  # fmt: skip
        assert texts(await bob.messages.search("report", from_user="ann", content_types=[5])) == ["report.pdf"]
        assert texts(await bob.messages.search("pdf")) == ["report.pdf"]
        assert texts(await bob.messages.search("report", before=t0 + 1000)) == ["report private"]
        assert texts(await bob.messages.search("report", after=t0 + 1000, from_user="ann")) == [
            "report.pdf", "report group",
        ]  # fmt: skip


async def test_paging_is_stable_while_new_messages_arrive(gw: Gateway) -> None:
    async with sdk(gw, "ann") as ann:
        for n in range(7):
            await say(ann, "bob", f"item {n}")
        first = await ann.messages.search("item", limit=3)
        assert texts(first) == ["item 6", "item 5", "item 4"]
        await say(ann, "bob", "item new")  # newer than the cursor: the next pages do not move
        second = await ann.messages.search("item", limit=3, cursor=first.next_cursor)
        assert texts(second) == ["item 3", "item 2", "item 1"]
        third = await ann.messages.search("item", limit=3, cursor=second.next_cursor)
        assert texts(third) == ["item 0"]
        assert third.next_cursor is None
        assert texts(await ann.messages.search("item", limit=1)) == ["item new"]


async def bad(c: Client, keyword: Any, **params: Any) -> dict[str, Any]:
    response = await c.request("search_messages", {"keyword": keyword, **params})
    assert response.code == ErrorCode.INVALID_PARAMETER, response
    return response.result


async def test_bad_queries_are_answered_251_with_the_reason(gw: Gateway) -> None:
    async with sdk(gw, "ann") as ann:
        assert (await bad(ann, "")) == {"field": "keyword", "problem": "must not be empty"}
        assert (await bad(ann, "   "))["problem"] == "must not be empty"
        assert (await bad(ann, "?!…"))["problem"] == "needs a letter, a digit or a CJK character"
        assert (await bad(ann, "x" * 101)) == {"field": "keyword", "problem": "length must be 0..100"}
        assert (await bad(ann, 5))["problem"] == "must be a string"
        assert (await bad(ann, " ".join("abcdefghijklmnopq")))["problem"] == "at most 16 words"
        assert (await bad(ann, "hi", limit=0)) == {"field": "limit", "problem": "must be in 1..100"}
        assert (await bad(ann, "hi", limit=101))["field"] == "limit"
        assert (await bad(ann, "hi", cursor="abc"))["field"] == "cursor"
        assert (await bad(ann, "hi", cursor="-5"))["field"] == "cursor"
        assert (await bad(ann, "hi", cursor="0"))["field"] == "cursor"
        assert (await bad(ann, "hi", cursor=12))["problem"] == "must be a string"
        assert (await bad(ann, "hi", content_types=["1"]))["field"] == "content_types"
        assert (await bad(ann, "hi", content_types=list(range(33))))["field"] == "content_types"
        assert (await bad(ann, "hi", conv={"type": 9, "target": "bob"}))["field"] == "conv.type"
        assert (await bad(ann, "hi", from_user=""))["field"] == "from_user"
        assert (await bad(ann, "hi", before=-1))["field"] == "before"
        with pytest.raises(RequestFailed) as failed:
            await ann.messages.search("")
        assert failed.value.code == ErrorCode.INVALID_PARAMETER


async def test_search_can_be_turned_off(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path, message={"search": False})
    await gw.user("ann")
    async with sdk(gw, "ann") as ann:
        response = await ann.request("search_messages", {"keyword": "x"})
        assert response.code == ErrorCode.FUNCTION_DISABLED
