"""Hostile strings and JSON at both edges (issue 20): answered 251 naming the field, never a 500,
an ERROR 4 or a traceback in the log. Over real sockets and real HTTP to a real gateway.

The generated sweeps over every endpoint and method are in tests/test_hostile_sweep.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from protocol import events
from protocol.codes import ErrorCode
from protocol.limits import MAX_JSON_DEPTH, MAX_VALUE_DEPTH, json_depth, json_text_problem
from tests.harness import Gateway, start_gateway
from tests.test_admin_messages import Admin
from tests.test_messaging import Device

#: The issue's value: 4,000 levels of JSON arrays (json.loads raised RecursionError on it).
DEEP_JSON = "[" * 4000 + "]" * 4000
LONE_SURROGATE = "a\ud800b"


@pytest.fixture
async def gw(nursery: trio.Nursery, tmp_path) -> Gateway:
    gw = await start_gateway(nursery, tmp_path)
    for user in ("alice", "bob", "carol"):
        await gw.user(user)
    return gw


@pytest.fixture
async def admin(gw: Gateway) -> AsyncIterator[Admin]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield Admin(gw, http)


@pytest.fixture(autouse=True)
def no_errors_logged(caplog: pytest.LogCaptureFixture):
    """Every test here: nothing logged at ERROR or with a traceback (a peer must not fill the log)."""
    caplog.set_level(logging.INFO)
    yield
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]


def refused(answer: dict, field: str) -> None:
    assert answer["code"] == ErrorCode.INVALID_PARAMETER, answer
    assert answer["msg"].startswith(f"{field}: "), answer


# ------------------------------------------------------------------------------------ the checker


def test_json_depth_counts_brackets_outside_strings_without_recursing() -> None:
    assert json_depth(DEEP_JSON) == MAX_JSON_DEPTH + 1  # it stops counting past the limit
    assert json_depth("[" * 40 + "]" * 40, 100) == 40
    assert json_depth('[{"a": [1, {"b": "]]]"}]}' + " []" * 40) == 4
    # Escapes: \" stays inside the string, \\ ends its escape; a run of them is one linear scan.
    assert json_depth('["\\\\", [[' + "[" * 40 + "]" * 43) == MAX_JSON_DEPTH + 1
    assert json_depth('["' + '\\"' * 100_000 + '", ' + "[" * 40 + "]" * 41) == MAX_JSON_DEPTH + 1
    assert json_depth('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}') <= MAX_JSON_DEPTH
    assert json_depth('["\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]') <= MAX_JSON_DEPTH
    assert json_text_problem(DEEP_JSON) == f"JSON nested deeper than {MAX_JSON_DEPTH}"
    assert json_text_problem("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is None
    assert json_text_problem("{") == "must be JSON text"


# ------------------------------------------------------------------------------------ admin API


async def test_admin_user_create_with_deep_extra_answers_251(admin: Admin) -> None:
    refused(await admin.call("user/create", {"user_id": "dave", "extra": DEEP_JSON}), "extra")


async def test_admin_message_send_with_deep_extra_answers_251(admin: Admin) -> None:
    refused(await admin.send("alice", "bob", "hi", content={"extra": DEEP_JSON}), "content.extra")


@pytest.mark.parametrize("field", ["searchable_content", "push_content", "content", "extra"])
async def test_admin_message_send_with_a_lone_surrogate_answers_251(admin: Admin, field: str) -> None:
    refused(await admin.send("alice", "bob", "hi", content={field: LONE_SURROGATE}), f"content.{field}")


async def test_admin_surrogates_anywhere_are_named_by_their_path(admin: Admin) -> None:
    refused(await admin.call("user/create", {"user_id": "dave", "name": "\udfff"}), "name")
    refused(await admin.send("alice", "bob", "hi", to_users=["bob", "x\ud800"]), "to_users.1")
    # A surrogate pair is one character (U+1F600), not a lone surrogate: accepted.
    body = '{"user_id": "dave", "name": "smile \\ud83d\\ude00"}'
    assert json.loads(body)["name"] == "smile \U0001f600"
    assert (await admin.call("user/create", json.loads(body)))["code"] == 0


async def test_admin_deeply_nested_body_answers_251(admin: Admin) -> None:
    # Not a string field but the request body itself, sent as raw JSON text (json.dumps would recurse).
    deep = '{"user_id": "dave", "extra": ' + "[" * 4000 + "]" * 4000 + "}"
    from gateway.signing import signed_headers

    gw = admin.gw
    headers = signed_headers(gw.config.admin.secret.encode(), "deep-1", gw.clock.now_ms(), deep.encode())
    response = await admin.http.post(
        f"{gw.running.admin_url}/admin/user/create", content=deep.encode(),
        headers={**headers, "content-type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    refused(response.json(), "body")
    assert str(MAX_VALUE_DEPTH) in response.json()["msg"]


async def test_admin_notify_content_without_type_is_the_documented_example(admin: Admin) -> None:
    """ADMIN_API.md's own example: ``{"persist_flag": 0, "content": "…"}``, no type (it is ignored)."""
    created = await admin.call("group/create", {"owner": "alice", "group_id": "g1", "members": ["bob", "carol"]})
    assert created["code"] == 0, created
    quiet = {"persist_flag": 0, "content": "…"}
    answer = await admin.call("group/kick", {"group_id": "g1", "user_ids": ["carol"], "notify_content": quiet})
    assert answer["code"] == 0, answer
    bad = {"persist_flag": 2}
    answer = await admin.call("group/kick", {"group_id": "g1", "user_ids": ["bob"], "notify_content": bad})
    refused(answer, "notify_content.persist_flag")
    deep = {"extra": DEEP_JSON}
    answer = await admin.call("group/quit", {"group_id": "g1", "user_id": "bob", "notify_content": deep})
    refused(answer, "notify_content.extra")


# ---------------------------------------------------------------------------------- client protocol


async def alive(device: Device) -> None:
    """The connection still answers (it was not closed with an ERROR); then it is closed."""
    assert (await device.call("get_blacklist")).code == ErrorCode.SUCCESS
    assert not any(isinstance(e, events.ServerError) for e in device.client.received)
    await device.aclose()


async def test_client_send_with_deep_extra_answers_251_and_keeps_the_connection(gw: Gateway) -> None:
    alice = await Device.connect(gw, "alice")
    answer = await alice.send_text("bob", "hi", extra=DEEP_JSON)
    assert answer.code == ErrorCode.INVALID_PARAMETER, answer
    assert answer.result["field"] == "content.extra"
    await alive(alice)


async def test_client_params_nested_too_deep_answer_251_naming_the_path(gw: Gateway) -> None:
    alice = await Device.connect(gw, "alice")
    deep: list = []
    for _ in range(MAX_VALUE_DEPTH + 5):
        deep = [deep]
    answer = await alice.call("send_message", conv={"type": 0, "target": "bob"}, content={"type": 1, "x": deep})
    assert answer.code == ErrorCode.INVALID_PARAMETER, answer
    assert answer.result["field"].startswith("content.x.0.0"), answer.result
    await alive(alice)


async def test_client_friend_extras_deep_json_answers_251(gw: Gateway) -> None:
    alice = await Device.connect(gw, "alice")
    answer = await alice.call("send_friend_request", user_id="bob", reason="hi", extra=DEEP_JSON)
    assert (answer.code, answer.result["field"]) == (ErrorCode.INVALID_PARAMETER, "extra")
    answer = await alice.call("create_group", name="g", extra=DEEP_JSON, members=["bob"])
    assert (answer.code, answer.result["field"]) == (ErrorCode.INVALID_PARAMETER, "extra")
    await alive(alice)


async def test_client_notify_content_errors_name_notify_content(gw: Gateway) -> None:
    alice = await Device.connect(gw, "alice")
    created = await alice.call("create_group", group_id="g2", members=["bob", "carol"])
    assert created.code == ErrorCode.SUCCESS, created
    answer = await alice.call("kick_group_members", group_id="g2", user_ids=["carol"], notify_content={"persist_flag": 2})
    assert (answer.code, answer.result["field"]) == (ErrorCode.INVALID_PARAMETER, "notify_content.persist_flag")
    answer = await alice.call("kick_group_members", group_id="g2", user_ids=["carol"], notify_content={"extra": DEEP_JSON})
    assert (answer.code, answer.result["field"]) == (ErrorCode.INVALID_PARAMETER, "notify_content.extra")
    answer = await alice.call("kick_group_members", group_id="g2", user_ids=["carol"], notify_content={"type": 80})
    assert (answer.code, answer.result["field"]) == (ErrorCode.INVALID_PARAMETER, "notify_content.type")
    # Without a type (it is ignored): fine.
    answer = await alice.call("kick_group_members", group_id="g2", user_ids=["carol"], notify_content={"persist_flag": 0})
    assert answer.code == ErrorCode.SUCCESS, answer
    await alive(alice)
