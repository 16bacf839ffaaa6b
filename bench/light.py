"""Light load against its floor, in one command: ``python -m bench light --spawn``.

Issue 27 states the light-load target against a floor measured in the same run, because this machine's speed
drifts by 2x between days and no absolute figure holds: gateway CPU per delivered message at
``bench pairs --rate 2000 --pairs 50`` must stay within 1.3x of ``bench.floor commit`` (a bare trio server
that decrypts, decodes, commits one SQLite transaction per pass and seals an ack and a push) at the same rate
and pairs. This command runs the two interleaved, floor then Ember, ``--runs`` times (each one a fresh
process tree), and prints one JSON line with both medians, their ratio, the ratio of each pair (a drift in
the machine's speed moves both halves of a pair alike), Ember's worst p99 and whether every acked message
was delivered::

    python -m bench light --spawn --runs 3

Only ``--spawn`` is offered: a floor server is always a child of this command, and a target gateway shared
with other traffic would not be comparable with it. Loopback only; every child ends with the command.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

#: The target of issue 27: Ember's CPU per message over the floor's, median of the runs.
TARGET_RATIO = 1.3
#: ... with this p99 send→receive latency (ms) in every Ember run.
TARGET_P99_MS = 5.0


def last_json(out: str) -> dict[str, Any]:
    """The last JSON line of a child bench's output (its record)."""
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    raise SystemExit(f"bench: no JSON line in a child's output:\n{out[-2000:]}")


def _run(command: list[str], timeout: float) -> dict[str, Any]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode not in (0, 1):  # 1: bench pairs found an undelivered message; its line still counts
        raise SystemExit(f"bench light: {' '.join(command)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return last_json(done.stdout)


def _floor(args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.floor", "commit", "--rate", str(args.rate), "--pairs", str(args.pairs),
               "--duration", str(args.duration), "--warmup", str(args.warmup)]  # fmt: skip
    return _run(command, timeout=args.duration + args.warmup + 60)


def _ember(args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench", "pairs", "--spawn", "--rate", str(args.rate), "--pairs",
               str(args.pairs), "--duration", str(args.duration), "--warmup", str(args.warmup)]  # fmt: skip
    return _run(command, timeout=args.duration + args.warmup + 120)


def summarize(floors: Sequence[dict[str, Any]], embers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The JSON line: medians, ratios (of medians and pair by pair), Ember's worst p99, losses, verdict."""
    floor_us = [float(f["server_cpu_us_per_msg"]) for f in floors]
    ember_us = [float(e["server_cpu_us_per_msg"]) for e in embers]
    # A floor of 0 µs (a run too short for the kernel's 10 ms CPU ticks) has no ratio.
    pair_ratios = [round(e / f, 3) if f else None for f, e in zip(floor_us, ember_us, strict=True)]
    p99s = [e["latency"]["p99_ms"] for e in embers]
    worst_p99 = max((p for p in p99s if p is not None), default=None)
    undelivered = sum(int(e.get("undelivered", 0)) for e in embers)
    acked = sum(int(e["acked"]) for e in embers)
    floor_median = statistics.median(floor_us)
    ratio = round(statistics.median(ember_us) / floor_median, 3) if floor_median else None
    return {
        "scenario": "light",
        "runs": len(embers),
        "floor_cpu_us_per_msg": round(statistics.median(floor_us), 1),
        "ember_cpu_us_per_msg": round(statistics.median(ember_us), 1),
        "ratio": ratio,
        "pair_ratios": pair_ratios,
        "ember_p99_ms_worst": worst_p99,
        "acked": acked,
        "undelivered": undelivered,
        "target_ratio": TARGET_RATIO,
        "target_p99_ms": TARGET_P99_MS,
        "met": ratio is not None
        and ratio <= TARGET_RATIO
        and worst_p99 is not None and worst_p99 <= TARGET_P99_MS and undelivered == 0,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench light", description=__doc__.split("\n\n")[0])
    parser.add_argument("--spawn", action="store_true", required=True,
                        help="start the floor server and a gateway for each run (required: nothing else is comparable)")  # fmt: skip
    parser.add_argument("--runs", type=int, default=3, help="interleaved floor/Ember pairs (default 3, 1 to 20)")
    parser.add_argument("--rate", type=float, default=2000, help="messages per second in all (default 2000)")
    parser.add_argument("--pairs", type=int, default=50, help="sender/receiver pairs (default 50)")
    parser.add_argument("--duration", type=float, default=5, help="measured seconds of each run (default 5)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of load before measuring (default 2)")
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 20:
        parser.error("--runs is 1 to 20")
    floors, embers = [], []
    for _ in range(args.runs):
        floors.append(_floor(args))
        embers.append(_ember(args))
    line = summarize(floors, embers)
    print(json.dumps(line), flush=True)
    return 0 if line["undelivered"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
