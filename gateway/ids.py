"""64-bit message ids that increase with time and leave room for a node id.

Layout, most significant bit first::

    0 | 41 bits: ms since EPOCH_MS | 10 bits: node id | 12 bits: counter within the ms

41 bits of milliseconds last 69 years from 2024; 10 bits name up to 1024
gateway nodes; 4096 ids per millisecond per node. The generator never goes
backwards: if the wall clock steps back, it keeps counting from the last
millisecond it used, and if the counter runs out it borrows the next ms.
"""

from __future__ import annotations

from gateway.clock import Clock

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
NODE_BITS = 10
COUNTER_BITS = 12
MAX_NODE = (1 << NODE_BITS) - 1
_COUNTER_MASK = (1 << COUNTER_BITS) - 1


class MessageIdGenerator:
    def __init__(self, clock: Clock, node_id: int = 0) -> None:
        if not 0 <= node_id <= MAX_NODE:
            raise ValueError(f"node id must be 0..{MAX_NODE}")
        self._clock = clock
        self._node = node_id
        self._last_ms = 0
        self._counter = 0

    def seed(self, last_id: int) -> None:
        """Never hand out an id at or below ``last_id`` (the newest stored one, at start-up).

        Without this, a restart with the wall clock behind the last id's
        millisecond (a clock step back) would reissue ids already in use.
        """
        ms = last_id >> (NODE_BITS + COUNTER_BITS)
        if ms > self._last_ms or (ms == self._last_ms and (last_id & _COUNTER_MASK) > self._counter):
            self._last_ms, self._counter = ms, last_id & _COUNTER_MASK

    def next_id(self, now_ms: int | None = None) -> int:
        """The next id; ``now_ms``: the clock's reading the caller already took (a send's server_time)."""
        now = max((self._clock.now_ms() if now_ms is None else now_ms) - EPOCH_MS, 0)
        if now > self._last_ms:
            self._last_ms, self._counter = now, 0
        else:
            self._counter += 1
            if self._counter > _COUNTER_MASK:
                self._last_ms, self._counter = self._last_ms + 1, 0
        return (self._last_ms << (NODE_BITS + COUNTER_BITS)) | (self._node << COUNTER_BITS) | self._counter


def id_time_ms(message_id: int) -> int:
    """The wall-clock millisecond a message id was made in (approximately, if borrowed)."""
    return (message_id >> (NODE_BITS + COUNTER_BITS)) + EPOCH_MS
