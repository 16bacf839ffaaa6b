"""Commit batch sizes and latencies, counted by the writer thread for the gateway's /metrics.

Fixed buckets, plain list increments: one ``observe`` per committed batch (not per operation), on the
writer thread (or the trio thread, for a small batch the writer commits inline: about a microsecond). Readers (the metrics page) take a snapshot; a torn read
across two fields is off by one batch at most, which a scrape tolerates.
"""

from __future__ import annotations

from bisect import bisect_left

#: Operations per committed transaction (the writer commits at most 1000).
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000)
#: Seconds from BEGIN to the end of COMMIT.
LATENCY_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Histogram:
    """Counts per bucket (the last one is +Inf), their sum, and how many observations."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[int]:
        """Prometheus buckets: observations <= each bound, then +Inf."""
        out, total = [], 0
        for n in list(self.counts):
            total += n
            out.append(total)
        return out


class CommitStats:
    __slots__ = ("batch_size", "latency")

    def __init__(self) -> None:
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.latency = Histogram(LATENCY_BUCKETS)

    def observe(self, ops: int, seconds: float) -> None:
        self.batch_size.observe(ops)
        self.latency.observe(seconds)
