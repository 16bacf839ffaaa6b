"""The admin API's chatroom endpoints over real HTTP against a real gateway, and their ``ember admin`` commands."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from gateway.cli import main
from gateway.clock import ManualClock
from protocol.codes import ErrorCode, UserStatus
from tests.harness import Gateway, start_gateway
from tests.test_admin_messages import Admin
from tests.test_chatrooms import joined, next_text, rooms, say, text_of


@pytest.fixture
async def gw(nursery: trio.Nursery, tmp_path) -> Gateway:
    gw = await start_gateway(nursery, tmp_path)
    gw.nursery = nursery  # type: ignore[attr-defined]
    for user in ("alice", "bob", "postman"):
        await gw.user(user)
    return gw


@pytest.fixture
async def admin(gw: Gateway) -> AsyncIterator[Admin]:
    async with httpx.AsyncClient(timeout=5) as http:
        yield Admin(gw, http)


async def test_create_info_update_destroy(gw: Gateway, admin: Admin) -> None:
    created = await admin.call(
        "chatroom/create", {"chatroom_id": "lobby", "title": "Lobby", "extra": '{"topic": "tea"}'}
    )
    assert created == {"code": 0, "msg": "success", "result": {"chatroom_id": "lobby", "created": True}}
    alice = await joined(gw, "alice", "lobby")
    bob = await joined(gw, "bob", "lobby")
    assert (await say(alice, "lobby", "hi")).code == 0
    assert text_of(await next_text(bob)) == "hi"

    info = (await admin.call("chatroom/info", {"chatroom_id": "lobby"}))["result"]
    assert info["title"] == "Lobby" and info["extra"] == '{"topic": "tea"}' and info["member_count"] == 2
    assert info["stats"] == {"sent": 1, "delivered": 1, "dropped": 0, "swept": 0, "cut_off": 0}
    created_at = info["created_at"]

    gw.clock.advance(5)
    again = await admin.call("chatroom/create", {"chatroom_id": "lobby", "title": "Tea room", "state": 1})
    assert again["result"] == {"chatroom_id": "lobby", "created": False}
    info = (await admin.call("chatroom/info", {"chatroom_id": "lobby"}))["result"]
    assert (info["title"], info["state"], info["created_at"]) == ("Tea room", 1, created_at)
    assert info["updated_at"] == created_at + 5000 and info["member_count"] == 2  # members stay
    client_view = await alice.call("get_chatroom_info", chatroom_id="lobby")
    assert client_view.result == {k: v for k, v in info.items() if k != "stats"}

    # Destroying tells the members, who are then in no room; the room is gone for everyone.
    assert (await admin.call("chatroom/destroy", {"chatroom_id": "lobby"}))["code"] == 0
    for device in (alice, bob):
        assert await next_text(device, "chatroom_quit") == {"chatroom_id": "lobby", "reason": "destroyed"}
    assert rooms(gw).where("alice", "alice-phone") is None
    assert (await say(alice, "lobby", "hello?")).code == ErrorCode.NOT_EXIST
    assert (await admin.call("chatroom/info", {"chatroom_id": "lobby"}))["code"] == ErrorCode.NOT_EXIST
    assert (await admin.call("chatroom/destroy", {"chatroom_id": "lobby"}))["code"] == ErrorCode.NOT_EXIST


async def test_rooms_survive_a_restart_but_members_do_not(nursery: trio.Nursery, tmp_path) -> None:
    async with trio.open_nursery() as first:
        gw = await start_gateway(first, tmp_path)
        async with httpx.AsyncClient(timeout=5) as http:
            assert (await Admin(gw, http).call("chatroom/create", {"chatroom_id": "kept", "title": "K"}))[
                "code"
            ] == 0
        first.cancel_scope.cancel()
    gw = await start_gateway(nursery, tmp_path)
    info = rooms(gw).room_info("kept")
    assert info is not None and info["title"] == "K" and info["member_count"] == 0


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"chatroom_id": " lobby"}, "chatroom_id"),
        ({"chatroom_id": "lobby", "extra": "{nope"}, "extra"),
        ({"chatroom_id": "lobby", "state": "1"}, "state"),
        ({"chatroom_id": "lobby", "colour": "red"}, "colour"),
    ],
)
async def test_create_is_validated(admin: Admin, payload: dict, needle: str) -> None:
    answer = await admin.call("chatroom/create", payload)
    assert answer["code"] == ErrorCode.INVALID_PARAMETER and needle in answer["msg"]


async def test_the_app_server_may_post_into_a_room_and_mute_a_member(gw: Gateway, admin: Admin) -> None:
    await admin.call("chatroom/create", {"chatroom_id": "lobby"})
    alice = await joined(gw, "alice", "lobby")
    posted = await admin.call(
        "message/send",
        {
            "sender": "system",
            "conv": {"type": 2, "target": "lobby"},
            "content": {"type": 1, "searchable_content": "news"},
        },
    )
    assert posted["code"] == 0 and posted["result"]["seq"] == 0
    data = await next_text(alice)
    assert (data["seq"], data["message"]["from"], text_of(data)) == (0, "system", "news")
    assert (
        await admin.call("user/update_block_status", {"user_id": "alice", "status": int(UserStatus.MUTED)})
    )["code"] == 0
    assert (await say(alice, "lobby", "may I?")).code == ErrorCode.FORBIDDEN_TO_SEND
    assert (await alice.call("pull", after_seq=0)).result["messages"] == []


async def test_chatroom_commands(nursery: trio.Nursery, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    gw = await start_gateway(
        nursery, tmp_path, clock=ManualClock(int(time.time() * 1000))
    )  # the CLI signs with it
    gw.nursery = nursery  # type: ignore[attr-defined]
    await gw.user("alice")
    base = ["admin", "--url", gw.running.admin_url, "--secret", gw.config.admin.secret]

    async def ember(*argv: str) -> int:
        return await trio.to_thread.run_sync(main, [*base, *argv])

    assert await ember("create-chatroom", "lobby", "--title", "Lobby", "--extra", "{}") == 0
    assert json.loads(capsys.readouterr().out)["result"] == {"chatroom_id": "lobby", "created": True}
    await joined(gw, "alice", "lobby")
    assert await ember("chatroom", "lobby") == 0
    shown = json.loads(capsys.readouterr().out)["result"]
    assert (shown["title"], shown["extra"], shown["member_count"]) == ("Lobby", "{}", 1)
    assert await ember("destroy-chatroom", "lobby") == 0
    capsys.readouterr()
    assert await ember("chatroom", "lobby") == 1
    assert json.loads(capsys.readouterr().err)["code"] == ErrorCode.NOT_EXIST
