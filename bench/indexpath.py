"""What the search index adds to the whole send path, in one command: ``python -m bench search --send-path``.

Issue 26 asks that indexing add at most 15 % to the send path's CPU per message. ``bench search`` measures the
writer alone (the store driven without sockets), where the index is most of what changes; this measures what a
deployment pays: gateway CPU per delivered message at ``bench pairs --spawn --text zh`` (Chinese text, search's
costliest case: about one index token per character), once with the text in ``searchable_content`` (indexed) and
once with the very same text in the content's ``content`` field (``--unindexed``: stored and delivered alike, no
index row, so no tokens, no log row, nothing for the merge to move into the index). The two run interleaved,
``--runs`` times each (a fresh gateway every run), at two loads: ``--rate 2000`` (light load, issue 27's) and
``--window 10`` (closed loop, as busy as the gateway gets). One JSON line: per load, both medians, their ratio,
each pair's ratio, and whether every acked message was delivered; with ``--postgres`` also the same with the
database server's CPU added (``ratio_with_db``: GIN's inserts are done there)::

    python -m bench search --send-path --runs 3 [--postgres]

What stays the same in both arms, so the ratio leaves it out: the second inbox index (``inbox_by_message``, kept
on every inbox row: ``python -m bench.searchcost`` measures it on the writer) and the merge's statement itself
(it finds no rows without the index). ``content`` is 11 bytes shorter a key than ``searchable_content``.
Loopback only; every child ends with the command.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Sequence
from typing import Any, Final

from bench.light import last_json

#: Issue 26: indexing adds at most this much to the send path's CPU per message.
TARGET_RATIO: Final = 1.15
#: The loads, as ``bench pairs`` arguments: light (issue 27's rate) and closed loop.
LOADS: Final = {"rate_2000": ["--rate", "2000"], "window_10": ["--window", "10"]}


def _pairs(args: argparse.Namespace, load: list[str], indexed: bool) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench", "pairs", "--spawn", "--pairs", str(args.pairs), "--text", "zh",
               "--duration", str(args.duration), "--warmup", str(args.warmup), "--quiet", *load]  # fmt: skip
    if args.postgres:
        command.append("--postgres")
    if not indexed:
        command.append("--unindexed")
    timeout = args.duration + args.warmup + 180
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode not in (0, 1):  # 1: an undelivered message; the line still counts (and is reported)
        raise SystemExit(f"bench search --send-path: {' '.join(command)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return last_json(done.stdout)


def summarize(indexed: Sequence[dict[str, Any]], unindexed: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One load's figures: medians of gateway CPU per message with and without the index, their ratio."""
    with_us = [float(r["server_cpu_us_per_msg"]) for r in indexed]
    without_us = [float(r["server_cpu_us_per_msg"]) for r in unindexed]
    without_median = statistics.median(without_us)
    figures = {
        "indexed_cpu_us_per_msg": round(statistics.median(with_us), 1),
        "unindexed_cpu_us_per_msg": round(without_median, 1),
        "ratio": round(statistics.median(with_us) / without_median, 3) if without_median else None,
        "pair_ratios": [round(w / o, 3) if o else None for w, o in zip(with_us, without_us, strict=True)],
        "p99_ms": [r["latency"]["p99_ms"] for r in indexed],
        "acked": sum(int(r["acked"]) for r in (*indexed, *unindexed)),
        "undelivered": sum(int(r.get("undelivered", 0)) for r in (*indexed, *unindexed)),
    }
    if all(r.get("db_cpu_us_per_msg") is not None for r in (*indexed, *unindexed)):  # a private PostgreSQL server
        # GIN's inserts happen in the database server: the index's cost there is the server's CPU.
        with_db = [float(r["server_cpu_us_per_msg"]) + float(r["db_cpu_us_per_msg"]) for r in indexed]
        without_db = [float(r["server_cpu_us_per_msg"]) + float(r["db_cpu_us_per_msg"]) for r in unindexed]
        figures["indexed_with_db_cpu_us_per_msg"] = round(statistics.median(with_db), 1)
        figures["unindexed_with_db_cpu_us_per_msg"] = round(statistics.median(without_db), 1)
        figures["ratio_with_db"] = round(statistics.median(with_db) / statistics.median(without_db), 3)
    return figures


def _met(load: dict[str, Any]) -> bool:
    """Issue 26's bound, on the gateway's CPU and, on a private PostgreSQL server, on the sum with the server's."""
    ratios = [load["ratio"], *([load["ratio_with_db"]] if "ratio_with_db" in load else [])]
    return all(ratio is not None and ratio <= TARGET_RATIO for ratio in ratios)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench search --send-path", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="interleaved indexed/unindexed pairs per load (default 3)")
    parser.add_argument("--pairs", type=int, default=50, help="sender/receiver pairs (default 50)")
    parser.add_argument("--duration", type=float, default=5, help="measured seconds of each run (default 5)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of load before measuring (default 2)")
    parser.add_argument("--load", choices=sorted(LOADS), action="append", help="only this load (repeatable)")
    parser.add_argument("--postgres", action="store_true", help="gateways on a private PostgreSQL server")
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 20:
        parser.error("--runs is 1 to 20")
    loads = {}
    for name in args.load or list(LOADS):
        indexed, unindexed = [], []
        for _ in range(args.runs):
            indexed.append(_pairs(args, LOADS[name], indexed=True))
            unindexed.append(_pairs(args, LOADS[name], indexed=False))
        loads[name] = summarize(indexed, unindexed)
    line = {
        "scenario": "search-send-path",
        "backend": "postgresql" if args.postgres else "sqlite",
        "runs": args.runs,
        "text": "zh",
        "loads": loads,
        "target_ratio": TARGET_RATIO,
        "met": {name: _met(load) for name, load in loads.items()},
    }
    print(json.dumps(line), flush=True)
    return 0 if all(load["undelivered"] == 0 for load in loads.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
