"""The storage half of a light-load send on the trio thread, in a busy loop: ``python -m bench.inline_send``.

A real ``Store`` (SQLite, WAL, ``synchronous = NORMAL``) and one trio task that submits private sends one at a
time, each inside ``Writer.gathering()`` as the read poller's pass does, so that each commits as an inline batch
of one on the trio thread (what most sends do at ``bench pairs --rate 2000``). Every 64 sends it lets the writer
thread report what it took (the batches that merge the inbox log). Prints one JSON line: the trio thread's CPU
per send (``thread_time``), the share committed inline, the median of ``--rounds``. No protocol, no sockets, no
wake-ups: it measures the code of the writer's inline path and of the send group, warm; run it alternately in
two worktrees to compare them (``bench.writer_rate`` is the same at an open-loop rate).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from storage import UserRecord, open_store
from storage.messages import Conversation, Outgoing
from storage.sends import SendPolicy

FIRST_ID = 7_000_000_000_000_000
T0 = 1_767_225_600_000
PAIRS = 50


async def _round(folder: Path, sends: int, warmup: int) -> dict[str, float]:
    async with open_store(folder / "ember.db") as store:
        senders = [f"s{n}" for n in range(PAIRS)]
        receivers = [f"r{n}" for n in range(PAIRS)]
        for user in senders + receivers:
            await store.create_user(UserRecord(user))
        policy = SendPolicy()
        reported = [0]
        wanted = [0]  # wake ``caught_up`` once this many sends were reported
        caught_up = trio.Event()

        def callback(result: Any, error: BaseException | None) -> None:
            assert error is None and result.code == 0
            reported[0] += 1
            if reported[0] >= wanted[0]:
                caught_up.set()

        async def catch_up(count: int) -> None:
            """Until ``count`` sends were reported (a merge's batch runs on the writer thread)."""
            nonlocal caught_up
            if reported[0] < count:
                wanted[0], caught_up = count, trio.Event()
                await caught_up.wait()

        writer = store.writer

        async def send(first: int, count: int) -> None:
            for n in range(first, first + count):
                pair = n % PAIRS
                text = f"{n} {n * 7} "  # as bench pairs' texts: a few words, padded to 100 bytes
                content = {"type": 1, "searchable_content": text + "x" * (100 - len(text))}
                msg = Outgoing(FIRST_ID + n, T0 + n, Conversation(0, receivers[pair]), senders[pair], content, 3)
                with writer.gathering():
                    store.send_private_nowait(msg, policy, callback)
                if n % 64 == 0:
                    await catch_up(n + 1)

        await send(0, warmup)
        inline_before = writer.inline_ops
        started = time.thread_time()
        await send(warmup, sends)
        cpu = time.thread_time() - started
        await catch_up(warmup + sends)
        return {"us_per_send": cpu / sends * 1e6, "inline_share": (writer.inline_ops - inline_before) / sends}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rounds = []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="ember-inline-send-") as folder:
            rounds.append(trio.run(_round, Path(folder), args.sends, args.warmup))
    print(json.dumps({
        "scenario": "inline_send",
        "sends": args.sends,
        "rounds": [round(r["us_per_send"], 2) for r in rounds],
        "trio_thread_us_per_send": round(statistics.median(r["us_per_send"] for r in rounds), 2),
        "inline_share": round(min(r["inline_share"] for r in rounds), 3),
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
