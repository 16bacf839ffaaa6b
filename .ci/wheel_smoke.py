"""Run by .ci/run with the wheel venv's python, from a temp folder: the installed client talks to the
installed gateway, and the web chat page comes from the installed package. Usage:
wheel_smoke.py PORT TOKEN CHECKOUT WS_PORT"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

import trio

import client


async def main(port: int, token: str, where: Path) -> None:
    with trio.fail_after(20):
        async with client.connect("127.0.0.1", port, token, reconnect=False) as alice:
            assert alice.status.name == "CONNECTED", alice.status
            answer = await alice.request(
                "send_message",
                conv={"type": 0, "target": "bob"},
                content={"type": 1, "searchable_content": "hello from the wheel"},
            )
            assert answer.code == 0 and answer.result["seq"] == 1, (answer.code, answer.result)
    print(f"wheel smoke: handshake and send_message ok (client from {where.parent})")


def fetch_page(ws_port: int) -> None:
    """server.ws_demo: the page and its files, from the wheel's package data (gateway/webchat)."""
    for path, marker in (("/", b"<!doctype html>"), ("/app.js", b"./ember.js"), ("/ember.js", b"EmberClient"), ("/style.css", b".messages")):
        with urllib.request.urlopen(f"http://127.0.0.1:{ws_port}{path}", timeout=10) as answer:
            body = answer.read()
            assert answer.status == 200 and marker in body, (path, answer.status, body[:80])
            assert "connect-src 'self'" in answer.headers["content-security-policy"], path
    print("wheel smoke: the web chat page and its bundle are served from the installed package")


where = Path(client.__file__).resolve()
checkout = Path(sys.argv[3]).resolve()
assert checkout not in where.parents, f"client imported from the checkout: {where}"
trio.run(main, int(sys.argv[1]), sys.argv[2], where)
fetch_page(int(sys.argv[4]))
