"""``python -m bench.stalled``: the gateway's memory while pushing to readers that never read.

A spawned gateway (``--spawn`` semantics of ``python -m bench``: a temporary data folder, its own process, so
its RSS is its own) gets ``--readers`` users in one group, plus a sender. Each reader connects from this
process with a 4 KiB receive buffer (set before connecting), completes its handshake and then never reads
again, so the gateway's kernel buffer to it fills after a few KiB and every later push waits in the gateway's
outbox for it. The sender then sends ``--messages`` group messages of ``--size`` bytes through the admin API
(a 250 for a full fan-out backlog is retried 0.1 s later), each pushed to every reader. The gateway's RSS
(VmRSS, and VmHWM for the peak) is sampled from /proc every ``--sample`` seconds; at the end the gateway's
/metrics (total outbox bytes, cuts by reason, connections left) and its log (how many cut lines) are read.

``--budget-bytes`` sets ``server.outbox_budget_bytes`` (0: no process-wide bound, which is how the gateway
behaved before it had one); ``--outbox-max-bytes`` the per-connection bound. The last stdout line is a JSON
record of the run. Loopback only; everything it started is stopped by pid at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from typing import Any

import httpx
import trio

from bench.procfs import machine_description, peak_rss_kib, raise_open_file_limit, rss_kib
from bench.target import Admin, BenchError, Target, spawn_gateway
from protocol import events
from protocol.codes import ConnectionStatus, ErrorCode
from protocol.connection import ClientConnection
from protocol.token import parse_token

GROUP = "bench-stalled"
RECEIVE_BUFFER = 4096
#: Announced keepalive: the gateway drops a connection silent for 1.5x this, and these never send a thing.
KEEPALIVE_SECONDS = 900
CONNECT_CONCURRENCY = 50
#: Admin sends in flight: the fan-out backlog (group.max_fanout_backlog) refuses more with 250 anyway.
SEND_CONCURRENCY = 4


async def _stalled_reader(host: str, port: int, token: str, streams: list[trio.SocketStream]) -> None:
    """Connect with a tiny receive buffer, handshake, then keep the socket open and never read again."""
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    await sock.connect((host, port))
    stream = trio.SocketStream(sock)
    proto = ClientConnection.from_token(
        parse_token(token), client_nonce=os.urandom(32), keepalive_seconds=KEEPALIVE_SECONDS
    )
    sent_connect = False
    while True:
        data = await stream.receive_some(65536)
        if not data:
            raise BenchError("the gateway closed a reader's connection during its handshake")
        for event in proto.receive_data(data):
            if isinstance(event, events.Hello) and not sent_connect:
                await stream.send_all(proto.connect(int(time.time() * 1000)))
                sent_connect = True
            elif isinstance(event, events.ConnAck):
                if event.code != ConnectionStatus.CONNECTED:
                    raise BenchError(f"a reader's CONNECT was answered {event.code}")
                streams.append(stream)
                return


async def _metrics(target: Target) -> dict[str, float]:
    samples: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=10.0) as http:
        text = (await http.get(target.admin_url + "/metrics")).text
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


async def run(args: argparse.Namespace) -> dict[str, Any]:
    raise_open_file_limit()
    server: dict[str, int] = {"outbox_budget_bytes": args.budget_bytes}
    if args.outbox_max_bytes is not None:
        server["outbox_max_bytes"] = args.outbox_max_bytes
    async with spawn_gateway(group_max_members=max(2000, args.readers + 1), server=server) as target:
        pid = target.pid
        assert pid is not None
        admin = Admin(target.admin_url, target.admin_secret, 8)
        streams: list[trio.SocketStream] = []  # the readers' sockets, held open (and never read) to the end
        try:
            users = [f"stall{i}" for i in range(args.readers)]
            sender = "stall-sender"
            tokens = await admin.provision([*users, sender], 8)
            await admin.call(
                "/admin/group/create", {"owner": sender, "group_id": GROUP, "name": "stalled", "members": users}
            )
            rss_idle = rss_kib(pid)
            limiter = trio.CapacityLimiter(CONNECT_CONCURRENCY)

            async def connect(token: str) -> None:
                async with limiter:
                    await _stalled_reader(target.host, target.port, token, streams)

            started = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for token in tokens[: args.readers]:
                    nursery.start_soon(connect, token)
            connect_s = time.perf_counter() - started
            rss_connected = rss_kib(pid)

            samples: list[tuple[float, int]] = []
            sent = refused = 0
            remaining = args.messages
            body = {"sender": sender, "conv": {"type": 1, "target": GROUP},
                    "content": {"type": 1, "searchable_content": "x" * args.size}}  # fmt: skip

            async def send_loop() -> None:
                nonlocal sent, refused, remaining
                while remaining > 0:
                    remaining -= 1
                    while True:
                        answer = await admin.answer("/admin/message/send", body)
                        if answer["code"] == ErrorCode.SUCCESS:
                            sent += 1
                            break
                        if answer["code"] != ErrorCode.OVER_FREQUENCY:
                            raise BenchError(f"message/send answered {answer['code']}: {answer.get('msg')}")
                        refused += 1  # the fan-out backlog is full: the pushes are still going out
                        await trio.sleep(0.1)

            t0 = time.perf_counter()

            async def sample() -> None:
                while True:
                    samples.append((round(time.perf_counter() - t0, 2), rss_kib(pid)))
                    await trio.sleep(args.sample)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(sample)
                async with trio.open_nursery() as senders:
                    for _ in range(SEND_CONCURRENCY):
                        senders.start_soon(send_loop)
                # Acked means stored; the pushes may still be fanning out: wait for that too.
                with trio.fail_after(args.drain_timeout):
                    while (await _metrics(target)).get("ember_fanout_queued_owners", 0) > 0:  # noqa: ASYNC110 - another process
                        await trio.sleep(0.2)
                await trio.sleep(args.settle)
                nursery.cancel_scope.cancel()
            push_s = time.perf_counter() - t0
            m = await _metrics(target)
            rss_end = rss_kib(pid)
            rss_peak = peak_rss_kib(pid)
            log_path = target.log_path
            log_text = log_path.read_text(errors="replace") if log_path and log_path.exists() else ""
            lines = [line for line in log_text.splitlines() if "slow reader cut off conn=" in line]
            cut_lines = len(lines)
            unlogged = sum(int(line.rsplit("unlogged_cuts_since_last_line=", 1)[1].split()[0]) for line in lines)
            summaries = [line for line in log_text.splitlines() if "cut off without a line of their own" in line]
            connections = int(sum(v for k, v in m.items() if k.startswith("ember_connections{")))
        finally:
            await admin.aclose()
            for stream in streams:
                await stream.aclose()
    return {
        "scenario": "stalled",
        "params": {
            "readers": args.readers, "messages": args.messages, "size": args.size,
            "budget_bytes": args.budget_bytes, "outbox_max_bytes": args.outbox_max_bytes,
        },  # fmt: skip
        "connected": len(streams),
        "connect_s": round(connect_s, 1),
        "push_s": round(push_s, 1),
        "sent": sent,
        "refused_250": refused,
        "pushes_offered_bytes": sent * args.readers * args.size,
        "rss_idle_mib": round(rss_idle / 1024, 1),
        "rss_connected_mib": round(rss_connected / 1024, 1),
        "rss_peak_mib": round(rss_peak / 1024, 1),
        "rss_end_mib": round(rss_end / 1024, 1),
        "rss_max_sampled_mib": round(max((kib for _, kib in samples), default=0) / 1024, 1),
        "outbox_queued_bytes_end": int(m.get("ember_outbox_queued_bytes", 0)),
        "cuts_budget": int(m.get('ember_outbox_cuts_total{reason="budget"}', 0)),
        "cuts_connection_bound": int(m.get('ember_outbox_cuts_total{reason="connection_bound"}', 0)),
        "connections_left": connections,
        "cut_log_lines": cut_lines,  # one per logged cut, at most one a second per reason
        "cut_summary_lines": len(summaries),  # "N cut off without a line of their own", a second after a burst
        "cuts_in_summaries": sum(int(line.split(": ")[-1].split()[0]) for line in summaries),
        # Every cut the log accounts for: its own line, or counted in a later one (cut line or summary).
        "cuts_in_log": cut_lines + unlogged + sum(int(line.split(": ")[-1].split()[0]) for line in summaries),
        "rss_samples_mib": [(t, round(kib / 1024)) for t, kib in samples[:: max(1, len(samples) // 20)]],
        "machine": machine_description(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.stalled", description=__doc__.splitlines()[0])
    p.add_argument("--readers", type=int, default=1000, help="stalled readers, all in one group (default 1000)")
    p.add_argument("--messages", type=int, default=300, help="group messages sent (default 300)")
    p.add_argument("--size", type=int, default=16000, help="text bytes per message (default 16000)")
    p.add_argument(
        "--budget-bytes", type=int, default=512 * 1024 * 1024,
        help="server.outbox_budget_bytes (default 512 MiB, the gateway's default; 0: no process-wide bound)",
    )  # fmt: skip
    p.add_argument("--outbox-max-bytes", type=int, default=None, help="server.outbox_max_bytes (default: the gateway's)")
    p.add_argument("--sample", type=float, default=0.25, help="RSS sampling period in seconds (default 0.25)")
    p.add_argument("--settle", type=float, default=1.0, help="seconds to wait after the last push (default 1)")
    p.add_argument("--drain-timeout", type=float, default=300.0, help="bound on waiting for the fan-out (default 300 s)")
    args = p.parse_args(argv)
    if args.readers <= 0 or args.messages <= 0 or args.size <= 0:
        p.error("--readers, --messages and --size must be positive")
    try:
        result = trio.run(run, args)
    except BenchError as exc:
        print(f"bench.stalled: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
