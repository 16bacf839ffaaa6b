"""The keepalive and idle deadlines of docs/PROTOCOL.md §8.4, as sans-I/O timers.

In the manner of aioquic: the driver records activity (``received(now)``, ``sent(now)``), asks
``get_timer()`` for the next deadline, sleeps until then (or until something else happens) and calls
``handle_timer(now)``, which says what is due. ``now`` is always the driver's monotonic clock in seconds
(trio's ``current_time()``, ``performance.now() / 1000`` in a browser): this module has no clock and does no I/O.

Recording activity only stores a time, so a driver need not re-arm its sleep on every read. The idle
deadline only ever moves later with activity, so an armed one that passes early is harmless (``handle_timer``
answers NONE and ``get_timer`` gives the later one): the gateway relies on that to move its idle deadline once
per idle period rather than once per read (re-arming costs a heap update in trio's scheduler). The client's
deadlines also only move later, with one exception: something received after a PING makes a probe possible
again, whose deadline may be earlier than the armed one; a driver that re-arms only when its timer fires
(the reference SDK) sends that probe at its next wake-up instead, never more than keepalive / 2 after it armed it.

- ``IdleTimer`` (server): close a connection that sent no bytes for 1.5 × keepalive, without a frame.
- ``KeepaliveTimer`` (client): PING when nothing was sent for keepalive / 2 (so the server hears from the
  client well within its 1.5 × keepalive), and as a probe when nothing was received for keepalive / 2;
  the server is lost when nothing at all was received for a whole keepalive.
"""

from __future__ import annotations

import enum
import math

#: The server closes a connection silent for this many keepalives (docs/PROTOCOL.md §8.4).
IDLE_KEEPALIVES = 1.5


class TimerAction(enum.Enum):
    """What ``handle_timer`` says is due."""

    NONE = "none"  # nothing yet: sleep until ``get_timer()`` again
    SEND_PING = "send_ping"  # client: send a PING now (and report it with ``sent(now, ping=True)``)
    CLOSE_IDLE = "close_idle"  # server: the client was silent for 1.5 × keepalive: close, no frame
    SERVER_LOST = "server_lost"  # client: nothing received for a keepalive: close, status −4, reconnect


class IdleTimer:
    """The server's idle rule for one connection.

    Silence is counted from the time given to the constructor (the gateway gives the time it accepted the
    socket) until the first ``received``. Until ``set_keepalive`` gives the keepalive the success CONNACK
    announced there is no deadline (``get_timer`` is infinite: the handshake has its own timeout).
    """

    __slots__ = ("idle_seconds", "last_received")

    def __init__(self, now: float) -> None:
        self.last_received = now
        self.idle_seconds = math.inf  # until the handshake settled the keepalive

    def set_keepalive(self, keepalive_seconds: int) -> None:
        self.idle_seconds = IDLE_KEEPALIVES * keepalive_seconds

    def received(self, now: float) -> None:
        """Bytes arrived (any bytes: a frame may take several reads)."""
        self.last_received = now

    def get_timer(self) -> float:
        """When the connection falls idle unless something arrives first."""
        return self.last_received + self.idle_seconds

    def handle_timer(self, now: float) -> TimerAction:
        if now - self.last_received >= self.idle_seconds:
            return TimerAction.CLOSE_IDLE
        return TimerAction.NONE


class KeepaliveTimer:
    """The client's keepalive for one open connection, from the keepalive of the success CONNACK."""

    __slots__ = ("keepalive_seconds", "last_ping", "last_received", "last_sent")

    def __init__(self, keepalive_seconds: float, now: float) -> None:
        if keepalive_seconds <= 0:
            raise ValueError("keepalive_seconds must be positive")
        self.keepalive_seconds = keepalive_seconds
        self.last_received = now
        self.last_sent = now
        self.last_ping = -math.inf

    def received(self, now: float) -> None:
        """Bytes arrived from the server."""
        self.last_received = now

    def sent(self, now: float, *, ping: bool = False) -> None:
        """A frame was queued for the server (``ping``: that frame was a PING)."""
        self.last_sent = now
        if ping:
            self.last_ping = now

    @property
    def _probing(self) -> bool:
        """No PING went out since the server was last heard: silence from it is worth a probe."""
        return self.last_ping < self.last_received

    def get_timer(self) -> float:
        half = self.keepalive_seconds / 2
        deadline = min(self.last_sent + half, self.last_received + self.keepalive_seconds)
        if self._probing:
            deadline = min(deadline, self.last_received + half)
        return deadline

    def handle_timer(self, now: float) -> TimerAction:
        half = self.keepalive_seconds / 2
        if now - self.last_received >= self.keepalive_seconds:
            return TimerAction.SERVER_LOST
        if now - self.last_sent >= half or (self._probing and now - self.last_received >= half):
            return TimerAction.SEND_PING
        return TimerAction.NONE
