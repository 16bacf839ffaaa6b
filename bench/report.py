"""The end of a run: the human table, the JSON record and the latency plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.hist import Latency

PLOT_HINT = "--plot needs matplotlib: pip install 'ember-im[bench]' (or pip install matplotlib)"


def check_plot_available() -> None:
    """Raise ImportError with an install hint before a run, not after it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(PLOT_HINT) from None


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:,.1f}" if abs(value) >= 100 else f"{value:,.3g}" if value else "0"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return f"{text} {unit}".rstrip()


def table(result: dict[str, Any]) -> str:
    """A two-column summary for people; the JSON line after it is for tools."""
    scenario = result["scenario"]
    unit = {"connect": "handshake", "idle": "pong", "pairs": "msg", "group": "delivery", "chatroom": "delivery"}[scenario]
    rows: list[tuple[str, str]] = [
        ("scenario", f"{scenario}  " + " ".join(f"{k}={v}" for k, v in result["params"].items())),
        ("measured window", _fmt(result["duration_s"], "s")),
        ("sent / acked / delivered", f"{result['sent']:,} / {result['acked']:,} / {result['delivered']:,}"),
        (
            "errors",
            _fmt(result["errors"]) + (f"  {result['error_kinds']}" if result.get("error_kinds") else ""),
        ),
        (f"{'deliverie' if unit == 'delivery' else unit}s per second", _fmt(result["delivered_per_s"])),
        ("server CPU", _fmt(result["server_cpu_s"], "s")),
        ("  of which trio thread", _fmt(result.get("server_cpu_main_thread_s"), "s")),
        (f"server CPU per {unit}", _fmt(result["server_cpu_us_per_msg"], "µs")),
        ("server RSS", _fmt(result["server_rss_kib"], "KiB")),
    ]
    if scenario == "idle":
        rows.append(("connections held", _fmt(result.get("connections"))))
        rows.append(("RSS per connection", _fmt(result["rss_kib_per_conn"], "KiB")))
        rows.append(("server CPU per connection-hour", _fmt(result.get("server_cpu_ms_per_conn_hour"), "ms")))
    if scenario in ("pairs", "group"):
        rows.append(("undelivered (acked, never received)", _fmt(result.get("undelivered"))))
    if scenario == "group":
        rows.append(("deliveries duplicated", _fmt(result.get("duplicated"))))
        rows.append(("deliveries per server CPU-second", _fmt(result.get("deliveries_per_server_cpu_s"))))
    if scenario == "chatroom":
        rows.append(("deliveries per server CPU-second", _fmt(result.get("deliveries_per_server_cpu_s"))))
        rows.append(("undelivered (owed to members)", _fmt(result.get("undelivered"))))
        rows.append(("deliveries duplicated", _fmt(result.get("duplicated"))))
        rows.append(("room counters (admin info)", str(result.get("room"))))
    lat = result["latency"]
    label = {
        "connect": "connect→CONNACK", "idle": "ping→pong", "pairs": "send→receive", "group": "send→each member",
        "chatroom": "send→member",
    }[scenario]  # fmt: skip
    rows.append(
        (
            f"latency {label}",
            f"p50 {_fmt(lat['p50_ms'])}  p99 {_fmt(lat['p99_ms'])}  "
            f"p99.9 {_fmt(lat['p999_ms'])}  max {_fmt(lat['max_ms'])} ms",
        )
    )
    if "latency_ack" in result:
        ack = result["latency_ack"]
        rows.append(
            (
                "latency send→ack",
                f"p50 {_fmt(ack['p50_ms'])}  p99 {_fmt(ack['p99_ms'])}  "
                f"p99.9 {_fmt(ack['p999_ms'])}  max {_fmt(ack['max_ms'])} ms",
            )
        )
    rows.append(("client CPU (all workers)", _fmt(result.get("client_cpu_s"), "s")))
    rows.append(("other processes' CPU", _fmt(result.get("other_cpu_s"), "s")))
    setup = result.get("setup") or {}
    if setup.get("users"):
        rows.append(
            (
                "setup (admin API)",
                f"{setup['users']:,} users+tokens in {setup['seconds']:.1f} s ({setup['per_s']:,.0f}/s)",
            )
        )
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def json_line(result: dict[str, Any]) -> str:
    return json.dumps(result, separators=(",", ":"), ensure_ascii=False)


def plot(path: Path, curves: dict[str, Latency], title: str) -> None:
    """Latency by percentile on the usual HDR axis (x = 1/(1-p), log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ticks = [p for p in (50.0, 90.0, 99.0, 99.9, 99.99, 99.999)]
    for name, latency in curves.items():
        points = [(p, ms) for p, ms in latency.percentiles() if p < 100.0]
        if not points:
            continue
        ax.plot([1 / (1 - p / 100) for p, _ in points], [ms for _, ms in points], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xticks([1 / (1 - p / 100) for p in ticks])
    ax.set_xticklabels([f"{p:g}%" for p in ticks])
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (ms)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
