"""Wall-clock time as an injectable source.

Everything that compares against the calendar (token expiry, clock skew,
friend-request windows, recall windows) asks a ``Clock`` instead of calling
``time.time()``, so tests can move time by days without waiting. Timeouts on
the event loop (handshake, keepalive) use trio's own clock instead.
"""

from __future__ import annotations

import time


class Clock:
    """The system's wall clock, in integer milliseconds since the Unix epoch."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock(Clock):
    """A clock that only moves when told to; for tests."""

    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self._now_ms = now_ms

    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, seconds: float) -> None:
        self._now_ms += int(seconds * 1000)
