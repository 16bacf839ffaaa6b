"""``--pull-flood N``: one abusive client next to the measured load.

It proves (issue 9) that one client looping ``pull(after_seq=0)`` over a full
inbox cannot delay everyone else's acks: reads run on reader connections, a
pull costs what it returns in the rate limit, and a new device's first pull
finds its start by index. Before the measured window the flooder sends ``N``
messages to a second user (each also lands in its own inbox, for its other
devices), so every pull from 0 brings back a full page; during the window it
pulls from 0 as fast as the gateway answers, counting pages, messages and
refusals (250). It runs in the coordinator process, with the reference SDK; the inbox is
filled through the admin API (the flooder's own connection is rate-limited).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import trio

import client
from bench.target import Admin
from protocol.codes import ErrorCode

#: Largest page a pull may ask for (the server's bound).
PAGE = 500
#: Admin sends in flight while filling the inbox.
FILL_CONCURRENCY = 16


@dataclass
class FloodStats:
    pulls: int = 0
    refused: int = 0
    messages: int = 0

    def record(self) -> dict[str, Any]:
        return {"pulls": self.pulls, "refused_250": self.refused, "messages_pulled": self.messages}


class PullFlood:
    def __init__(self, host: str, port: int, token: str, sink_user: str, fill: int, admin: Admin) -> None:
        self._host, self._port, self._token, self._admin = host, port, token, admin
        self._sink, self._fill = sink_user, fill
        self.filled = trio.Event()
        self.stats = FloodStats()
        self._measuring = False
        self._stop = trio.Event()

    def go(self) -> None:
        """The measured window opens: count from now."""
        self.stats = FloodStats()
        self._measuring = True

    def stop(self) -> None:
        self._measuring = False
        self._stop.set()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with client.connect(self._host, self._port, self._token, keepalive_seconds=60) as c:
            task_status.started()
            await self._fill_inbox(c)
            self.filled.set()
            with trio.CancelScope() as scope:

                async def stopper() -> None:
                    await self._stop.wait()
                    scope.cancel()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(stopper)
                    while True:
                        answer = await c.request("pull", after_seq=0, limit=PAGE)
                        if not self._measuring:
                            continue
                        self.stats.pulls += 1
                        if answer.code == ErrorCode.OVER_FREQUENCY:
                            self.stats.refused += 1
                        elif answer.code == ErrorCode.SUCCESS:
                            self.stats.messages += len(answer.result["messages"])

    async def _fill_inbox(self, c: client.Client) -> None:
        # Through the admin API (as the flooder): the flooder's own connection is rate-limited, and
        # filling is not what is measured. Each send lands in the flooder's inbox too (for its other
        # devices), which is what its pulls then read.
        body = {"sender": c.user_id, "conv": {"type": 0, "target": self._sink, "line": 0},
                "content": {"type": 1, "searchable_content": "x" * 100}}  # fmt: skip
        remaining = self._fill

        async def work() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await self._admin.call("/admin/message/send", body)

        async with trio.open_nursery() as nursery:
            for _ in range(FILL_CONCURRENCY):
                nursery.start_soon(work)
