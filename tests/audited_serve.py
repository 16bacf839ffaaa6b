"""``ember`` under a socket audit hook: every outbound ``socket.connect``/``sendto``/``sendmsg`` of the gateway
process is appended to the file named by ``EMBER_TEST_CONNECT_LOG`` (tests/test_process.py).

Audit hooks see every connect attempt the process makes, whichever library makes it (httpx, a resolver,
anything imported), before the system call.
"""

from __future__ import annotations

import os
import sys

_LOG = os.environ["EMBER_TEST_CONNECT_LOG"]
_EVENTS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg"})


def _hook(event: str, args: tuple) -> None:
    if event in _EVENTS:
        with open(_LOG, "a", encoding="utf-8") as f:
            f.write(f"{event} {args[1]!r}\n")


sys.addaudithook(_hook)

from gateway.cli import main  # noqa: E402 - after the hook, so that nothing connects unseen

sys.exit(main(sys.argv[1:]))
