"""Robots (issue 22) over real HTTP: the admin API makes them, the robot API (signed with the robot's own
secret) acts as them, and the callback (the real webhook sender to a real HTTP receiver) hands them their
messages; a reply body in the callback's answer is sent as the robot's reply."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from client.robot import RobotCallFailed, RobotClient
from gateway.signing import signed_json
from protocol.codes import ErrorCode, UserType
from tests.harness import Gateway, start_gateway
from tests.http_receiver import Received, Receiver
from tests.test_admin_messages import Admin
from tests.test_messaging import Device


def echo(request: Received) -> bytes:
    """A webhook robot: answers every text with its echo."""
    event = request.json
    if event["content"]["type"] != 1:
        return b"{}"
    return json.dumps({"reply": {"type": 1, "searchable_content": "echo: " + event["content"]["searchable_content"]}}).encode()


@pytest.fixture
async def receiver(nursery: trio.Nursery) -> Receiver:
    return await Receiver(answer=echo).start(nursery)


@pytest.fixture
async def gw(nursery: trio.Nursery, tmp_path, receiver: Receiver) -> Gateway:
    gw = await start_gateway(
        nursery, tmp_path, callback={"robot_hosts": f"127.0.0.1:{receiver.port}", "retry_base_ms": 10}
    )
    for user in ("boss", "ann", "bob"):
        await gw.user(user)
    return gw


@pytest.fixture
async def admin(gw: Gateway) -> AsyncIterator[Admin]:
    async with httpx.AsyncClient() as http:
        yield Admin(gw, http)


async def make_robot(admin: Admin, receiver: Receiver | None, robot_id: str = "bot") -> RobotClient:
    created = await admin.call(
        "robot/create",
        {"owner": "boss", "robot_id": robot_id, "name": "Bot", "callback": receiver.url if receiver else ""},
    )
    assert created["code"] == 0, created
    secret = created["result"]["secret"]
    assert len(secret) == 64  # generated: 256 bits as hex
    return RobotClient(admin.gw.running.admin_url, robot_id, secret, clock=admin.gw.clock.now_ms, http=admin.http)


async def test_a_private_message_reaches_the_callback_and_the_reply_body_reaches_the_user_live(
    gw: Gateway, admin: Admin, receiver: Receiver
) -> None:
    robot = await make_robot(admin, receiver)
    ann = await Device.connect(gw, "ann")
    ack = await ann.send_text("bot", "hello")
    assert ack.code == 0
    [request] = await receiver.wait_for(1)
    assert request.signed_by(robot._secret.decode())  # the robot's own secret, not callback.secret
    event = request.json
    assert event["robot_id"] == "bot" and event["sender"] == "ann" and event["mentioned"] is False
    assert event["message_id"] == str(ack.result["message_id"])
    assert event["conversation"] == {"type": 0, "target": "ann", "line": 0}  # the robot's view
    assert event["content"]["searchable_content"] == "hello"
    push = await ann.push()
    reply = push.data["message"]
    assert reply["from"] == "bot" and reply["conv"] == {"type": 0, "target": "ann", "line": 0}
    assert reply["content"]["searchable_content"] == "echo: hello"
    assert gw.services.robots.replies_sent == 1
    # The robot's own reply is not posted back to it; the user sees the badge in user info.
    assert len(receiver.requests) == 1
    info = await ann.call("get_user_info", user_ids=["bot", "bob"])
    assert [u.get("type", 0) for u in info.result["users"]] == [int(UserType.ROBOT), 0]
    got = await admin.call("user/get", {"user_id": "bot"})
    assert got["result"]["type"] == 1 and got["result"]["name"] == "Bot"
    await ann.aclose()


async def test_a_robot_in_a_group_gets_mentions_flagged(gw: Gateway, admin: Admin, receiver: Receiver) -> None:
    await make_robot(admin, receiver)
    made = await admin.call("group/create", {"owner": "ann", "group_id": "g", "members": ["bot", "bob"]})
    assert made["code"] == 0
    ann = await Device.connect(gw, "ann")
    group = {"type": 1, "target": "g"}
    for text, mention in (("all of you", {}), ("you, bot", {"mentioned_type": 1, "mentioned_targets": ["bot"]})):
        ack = await ann.call("send_message", conv=group, content={"type": 1, "searchable_content": text, **mention})
        assert ack.code == 0
    requests = await receiver.wait_for(3)  # the creation notification, then the two messages
    texts = [(r.json["content"].get("searchable_content"), r.json["mentioned"]) for r in requests if r.json["content"]["type"] == 1]
    assert texts == [("all of you", False), ("you, bot", True)]
    assert all(r.json["conversation"] == {"type": 1, "target": "g", "line": 0} for r in requests)
    await ann.aclose()


async def test_the_robot_api_acts_as_the_robot_with_a_users_rights_only(gw: Gateway, admin: Admin) -> None:
    robot = await make_robot(admin, None)
    ann = await Device.connect(gw, "ann")
    sent = await robot.send_text({"type": 0, "target": "ann"}, "from the bot")
    assert sent["code"] == 0 and set(sent["result"]) == {"message_id", "server_time", "seq"}
    push = await ann.push()
    assert push.data["message"]["from"] == "bot"
    # Its own secret on an admin endpoint: refused as unsigned (401), with or without its id.
    body, headers = signed_json(robot._secret, {"user_id": "ann"}, gw.clock.now_ms())
    response = await admin.http.post(f"{gw.running.admin_url}/admin/user/get", content=body, headers=headers)
    assert response.status_code == 401
    response = await admin.http.post(
        f"{gw.running.admin_url}/admin/user/get", content=body, headers={**headers, "X-Robot-Id": "bot"}
    )
    assert response.status_code == 401
    # The admin secret on the robot API: refused too.
    body, headers = signed_json(gw.config.admin.secret.encode(), {}, gw.clock.now_ms())
    response = await admin.http.post(
        f"{gw.running.admin_url}/robot/profile", content=body, headers={**headers, "X-Robot-Id": "bot"}
    )
    assert response.status_code == 401
    # A group operation it may not do: kicking from a group it only belongs to.
    assert (await admin.call("group/create", {"owner": "ann", "group_id": "g", "members": ["bot", "bob"]}))["code"] == 0
    kicked = await robot.call("group/kick", {"group_id": "g", "user_ids": ["bob"]})
    assert kicked["code"] == ErrorCode.NOT_RIGHT
    members = await robot.call("group/members", {"group_id": "g"})
    assert sorted(m["user_id"] for m in members["result"]["members"]) == ["ann", "bob", "bot"]
    # Its own group: it owns it, so it may kick; it may not create an organization (the admin's).
    assert (await robot.call("group/create", {"group_id": "mine", "members": ["ann", "bob"]}))["code"] == 0
    assert (await robot.call("group/kick", {"group_id": "mine", "user_ids": ["bob"]}))["code"] == 0
    assert (await robot.call("group/create", {"group_id": "org", "type": 3}))["code"] == ErrorCode.NOT_RIGHT
    assert (await robot.call("group/quit", {"group_id": "g"}))["code"] == 0
    # Recall: its own message, yes; another's in a group it does not manage, no.
    recalled = await robot.call("message/recall", {"message_id": sent["result"]["message_id"]})
    assert recalled["code"] == 0
    ann_msg = await ann.send_text("bob", "not yours")
    assert (await robot.call("message/recall", {"message_id": str(ann_msg.result["message_id"])}))["code"] == ErrorCode.NOT_RIGHT
    # Profile, user info, callback.
    assert (await robot.call("update_profile", {"display_name": "Helper"}))["code"] == 0
    profile = (await robot.call("profile"))["result"]
    assert profile["display_name"] == "Helper" and profile["owner"] == "boss" and "secret" not in profile
    users = (await robot.call("user_info", {"user_ids": ["ann", "bot"]}))["result"]["users"]
    assert [u["user_id"] for u in users] == ["ann", "bot"] and "mobile" not in users[0] and users[1]["type"] == 1
    assert (await robot.call("set_callback", {"url": "https://bots.example/cb"}))["code"] == 0
    assert (await robot.call("get_callback"))["result"] == {"url": "https://bots.example/cb"}
    assert (await robot.call("set_callback", {"url": "ftp://x"}))["code"] == ErrorCode.INVALID_PARAMETER
    assert (await robot.call("delete_callback"))["code"] == 0
    assert (await robot.call("get_callback"))["result"] == {"url": ""}
    await ann.aclose()


async def test_robots_in_the_admin_api_and_a_destroyed_robots_next_call(gw: Gateway, admin: Admin) -> None:
    robot = await make_robot(admin, None)
    assert (await admin.call("robot/create", {"owner": "boss", "robot_id": "ann"}))["code"] == ErrorCode.INVALID_PARAMETER
    assert (await admin.call("robot/create", {"owner": "ghost"}))["code"] == ErrorCode.NOT_EXIST
    given = await admin.call("robot/create", {"owner": "boss", "robot_id": "bot2", "secret": "s" * 20})
    assert given["result"] == {"robot_id": "bot2", "secret": "s" * 20}
    info = await admin.call("robot/info", {"robot_id": "bot"})
    assert info["result"]["owner"] == "boss" and "secret" not in info["result"]
    listed = await admin.call("robot/list", {"owner": "boss"})
    assert [r["robot_id"] for r in listed["result"]["robots"]] == ["bot", "bot2"]
    assert (await robot.call("profile"))["code"] == 0
    # Rotation: the old secret stops working at once, the new one (shown once) works.
    rotated = await admin.call("robot/update", {"robot_id": "bot", "rotate_secret": True, "robot_extra": "{\"v\":1}"})
    new_secret = rotated["result"]["secret"]
    with pytest.raises(RobotCallFailed):
        await robot.call("profile")
    robot = RobotClient(gw.running.admin_url, "bot", new_secret, clock=gw.clock.now_ms, http=admin.http)
    assert (await robot.call("profile"))["result"]["robot_extra"] == "{\"v\":1}"
    assert (await admin.call("robot/update", {"robot_id": "bot", "robot_extra": "not json"}))["code"] == 251
    # Destroyed: the next call is refused, the user cannot connect any more.
    assert (await admin.call("robot/destroy", {"robot_id": "bot"}))["code"] == 0
    with pytest.raises(RobotCallFailed) as refused:
        await robot.call("profile")
    assert refused.value.status == 401 and refused.value.answer["code"] == ErrorCode.NOT_RIGHT
    assert (await admin.call("robot/info", {"robot_id": "bot"}))["code"] == ErrorCode.NOT_EXIST
    assert (await admin.call("robot/destroy", {"robot_id": "bot"}))["code"] == ErrorCode.NOT_EXIST
    assert (await admin.call("user/get", {"user_id": "bot"}))["result"]["status"] == 2


async def test_a_robot_reply_to_a_group_message_only_to_its_sender(gw: Gateway, admin: Admin) -> None:
    robot = await make_robot(admin, None)
    assert (await admin.call("group/create", {"owner": "ann", "group_id": "g", "members": ["bot", "bob"]}))["code"] == 0
    ann, bob = await Device.connect(gw, "ann"), await Device.connect(gw, "bob")
    ack = await ann.call("send_message", conv={"type": 1, "target": "g"}, content={"type": 1, "searchable_content": "q"})
    await bob.push()
    answer: dict[str, Any] = await robot.call(
        "message/reply",
        {"message_id": str(ack.result["message_id"]), "content": {"type": 1, "searchable_content": "a"}, "to_sender_only": True},
    )
    assert answer["code"] == 0
    push = await ann.push()
    assert push.data["message"]["to_users"] == ["ann"] and push.data["message"]["from"] == "bot"
    # A message the robot does not hold: 253.
    private = await ann.send_text("bob", "between us")
    reply = await robot.call("message/reply", {"message_id": str(private.result["message_id"]), "content": {"type": 1}})
    assert reply["code"] == ErrorCode.NOT_EXIST
    for d in (ann, bob):
        await d.aclose()


async def test_no_robot_host_listed_means_no_callback_is_sent(nursery: trio.Nursery, tmp_path) -> None:
    receiver = await Receiver().start(nursery)
    gw = await start_gateway(nursery, tmp_path)
    for user in ("boss", "ann"):
        await gw.user(user)
    async with httpx.AsyncClient() as http:
        await make_robot(Admin(gw, http), receiver)
        ann = await Device.connect(gw, "ann")
        assert (await ann.send_text("bot", "hello")).code == 0
        assert gw.services.webhooks.robot is None and gw.services.webhooks.robot_refused == 1
        await ann.aclose()
    assert receiver.connections == 0


async def test_ember_admin_robot_commands(nursery: trio.Nursery, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main
    from gateway.clock import Clock

    gw = await start_gateway(nursery, tmp_path, clock=Clock())  # the CLI signs with the wall clock
    await gw.user("boss")
    base = ["admin", "--url", gw.running.admin_url, "--secret", gw.config.admin.secret, "robot"]

    async def ember(*argv: str) -> tuple[int, Any]:
        code = await trio.to_thread.run_sync(main, [*base, *argv])
        out = capsys.readouterr()
        return code, json.loads(out.out or out.err)

    code, out = await ember("create", "boss", "--id", "helper", "--name", "Helper", "--callback", "https://b.example/cb")
    assert code == 0 and out["result"]["robot_id"] == "helper" and len(out["result"]["secret"]) == 64
    code, out = await ember("update", "helper", "--extra", '{"tier":1}', "--rotate-secret")
    assert code == 0 and len(out["result"]["secret"]) == 64
    code, out = await ember("info", "helper")
    assert out["result"]["robot_extra"] == '{"tier":1}' and out["result"]["callback"] == "https://b.example/cb"
    assert [r["robot_id"] for r in (await ember("list", "boss"))[1]["result"]["robots"]] == ["helper"]
    assert (await ember("destroy", "helper"))[0] == 0
    assert (await ember("info", "helper"))[0] == 1


async def test_bad_reply_bodies_and_replies_to_robots_are_not_sent(nursery: trio.Nursery, tmp_path) -> None:
    """A callback answering garbage, a reply the rules refuse, or a reply to another robot's message: nothing is
    sent, each is counted, and the gateway goes on serving (the next message still reaches the callback)."""
    answers = iter([b"not json", b'{"reply": {"type": 80}}', b'{"reply": "text"}', b'{"ok": true}'])
    receiver = await Receiver(answer=lambda r: next(answers, b'{"reply": {"type": 1, "searchable_content": "pong"}}')).start(nursery)
    gw = await start_gateway(nursery, tmp_path, callback={"robot_hosts": f"127.0.0.1:{receiver.port}", "retry_base_ms": 10})
    for user in ("boss", "ann"):
        await gw.user(user)
    async with httpx.AsyncClient() as http:
        admin = Admin(gw, http)
        await make_robot(admin, receiver)
        ann = await Device.connect(gw, "ann")
        for i in range(4):
            assert (await ann.send_text("bot", f"m{i}")).code == 0
        await receiver.wait_for(4)
        robots = gw.services.robots
        # A robot writing to the bot: its message is posted, but the bot's reply body is not sent.
        other = await make_robot(admin, None, "other")
        assert (await other.send_text({"type": 0, "target": "bot"}, "robot talk"))["code"] == 0
        await receiver.wait_for(5)
        assert (await ann.send_text("bot", "ping")).code == 0
        reply = await ann.push()
        assert reply.data["message"]["content"]["searchable_content"] == "pong"
        assert robots.replies_sent == 1 and robots.replies_refused == 3
        # Bad robot API input: the field is named; a chatroom is not for robots.
        bad = await other.call("message/send", {"conv": {"type": 0, "target": "ann"}, "content": {"type": 80}})
        assert bad["code"] == ErrorCode.INVALID_PARAMETER and bad["msg"].startswith("content.type")
        room = await other.call("message/send", {"conv": {"type": 2, "target": "r"}, "content": {"type": 1}})
        assert room["code"] == ErrorCode.NOT_IMPLEMENTED
        extra = await other.call("update_profile", {"extra": "{not json"})
        assert extra["code"] == ErrorCode.INVALID_PARAMETER and "extra" in extra["msg"]
        response = await other.post("/robot/message/send", None)
        assert response.status_code == 200 and response.json()["code"] == ErrorCode.INVALID_PARAMETER
        await ann.aclose()
