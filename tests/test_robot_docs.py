"""docs/ADMIN_API.md "Robots" stays true: the worked robot signature, the callback event printed byte-exact,
and the echo bot, run as written against ``ember serve``, answering a message from the Python SDK."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import trio

import client
from client import Conversation
from client.robot import sign, verify_callback
from gateway.clock import Clock
from gateway.signing import signed_json
from tests.ports import free_port
from tests.test_process import ADMIN_SECRET, ROOT, start, stop

DOC = ROOT / "docs" / "ADMIN_API.md"


def robots_section() -> str:
    text = DOC.read_text(encoding="utf-8")
    return text[text.index("## Robots\n") : text.index("## Operations\n")]


def test_the_worked_robot_signature_is_exact() -> None:
    block = re.search(r"```text\n(X-Robot-Id .*?)```", robots_section(), re.DOTALL)
    assert block, "worked robot signature not found"
    values = dict(re.findall(r"^(\S+(?: secret)?)\s+= (.*)$", block.group(1), re.MULTILINE))
    assert values["signed"] == f"{values['nonce']}|{values['timestamp']}|{values['body']}"
    assert sign(values["robot secret"], values["nonce"], values["timestamp"], values["body"].encode()) == values["X-Sign"]
    headers = {"X-Nonce": values["nonce"], "X-Timestamp": values["timestamp"], "X-Sign": values["X-Sign"]}
    now = int(values["timestamp"])
    assert verify_callback(values["robot secret"], headers, values["body"].encode(), now_ms=now)
    assert not verify_callback("another-secret", headers, values["body"].encode(), now_ms=now)
    assert not verify_callback(values["robot secret"], headers, values["body"].encode(), now_ms=now + 400_000)


def test_the_callback_event_is_printed_byte_exact() -> None:
    from gateway.domain.robots import callback_payload
    from gateway.webhooks import encode
    from storage.messages import Conversation as Conv
    from storage.messages import Outgoing

    msg = Outgoing(
        message_id=264905950861721602, server_time=1767225700600, conv=Conv(0, "bot"), from_user="ann",
        content={"type": 1, "searchable_content": "hello", "persist_flag": 3}, persist_flag=3,
    )  # fmt: skip
    assert encode(callback_payload("bot", msg, 5)).decode() in robots_section()


def echo_bot_source() -> str:
    block = re.search(r"```python echo-bot\n(.*?)```", robots_section(), re.DOTALL)
    assert block, "echo bot block not found"
    return block.group(1)




async def test_the_echo_bot_from_the_docs_answers_a_message_from_the_sdk(tmp_path: Path) -> None:
    port = free_port()
    proc = await start(tmp_path, f'[callback]\nrobot_hosts = "127.0.0.1:{port}"\n')
    bot_file = tmp_path / "echo_bot.py"
    bot_file.write_text(echo_bot_source())
    bot = None
    try:
        async with httpx.AsyncClient() as http:

            async def call(path: str, payload: dict) -> dict:
                body, headers = signed_json(ADMIN_SECRET.encode(), payload, Clock().now_ms())
                answer = (await http.post(proc.admin_url + path, content=body, headers=headers)).json()
                assert answer["code"] == 0, answer
                return answer["result"]

            await call("/admin/user/create", {"user_id": "ann"})
            made = await call(
                "/admin/robot/create", {"owner": "ann", "robot_id": "echo", "callback": f"http://127.0.0.1:{port}/"}
            )
            token = (await call("/admin/user/get_token", {"user_id": "ann", "client_id": "ann-1", "platform": 2}))["token"]
        env = {**os.environ, "EMBER_ROBOT_SECRET": made["secret"], "ECHO_BOT_PORT": str(port), "PYTHONPATH": str(ROOT)}
        bot = await trio.lowlevel.open_process(
            [sys.executable, str(bot_file)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, env=env, cwd=tmp_path,
        )  # fmt: skip
        assert bot.stderr is not None
        seen = b""
        with trio.fail_after(20):
            while b"Running on" not in seen:  # Hypercorn's line once it listens
                chunk = await bot.stderr.receive_some(4096)
                assert chunk, seen.decode(errors="replace")
                seen += chunk
        async with client.connect(proc.host, proc.port, token, sync_messages=True) as ann:
            ack = await ann.messages.send(Conversation(0, "echo"), {"type": 1, "searchable_content": "ping"})
            stream = ann.messages.received()
            with trio.fail_after(20):
                while True:
                    got = await anext(stream)
                    if got.from_user == "echo":
                        break
            assert got.content["searchable_content"] == "ping" and got.message_id != ack.message_id
            assert got.conv == Conversation(0, "ann")  # as sent: to ann
        assert await stop(proc) == 0
    finally:
        if bot is not None and bot.returncode is None:
            bot.kill()
            await bot.wait()
        if proc.process.returncode is None:
            proc.process.kill()
