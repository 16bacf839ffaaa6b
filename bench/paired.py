"""Compare checkouts on one machine: ``bench pairs --spawn`` alternated between them, medians printed.

    python -m bench.paired --rounds 4 /work/wt/base /work/main -- --duration 6 --window 10

Each checkout needs its own ``.venv`` with the bench extra; each round runs every checkout once, in
alternating order (ABBA...), so a machine that gets busier or quieter during the sitting moves both sides
alike. This machine is shared: one run's figure says little, the medians of alternating runs a lot more
(bench/RESULTS.md, "Machine and method"). Prints one line per run and a last JSON line with each checkout's
runs and median gateway CPU per message.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def run_once(checkout: Path, bench_args: Sequence[str], python: str | None = None) -> dict[str, Any] | None:
    """One ``bench pairs --spawn`` in ``checkout`` (its own venv unless ``python`` is given: ``-m`` imports
    the checkout's packages from the working directory either way); its JSON record, or None if it failed."""
    interpreter = python or str(checkout / ".venv/bin/python")
    command = [interpreter, "-m", "bench", "pairs", "--spawn", "--quiet", *bench_args]
    done = subprocess.run(command, cwd=checkout, capture_output=True, text=True, timeout=600)
    records = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not records:
        print(f"{checkout}: failed (exit {done.returncode}): {done.stderr[-500:]}", file=sys.stderr)
        return None
    record: dict[str, Any] = json.loads(records[-1])
    return record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.paired", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs per checkout (default 3)")
    parser.add_argument("--python", help="one interpreter for every checkout (default: each one's .venv)")
    parser.add_argument("checkouts", nargs="+", type=Path, help="checkout folders, each with its .venv")
    parser.epilog = "Everything after -- goes to bench pairs as its own options."
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    bench_args = argv[split + 1 :]
    runs: dict[Path, list[float]] = {c: [] for c in args.checkouts}
    for number in range(args.rounds):
        order = args.checkouts if number % 2 == 0 else args.checkouts[::-1]
        for checkout in order:
            record = run_once(checkout, bench_args, args.python)
            if record is None:
                continue
            runs[checkout].append(record["server_cpu_us_per_msg"])
            latency = record.get("latency", {})
            print(
                f"{time.strftime('%H:%M:%S')} {checkout}: {record['server_cpu_us_per_msg']} us/msg,"
                f" acked {record['acked']} delivered {record['delivered']},"
                f" p50 {latency.get('p50_ms')} ms p99 {latency.get('p99_ms')} ms, other_cpu_s {record.get('other_cpu_s')}",
                flush=True,
            )
    summary = {
        str(c): {"runs": values, "median_us_per_msg": statistics.median(values) if values else None}
        for c, values in runs.items()
    }
    print(json.dumps({"bench_args": bench_args, "checkouts": summary}))
    return 0 if all(runs.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
