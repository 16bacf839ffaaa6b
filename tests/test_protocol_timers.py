"""protocol.timers: the keepalive and idle rules of docs/PROTOCOL.md §8.4, on made-up times (no clock, no sleep).

The drivers (gateway/connection.py, client/link.py) are tested over real sockets in test_gateway_limits.py and
test_client_sdk.py; here each rule is pinned to exact deadlines.
"""

from __future__ import annotations

import heapq
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.timers import IDLE_KEEPALIVES, IdleTimer, KeepaliveTimer, TimerAction

NONE, PING, IDLE, LOST = TimerAction.NONE, TimerAction.SEND_PING, TimerAction.CLOSE_IDLE, TimerAction.SERVER_LOST


# --- the server's idle timer ----------------------------------------------------------------------


def test_no_idle_deadline_before_the_keepalive_is_known() -> None:
    idle = IdleTimer(100.0)
    assert idle.get_timer() == math.inf
    assert idle.handle_timer(1e9) is NONE  # the handshake has its own timeout


def test_idle_after_one_and_a_half_keepalives_of_silence_counted_from_the_start() -> None:
    idle = IdleTimer(100.0)
    idle.set_keepalive(10)
    assert IDLE_KEEPALIVES == 1.5
    assert idle.get_timer() == 115.0
    assert idle.handle_timer(114.999) is NONE
    assert idle.handle_timer(115.0) is IDLE


def test_bytes_received_move_the_idle_deadline() -> None:
    idle = IdleTimer(0.0)
    idle.set_keepalive(60)
    idle.received(50.0)
    # A deadline armed before the read (90) passes early: nothing is due, and the next one is later.
    assert idle.handle_timer(90.0) is NONE
    assert idle.get_timer() == 140.0
    assert idle.handle_timer(140.0) is IDLE


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), max_size=20))
def test_the_idle_deadline_only_moves_later(gaps: list[float]) -> None:
    """What lets the gateway re-arm once per idle period instead of once per read."""
    idle = IdleTimer(0.0)
    idle.set_keepalive(10)
    now, deadline = 0.0, idle.get_timer()
    for gap in gaps:
        now += gap
        idle.received(now)
        assert idle.get_timer() >= deadline
        deadline = idle.get_timer()


# --- the client's keepalive timer -----------------------------------------------------------------


def test_a_quiet_client_pings_after_half_a_keepalive() -> None:
    timer = KeepaliveTimer(60, 0.0)
    assert timer.get_timer() == 30.0
    assert timer.handle_timer(29.999) is NONE
    assert timer.handle_timer(30.0) is PING


def test_after_a_ping_the_server_is_lost_a_keepalive_after_it_was_last_heard() -> None:
    timer = KeepaliveTimer(60, 0.0)
    timer.sent(30.0, ping=True)
    assert timer.get_timer() == 60.0  # no probe while one is out: the next thing is the loss
    assert timer.handle_timer(59.999) is NONE
    assert timer.handle_timer(60.0) is LOST


def test_the_pong_keeps_the_server_alive_and_the_next_ping_comes_half_a_keepalive_after_the_last() -> None:
    timer = KeepaliveTimer(60, 0.0)
    timer.sent(30.0, ping=True)
    timer.received(30.2)  # the PONG
    assert timer.get_timer() == 60.0  # 30 s after the PING went out
    assert timer.handle_timer(60.0) is PING
    timer.sent(60.0, ping=True)  # unanswered, this time
    assert timer.get_timer() == 90.0
    assert timer.handle_timer(90.0) is PING  # still one PING per half keepalive while the server is quiet
    timer.sent(90.0, ping=True)
    assert timer.get_timer() == 90.2
    assert timer.handle_timer(90.2) is LOST  # heard last at 30.2


def test_frames_sent_postpone_the_ping() -> None:
    timer = KeepaliveTimer(60, 0.0)
    timer.received(25.0)
    timer.sent(25.0)  # a REQUEST, and its RESPONSE
    assert timer.handle_timer(30.0) is NONE
    assert timer.get_timer() == 55.0
    assert timer.handle_timer(55.0) is PING


def test_a_server_silent_while_the_client_sends_is_probed() -> None:
    timer = KeepaliveTimer(60, 0.0)
    timer.sent(20.0)  # a request the server does not answer
    assert timer.get_timer() == 30.0  # nothing received for half a keepalive: probe
    assert timer.handle_timer(30.0) is PING
    timer.sent(30.0, ping=True)
    timer.sent(45.0)
    assert timer.get_timer() == 60.0
    assert timer.handle_timer(60.0) is LOST


def test_sent_frames_do_not_keep_a_silent_server_alive() -> None:
    timer = KeepaliveTimer(10, 0.0)
    for t in range(1, 10):
        timer.sent(float(t))
    assert timer.handle_timer(10.0) is LOST


def test_a_keepalive_must_be_positive() -> None:
    with pytest.raises(ValueError):
        KeepaliveTimer(0, 0.0)


# --- the two together: a client following its timer is never idle at the server -------------------


def run(keepalive: int, latency: float, server_answers: bool, until: float) -> tuple[list[float], float | None]:
    """Drive both timers as the reference drivers do (sleep to ``get_timer``, then ``handle_timer``), with
    PINGs and PONGs taking ``latency`` each way. Returns the times PINGs reached the server, and when the client
    gave up (None if it never did). Fails if the server's idle timer ever fires."""
    client, server = KeepaliveTimer(keepalive, 0.0), IdleTimer(0.0)
    server.set_keepalive(keepalive)
    arrivals: list[tuple[float, str]] = []  # (time, "ping at server" | "pong at client")
    pings: list[float] = []
    wake = client.get_timer()
    while True:
        now = min(wake, arrivals[0][0]) if arrivals else wake
        if now > until:
            return pings, None
        assert server.handle_timer(now) is NONE, f"idle at the server at {now}"
        if arrivals and arrivals[0][0] == now:
            _, what = heapq.heappop(arrivals)
            if what == "ping":
                server.received(now)
                pings.append(now)
                if server_answers:
                    heapq.heappush(arrivals, (now + latency, "pong"))
            else:
                client.received(now)
            continue
        action = client.handle_timer(now)
        if action is LOST:
            return pings, now
        if action is PING:
            client.sent(now, ping=True)
            heapq.heappush(arrivals, (now + latency, "ping"))
        wake = client.get_timer()


@pytest.mark.parametrize("keepalive", [10, 60, 900])
@pytest.mark.parametrize("latency_share", [0.0, 0.01, 0.2])
def test_a_client_that_follows_its_timer_is_never_idle_at_the_server(keepalive: int, latency_share: float) -> None:
    pings, lost = run(keepalive, keepalive * latency_share, server_answers=True, until=50.0 * keepalive)
    assert lost is None
    assert len(pings) >= 99  # one every half keepalive
    gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
    assert max(gaps) <= keepalive / 2 + 1e-9


def test_a_server_that_stops_answering_is_lost_one_keepalive_after_it_was_last_heard() -> None:
    pings, lost = run(60, 0.5, server_answers=False, until=1000.0)
    assert lost == 60.0  # heard last at the start (the CONNACK)
    assert pings == [30.5]
