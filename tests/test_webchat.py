"""The web chat page the WebSocket listener serves (``server.ws_demo``, gateway/net/webchat.py), from a real
``ember serve``: its files and headers over HTTP, its own origin let through, and a browser user on it talking
with a Python SDK user over TCP.

The browser test drives Debian's Chromium with playwright-core (sdk/ts/node_modules, ``npm ci``) through
sdk/ts/test/page-driver.mjs. Without Node, playwright-core or Chromium it skips with one line; under CI=true
it fails instead (.ci/run installs them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

import client
from client import Conversation, ConversationType
from gateway.clock import Clock
from gateway.net.webchat import CONTENT_SECURITY_POLICY, FILES
from gateway.signing import signed_json
from tests import test_process
from tests.harness import free_port
from tests.ws_client import WsClient, WsRefused

ROOT = Path(__file__).resolve().parent.parent
WEBCHAT = ROOT / "gateway" / "webchat"
SDK = ROOT / "sdk" / "ts"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
LIMIT = 20  # seconds, for the HTTP checks
BROWSER_LIMIT = 180  # seconds, for a Chromium start and three page steps on a loaded 2-core machine


class Served:
    """A running ``ember serve`` with its WebSocket listener, and a signed admin call."""

    def __init__(self, proc: test_process.Proc, ws_port: int) -> None:
        self.proc = proc
        self.ws_port = ws_port
        self.base = f"http://127.0.0.1:{ws_port}"

    async def call(self, path: str, payload: dict) -> dict:
        body, headers = signed_json(test_process.ADMIN_SECRET.encode(), payload, Clock().now_ms())
        async with httpx.AsyncClient() as http:
            answer = (await http.post(self.proc.admin_url + path, content=body, headers=headers)).json()
        assert answer["code"] == 0, answer
        return answer["result"]

    async def token(self, user: str, device: str, platform: int) -> str:
        return (await self.call("/admin/user/get_token", {"user_id": user, "client_id": device, "platform": platform}))["token"]


async def serve(tmp_path: Path, nursery: trio.Nursery, demo: bool = True) -> Served:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    ws_port = free_port()
    (data / "ember.toml").write_text(
        f'[server]\nport = 0\nws_port = {ws_port}\nws_demo = {str(demo).lower()}\nshutdown_seconds = 5\n'
        f'[admin]\nport = 0\nsecret = "{test_process.ADMIN_SECRET}"\n[token]\nkey = "{test_process.TOKEN_KEY}"\n'
    )
    (data / "ember.toml").chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")} | {"PYTHONPATH": str(ROOT)}
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "gateway.cli", "serve", "--data", str(data)],
        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env, cwd=tmp_path,
    )  # fmt: skip
    proc = test_process.Proc(process, tmp_path / "unused.log")

    async def stop_at_end() -> None:
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await test_process.stop(proc)

    nursery.start_soon(stop_at_end)
    match = await proc.read_until(rb"listening gateway=(\S+):(\d+) admin=(\S+) websocket=(\S+):(\d+)/ws ")
    proc.host, proc.port, proc.admin_url = match[1].decode(), int(match[2]), match[3].decode()
    return Served(proc, ws_port)


async def test_the_page_and_its_files_are_served_with_headers_that_confine_it(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    gw = await serve(tmp_path, nursery)
    with trio.fail_after(LIMIT):
        async with httpx.AsyncClient() as http:
            for path, (name, content_type) in FILES.items():
                answer = await http.get(gw.base + path.decode())
                assert answer.status_code == 200, path
                # Byte for byte the files of the checkout: the package's, as the wheel ships them.
                assert answer.content == (WEBCHAT / name).read_bytes()
                assert answer.headers["content-type"] == content_type.decode()
                assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY.decode()
                assert "connect-src 'self'" in answer.headers["content-security-policy"]
                assert answer.headers["x-content-type-options"] == "nosniff"
                assert answer.headers["connection"] == "close"
            head = await http.head(gw.base + "/ember.js")
            assert head.status_code == 200 and head.content == b""
            assert int(head.headers["content-length"]) == (WEBCHAT / "ember.js").stat().st_size
            assert (await http.get(gw.base + "/?ws=ws://elsewhere/ws")).status_code == 200  # query ignored
            for other in ("/index.html", "/favicon.ico", "/../gateway/config.py", "/webchat/app.js", "/chat"):
                missing = await http.get(gw.base + other)
                assert missing.status_code == 404, other
                assert missing.headers["x-content-type-options"] == "nosniff"
            post = await http.post(gw.base + "/", content=b"x")
            assert (post.status_code, post.headers["allow"]) == (405, "GET, HEAD")
            assert (await http.get(gw.base + "/ws")).status_code == 400  # /ws is only ever an upgrade
            metrics = (await http.get(gw.proc.admin_url + "/metrics")).text
        assert re.search(r'ember_websocket_upgrades_total\{result="page"\} (\d+)', metrics)[1] == "6", metrics
        # The page's own origin (http:// and the Host it was served from) may open /ws; another may not.
        ws = await WsClient.open("127.0.0.1", gw.ws_port, headers=[("Origin", gw.base)])
        hello = await ws.next_event()
        assert getattr(hello, "data", b"")[:4] == b"EM\x01\x01"
        await ws.aclose()
        for foreign in (f"http://localhost:{gw.ws_port}", "https://evil.example.com", f"http://127.0.0.1:{gw.ws_port + 1}"):
            with pytest.raises(WsRefused) as refused:
                await WsClient.open("127.0.0.1", gw.ws_port, headers=[("Origin", foreign)])
            assert refused.value.status == 403, foreign


async def test_without_ws_demo_there_is_no_page_and_no_own_origin(nursery: trio.Nursery, tmp_path: Path) -> None:
    gw = await serve(tmp_path, nursery, demo=False)
    with trio.fail_after(LIMIT):
        async with httpx.AsyncClient() as http:
            for path in FILES:
                assert (await http.get(gw.base + path.decode())).status_code == 404
        with pytest.raises(WsRefused) as refused:
            await WsClient.open("127.0.0.1", gw.ws_port, headers=[("Origin", gw.base)])
        assert refused.value.status == 403  # server.ws_allowed_origins is empty: every browser page is refused


def _browser_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (SDK / "node_modules" / "playwright-core").is_dir():
        return "sdk/ts has no node_modules/playwright-core (cd sdk/ts && npm ci)"
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)"
    return None


#: Non-ASCII on purpose: accents precomposed and combining (no normalisation may happen on the way), CJK, an
#: emoji with a skin-tone modifier (outside the BMP: two UTF-16 units in the page), right-to-left Hebrew,
#: a no-break space, and an ASCII quote and backslash (JSON and HTML escaping).
TO_ALICE = 'héllo alice — e\u0301 日本語 👋🏽 שלום\u00a0"q" \\ end'
TO_BOB = "grüß dich bob ✓ 中文 🎉 مرحبا \u00a0 and e\u0301"


@pytest.fixture
def browser() -> None:
    """Node, playwright-core and Chromium, or a skip that says which is missing (a failure under CI=true).
    A fixture, not a check in the test: a skip raised inside the trio run reaches pytest through pytest-trio,
    which re-raises it without its reason (a bare "Skipped")."""
    missing = _browser_missing()
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser test, but {missing}")
        pytest.skip(f"browser test skipped: {missing}")


@pytest.mark.usefixtures("browser")
async def test_a_browser_user_on_the_served_page_and_a_python_sdk_user_over_tcp_talk_both_ways(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    gw = await serve(tmp_path, nursery)
    await gw.call("/admin/user/create", {"user_id": "alice", "name": "Alice"})
    await gw.call("/admin/user/create", {"user_id": "bob", "name": "Bob"})
    alice_token = await gw.token("alice", "alice-browser", 5)
    bob_token = await gw.token("bob", "bob-desktop", 3)
    artifacts = Path(os.environ.get("EMBER_TEST_ARTIFACTS", SDK / "test-artifacts"))
    driver_args = {"url": gw.base + "/", "token": alice_token, "reply": TO_BOB, "screenshot": str(artifacts / "web-chat-python.png")}
    with trio.fail_after(BROWSER_LIMIT):
        async with client.connect(gw.proc.host, gw.proc.port, bob_token, sync_messages=True) as bob:
            received = bob.messages.received()
            driver = await trio.lowlevel.open_process(
                ["node", str(SDK / "test" / "page-driver.mjs"), json.dumps(driver_args)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=SDK,
            )  # fmt: skip
            try:
                steps = _Lines(driver)
                assert (await steps.next()) == {"ready": "alice"}
                sent = await bob.messages.send(Conversation(ConversationType.PRIVATE, "alice"), {"type": 1, "searchable_content": TO_ALICE})
                assert sent.message_id > 0
                # The page shows bob's text exactly: the browser's WebSocket, WebCrypto and MessagePack decode.
                assert (await steps.next()) == {"received": TO_ALICE}
                got = await anext(received)  # alice typed her reply into the page: pushed to bob over TCP
                assert got.from_user == "alice"
                assert got.content["searchable_content"] == TO_BOB
                assert got.content["searchable_content"].encode() == TO_BOB.encode()  # byte for byte
                done = await steps.next()
                assert done == {"sent": True, "problems": []}, done  # no page error, no CSP refusal
                assert await driver.wait() == 0
            finally:
                if driver.returncode is None:
                    driver.kill()
                    await driver.wait()


class _Lines:
    """The driver's JSON lines, one per ``next()``; an {"error"} line (or its exit) fails the test with what it said.

    (A class, not an async generator: one left suspended at the test's end would be finalised by the garbage
    collector, outside trio.)"""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdout is not None and process.stderr is not None
        self.stdout, self.stderr = process.stdout, process.stderr
        self.buffer = b""

    async def next(self) -> dict:
        while b"\n" not in self.buffer:
            chunk = await self.stdout.receive_some(65536)
            if not chunk:
                err = await self.stderr.receive_some(65536)
                raise AssertionError(f"page driver ended: {self.buffer!r} {err.decode(errors='replace')[-3000:]}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        event = json.loads(line)
        assert "error" not in event, event["error"]
        return dict(event)
