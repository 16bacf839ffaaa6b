"""docs/PROTOCOL.md §14.8 stays true: the chatroom vectors match the code, decode to their inputs, and a
real gateway answers with the documented keys in the documented order (MessagePack maps are ordered)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
import trio

from storage.records import ChatroomRecord
from tests import vectors_chatrooms as v
from tests.harness import Gateway, start_gateway
from tests.test_chatrooms import joined, next_text, say

TEXT = v.DOC.read_text(encoding="utf-8")
BLOCKS = v.read_blocks(TEXT)
INPUTS = v.inputs(BLOCKS)


def test_every_input_has_its_block_and_the_rewriter_would_change_nothing() -> None:
    assert set(BLOCKS) == {"inputs", *INPUTS}
    assert v.rewrite(TEXT, v.compute(INPUTS)) == TEXT


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_the_bytes_decode_to_the_documented_value(name: str) -> None:
    # Plain msgpack, not the protocol package: a second reading of the same bytes.
    data = bytes.fromhex("".join(BLOCKS[name].split()))
    assert msgpack.unpackb(data, raw=False) == INPUTS[name]


def keys(value: Any) -> Any:
    """The map keys in order, recursively: what byte-exactness adds to equality."""
    if isinstance(value, dict):
        return [(k, keys(x)) for k, x in value.items()]
    if isinstance(value, list):
        return [keys(x) for x in value]
    return None


async def test_a_live_gateway_uses_the_documented_shapes(nursery: trio.Nursery, tmp_path) -> None:
    gw: Gateway = await start_gateway(nursery, tmp_path)
    gw.nursery = nursery  # type: ignore[attr-defined]
    for user in ("alice", "bob", "carol"):
        await gw.user(user)
    for room in ("lobby", "tea-room"):
        await gw.services.chatrooms.upsert(ChatroomRecord(room, title="Lobby", extra="{}"))
    bob = await joined(gw, "bob", "lobby")
    await joined(gw, "carol", "lobby")
    alice = await joined(gw, "alice", "tea-room")

    join = await alice.call("join_chatroom", **INPUTS["join_request"]["p"])
    assert keys(join.result) == keys(INPUTS["join_response"]["r"])
    info = await alice.call("get_chatroom_info", chatroom_id="lobby")
    assert keys(info.result) == keys(INPUTS["info_response"]["r"])
    members = await alice.call("get_chatroom_members", **INPUTS["members_request"]["p"])
    assert members.result == INPUTS["members_response"]["r"] | {"members": ["bob", "carol"]}
    ack = await alice.call("send_message", **INPUTS["send_request"]["p"])
    assert keys(ack.result) == keys(INPUTS["send_response"]["r"]) and ack.result["seq"] == 0
    push = await bob.push()
    expected = INPUTS["msg_push"]["d"]
    assert keys(push.data) == keys(expected)
    assert push.data["message"]["content"] == expected["message"]["content"]
    assert (await say(alice, "tea-room", "hi")).code == INPUTS["not_in_chatroom"]["c"]

    gw.clock.advance(gw.config.chatroom.idle_seconds + 1)
    assert gw.services.chatrooms.sweep() == 3
    assert await next_text(bob, "chatroom_quit") == INPUTS["quit_push"]["d"]
