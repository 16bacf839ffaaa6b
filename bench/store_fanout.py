"""Storage CPU of one big fan-out send, group vs channel: ``python -m bench.store_fanout [--members N]``.

Opens a store on a temporary folder, creates a group and a channel of N users each (in bulk, through
storage), then runs awaited sends from the owner into each, alternating rounds, and prints the process
CPU per send (the writer thread's storage work: the checks, one message row, N+1 inbox rows, the log).
No gateway and no sockets: it compares the two send runs of ``storage.sends.send_message_group``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import trio

import storage
from gateway.domain.channels import channel_route
from gateway.domain.messaging import group_send_check
from storage import channels, groups
from storage.messages import Conversation, Outgoing
from storage.sends import SendPolicy


async def run(members: int, sends: int, rounds: int) -> dict[int, list[float]]:
    users = [f"u{i:05d}" for i in range(members)]
    policy = SendPolicy(group_check=group_send_check, channel_route=channel_route)
    found: dict[int, list[float]] = {1: [], 3: []}
    with tempfile.TemporaryDirectory() as folder:
        async with storage.open_store(Path(folder) / "ember.db") as store:
            await store.run(groups.bulk_create_for_tests_and_bench, "g", "boss", users, 1)
            await store.run(channels.bulk_create_for_tests_and_bench, "c", "boss", users, 1)
            message_id = 10**15
            for _ in range(rounds):
                for kind, target in ((1, "g"), (3, "c")):
                    start = time.process_time()
                    for _ in range(sends):
                        message_id += 1
                        msg = Outgoing(message_id, 1, Conversation(kind, target), "boss", {"type": 1, "persist_flag": 3}, 3)
                        result = await store.send_private(msg, policy)
                        if result.code != 0 or len(result.seqs) != members + 1:
                            raise SystemExit(f"send to {target} failed: {result.code}")
                    found[kind].append((time.process_time() - start) / sends * 1000)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--sends", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    found = trio.run(run, args.members, args.sends, args.rounds)
    for kind, name in ((1, "group"), (3, "channel")):
        figures = ", ".join(f"{ms:.2f}" for ms in found[kind])
        print(f"{name:8} ms CPU per send to {args.members}: {figures}")


if __name__ == "__main__":
    main()
