"""The load each scenario puts on the gateway, inside one worker process.

A scenario goes through the phases the coordinator calls (``bench.worker``
relays them): ``setup`` (connect what must be connected), ``start_load``,
``go`` (the measured window opens: counters and histograms start),
``stop`` (the window closes and the load stops), ``drain`` (wait, bounded, for
what is still in flight), then ``final``. ``progress`` is polled once a second.

Times are ``time.perf_counter_ns()``: CLOCK_MONOTONIC, the same in every
process of the machine.
"""

from __future__ import annotations

import errno
import random
import resource
import time
from collections import Counter
from typing import Any

import trio

from bench.conn import BenchConn, ConnectFailed
from bench.hist import Latency
from protocol import events
from protocol.codes import ErrorCode
from protocol.token import parse_token

NEVER = 1 << 62
SEND_METHOD = "send_message"
MESSAGE_TOPIC = "msg"
PROBE_TIMEOUT_SECONDS = 15.0
#: chatroom: a worker's drain ends after this long without a push (or at --drain-timeout).
QUIET_SECONDS = 2.0
#: A group send refused with 250 (the gateway's fan-out backlog, group.max_fanout_backlog) is sent again after
#: this long, as an SDK would; the refusals are counted as ``refused``, not as errors.
REFUSED_RETRY_SECONDS = 0.1


class MessagingUnavailable(Exception):
    """The gateway answered the probe message with an error: pairs cannot run."""


def _cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _chinese_pool(seed: int, size: int = 1000) -> list[str]:
    """Chinese texts as ``bench search`` stores them (``bench.searchcost``: ~30 Zipf-drawn Han characters, an English
    word or "N点" in some), seeded; imported here only when asked for (it brings the storage layer)."""
    from bench.searchcost import chinese_text

    rng = random.Random(seed)
    return [chinese_text(rng) for _ in range(size)]  # the header ends with a space


def _error_name(exc: BaseException) -> str:
    if isinstance(exc, ConnectFailed):
        return f"connack {exc.status}" if exc.status is not None else "handshake"
    if isinstance(exc, trio.TooSlowError):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__


class Scenario:
    """Shared counters, window bookkeeping and the pinger."""

    def __init__(self, spec: dict[str, Any], nursery: trio.Nursery) -> None:
        self.spec = spec
        self.nursery = nursery
        self.host: str = spec["host"]
        self.port: int = spec["port"]
        self.sources: list[str | None] = spec.get("source_addrs") or [None]
        self.keepalive: int = spec.get("keepalive", 60)
        self.transport: str = spec.get("transport", "tcp")  # "ws": port is the WebSocket listener's
        self.connect_timeout: float = spec.get("connect_timeout", 30.0)
        self.conns: list[BenchConn] = []
        self.loading = False
        self.measuring = False
        self.closing = False  # we are closing the connections: EOFs from now on are ours
        self.ping_counter = "pings"
        self.go_ns = NEVER
        self.stop_ns = NEVER
        self._cpu_at_go = 0.0
        self.client_cpu_s = 0.0
        # All-time totals (progress) and window totals (results).
        self.total: Counter[str] = Counter()
        self.window: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.latency = Latency()
        # What the messages say (``--text``): "filler" pads the header with "x", "zh" with Chinese text (search's
        # costliest case: ~one index token per character). ``--unindexed`` carries it in the content's ``content``
        # field, which search does not index, instead of ``searchable_content``: the same bytes, no index row.
        self.text_field = "content" if spec.get("unindexed") else "searchable_content"
        self._chinese = _chinese_pool(spec.get("seed", 1)) if spec.get("text") == "zh" else None
        self._chinese_next = 0

    def source(self, i: int) -> str | None:
        return self.sources[i % len(self.sources)]

    def count(self, name: str, n: int = 1) -> None:
        self.total[name] += n
        if self.measuring:
            self.window[name] += n

    def delivered(self, sent_ns: int, now_ns: int) -> None:
        """Count one message pushed to a member, and its latency when it was sent inside the window."""
        self.total["delivered"] += 1
        if self.measuring:
            self.window["delivered_in_window"] += 1
        if self.go_ns <= sent_ns < self.stop_ns:
            self.window["delivered"] += 1
            self.latency.record_ns(now_ns - sent_ns)

    def error(self, kind: str) -> None:
        self.total["errors"] += 1
        self.errors[kind] += 1  # every phase: a failed connect phase must say why
        if self.measuring:
            self.window["errors"] += 1

    async def connect(
        self, token: str, index: int, limiter: trio.CapacityLimiter, port: int | None = None
    ) -> BenchConn | None:
        """Open and authenticate one connection (to ``port``, else the spec's); None (and an error counted)."""
        conn = BenchConn(token, self.keepalive, self.transport)
        async with limiter:
            try:
                with trio.fail_after(self.connect_timeout):
                    await conn.open(self.host, port or self.port, self.source(index), self.nursery)
                    await conn.handshake()
            except (ConnectFailed, OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
                self.error(_error_name(exc))
                self.total["connect_failed"] += 1
                await conn.aclose()
                return None
        # Spread the PINGs over the interval: connections opened together must not ping together.
        conn.last_write = trio.current_time() - random.random() * self.keepalive / 2
        self.conns.append(conn)
        return conn

    async def pinger(self) -> None:
        """PING every connection that wrote nothing for half its keepalive, as the reference SDK does."""
        interval = self.keepalive / 2
        while True:
            await trio.sleep(min(1.0, interval / 2))
            now = trio.current_time()
            for conn in self.conns:
                if not conn.closed and now - conn.last_write >= interval:
                    conn.ping_sent_ns = time.perf_counter_ns()
                    conn.write(conn.proto.ping())
                    self.count(self.ping_counter)

    async def setup(self) -> dict[str, Any]:
        return {}

    def send_request(
        self, conn: BenchConn, conv_type: int, target: str, text: str, size: int, sent_ns: int
    ) -> tuple[int, bytes]:
        """A ``send_message`` REQUEST whose text is padded to ``size`` bytes, counted as sent (and in the window
        when its send time lies inside it): ``(request_id, frame)``."""
        if self._chinese is not None:
            text = self._pad_chinese(text, size)
        elif len(text) < size:
            text += "x" * (size - len(text))
        request_id, frame = conn.proto.request(
            SEND_METHOD,
            {
                "conv": {"type": conv_type, "target": target, "line": 0},
                "content": {"type": 1, self.text_field: text},
            },
        )
        if self.go_ns <= sent_ns < self.stop_ns:
            self.window["sent"] += 1
        self.total["sent"] += 1
        return request_id, frame

    def _pad_chinese(self, head: str, size: int) -> str:
        """``head`` and the next Chinese text of the pool, cut to at most ``size`` UTF-8 bytes."""
        assert self._chinese is not None
        body = self._chinese[self._chinese_next % len(self._chinese)]
        self._chinese_next += 1
        room = max(0, size - len(head))  # the header is ASCII: one byte per character
        while len(body.encode()) > room:  # a few characters off at most: ~90 bytes of text per entry
            body = body[:-1]
        return head + body

    def start_load(self) -> None:
        self.loading = True

    def go(self) -> None:
        self._cpu_at_go = _cpu_now()
        self.go_ns = time.perf_counter_ns()
        self.measuring = True

    def stop(self) -> None:
        self.stop_ns = time.perf_counter_ns()
        self.measuring = False
        self.loading = False
        self.client_cpu_s = _cpu_now() - self._cpu_at_go

    async def drain(self) -> None:
        pass

    def progress(self) -> dict[str, Any]:
        return {
            "sent": self.total["sent"],
            "acked": self.total["acked"],
            "delivered": self.total["delivered"],
            "errors": self.total["errors"],
            "conns": sum(1 for c in self.conns if not c.closed),
        }

    def final(self) -> dict[str, Any]:
        return {
            "window": dict(self.window),
            "error_kinds": dict(self.errors),
            "latency": self.latency.encode(),
            "client_cpu_s": self.client_cpu_s,
            "conns": sum(1 for c in self.conns if not c.closed),
        }

    async def close_all(self) -> None:
        self.closing = True
        with trio.CancelScope(shield=True):
            for conn in self.conns:
                await conn.aclose()


class ConnectScenario(Scenario):
    """Each of the tokens runs a loop: TCP connect, HELLO, CONNECT, CONNACK, DISCONNECT, server closes.

    ``sent`` counts CONNECTs, ``acked`` Connected CONNACKs, ``delivered`` full
    cycles (the server closed after DISCONNECT); latency is TCP connect → CONNACK.
    """

    def start_load(self) -> None:
        super().start_load()
        for i, token in enumerate(self.spec["tokens"]):
            self.nursery.start_soon(self._loop, token, i)

    async def _loop(self, token: str, index: int) -> None:
        source = self.source(index)
        while self.loading:
            conn = BenchConn(token, self.keepalive, self.transport)
            start = time.perf_counter_ns()
            try:
                with trio.fail_after(self.connect_timeout):
                    await conn.open(self.host, self.port, source, self.nursery)
                    self.count("sent")
                    await conn.handshake()
                    now = time.perf_counter_ns()
                    self.count("acked")
                    if self.measuring:
                        self.latency.record_ns(now - start)
                    conn.write(conn.proto.disconnect())
                    await conn.wait_closed_by_server()
                    self.count("delivered")
            except (ConnectFailed, OSError, trio.TooSlowError, trio.BrokenResourceError) as exc:
                self.error(_error_name(exc))
                await trio.sleep(0.05)  # a refusing gateway must not turn this into a busy loop
            finally:
                await conn.aclose()


class IdleScenario(Scenario):
    """Hold authenticated connections that only PING within their keepalive.

    ``sent`` counts PINGs, ``acked`` and ``delivered`` PONGs.
    """

    async def setup(self) -> dict[str, Any]:
        self.ping_counter = "sent"
        limiter = trio.CapacityLimiter(self.spec.get("concurrency", 100))
        async with trio.open_nursery() as opening:
            for i, token in enumerate(self.spec["tokens"]):
                opening.start_soon(self._hold, token, i, limiter)
        self.nursery.start_soon(self.pinger)
        return {"connected": len(self.conns)}

    async def _hold(self, token: str, index: int, limiter: trio.CapacityLimiter) -> None:
        conn = await self.connect(token, index, limiter)
        if conn is not None:
            self.nursery.start_soon(self._read, conn)

    async def _read(self, conn: BenchConn) -> None:
        while True:
            got = await conn.receive()
            if conn.closed:
                if not self.closing:
                    self.error("dropped by server")
                return
            for event in got:
                if isinstance(event, events.Pong):
                    self.count("acked")
                    self.count("delivered")
                    if self.measuring and conn.ping_sent_ns:
                        self.latency.record_ns(time.perf_counter_ns() - conn.ping_sent_ns)
                    conn.ping_sent_ns = 0
                elif isinstance(event, events.ServerError | events.ProtocolViolation):
                    self.error(type(event).__name__)


class _Pair:
    __slots__ = ("index", "sender", "receiver", "target", "next_n", "in_flight", "awaiting", "early")

    def __init__(self, index: int, sender: BenchConn, receiver: BenchConn, target: str) -> None:
        self.index = index
        self.sender = sender
        self.receiver = receiver
        self.target = target
        self.next_n = 0
        self.in_flight: dict[int, tuple[int, int]] = {}  # request id → (message number, send time ns)
        self.awaiting: set[int] = set()  # acked, not yet received
        self.early: set[int] = set()  # received before its ack


class PairsScenario(Scenario):
    """Private messages from each sender to its receiver, closed loop (window) or open loop (rate).

    ``sent``/``acked``/``delivered`` count the messages *sent inside the measured
    window* (their acks and deliveries may land during the drain);
    ``delivered_in_window`` counts deliveries that happened inside it, for rates
    and CPU per message. Latencies: send→receive (main) and send→ack. In open
    loop the send time is the scheduled one, so a stalled gateway cannot hide
    its stall (no coordinated omission).
    """

    def __init__(self, spec: dict[str, Any], nursery: trio.Nursery) -> None:
        super().__init__(spec, nursery)
        self.pairs: list[_Pair] = []
        self.window_size: int = spec.get("window", 1)
        self.rate: float | None = spec.get("rate")  # this worker's share, msg/s
        self.size: int = spec.get("size", 100)
        self.drain_timeout: float = spec.get("drain_timeout", 10.0)
        self.ack_latency = Latency()
        self.fatal: str | None = None

    async def setup(self) -> dict[str, Any]:
        limiter = trio.CapacityLimiter(self.spec.get("concurrency", 100))
        slots: list[tuple[BenchConn | None, BenchConn | None]] = [(None, None)] * len(self.spec["pairs"])

        # Cluster runs (--nodes): each pair's sender and receiver ports, two nodes for every pair.
        ports = self.spec.get("pair_ports") or [(None, None)] * len(self.spec["pairs"])

        async def open_pair(i: int, sender_token: str, receiver_token: str) -> None:
            sender = await self.connect(sender_token, 2 * i, limiter, ports[i][0])
            receiver = await self.connect(receiver_token, 2 * i + 1, limiter, ports[i][1])
            slots[i] = (sender, receiver)

        async with trio.open_nursery() as opening:
            for i, (s, r) in enumerate(self.spec["pairs"]):
                opening.start_soon(open_pair, i, s, r)
        for i, (sender, receiver) in enumerate(slots):
            if sender is None or receiver is None:
                raise ConnectFailed(None, f"pair {i}: could not connect (see errors)")
            pair = _Pair(i, sender, receiver, parse_token(self.spec["pairs"][i][1]).user_id)
            self.pairs.append(pair)
            self.nursery.start_soon(self._read_acks, pair)
            self.nursery.start_soon(self._read_messages, pair)
        self.nursery.start_soon(self.pinger)
        await self._probe()
        return {"connected": len(self.conns)}

    async def _probe(self) -> None:
        """One message per pair, acked and delivered, before any load: a clear failure otherwise."""
        for pair in self.pairs:
            pair.sender.write(self._message(pair, time.perf_counter_ns()))
        with trio.move_on_after(PROBE_TIMEOUT_SECONDS):
            # A bounded poll of many pairs' state.
            while any(p.in_flight or p.awaiting for p in self.pairs) and self.fatal is None:  # noqa: ASYNC110
                await trio.sleep(0.01)
        if self.fatal is not None:
            raise MessagingUnavailable(self.fatal)
        stuck = [p.index for p in self.pairs if p.in_flight or p.awaiting]
        if stuck:
            raise MessagingUnavailable(
                f"probe messages of {len(stuck)} pair(s) not acked and delivered within "
                f"{PROBE_TIMEOUT_SECONDS:.0f} s (is {SEND_METHOD} / the '{MESSAGE_TOPIC}' push implemented?)"
            )

    def _message(self, pair: _Pair, sent_ns: int) -> bytes:
        n = pair.next_n
        pair.next_n = n + 1
        text = f"{sent_ns} {pair.index} {n} "
        request_id, frame = self.send_request(pair.sender, 0, pair.target, text, self.size, sent_ns)
        pair.in_flight[request_id] = (n, sent_ns)
        return frame

    def start_load(self) -> None:
        super().start_load()
        for pair in self.pairs:
            if self.rate:
                self.nursery.start_soon(self._pace, pair, len(self.pairs) / self.rate)
            else:
                now = time.perf_counter_ns()
                pair.sender.write(b"".join(self._message(pair, now) for _ in range(self.window_size)))

    async def _pace(self, pair: _Pair, interval: float) -> None:
        next_at = trio.current_time() + random.random() * interval
        while self.loading:
            await trio.sleep_until(next_at)
            now = trio.current_time()
            now_ns = time.perf_counter_ns()
            frames = []
            while next_at <= now and self.loading:
                frames.append(self._message(pair, now_ns - int((now - next_at) * 1e9)))
                next_at += interval
            if frames:
                pair.sender.write(b"".join(frames))

    async def _read_acks(self, pair: _Pair) -> None:
        conn = pair.sender
        while True:
            got = await conn.receive()
            if conn.closed:
                if not self.closing:
                    self.error("sender dropped")
                return
            now = time.perf_counter_ns()
            refill = []
            for event in got:
                if isinstance(event, events.Response):
                    entry = pair.in_flight.pop(event.request_id, None)
                    if entry is None:
                        continue
                    n, sent_ns = entry
                    in_window = self.go_ns <= sent_ns < self.stop_ns
                    if event.code == ErrorCode.SUCCESS:
                        self.total["acked"] += 1
                        if in_window:
                            self.window["acked"] += 1
                            self.ack_latency.record_ns(now - sent_ns)
                        if n in pair.early:
                            pair.early.discard(n)
                        else:
                            pair.awaiting.add(n)
                    else:
                        if not self.loading and self.go_ns == NEVER:  # the probe
                            self.fatal = f"{SEND_METHOD} answered code {event.code}" + (
                                " (not implemented: messaging has not landed)"
                                if event.code == ErrorCode.NOT_IMPLEMENTED
                                else ""
                            )
                        self.error(f"code {event.code}")
                    if self.loading and not self.rate:
                        refill.append(self._message(pair, now))
                elif isinstance(event, events.ServerError | events.ProtocolViolation):
                    self.error(type(event).__name__)
            if refill:
                conn.write(b"".join(refill))

    async def _read_messages(self, pair: _Pair) -> None:
        conn = pair.receiver
        while True:
            got = await conn.receive()
            if conn.closed:
                if not self.closing:
                    self.error("receiver dropped")
                return
            now = time.perf_counter_ns()
            for event in got:
                if not isinstance(event, events.Notify) or event.topic != MESSAGE_TOPIC:
                    if isinstance(event, events.ServerError | events.ProtocolViolation):
                        self.error(type(event).__name__)
                    continue
                try:
                    text = event.data["message"]["content"][self.text_field]
                    sent_s, index_s, n_s = text.split(" ", 3)[:3]
                    sent_ns, n = int(sent_s), int(n_s)
                    if int(index_s) != pair.index:
                        raise ValueError("another pair's message")
                except (KeyError, TypeError, ValueError):
                    self.error("unexpected msg push")
                    continue
                self.delivered(sent_ns, now)
                if n in pair.awaiting:
                    pair.awaiting.discard(n)
                else:
                    pair.early.add(n)

    async def drain(self) -> None:
        with trio.move_on_after(self.drain_timeout):
            while any(p.in_flight or p.awaiting for p in self.pairs):  # noqa: ASYNC110 - bounded poll
                await trio.sleep(0.01)

    def final(self) -> dict[str, Any]:
        out = super().final()
        out["undelivered"] = sum(len(p.awaiting) for p in self.pairs)
        out["unanswered"] = sum(len(p.in_flight) for p in self.pairs)
        out["latency_ack"] = self.ack_latency.encode()
        return out


class ChatroomScenario(Scenario):
    """Members present in one chatroom, and (in one worker) a sender posting to it at ``rate`` msg/s.

    The sender runs open loop (the send time is the scheduled one). ``sent``/``acked`` count its messages
    sent inside the window; ``delivered`` counts their pushes received by members (one per member per
    message, whenever they land); ``delivered_in_window`` counts pushes received inside the window, for
    rates and CPU per delivery. Latency: send → each member's receipt.

    For the exactly-once check the windows of the workers must not matter (each opens a moment apart):
    the sender's worker reports the numbers of the messages it had acked that it sent inside its window
    (``acked_numbers``), every worker the pushes its members received per message number (``received``),
    and the coordinator compares them.
    """

    def __init__(self, spec: dict[str, Any], nursery: trio.Nursery) -> None:
        super().__init__(spec, nursery)
        self.acked_numbers: list[int] = []
        self.received: Counter[int] = Counter()
        self.room: str = spec["room"]
        self.rate: float = spec.get("rate") or 10.0
        self.size: int = spec.get("size", 100)
        self.sender_token: str | None = spec.get("sender")
        self.drain_timeout: float = spec.get("drain_timeout", 10.0)
        self.sender: BenchConn | None = None
        self.in_flight: dict[int, tuple[int, int]] = {}  # request id → (message number, send time ns)
        self.next_n = 0
        self.last_delivery = 0.0
        self.fatal: str | None = None

    async def setup(self) -> dict[str, Any]:
        limiter = trio.CapacityLimiter(self.spec.get("concurrency", 100))
        async with trio.open_nursery() as opening:
            for i, token in enumerate(self.spec["tokens"]):
                opening.start_soon(self._join, token, i, limiter)
        if self.fatal is not None:
            raise MessagingUnavailable(self.fatal)
        if self.sender_token is not None:
            self.sender = await self.connect(self.sender_token, len(self.spec["tokens"]), limiter)
            if self.sender is None:
                raise ConnectFailed(None, "the sender could not connect (see errors)")
            joined = await self._request(self.sender, "join_chatroom", {"chatroom_id": self.room})
            if joined.code != ErrorCode.SUCCESS:
                raise MessagingUnavailable(f"join_chatroom answered code {joined.code}")
            self.nursery.start_soon(self._read_acks, self.sender)
            self.sender.write(self._message(time.perf_counter_ns()))  # a probe: acked or fatal
            with trio.move_on_after(PROBE_TIMEOUT_SECONDS):
                while self.in_flight and self.fatal is None:  # noqa: ASYNC110 - a bounded poll
                    await trio.sleep(0.01)
            if self.fatal is not None or self.in_flight:
                raise MessagingUnavailable(self.fatal or "the probe message was not acknowledged")
        self.nursery.start_soon(self.pinger)
        return {"connected": len(self.conns)}

    async def _request(self, conn: BenchConn, method: str, params: dict[str, Any]) -> events.Response:
        request_id, frame = conn.proto.request(method, params)
        conn.write(frame)
        while True:
            got = await conn.receive()
            if conn.closed:
                raise ConnectFailed(None, f"closed while waiting for {method}")
            for event in got:
                if isinstance(event, events.Response) and event.request_id == request_id:
                    return event

    async def _join(self, token: str, index: int, limiter: trio.CapacityLimiter) -> None:
        conn = await self.connect(token, index, limiter)
        if conn is None:
            return
        async with limiter:
            answer = await self._request(conn, "join_chatroom", {"chatroom_id": self.room})
        if answer.code != ErrorCode.SUCCESS:
            self.fatal = f"join_chatroom answered code {answer.code}" + (
                " (chatrooms have not landed)" if answer.code == ErrorCode.NOT_IMPLEMENTED else ""
            )
            return
        self.nursery.start_soon(self._read_member, conn)

    def _message(self, sent_ns: int) -> bytes:
        n = self.next_n
        self.next_n = n + 1
        assert self.sender is not None
        request_id, frame = self.send_request(self.sender, 2, self.room, f"{sent_ns} {n} ", self.size, sent_ns)
        self.in_flight[request_id] = (n, sent_ns)
        return frame

    def start_load(self) -> None:
        super().start_load()
        if self.sender is not None:
            self.nursery.start_soon(self._pace, 1.0 / self.rate)

    async def _pace(self, interval: float) -> None:
        assert self.sender is not None
        next_at = trio.current_time()
        while self.loading:
            await trio.sleep_until(next_at)
            now = trio.current_time()
            now_ns = time.perf_counter_ns()
            frames = []
            while next_at <= now and self.loading:
                frames.append(self._message(now_ns - int((now - next_at) * 1e9)))
                next_at += interval
            if frames:
                self.sender.write(b"".join(frames))

    async def _read_acks(self, conn: BenchConn) -> None:
        while True:
            got = await conn.receive()
            if conn.closed:
                if not self.closing:
                    self.error("sender dropped")
                return
            for event in got:
                if isinstance(event, events.Response):
                    entry = self.in_flight.pop(event.request_id, None)
                    if entry is None:
                        continue
                    n, sent_ns = entry
                    if event.code == ErrorCode.SUCCESS:
                        self.total["acked"] += 1
                        if self.go_ns <= sent_ns < self.stop_ns:
                            self.window["acked"] += 1
                            self.acked_numbers.append(n)
                    else:
                        if self.go_ns == NEVER and not self.loading:
                            self.fatal = f"{SEND_METHOD} to the room answered code {event.code}"
                        self.error(f"code {event.code}")
                elif isinstance(event, events.ServerError | events.ProtocolViolation):
                    self.error(type(event).__name__)

    async def _read_member(self, conn: BenchConn) -> None:
        while True:
            got = await conn.receive()
            if conn.closed:
                if not self.closing:
                    self.error("member dropped")
                return
            now = time.perf_counter_ns()
            for event in got:
                if not isinstance(event, events.Notify):
                    if isinstance(event, events.ServerError | events.ProtocolViolation):
                        self.error(type(event).__name__)
                    continue
                if event.topic != MESSAGE_TOPIC:
                    self.error(f"push {event.topic}")  # chatroom_quit: the member was dropped
                    continue
                try:
                    sent_s, n_s = event.data["message"]["content"][self.text_field].split(" ", 2)[:2]
                    sent_ns, n = int(sent_s), int(n_s)
                except (KeyError, TypeError, ValueError):
                    self.error("unexpected msg push")
                    continue
                self.received[n] += 1
                self.last_delivery = trio.current_time()
                self.delivered(sent_ns, now)

    async def drain(self) -> None:
        """Until the sender's acks are in and no push has come for ``QUIET_SECONDS`` (bounded).

        A worker without the sender cannot know what is still owed; on a loaded machine pushes to its
        members can trail the last ack by several hundred ms, so it waits for a longer quiet spell.
        """
        with trio.move_on_after(self.drain_timeout):
            while self.in_flight or trio.current_time() - self.last_delivery < QUIET_SECONDS:  # noqa: ASYNC110
                await trio.sleep(0.05)

    def final(self) -> dict[str, Any]:
        out = super().final()
        out["unanswered"] = len(self.in_flight)
        out["acked_numbers"] = self.acked_numbers
        out["received"] = {str(n): count for n, count in self.received.items()}  # JSON keys are str
        return out


class _Member:
    __slots__ = ("conn", "group", "index", "sender", "next_n", "in_flight")

    def __init__(self, conn: BenchConn, group: int, index: int, sender: bool) -> None:
        self.conn = conn
        self.group = group
        self.index = index
        self.sender = sender
        self.next_n = 0
        self.in_flight: dict[int, tuple[int, int]] = {}  # request id -> (message number, send time ns)


class GroupScenario(Scenario):
    """Group messages: every member of every group online (one connection each), the first S of each
    group sending, closed loop (``window`` messages in flight per sender).

    A message's deliveries are the pushes its group's other members receive. A group's members may be
    spread over worker processes, so each worker reports the messages its senders had acked
    (``acked_keys``) and the deliveries its members received per message (``received``); the
    coordinator checks that every acked message reached every other member exactly once.
    ``delivered_in_window`` counts the deliveries received inside the measured window (the
    per-delivery CPU figure); ``sent``/``acked``/``delivered`` count messages sent inside it, each worker by
    its own window, which opens and closes a moment after or before the others' (so ``delivered`` may miss
    or add a few deliveries at the edges; the exactly-once check above does not depend on windows).
    """

    def __init__(self, spec: dict[str, Any], nursery: trio.Nursery) -> None:
        super().__init__(spec, nursery)
        self.group_ids: list[str] = spec["group_ids"]
        self.window_size: int = spec.get("window", 1)
        self.size: int = spec.get("size", 100)
        self.drain_timeout: float = spec.get("drain_timeout", 10.0)
        self.members: list[_Member] = []
        self.acked_keys: list[str] = []
        self.received: Counter[str] = Counter()
        self.ack_latency = Latency()
        self.last_delivery_ns = 0

    async def setup(self) -> dict[str, Any]:
        limiter = trio.CapacityLimiter(self.spec.get("concurrency", 100))
        slots: list[_Member | None] = [None] * len(self.spec["members"])

        async def open_one(i: int, token: str, group: int, index: int, sender: bool) -> None:
            conn = await self.connect(token, i, limiter)
            if conn is not None:
                slots[i] = _Member(conn, group, index, sender)

        async with trio.open_nursery() as opening:
            for i, (token, group, index, sender) in enumerate(self.spec["members"]):
                opening.start_soon(open_one, i, token, group, index, sender)
        if any(m is None for m in slots):
            raise ConnectFailed(None, "members could not connect (see errors)")
        self.members = [m for m in slots if m is not None]
        for member in self.members:
            self.nursery.start_soon(self._read, member)
        self.nursery.start_soon(self.pinger)
        return {"connected": len(self.conns)}

    def _message(self, member: _Member, sent_ns: int) -> bytes:
        n = member.next_n
        member.next_n = n + 1
        text = f"{sent_ns} {member.group} {member.index} {n} "
        target = self.group_ids[member.group]
        request_id, frame = self.send_request(member.conn, 1, target, text, self.size, sent_ns)
        member.in_flight[request_id] = (n, sent_ns)
        return frame

    def start_load(self) -> None:
        super().start_load()
        now = time.perf_counter_ns()
        for member in self.members:
            if member.sender:
                member.conn.write(b"".join(self._message(member, now) for _ in range(self.window_size)))

    async def _read(self, member: _Member) -> None:
        conn = member.conn
        while True:
            got = await conn.receive()
            if conn.closed:
                if not self.closing:
                    self.error("member dropped")
                return
            now = time.perf_counter_ns()
            refill = []
            for event in got:
                if isinstance(event, events.Notify) and event.topic == MESSAGE_TOPIC:
                    content = event.data["message"]["content"]
                    if content.get("type") != 1:
                        continue  # the group's notifications (create)
                    try:
                        sent_s, group_s, index_s, n_s = content[self.text_field].split(" ", 4)[:4]
                        sent_ns = int(sent_s)
                    except (KeyError, TypeError, ValueError):
                        self.error("unexpected msg push")
                        continue
                    self.received[f"{group_s}:{index_s}:{n_s}"] += 1
                    self.last_delivery_ns = now
                    self.delivered(sent_ns, now)
                elif isinstance(event, events.Response):
                    entry = member.in_flight.pop(event.request_id, None)
                    if entry is None:
                        continue
                    n, sent_ns = entry
                    if event.code == ErrorCode.SUCCESS:
                        self.total["acked"] += 1
                        self.acked_keys.append(f"{member.group}:{member.index}:{n}")
                        if self.go_ns <= sent_ns < self.stop_ns:
                            self.window["acked"] += 1
                            self.ack_latency.record_ns(now - sent_ns)
                    elif event.code == ErrorCode.OVER_FREQUENCY:
                        self.count("refused")  # not stored: the fan-out is behind; send again later
                        if self.loading:
                            self.nursery.start_soon(self._send_later, member)
                        continue
                    else:
                        self.error(f"code {event.code}")
                    if self.loading:
                        refill.append(self._message(member, now))
                elif isinstance(event, events.ServerError | events.ProtocolViolation):
                    self.error(type(event).__name__)
            if refill:
                conn.write(b"".join(refill))

    async def _send_later(self, member: _Member) -> None:
        await trio.sleep(REFUSED_RETRY_SECONDS)
        if self.loading and not member.conn.closed:
            member.conn.write(self._message(member, time.perf_counter_ns()))

    async def drain(self) -> None:
        """Until the acks are in and no delivery has come for half a second (bounded)."""
        with trio.move_on_after(self.drain_timeout):
            while any(m.in_flight for m in self.members) or (  # noqa: ASYNC110 - bounded poll
                time.perf_counter_ns() - self.last_delivery_ns < 500_000_000
            ):
                await trio.sleep(0.05)

    def final(self) -> dict[str, Any]:
        out = super().final()
        out["acked_keys"] = self.acked_keys
        out["refused"] = self.total["refused"]
        out["received"] = dict(self.received)
        out["unanswered"] = sum(len(m.in_flight) for m in self.members)
        out["latency_ack"] = self.ack_latency.encode()
        return out


SCENARIOS: dict[str, type[Scenario]] = {
    "connect": ConnectScenario,
    "idle": IdleScenario,
    "pairs": PairsScenario,
    "group": GroupScenario,
    "chatroom": ChatroomScenario,
}
