"""Admin API for messages and blacklists, against a real gateway: Hypercorn, SQLite and live clients.

Each test drives the signed HTTP API with httpx and watches what connected
clients (``tests.test_messaging.Device``, raw protocol over TCP) are pushed and
can pull.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from gateway.clock import ManualClock
from gateway.signing import signed_json
from protocol.codes import ErrorCode, UserStatus
from tests.harness import Gateway, start_gateway
from tests.test_messaging import Device, texts

_nonces = (f"m{i}" for i in itertools.count())


class Admin:
    """Signed calls to a running gateway's admin API."""

    def __init__(self, gw: Gateway, http: httpx.AsyncClient) -> None:
        self.gw = gw
        self.http = http

    async def call(self, action: str, payload: Any) -> dict[str, Any]:
        body, headers = signed_json(
            self.gw.config.admin.secret.encode(), payload, self.gw.clock.now_ms(), next(_nonces)
        )
        response = await self.http.post(
            f"{self.gw.running.admin_url}/admin/{action}", content=body, headers=headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def send(self, sender: str, target: str, text: str, **extra: Any) -> dict[str, Any]:
        content = {"type": 1, "searchable_content": text, **extra.pop("content", {})}
        return await self.call(
            "message/send",
            {"sender": sender, "conv": {"type": 0, "target": target}, "content": content, **extra},
        )


@pytest.fixture
async def gw(nursery: trio.Nursery, tmp_path) -> Gateway:
    gw = await start_gateway(nursery, tmp_path)
    for user in ("alice", "bob"):
        await gw.user(user)
    return gw


@pytest.fixture
async def admin(gw: Gateway) -> AsyncIterator[Admin]:
    async with httpx.AsyncClient(timeout=5) as http:
        yield Admin(gw, http)


# ------------------------------------------------------------------------ send


async def test_system_user_send_is_pushed_to_the_live_recipient_and_pullable(
    gw: Gateway, admin: Admin
) -> None:
    bob = await Device.connect(gw, "bob")
    payload = b"\x00\xffbinary"
    answer = await admin.send(
        "system",  # no user row: an app's system account
        "bob",
        "welcome",
        content={
            "data": base64.b64encode(payload).decode(),
            "extra": '{"kind": "onboarding"}',
            "push_content": "Hi",
        },
        client_msg_id="welcome-bob",
    )
    assert answer["code"] == 0, answer
    ack = answer["result"]
    assert set(ack) == {"message_id", "server_time", "seq"}
    assert isinstance(ack["message_id"], str) and ack["server_time"] == gw.clock.now_ms()
    message_id = int(ack["message_id"])

    push = await bob.push()
    message = push.data["message"]
    assert message["message_id"] == message_id
    assert (message["from"], message["conv"]) == ("system", {"type": 0, "target": "bob", "line": 0})
    assert message["content"]["data"] == payload
    assert message["content"]["extra"] == '{"kind": "onboarding"}'
    pulled = await bob.pull_all()
    assert [(m["seq"], m["message"]["message_id"]) for m in pulled] == [(push.data["seq"], message_id)]
    assert texts(pulled) == ["welcome"]

    # A retry with the same client_msg_id answers the first ack and stores nothing new.
    again = await admin.send("system", "bob", "welcome", client_msg_id="welcome-bob")
    assert again == answer
    assert len(await bob.pull_all()) == 1
    await bob.aclose()


async def test_send_as_a_real_user_reaches_their_own_devices_too(gw: Gateway, admin: Admin) -> None:
    alice = await Device.connect(gw, "alice")
    bob = await Device.connect(gw, "bob")
    answer = await admin.send("alice", "bob", "sent for alice by the app server")
    assert answer["code"] == 0
    for device in (alice, bob):  # no device sent it, so every one of alice's devices hears of it
        assert (await device.push()).data["message"]["message_id"] == int(answer["result"]["message_id"])
    assert answer["result"]["seq"] == (await alice.pull_all())[-1]["seq"]
    await alice.aclose()
    await bob.aclose()


async def test_message_ids_past_2_53_survive_as_strings(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path, clock=ManualClock(1_760_000_000_000))  # a 2025 wall clock
    await gw.user("bob")
    async with httpx.AsyncClient(timeout=5) as http:
        admin = Admin(gw, http)
        answer = await admin.send("system", "bob", "big id")
        message_id = int(answer["result"]["message_id"])
        assert message_id > 2**53  # past what a JavaScript number holds exactly
        stored = await gw.services.store.get_message(message_id)
        assert stored is not None and stored.content["searchable_content"] == "big id"
        recall = await admin.call("message/recall", {"message_id": answer["result"]["message_id"]})
        assert recall["code"] == 0 and recall["result"]["message_id"] == answer["result"]["message_id"]


@pytest.mark.parametrize(
    ("change", "code", "needle"),
    [
        ({"content": {"type": 1, "extra": "{not json"}}, 251, "content.extra"),
        ({"content": {"type": 1, "data": "not base64!"}}, 251, "content.data"),
        ({"content": {"type": 1, "data": base64.b64encode(b"x" * 65537).decode()}}, 251, "content.data"),
        ({"content": {"type": 1, "persist_flag": 2}}, 251, "content.persist_flag"),
        ({"content": {"type": 1, "searchable_content": "x" * 20000}}, 251, "content.searchable_content"),
        ({"content": {"type": "1"}}, 251, "content.type"),
        ({"content": {"type": 80, "content": '{"message_id": "1"}'}}, 251, "content.type"),
        ({"content": {"type": 1, "colour": "red"}}, 251, "content.colour"),
        ({"content": {}}, 251, "content.type"),
        ({"conv": {"type": 9, "target": "bob"}}, 251, "conv.type"),
        ({"conv": {"type": 0, "target": ""}}, 251, "conv.target"),
        ({"conv": {"type": 1, "target": "g1"}}, 253, ""),  # a group send: no such group
        ({"conv": {"type": 2, "target": "room"}}, 253, ""),  # no such chatroom
        ({"conv": {"type": 0, "target": "nobody"}}, 253, ""),
        ({"sender": " system"}, 251, "sender"),
        ({"sender": None}, 251, "sender"),
        ({"client_msg_id": ""}, 251, "client_msg_id"),
        ({"to_users": ["ok", ""]}, 251, "to_users"),
    ],
)
async def test_send_is_validated_like_a_client_send(
    admin: Admin, change: dict[str, Any], code: int, needle: str
) -> None:
    payload = {"sender": "system", "conv": {"type": 0, "target": "bob"}, "content": {"type": 1}, **change}
    answer = await admin.call("message/send", {k: v for k, v in payload.items() if v is not None})
    assert (answer["code"], answer["result"]) == (code, None), answer
    assert needle in answer["msg"]
    assert "not json" not in answer["msg"] and "base64!" not in answer["msg"]  # never echoes the value


async def test_a_forged_recall_notice_is_refused_from_clients_too(gw: Gateway) -> None:
    bob = await Device.connect(gw, "bob")
    victim = (await bob.send_text("alice", "a message someone wants gone")).result["message_id"]
    alice = await Device.connect(gw, "alice")
    forged = {"type": 80, "content": json.dumps({"operator": "bob", "message_id": str(victim)})}
    answer = await alice.call("send_message", conv={"type": 0, "target": "bob"}, content=forged)
    assert answer.code == ErrorCode.INVALID_PARAMETER and answer.result["field"] == "content.type"
    await alice.aclose()
    await bob.aclose()


async def test_muted_sender_is_refused(gw: Gateway, admin: Admin) -> None:
    assert await gw.services.sessions.set_block_status("alice", UserStatus.MUTED) == 0
    assert (await admin.send("alice", "bob", "shh"))["code"] == ErrorCode.FORBIDDEN_TO_SEND


# ---------------------------------------------------------------------- recall


async def test_recall_replaces_the_message_for_everyone_even_past_the_window(
    gw: Gateway, admin: Admin
) -> None:
    alice = await Device.connect(gw, "alice")
    bob = await Device.connect(gw, "bob")
    sent = (await alice.send_text("bob", "regrettable")).result["message_id"]
    await bob.push()
    gw.clock.advance(3600)  # far past message.recall_seconds: the app server overrides the window
    assert (await alice.call("recall_message", message_id=sent)).code == ErrorCode.RECALL_TIME_EXPIRED

    answer = await admin.call("message/recall", {"message_id": str(sent)})
    assert answer["code"] == 0, answer
    assert answer["result"]["message_id"] == str(sent)
    notice_id = int(answer["result"]["notice_id"])
    for device in (alice, bob):  # the sender's devices too: no device asked for it
        notice = (await device.push()).data["message"]
        assert notice["message_id"] == notice_id and notice["content"]["type"] == 80
        assert json.loads(notice["content"]["content"]) == {"operator": "alice", "message_id": str(sent)}
    # (Roaming is off and the original is an hour old, so a pull from 0 shows only the notice.)
    assert [m["message"]["message_id"] for m in await bob.pull_all()] == [notice_id]
    stored = await gw.services.store.get_message(sent)
    assert stored is not None and stored.content["type"] == 80
    assert "regrettable" not in json.dumps(stored.content)

    assert (await admin.call("message/recall", {"message_id": str(sent)}))["code"] == ErrorCode.NOT_EXIST
    await alice.aclose()
    await bob.aclose()


async def test_recall_codes(gw: Gateway, admin: Admin) -> None:
    sent = (await admin.send("alice", "bob", "mine"))["result"]["message_id"]
    assert (await admin.call("message/recall", {"message_id": sent, "operator": "bob"}))["code"] == 248
    assert (await admin.call("message/recall", {"message_id": "12345"}))["code"] == ErrorCode.NOT_EXIST
    assert (await admin.call("message/recall", {"message_id": sent, "operator": "alice"}))["code"] == 0
    for bad in (int(sent), "0", "007", "12a", "9" * 19, "", None):
        answer = await admin.call("message/recall", {"message_id": bad} if bad is not None else {})
        assert answer["code"] == ErrorCode.INVALID_PARAMETER and "message_id" in answer["msg"], bad


# ---------------------------------------------------------------------- delete


async def test_delete_for_one_user_is_for_good_and_leaves_the_other_party(gw: Gateway, admin: Admin) -> None:
    alice = await Device.connect(gw, "alice")
    bob = await Device.connect(gw, "bob")
    keep = (await alice.send_text("bob", "keep")).result["message_id"]
    gone = (await alice.send_text("bob", "gone")).result["message_id"]
    answer = await admin.call("message/delete", {"message_id": str(gone), "user_id": "bob"})
    assert answer == {"code": 0, "msg": "success", "result": {"message_id": str(gone), "user_ids": ["bob"]}}
    assert (await bob.push("message_deleted")).data == {"message_id": gone}
    assert [m["message"]["message_id"] for m in await bob.pull_all()] == [keep]
    assert texts(await alice.pull_all()) == ["keep", "gone"]
    again = await admin.call("message/delete", {"message_id": str(gone), "user_id": "bob"})
    assert again["code"] == ErrorCode.NOT_EXIST
    # A reinstall does not bring it back either.
    await bob.aclose()
    bob = await Device.connect(gw, "bob", "reinstalled")
    assert [m["message"]["message_id"] for m in await bob.pull_all()] == [keep]
    await alice.aclose()
    await bob.aclose()


async def test_delete_for_everyone_removes_it_from_both_inboxes_and_storage(
    gw: Gateway, admin: Admin
) -> None:
    alice = await Device.connect(gw, "alice")
    bob = await Device.connect(gw, "bob")
    await alice.send_text("bob", "fine")
    bad = (await alice.send_text("bob", "illegal content")).result["message_id"]
    answer = await admin.call("message/delete", {"message_id": str(bad)})
    assert answer["code"] == 0 and sorted(answer["result"]["user_ids"]) == ["alice", "bob"]
    for device in (alice, bob):
        assert (await device.push("message_deleted")).data == {"message_id": bad}
        assert texts(await device.pull_all()) == ["fine"]
    assert await gw.services.store.get_message(bad) is None
    assert (await admin.call("message/delete", {"message_id": str(bad)}))["code"] == ErrorCode.NOT_EXIST
    assert (await admin.call("message/recall", {"message_id": str(bad)}))["code"] == ErrorCode.NOT_EXIST
    await alice.aclose()
    await bob.aclose()


async def test_delete_for_everyone_after_one_side_deleted_it(gw: Gateway, admin: Admin) -> None:
    sent = (await admin.send("alice", "bob", "x"))["result"]["message_id"]
    assert (await admin.call("message/delete", {"message_id": sent, "user_id": "alice"}))["code"] == 0
    answer = await admin.call("message/delete", {"message_id": sent})
    assert answer["result"] == {"message_id": sent, "user_ids": ["bob"]}


# ------------------------------------------------------------------- blacklist


async def test_blacklist_set_through_the_admin_api_blocks_a_client_send(gw: Gateway, admin: Admin) -> None:
    alice = await Device.connect(gw, "alice")
    block = {"user_id": "bob", "target": "alice", "blocked": True}
    assert (await admin.call("blacklist/set", block))["code"] == 0
    got = await admin.call("blacklist/get", {"user_id": "bob"})
    assert got["result"] == {"user_id": "bob", "user_ids": ["alice"]}
    assert (await alice.send_text("bob", "let me in")).code == ErrorCode.IN_BLACKLIST
    assert (await admin.send("alice", "bob", "via the app"))["code"] == ErrorCode.IN_BLACKLIST
    bob = await Device.connect(gw, "bob")
    assert (await bob.call("get_blacklist")).result == {"user_ids": ["alice"]}  # one list, both APIs

    assert (await admin.call("blacklist/set", {**block, "blocked": False}))["code"] == 0
    assert (await admin.call("blacklist/get", {"user_id": "bob"}))["result"]["user_ids"] == []
    assert (await alice.send_text("bob", "thanks")).code == 0
    await alice.aclose()
    await bob.aclose()


async def test_blacklist_codes(admin: Admin) -> None:
    assert (await admin.call("blacklist/get", {"user_id": "ghost"}))["code"] == ErrorCode.NOT_EXIST
    answer = await admin.call("blacklist/set", {"user_id": "ghost", "target": "alice", "blocked": True})
    assert answer["code"] == ErrorCode.NOT_EXIST
    for bad, field in (({"blocked": 1}, "blocked"), ({"target": ""}, "target"), ({"extra": 1}, "extra")):
        payload = {"user_id": "bob", "target": "alice", "blocked": True, **bad}
        answer = await admin.call("blacklist/set", payload)
        assert answer["code"] == ErrorCode.INVALID_PARAMETER and field in answer["msg"], bad
