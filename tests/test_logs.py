"""Logs: one line per event, text or JSON lines, a connection id per connection, and never a secret.

A whole scenario (admin API calls signed and forged, SDK and raw clients, refused and broken handshakes,
messages with bodies and push texts, webhooks, kick, logout) runs with every logger at DEBUG; then the
complete log output is searched for every token, secret, device token and message body it used.
"""

from __future__ import annotations

import base64
import io
import json
import logging

import httpx
import pytest
import trio

from gateway import logs
from gateway.config import LogConfig
from gateway.signing import signed_json
from protocol.codes import Platform
from protocol.token import parse_token
from tests.harness import RawClient, start_gateway
from tests.http_receiver import Receiver
from tests.test_messaging import Device

HOOK_SECRET = "hook-secret-never-logged"
BODIES = ("body-one-never-logged", "body-two-never-logged")
PUSH_TEXT = "push-text-never-logged"
DEVICE_TOKEN = "device-token-never-logged"


def forms(secret: bytes) -> list[str]:
    return [secret.hex(), base64.b64encode(secret).decode(), base64.urlsafe_b64encode(secret).decode().rstrip("=")]


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_a_whole_scenario_logs_no_secret_token_or_body(nursery: trio.Nursery, tmp_path, fmt: str) -> None:
    out = io.StringIO()
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    handler = logs.configure(LogConfig(level="DEBUG", format=fmt), out)
    try:
        await _scenario(nursery, tmp_path, out, fmt)
    finally:
        root.removeHandler(handler)
        for old in saved[1]:
            root.addHandler(old)
        root.setLevel(saved[0])


async def _scenario(nursery: trio.Nursery, tmp_path, out: io.StringIO, fmt: str) -> None:
    receiver = await Receiver().start(nursery)
    gw = await start_gateway(
        nursery, tmp_path,
        callback={"secret": HOOK_SECRET, "user_online_status_url": receiver.url, "message_forward_url": receiver.url},
        push={"url": receiver.url},
    )  # fmt: skip
    admin_secret = gw.config.admin.secret
    url = gw.running.admin_url
    tokens: list[str] = []
    async with httpx.AsyncClient() as http:

        async def call(path: str, payload: dict, key: str = admin_secret) -> dict:
            body, headers = signed_json(key.encode(), payload, gw.clock.now_ms())
            return (await http.post(url + path, content=body, headers=headers)).json()

        for user in ("alice", "bob"):
            assert (await call("/admin/user/create", {"user_id": user, "mobile": "555-0100"}))["code"] == 0
        for user, platform in (("alice", Platform.ANDROID), ("bob", Platform.IOS)):
            answer = await call("/admin/user/get_token", {"user_id": user, "client_id": f"{user}-phone", "platform": platform})
            tokens.append(answer["result"]["token"])
        assert (await call("/admin/user/get", {"user_id": "alice"}, key="wrong-secret"))["code"] != 0
        await http.get(url + "/metrics")

        alice = Device(await RawClient.connected(gw, tokens[0]))
        bob = Device(await RawClient.connected(gw, tokens[1]))
        assert (await bob.call("set_push_token", push_type=1, token=DEVICE_TOKEN)).code == 0
        assert (await alice.send_text("bob", BODIES[0])).code == 0
        await bob.push()
        await bob.aclose()
        with trio.fail_after(5):
            while gw.services.delivery.node.connections("bob"):  # noqa: ASYNC110
                await trio.sleep(0.005)
        assert (await alice.send_text("bob", BODIES[1], push_content=PUSH_TEXT)).code == 0
        await receiver.wait_for(6)  # online x2, forward x2, offline, push
        # A forged proof, then a connection that sends garbage after its CONNACK.
        forged = await RawClient.open(gw, tokens[1], secret=b"\x01" * 32)
        await forged.handshake(gw.clock.now_ms())
        await forged.aclose()
        broken = await RawClient.connected(gw, tokens[1])
        await broken.send(b"\x00" * 64)
        assert await broken.closed_by_server()
        await broken.aclose()
        answer = await call("/admin/session/kick", {"user_id": "alice", "client_id": "alice-phone"})
        assert answer["code"] == 0
        assert await alice.client.closed_by_server()
        await alice.aclose()

    text = out.getvalue()
    lines = text.splitlines()
    assert len(lines) > 5
    conn_lines = [line for line in lines if "ember.connection" in line]
    assert conn_lines and all("conn=" in line for line in conn_lines)
    if fmt == "json":
        for line in lines:
            assert set(json.loads(line)) >= {"ts", "level", "logger", "msg"}
    secrets = [admin_secret, gw.config.token.key, HOOK_SECRET, DEVICE_TOKEN, PUSH_TEXT, *BODIES]
    for token in tokens:
        secrets.append(token)
        secrets += forms(parse_token(token).secret)
        secrets.append(base64.urlsafe_b64encode(parse_token(token).credential).decode().rstrip("=")[:40])
    for secret in secrets:
        assert secret not in text, f"logged: {secret[:12]}..."
