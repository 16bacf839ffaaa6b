"""Counters for ``/metrics`` (Prometheus text exposition format 0.0.4), written by hand.

Why not prometheus-client: its counters take a lock and look up label children on every ``inc``; here
the hot path does a plain dict or attribute add (tens of nanoseconds) and everything that can be read
off state the gateway already keeps is computed only when scraped:

- connections by platform: this node's live connections (``Delivery.census``);
- frames in and out: each connection's cipher counters (every sealed frame advances one), summed over
  live connections plus the totals of ended ones (added once per connection, at its end);
- writer queue depth, disk full, commit batch sizes and latencies: the storage writer (``storage.commit_stats``,
  observed once per batch, on the writer thread or, for a small batch committed inline, the trio thread);
- outbox bytes waiting, the budget and its cuts: ``Services.outbox_budget`` (gateway/outbox.py), which every
  outbox charges as bytes queue and credits as they leave, and counts each cut in by reason;
- webhook queues: their own counters (``gateway.webhooks``);
- process CPU and RSS: ``os.times`` and ``/proc/self/statm``.

What is counted as it happens: handshakes by status (once per connection), requests by method and result
code (one dict add per answer), messages stored (per committed send), delivered (per connection pushed to).
All of it is this process's: each gateway node serves its own ``/metrics``, and Prometheus sums them.

The page itself is built in ``gateway.metrics_page``: it reads the whole ``Services``, which holds a
``Metrics``, so the counters stay here, in a module that imports nothing of the gateway.
"""

from __future__ import annotations


class Metrics:
    """Counters the gateway adds to as things happen (see the module docstring for the rest)."""

    __slots__ = (
        "frames_in_closed",
        "frames_out_closed",
        "handshake_timeouts",
        "handshakes",
        "messages_delivered",
        "messages_stored",
        "requests",
        "ws_open",
        "ws_upgrades",
    )

    def __init__(self) -> None:
        self.handshakes: dict[int, int] = {}  # CONNACK status -> count
        self.handshake_timeouts = 0
        self.requests: dict[tuple[str, int], int] = {}  # (method, code) -> count
        self.messages_stored = 0
        self.messages_delivered = 0
        self.frames_in_closed = 0  # sealed frames of connections that have ended
        self.frames_out_closed = 0
        self.ws_upgrades: dict[str, int] = {}  # WebSocket upgrades by result (gateway.net.websocket.UPGRADE_RESULTS)
        self.ws_open = 0  # live upgraded WebSocket connections (in their handshake or past it)

    def handshake(self, status: int) -> None:
        self.handshakes[status] = self.handshakes.get(status, 0) + 1

    def connection_ended(self, frames_in: int, frames_out: int) -> None:
        self.frames_in_closed += frames_in
        self.frames_out_closed += frames_out
