"""Latency histograms: HDR histograms in microseconds, merged across worker processes.

Workers record into ``Latency`` and ship ``encode()`` (HdrHistogram's
compressed base64 form) in their final report; the coordinator merges with
``add_encoded``. Percentiles are read from the merged histogram, never averaged.
"""

from __future__ import annotations

from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 120_000_000  # two minutes: anything slower is a failure anyway
SIGNIFICANT_FIGURES = 3
#: Percentiles drawn by --plot and listed in the JSON's ``percentiles``.
PLOT_PERCENTILES = (0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0)


class Latency:
    def __init__(self) -> None:
        self._h = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)

    def record_ns(self, ns: int) -> None:
        us = ns // 1000
        self._h.record_value(min(max(us, LOWEST_US), HIGHEST_US))

    def reset(self) -> None:
        self._h.reset()

    @property
    def count(self) -> int:
        return self._h.get_total_count()

    def encode(self) -> str:
        return self._h.encode().decode("ascii")

    def add_encoded(self, encoded: str) -> None:
        if encoded:
            self._h.decode_and_add(encoded.encode("ascii"))

    def percentile_ms(self, p: float) -> float:
        return self._h.get_value_at_percentile(p) / 1000.0

    def summary(self) -> dict[str, Any]:
        """p50/p99/p99.9/max in ms (null when nothing was recorded), and the count."""
        if self.count == 0:
            return {"p50_ms": None, "p99_ms": None, "p999_ms": None, "max_ms": None, "count": 0}
        return {
            "p50_ms": round(self.percentile_ms(50), 3),
            "p99_ms": round(self.percentile_ms(99), 3),
            "p999_ms": round(self.percentile_ms(99.9), 3),
            "max_ms": round(self._h.get_max_value() / 1000.0, 3),
            "count": self.count,
        }

    def percentiles(self) -> list[tuple[float, float]]:
        """(percentile, ms) pairs for plotting."""
        if self.count == 0:
            return []
        return [(p, self.percentile_ms(p)) for p in PLOT_PERCENTILES]
