"""``python -m bench.looppause``: the longest pause of the gateway's trio loop while a group message fans out.

One process: a gateway (``gateway.server.serve``, real sockets and SQLite in a temporary folder), a group of
``--members`` users made in bulk through storage, ``--online`` of them connected (raw protocol clients in the
same trio run, one connection each), and a trio ``Instrument`` that times every task step. A step is a stretch
of code that runs without yielding: while one runs, no other connection is served, so the longest step is
the longest pause any other traffic sees. The owner sends ``--sends`` messages, one at a time, each waited
for until every online member has it; the report names the longest step overall and the longest step of
the fan-out (the writer's commit callback and the ``FanOut`` task). ``--no-chunks`` seals a delivery in one
go, as before chunked fan-out, for comparison. The clients share the loop, but each of their steps handles
one read of one socket: small next to a fan-out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
import trio.lowlevel

from gateway.clock import Clock
from gateway.config import Config
from gateway.domain import messaging
from gateway.server import serve
from protocol import events
from protocol.connection import ClientConnection
from protocol.token import parse_token
from storage import groups as db


class StepTimer(trio.abc.Instrument):
    """Each task step's wall time and the trio thread's CPU time in it.

    Wall time includes waiting for the interpreter lock while the storage writer thread holds it
    (it builds a 2,000-row send in Python): ``sys.getswitchinterval()`` (5 ms) bounds such a wait.
    CPU time is the step's own work.
    """

    def __init__(self) -> None:
        self.started: dict[Any, tuple[int, int]] = {}
        self.longest_ns = 0
        self.longest_task = ""
        self.longest_cpu_ns = 0
        self.longest_cpu_task = ""
        self.fanout_longest_cpu_ns = 0
        self.active = False

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.started[task] = (time.perf_counter_ns(), time.thread_time_ns())

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        start = self.started.pop(task, None)
        if start is None or not self.active:
            return
        took = time.perf_counter_ns() - start[0]
        cpu = time.thread_time_ns() - start[1]
        if took > self.longest_ns:
            self.longest_ns, self.longest_task = took, task.name
        if cpu > self.longest_cpu_ns:
            self.longest_cpu_ns, self.longest_cpu_task = cpu, task.name
        if "run_sync_soon" in task.name or "FanOut" in task.name:
            self.fanout_longest_cpu_ns = max(self.fanout_longest_cpu_ns, cpu)


async def _client(host: str, port: int, token: str, clock: Clock) -> tuple[trio.SocketStream, ClientConnection]:
    stream = await trio.open_tcp_stream(host, port)
    proto = ClientConnection.from_token(parse_token(token), client_nonce=os.urandom(32))
    while True:
        got = proto.receive_data(await stream.receive_some(65536))
        if any(isinstance(e, events.Hello) for e in got):
            break
    await stream.send_all(proto.connect(clock.now_ms()))
    while True:
        got = proto.receive_data(await stream.receive_some(65536))
        if any(isinstance(e, events.ConnAck) for e in got):
            return stream, proto


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.no_chunks:
        messaging.FANOUT_CHUNK = 1 << 40
    timer = StepTimer()
    trio.lowlevel.add_instrument(timer)
    clock = Clock()
    with tempfile.TemporaryDirectory(prefix="ember-looppause-") as data:
        config = Config.default(Path(data), server={"port": 0}, admin={"port": 0},
                                group={"max_members": max(2000, args.members)})  # fmt: skip
        async with trio.open_nursery() as nursery:
            running = await nursery.start(serve, config)
            services = running.services
            users = [f"u{i:05d}" for i in range(args.members)]
            await services.store.run(db.bulk_create_for_tests_and_bench, "big", users[0], users, clock.now_ms())
            online = users[1 : 1 + args.online]
            got: dict[int, int] = {}
            done = trio.Event()

            async def member(user: str) -> None:
                code, token = await services.sessions.get_token(user, f"{user}-c", 2)
                stream, proto = await _client(running.host, running.port, token, clock)
                while True:
                    data_in = await stream.receive_some(65536)
                    if not data_in:
                        return
                    for event in proto.receive_data(data_in):
                        if isinstance(event, events.Notify) and event.topic == "msg":
                            n = int(event.data["message"]["content"]["searchable_content"])
                            got[n] = got.get(n, 0) + 1
                            if got[n] == len(online):
                                done.set()

            limiter = trio.CapacityLimiter(50)

            async def connect(user: str) -> None:
                async with limiter:
                    nursery.start_soon(member, user)
                    await trio.sleep(0.002)

            async with trio.open_nursery() as opening:
                for user in online:
                    opening.start_soon(connect, user)
            while sum(len(services.delivery.node.connections(u)) for u in online) < len(online):  # noqa: ASYNC110
                await trio.sleep(0.05)
            await trio.sleep(0.5)
            code, sender_token = await services.sessions.get_token(users[0], "sender", 3)
            stream, proto = await _client(running.host, running.port, sender_token, clock)
            timer.active = True
            started = time.perf_counter()
            for n in range(args.sends):
                done = trio.Event()
                _, frame = proto.request(
                    "send_message",
                    {"conv": {"type": 1, "target": "big"}, "content": {"type": 1, "searchable_content": str(n)}},
                )
                await stream.send_all(frame)
                with trio.fail_after(30):
                    await done.wait()
            elapsed = time.perf_counter() - started
            timer.active = False
            nursery.cancel_scope.cancel()
    return {
        "members": args.members,
        "online": args.online,
        "sends": args.sends,
        "chunked": not args.no_chunks,
        "fanout_chunk": messaging.FANOUT_CHUNK if not args.no_chunks else None,
        "longest_step_ms": round(timer.longest_ns / 1e6, 2),
        "longest_step_task": timer.longest_task,
        "longest_step_cpu_ms": round(timer.longest_cpu_ns / 1e6, 2),
        "longest_step_cpu_task": timer.longest_cpu_task,
        "longest_fanout_step_cpu_ms": round(timer.fanout_longest_cpu_ns / 1e6, 2),
        "seconds": round(elapsed, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.looppause", description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=2000)
    p.add_argument("--online", type=int, default=1000)
    p.add_argument("--sends", type=int, default=5)
    p.add_argument("--no-chunks", action="store_true", help="seal each delivery in one go (before chunking)")
    args = p.parse_args(argv)
    print(json.dumps(trio.run(run, args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
