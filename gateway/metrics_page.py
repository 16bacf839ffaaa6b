"""The ``/metrics`` page (Prometheus text exposition format 0.0.4): ``gateway.metrics`` counts, this renders.

Apart from the counters (``services.metrics``), everything on the page is read off state the gateway
already keeps, when scraped (the list is in ``gateway.metrics``' docstring).
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.services import Services
    from storage.commit_stats import Histogram

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: object) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


def _num(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


class _Page:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, doc: str, samples: Iterable[tuple[dict[str, object], float]]) -> None:
        self.lines.append(f"# HELP {name} {doc}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.lines.append(f"{name}{_labels(**labels)} {_num(value)}")

    def one(self, name: str, kind: str, doc: str, value: float) -> None:
        self.family(name, kind, doc, [({}, value)])

    def histogram(self, name: str, doc: str, hist: Histogram) -> None:
        self.lines.append(f"# HELP {name} {doc}")
        self.lines.append(f"# TYPE {name} histogram")
        cumulative = hist.cumulative()
        for bound, count in zip(hist.bounds, cumulative, strict=False):
            self.lines.append(f'{name}_bucket{{le="{_num(float(bound))}"}} {count}')
        self.lines.append(f'{name}_bucket{{le="+Inf"}} {cumulative[-1]}')
        self.lines.append(f"{name}_sum {_num(hist.sum)}")
        self.lines.append(f"{name}_count {cumulative[-1]}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_SIZE
    except OSError:  # not Linux: the peak instead of the current size
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def render(services: Services) -> str:
    """The whole ``/metrics`` page."""
    m = services.metrics
    page = _Page()
    live = services.delivery.census()  # this node's live connections
    by_platform = live.by_platform
    frames_in, frames_out = m.frames_in_closed + live.frames_in, m.frames_out_closed + live.frames_out
    page.family(
        "ember_connections", "gauge", "Live client connections (past CONNACK) by platform.",
        [({"platform": p}, n) for p, n in sorted(by_platform.items())],
    )  # fmt: skip
    page.family(
        "ember_handshakes_total", "counter", "Handshakes answered, by CONNACK status code.",
        [({"status": s}, n) for s, n in sorted(m.handshakes.items())],
    )  # fmt: skip
    page.one("ember_handshake_timeouts_total", "counter", "Connections dropped as their handshake timed out.", m.handshake_timeouts)
    page.one(
        "ember_websocket_connections", "gauge",
        "Live WebSocket connections (upgraded; in their handshake or past it), all platforms.", m.ws_open,
    )  # fmt: skip
    page.family(
        "ember_websocket_upgrades_total", "counter", "WebSocket upgrade requests, by how they ended.",
        [({"result": r}, n) for r, n in sorted(m.ws_upgrades.items())],
    )  # fmt: skip
    page.one("ember_frames_in_total", "counter", "Sealed frames received from clients.", frames_in)
    page.one("ember_frames_out_total", "counter", "Sealed frames sent to clients.", frames_out)
    page.family(
        "ember_requests_total", "counter", "Requests answered, by method and result code.",
        [({"method": meth, "code": code}, n) for (meth, code), n in sorted(m.requests.items())],
    )  # fmt: skip
    page.one("ember_messages_stored_total", "counter", "Messages committed to storage.", m.messages_stored)
    page.one(
        "ember_messages_delivered_total", "counter", "Message pushes to live connections.", m.messages_delivered
    )
    chatrooms = getattr(services, "chatrooms", None)
    if chatrooms is not None:  # counted by gateway/domain/chatrooms.py itself; read here
        stats = chatrooms.stats
        page.family(
            "ember_chatroom_messages_total", "counter",
            "Chatroom messages: sent into a room, delivered to members, dropped for slow members.",
            [({"event": e}, getattr(stats, e)) for e in ("sent", "delivered", "dropped")],
        )  # fmt: skip
    hooks = services.webhooks
    page.one("ember_messages_pushed_total", "counter", "Push requests POSTed to push.url.", hooks.pushed)
    writer = services.store.writer
    page.histogram("ember_commit_batch_size", "Operations per committed transaction.", writer.stats.batch_size)
    page.histogram("ember_commit_seconds", "Time from BEGIN to the end of COMMIT.", writer.stats.latency)
    page.one("ember_writer_queue_depth", "gauge", "Storage operations waiting for the writer thread.", writer.queued)
    page.one(
        "ember_storage_disk_full", "gauge",
        "1 while storage writes fail because the disk is full (answered 250), else 0.",
        int(writer.disk_full),
    )  # fmt: skip
    page.one(
        "ember_commits_inline_total", "counter", "Transactions committed on the trio thread (small batches).",
        writer.inline_batches,
    )
    page.one(
        "ember_commit_inline_max_cpu_seconds", "gauge",
        "The most trio-thread CPU an inline transaction took: the longest loop pause it caused.",
        writer.inline_longest_cpu_s,
    )  # fmt: skip
    budget = services.outbox_budget
    page.one(
        "ember_outbox_queued_bytes", "gauge",
        "Bytes waiting in connections' outboxes for their sockets (queued or being written), all connections.",
        budget.total_bytes,
    )  # fmt: skip
    page.one(
        "ember_outbox_budget_bytes", "gauge", "server.outbox_budget_bytes: the bound on that total (0: none).",
        budget.limit_bytes,
    )  # fmt: skip
    page.family(
        "ember_outbox_cuts_total", "counter",
        "Connections closed because their outbox was full: reason connection_bound (server.outbox_max_bytes) "
        "or budget (server.outbox_budget_bytes, largest backlogs first).",
        [({"reason": r}, n) for r, n in budget.cuts.items()],
    )  # fmt: skip
    page.one(
        "ember_fanout_queued_owners", "gauge",
        "Owners of group and channel deliveries waiting to be pushed (group.max_fanout_backlog bounds it).",
        services.messages.fanout.queued_owners,
    )  # fmt: skip
    queues = hooks.queues
    for name, kind, doc, attr in (
        ("ember_webhook_queue_depth", "gauge", "Events waiting per webhook.", "depth"),
        ("ember_webhook_delivered_total", "counter", "Events delivered (2xx).", "delivered"),
        ("ember_webhook_retries_total", "counter", "Attempts after the first.", "retries"),
        ("ember_webhook_dropped_total", "counter", "Oldest events dropped from a full queue.", "dropped"),
        ("ember_webhook_dead_letters_total", "counter", "Events given up after every attempt.", "dead_letters"),
    ):
        page.family(name, kind, doc, [({"hook": q.name}, getattr(q, attr)) for q in queues])
    times = os.times()
    page.one("process_cpu_seconds_total", "counter", "User and system CPU time of the process.", times.user + times.system)
    page.one("process_resident_memory_bytes", "gauge", "Resident set size.", _rss_bytes())
    figures = services.delivery.cluster_figures
    if figures is not None:  # a cluster node (server.cluster): this node's share of the cluster's work
        for name, (kind, doc, value) in figures().items():
            page.one(name, kind, doc, value)
    return page.text()
