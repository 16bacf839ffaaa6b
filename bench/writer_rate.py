"""The writer's hand-over at light load, without sockets: ``python -m bench.writer_rate [--rate 2000]``.

A real ``Store`` (SQLite, WAL, ``synchronous = NORMAL``, the gateway's writer) and one trio task that
submits private sends open loop at ``--rate`` msg/s in total, from ``--pairs`` senders to their receivers,
each one through ``Store.send_private_nowait`` as the gateway's send handler does, one per wake-up of the
task. Prints one JSON line: the process CPU per send (all threads: the loop's inline batches, the writer
thread's, the checkpointer's), the trio thread's own, and how many sends committed inline. This is the
storage half of ``bench pairs --rate``: which path each send's commit takes, and what that costs, with
none of the protocol or the sockets; run it alternately on two worktrees to compare them.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from protocol.codes import ConversationType
from storage import UserRecord, open_store
from storage.messages import Conversation, Outgoing
from storage.sends import SendPolicy

FIRST_ID = 7_000_000_000_000_000


async def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    async with open_store(folder / "ember.db") as store:
        senders = [f"s{n}" for n in range(args.pairs)]
        receivers = [f"r{n}" for n in range(args.pairs)]
        for user in senders + receivers:
            await store.create_user(UserRecord(user))
        policy = SendPolicy()
        content = {"type": 1, "text": "x" * args.size}
        done = [0, 0]  # acked, failed
        all_done = trio.Event()

        def callback(result: Any, error: BaseException | None) -> None:
            done[0 if error is None and result.code == 0 else 1] += 1
            if finishing and done[0] + done[1] >= sent:
                all_done.set()

        interval = 1 / args.rate
        sent = 0

        async def load(seconds: float) -> None:
            nonlocal sent
            start = time.monotonic()
            while (now := time.monotonic()) < start + seconds:
                due = int((now - start) / interval) + 1
                while sent < due + base:
                    pair = sent % args.pairs
                    conv = Conversation(int(ConversationType.PRIVATE), receivers[pair])
                    msg = Outgoing(FIRST_ID + sent, 1_767_225_600_000 + sent, conv, senders[pair], content, 3)
                    store.send_private_nowait(msg, policy, callback)
                    sent += 1
                await trio.sleep(interval)

        base = 0
        finishing = False
        await load(args.warmup)
        base = sent
        writer = store.writer
        inline_before, committed_before = writer.inline_ops, writer.committed_ops
        acked_before = done[0]
        cpu, main_cpu = time.process_time(), time.thread_time()
        await load(args.duration)
        finishing = True
        if done[0] + done[1] < sent:
            with trio.fail_after(30):
                await all_done.wait()
        cpu, main_cpu = time.process_time() - cpu, time.thread_time() - main_cpu
        acked = done[0] - acked_before
        return {
            "scenario": "writer_rate",
            "rate": args.rate,
            "sends": acked,
            "failed": done[1],
            "cpu_us_per_send": round(cpu / acked * 1e6, 1),
            "trio_thread_cpu_us_per_send": round(main_cpu / acked * 1e6, 1),
            "inline_share": round((writer.inline_ops - inline_before) / (writer.committed_ops - committed_before), 3),
            "load_avg_1m": os.getloadavg()[0],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--size", type=int, default=100, help="text bytes per message (default 100)")
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--warmup", type=float, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ember-writer-rate-") as folder:
        print(json.dumps(trio.run(run, args, Path(folder))))


if __name__ == "__main__":
    main()
