"""Run by .ci/run with the wheel venv's python, from a temp folder: the installed client talks to the
installed gateway. Usage: wheel_smoke.py PORT TOKEN CHECKOUT"""

from __future__ import annotations

import sys
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


where = Path(client.__file__).resolve()
checkout = Path(sys.argv[3]).resolve()
assert checkout not in where.parents, f"client imported from the checkout: {where}"
trio.run(main, int(sys.argv[1]), sys.argv[2], where)
