"""``python -m bench SCENARIO [options]``: the coordinator.

It gets a gateway (``--spawn``, or ``--target`` a running one), creates the
users and tokens the scenario needs through the admin API, starts ``--procs``
worker processes (``python -m bench.worker``) and walks them through the
phases: connect → load (warm-up) → measured window → stop → drain. Server CPU
is read from /proc over the measured window only. Progress goes to stderr
once a second; at the end a table, then, as the last stdout line, one JSON
object (``--json FILE`` writes the same).

Exit status: 0; 1 when acked messages were not delivered, nothing was
measured, or (idle) not every connection was held; 2 when the run could not
be made (the message says why).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import trio

from bench import report
from bench.flood import PullFlood
from bench.hist import Latency
from bench.pgserver import private_server
from bench.procfs import (
    FileLimit,
    cpu_seconds,
    cpu_times,
    ephemeral_port_count,
    machine_busy_seconds,
    machine_description,
    main_thread_cpu_seconds,
    max_open_files,
    raise_open_file_limit,
    rss_kib,
)
from bench.target import Admin, BenchError, Target, existing_gateway, spawn_gateway, stop_process

SCENARIOS = ("pairs", "connect", "idle", "group", "chatroom")
#: The chatroom scenario's room (created through the admin API for the run).
BENCH_ROOM = "bench-room"
#: chatroom: the sender's default rate, msg/s (each message is one push per member).
CHATROOM_DEFAULT_RATE = 10.0
#: A source address serves at most this share of the ephemeral port range.
PORTS_PER_SOURCE_SHARE = 0.8
#: Open files a process needs beyond its sockets (interpreter, pipes, SQLite, epoll).
SPARE_FILES = 128
WORKER_START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Load-test an Ember gateway. The last stdout line is a JSON record of the run.",
    )
    p.add_argument(
        "scenario",
        choices=SCENARIOS,
        help="pairs: private messages; connect: handshakes/s; idle: memory per authenticated idle connection; "
        "group: group messages fanned out to every member online; "
        "chatroom: one sender's messages pushed to every member of one room",
    )
    run = p.add_argument_group("run")
    run.add_argument("--duration", type=float, default=10.0, help="measured window in seconds (default 10)")
    run.add_argument("--warmup", type=float, default=2.0, help="load before the window opens (default 2 s)")
    run.add_argument("--procs", type=int, default=2, help="client worker processes (default 2)")
    run.add_argument("--pairs", type=int, default=50, help="pairs: sender→receiver pairs (default 50)")
    run.add_argument(
        "--window", type=int, default=10, help="pairs: messages in flight per pair; group: per sender (default 10)"
    )
    run.add_argument(
        "--members",
        type=int,
        default=None,
        help="group: members per group, all online (default 500); chatroom: members in the room (default 1000)",
    )
    run.add_argument("--groups", type=int, default=1, help="group: groups (default 1)")
    run.add_argument("--senders", type=int, default=2, help="group: senders per group (default 2)")
    run.add_argument(
        "--rate",
        type=float,
        help="pairs: open loop at this many msg/s in total (ignores --window); "
        f"chatroom: the sender's msg/s (default {CHATROOM_DEFAULT_RATE:g})",
    )
    run.add_argument("--size", type=int, default=100, help="pairs: text bytes per message (default 100)")
    run.add_argument(
        "--text",
        choices=("filler", "zh"),
        default="filler",
        help="what the messages say after their header: 'x' repeated (default), or Chinese text as bench search "
        "stores it (about one search-index token per character)",
    )
    run.add_argument(
        "--unindexed",
        action="store_true",
        help="carry the text in the content's 'content' field, which search does not index, instead of "
        "'searchable_content': the same bytes without an index row (the index's cost, paired with a run without it)",
    )
    run.add_argument("--connections", type=int, default=1000, help="idle: connections to hold (default 1000)")
    run.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="connect: handshakes in flight (default 50); idle/pairs: handshakes in flight "
        "while connecting (default 100)",
    )
    run.add_argument(
        "--keepalive", type=int, default=60, help="keepalive announced in CONNECT (default 60 s)"
    )
    run.add_argument(
        "--source-addrs",
        type=int,
        default=0,
        help="loopback source addresses 127.0.0.1.. to connect from (default: as many as "
        "the connection count needs)",
    )
    run.add_argument(
        "--pull-flood",
        type=int,
        default=0,
        metavar="N",
        help="pairs: one more client fills its inbox with N messages, then loops pull(after_seq=0) "
        "through the window (default 0: none); with --spawn the gateway's rate limit becomes twice "
        "what the senders need",
    )
    run.add_argument(
        "--drain-timeout",
        type=float,
        default=10.0,
        help="pairs: wait this long after the window for acks and deliveries (default 10 s)",
    )
    gw = p.add_argument_group("gateway")
    gw.add_argument(
        "--transport", choices=("tcp", "ws"), default="tcp",
        help="what the clients speak: tcp (server.port), or ws, the WebSocket listener (docs/PROTOCOL.md §2.2; "
        "--spawn opens it; with --target, HOST:PORT is then the WebSocket port)",
    )  # fmt: skip
    gw.add_argument("--spawn", action="store_true", help="start a gateway on a temporary data folder")
    gw.add_argument(
        "--postgres", nargs="?", const="private", metavar="URL",
        help="--spawn: store on PostgreSQL (storage.url): a private server started for the run (initdb on a temp "
        "folder, fsync on; bench/pgserver.py), or the database URL given; the record gains the database's CPU "
        "per message when the server is private",
    )  # fmt: skip
    gw.add_argument(
        "--nodes", type=int, default=0, metavar="N",
        help="pairs, --spawn --postgres: N gateways as one cluster (server.cluster, node ids 1..N) on the one "
        "database, each pair's sender and receiver on different nodes (with N >= 2 every delivery crosses "
        "nodes); the record gains nodes, cross_node_deliveries and each node's CPU",
    )  # fmt: skip
    gw.add_argument("--target", metavar="HOST:PORT", help="a running gateway's client port")
    gw.add_argument("--admin", metavar="URL", help="its admin API base URL")
    gw.add_argument("--admin-secret", help="its admin secret (prefer $EMBER_ADMIN_SECRET)")
    gw.add_argument("--server-pid", type=int, help="its pid, for CPU and memory figures")
    gw.add_argument(
        "--server-log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="--spawn: the gateway's log level (default INFO, the gateway's default)",
    )
    gw.add_argument("--keep-data", action="store_true", help="--spawn: keep the data folder and gateway log")
    gw.add_argument(
        "--admin-concurrency",
        type=int,
        default=8,
        help="admin calls in flight while creating users and tokens (default 8)",
    )
    gw.add_argument(
        "--user-prefix", default="bench-u", help="user ids are PREFIX0, PREFIX1, ... (default bench-u)"
    )
    out = p.add_argument_group("output")
    out.add_argument("--json", type=Path, metavar="FILE", help="also write the JSON record here")
    out.add_argument(
        "--plot", type=Path, metavar="FILE.png", help="draw latency by percentile (needs matplotlib)"
    )
    out.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def _check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.spawn == bool(args.target):
        p.error("choose one of --spawn or --target HOST:PORT")
    if args.postgres and not args.spawn:
        p.error("--postgres goes with --spawn (a running gateway has its own storage)")
    if args.nodes < 0 or (args.nodes and not (args.spawn and args.postgres and args.scenario == "pairs")):
        p.error("--nodes N (N >= 1) goes with pairs --spawn --postgres")
    if args.nodes and args.transport != "tcp":
        p.error("--nodes: the clients speak tcp")
    if args.concurrency is None:
        args.concurrency = 50 if args.scenario == "connect" else 100
    if args.scenario == "chatroom" and args.rate is None:
        args.rate = CHATROOM_DEFAULT_RATE
    if args.members is None:
        args.members = 1000 if args.scenario == "chatroom" else 500
    for name in (
        "duration", "procs", "pairs", "window", "size", "connections", "concurrency", "keepalive", "members", "groups",
        "senders",
    ):  # fmt: skip
        if getattr(args, name) <= 0:
            p.error(f"--{name} must be positive")
    if args.warmup < 0 or args.source_addrs < 0:
        p.error("--warmup and --source-addrs cannot be negative")
    if args.rate is not None and args.rate <= 0:
        p.error("--rate must be positive")
    if args.pull_flood and args.scenario != "pairs":
        p.error("--pull-flood goes with the pairs scenario")
    if args.scenario == "group" and (args.members < 2 or args.senders > args.members):
        p.error("--members must be at least 2 and at least --senders")
    if args.pull_flood < 0:
        p.error("--pull-flood cannot be negative")
    if args.keepalive < 10:
        p.error("--keepalive below 10 s: the gateway's default minimum is 10")
    if args.plot:
        try:
            report.check_plot_available()
        except ImportError as exc:
            p.error(str(exc))


def _params(args: argparse.Namespace) -> dict[str, Any]:
    common = {"procs": args.procs}
    if args.scenario == "pairs":
        loop = {"rate": args.rate} if args.rate else {"window": args.window}
        flood = (
            {"pull_flood": args.pull_flood, "request_rate_limit": _flood_rate_limit(args)}
            if args.pull_flood
            else {}
        )
        text = {"text": args.text, "unindexed": args.unindexed}
        return {"pairs": args.pairs, **loop, "size": args.size, **text, **flood, **common}
    if args.scenario == "connect":
        return {"concurrency": args.concurrency, **common}
    if args.scenario == "group":
        return {
            "members": args.members, "groups": args.groups, "senders": args.senders, "window": args.window,
            "size": args.size, **common,
        }  # fmt: skip
    if args.scenario == "chatroom":
        return {"members": args.members, "rate": args.rate, "size": args.size, **common}
    return {
        "connections": args.connections,
        "concurrency": args.concurrency,
        "keepalive": args.keepalive,
        **common,
    }


def _flood_rate_limit(args: argparse.Namespace) -> int | None:
    """With --pull-flood: the spawned gateway's request_rate_limit, twice what a sender needs per 5 s.

    The default spawned limit is unbounded (the bench measures the message path, not refusals), which
    would let the flooder pull without limit; a real deployment's limit is what stops it.
    """
    if not args.pull_flood or not args.spawn:
        return None
    per_sender = (args.rate / args.pairs) if args.rate else 1000.0
    return max(100, math.ceil(2 * 5 * per_sender))


def _log(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr, flush=True)


class Worker:
    def __init__(self, index: int, proc: trio.Process, units: int) -> None:
        self.index = index
        self.proc = proc
        self.units = units
        self.seen: dict[str, dict[str, Any]] = {}  # message kind → latest message of that kind
        self.changed = trio.Event()

    async def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            await self.proc.stdin.send_all((json.dumps(obj, separators=(",", ":")) + "\n").encode())
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # it died; its reader reports that

    async def read(self) -> None:
        assert self.proc.stdout is not None
        buffer = b""
        while True:
            data = await self.proc.stdout.receive_some(1 << 20)
            if not data:
                break
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                message = json.loads(line)
                self.seen[message["t"]] = message
                self.changed.set()
                self.changed = trio.Event()
        await self.proc.wait()
        self.seen.setdefault("exited", {"status": self.proc.returncode})
        self.changed.set()


class Workers:
    """The worker processes, their pipes and the phase handshake."""

    def __init__(self, workers: list[Worker]) -> None:
        self.list = workers

    async def broadcast(self, cmd: str) -> None:
        for w in self.list:
            await w.send({"cmd": cmd})

    async def wait_all(self, kind: str, seconds: float) -> list[dict[str, Any]]:
        with trio.move_on_after(seconds):
            while True:
                for w in self.list:
                    if "fatal" in w.seen:
                        raise BenchError(f"worker {w.index}: {w.seen['fatal']['msg']}")
                    if "exited" in w.seen and kind not in w.seen:
                        raise BenchError(f"worker {w.index} exited with status {w.seen['exited']['status']}")
                pending = [w for w in self.list if kind not in w.seen]
                if not pending:
                    return [w.seen[kind] for w in self.list]
                await pending[0].changed.wait()
        raise BenchError(f"workers did not report {kind!r} within {seconds:.0f} s")

    def progress(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for w in self.list:
            latest = max(
                (w.seen[k] for k in ("ready", "progress", "final") if k in w.seen),
                key=lambda m: (m.get("sent", 0), m.get("delivered", 0), m.get("acked", 0)),
                default={},
            )
            for key in ("sent", "acked", "delivered", "errors", "conns"):
                total[key] += latest.get(key, 0)
        return total


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _split(n: int, parts: int) -> list[range]:
    """``range(n)`` cut into ``parts`` contiguous nearly equal ranges."""
    bounds = [n * i // parts for i in range(parts + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(parts)]


def _source_addrs(args: argparse.Namespace, host: str, sockets: int) -> list[str | None]:
    if not host.startswith("127."):
        if args.source_addrs > 1:
            raise BenchError("--source-addrs applies to loopback targets (127.x.x.x) only")
        return [None]
    per_source = int(ephemeral_port_count() * PORTS_PER_SOURCE_SHARE)
    count = args.source_addrs or math.ceil(sockets / per_source)
    if count <= 1:
        return [None]
    if count > 250:
        raise BenchError(f"{sockets} connections need {count} source addresses; at most 250 are used")
    return [f"127.0.0.{i + 1}" for i in range(count)]


def _check_file_limits(args: argparse.Namespace, limit: FileLimit, target: Target, sockets: int) -> list[str]:
    notes = []
    if limit.soft > limit.raised_from:
        notes.append(f"open-file limit raised from {limit.raised_from} to {limit.soft}")
    per_worker = math.ceil(sockets / args.procs) + SPARE_FILES
    if per_worker > limit.soft:
        raise BenchError(
            f"each worker needs about {per_worker} open files but the hard limit is {limit.hard}: "
            f"raise it (ulimit -Hn, LimitNOFILE=) or use more --procs"
        )
    server_limit = limit.soft if target.spawned else (max_open_files(target.pid) if target.pid else None)
    if server_limit is not None and sockets + SPARE_FILES > server_limit:
        msg = (
            f"the gateway needs about {sockets + SPARE_FILES} open files for this run but its limit is "
            f"{server_limit}: raise it (ulimit -n before starting it, LimitNOFILE=)"
        )
        if target.spawned:
            raise BenchError(msg)
        notes.append("WARNING: " + msg)
    return notes


async def _start_workers(jobs: list[dict[str, Any]], units: list[int], nursery: trio.Nursery) -> Workers:
    workers = []
    for i, job in enumerate(jobs):
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "bench.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        worker = Worker(i, proc, units[i])
        workers.append(worker)
        nursery.start_soon(worker.read)
        await worker.send(job)
    return Workers(workers)


async def _stop_workers(workers: Workers) -> None:
    with trio.CancelScope(shield=True):
        await workers.broadcast("exit")
        for w in workers.list:
            if w.proc.stdin is not None:
                await w.proc.stdin.aclose()
        with trio.move_on_after(STOP_TIMEOUT):
            for w in workers.list:
                await w.proc.wait()
        for w in workers.list:
            await stop_process(w.proc, grace_seconds=2.0)


def _jobs(
    args: argparse.Namespace,
    target: Target,
    tokens: list[str],
    sources: list[str | None],
    nodes: Sequence[Target] = (),
) -> tuple[list[dict[str, Any]], list[int]]:
    common = {
        "scenario": args.scenario,
        "host": target.host,
        "port": target.ws_port if args.transport == "ws" and target.spawned else target.port,
        "transport": args.transport,
        "source_addrs": sources if sources != [None] else [],
        "keepalive": args.keepalive,
        "concurrency": max(1, args.concurrency // args.procs),
        "window": args.window,
        "size": args.size,
        "text": args.text,
        "unindexed": args.unindexed,
        "drain_timeout": args.drain_timeout,
    }
    if args.scenario == "pairs":
        procs = min(args.procs, args.pairs)
        pairs = [(tokens[2 * i], tokens[2 * i + 1]) for i in range(args.pairs)]
        ranges = _split(args.pairs, procs)
        jobs = [
            {
                **common,
                "pairs": [pairs[i] for i in r],
                "rate": args.rate * len(r) / args.pairs if args.rate else None,
            }
            for r in ranges
        ]
        if nodes:  # pair i: its sender on node i mod N, its receiver on the next node
            for job, r in zip(jobs, ranges, strict=True):
                job["pair_ports"] = [
                    (nodes[i % len(nodes)].port, nodes[(i + 1) % len(nodes)].port) for i in r
                ]
        return jobs, [len(r) for r in ranges]
    if args.scenario == "group":
        # Member connections dealt round-robin over the workers: a group's fan-out reaches every process.
        procs = min(args.procs, len(tokens))
        members = [
            (tokens[i], i // args.members, i % args.members, i % args.members < args.senders)
            for i in range(len(tokens))
        ]
        shares = [members[w::procs] for w in range(procs)]
        group_ids = [_group_id(args, k) for k in range(args.groups)]
        return [{**common, "members": share, "group_ids": group_ids} for share in shares], [len(s) for s in shares]
    if args.scenario == "chatroom":  # the members split over the workers; the last token is the sender's
        room_tokens, sender = tokens[:-1], tokens[-1]
        ranges = _split(len(room_tokens), min(args.procs, len(room_tokens)))
        jobs = [
            {**common, "tokens": [room_tokens[i] for i in r], "room": BENCH_ROOM, "rate": args.rate}
            for r in ranges
        ]
        jobs[0]["sender"] = sender
        return jobs, [len(r) for r in ranges]
    procs = min(args.procs, len(tokens))
    ranges = _split(len(tokens), procs)
    if args.scenario == "connect":
        return [{**common, "tokens": [tokens[i] for i in r]} for r in ranges], [len(r) for r in ranges]
    # idle: each worker connects its share with its share of the concurrency
    return [{**common, "tokens": [tokens[i] for i in r]} for r in ranges], [len(r) for r in ranges]


def _group_id(args: argparse.Namespace, k: int) -> str:
    return f"{args.user_prefix}g{k}"


async def _create_groups(args: argparse.Namespace, admin: Admin, user_ids: list[str]) -> None:
    """Group k: users [k·M, (k+1)·M), owned by its first; through the admin API."""
    for k in range(args.groups):
        members = user_ids[k * args.members : (k + 1) * args.members]
        await admin.call(
            "/admin/group/create",
            {"owner": members[0], "group_id": _group_id(args, k), "name": f"bench {k}", "members": members[1:]},
        )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    limit = raise_open_file_limit()
    users = {
        "pairs": 2 * args.pairs, "connect": args.concurrency, "idle": args.connections,
        "group": args.members * args.groups,
        "chatroom": args.members + 1,
    }[args.scenario]  # fmt: skip
    sockets = users  # connect: at most one socket per user at a time
    async with AsyncExitStack() as stack:
        storage_url, database = "", None
        if args.postgres == "private":
            database = stack.enter_context(private_server())
            storage_url = database.url
        elif args.postgres:
            storage_url = args.postgres
        nodes: list[Target] = []
        if args.nodes:
            for node_id in range(1, args.nodes + 1):
                nodes.append(
                    await stack.enter_async_context(
                        spawn_gateway(
                            storage_url=storage_url,
                            log_level=args.server_log_level,
                            keep_data=args.keep_data,
                            request_rate_limit=_flood_rate_limit(args),
                            secrets_from=nodes[0] if nodes else None,
                            node_id=node_id,
                        )
                    )
                )
            target = nodes[0]
        elif args.spawn:
            target = await stack.enter_async_context(
                spawn_gateway(
                    storage_url=storage_url,
                    log_level=args.server_log_level,
                    keep_data=args.keep_data,
                    request_rate_limit=_flood_rate_limit(args),
                    group_max_members=max(2000, args.members),
                    ws=args.transport == "ws",
                )
            )
        else:
            target = await stack.enter_async_context(
                existing_gateway(args.target, args.admin, args.admin_secret, args.server_pid)
            )
        pid = target.pid
        for note in _check_file_limits(args, limit, target, sockets):
            _log(args, f"bench: {note}")
        sources = _source_addrs(args, target.host, sockets)
        if sources != [None]:
            _log(args, f"bench: connecting from {len(sources)} source addresses 127.0.0.1-{sources[-1]}")

        admin = Admin(target.admin_url, target.admin_secret, args.admin_concurrency)
        stack.push_async_callback(admin.aclose)
        user_ids = [f"{args.user_prefix}{i}" for i in range(users + (2 if args.pull_flood else 0))]
        started = time.perf_counter()
        tokens = await admin.provision(
            user_ids,
            args.admin_concurrency,
            lambda done: _log(
                args,
                f"bench: setup {done:,}/{users:,} users and tokens "
                f"({done / (time.perf_counter() - started):,.0f}/s)",
            ),
        )
        setup_s = time.perf_counter() - started
        _log(args, f"bench: {users:,} users and tokens in {setup_s:.1f} s ({users / setup_s:,.0f}/s)")

        if args.scenario == "group":
            await _create_groups(args, admin, user_ids)
        flood = None
        if args.pull_flood:
            flood_token, sink = tokens[-2], user_ids[-1]
            tokens, user_ids = tokens[:users], user_ids[:users]
            flood = PullFlood(target.host, target.port, flood_token, sink, args.pull_flood, admin)
        if args.scenario == "chatroom":
            await admin.call("/admin/chatroom/create", {"chatroom_id": BENCH_ROOM, "title": "bench"})
        jobs, units = _jobs(args, target, tokens, sources, nodes)
        async with trio.open_nursery() as nursery:
            if flood is not None:
                await nursery.start(flood.run)
                _log(args, f"bench: pull flood: filling its inbox with {args.pull_flood:,} messages")
                with trio.fail_after(60.0 + args.pull_flood / 100):
                    await flood.filled.wait()
            workers = await _start_workers(jobs, units, nursery)
            try:
                result = await _phases(
                    args, workers, pid, len(tokens), flood, db_cpu=database.cpu_seconds if database else None,
                    nodes=nodes,
                )
            finally:
                if flood is not None:
                    flood.stop()
                await _stop_workers(workers)
            if flood is not None:
                result["pull_flood"] = flood.stats.record()
        if args.scenario == "chatroom":
            room = await admin.call("/admin/chatroom/info", {"chatroom_id": BENCH_ROOM})
            result["room"] = {"member_count": room["member_count"], **room["stats"]}
        result["setup"] = {"users": users, "seconds": round(setup_s, 2), "per_s": round(users / setup_s, 1)}
        result["source_addrs"] = len(sources)
        result["open_file_limit"] = limit.soft
        result["gateway"] = {
            "spawned": target.spawned, "pid": pid, "host": target.host, "port": target.port,
            "transport": args.transport, "storage": "postgresql" if storage_url else "sqlite",
        }  # fmt: skip
        result["machine"] = machine_description()
        return result


async def _phases(
    args: argparse.Namespace,
    workers: Workers,
    pid: int | None,
    users: int,
    flood: PullFlood | None = None,
    *,
    db_cpu: Callable[[], float] | None = None,
    nodes: Sequence[Target] = (),
) -> dict[str, Any]:
    await workers.wait_all("hello", WORKER_START_TIMEOUT)
    pids = [n.pid for n in nodes if n.pid] if nodes else ([pid] if pid else [])
    rss_before = rss_kib(pid) if pid else None
    _log(args, f"bench: {len(workers.list)} worker processes; connecting")
    started = time.perf_counter()
    await workers.broadcast("start")
    connect_budget = 60.0 + users / 50
    readies = await workers.wait_all("ready", connect_budget)
    connected = sum(r.get("connected", 0) for r in readies)
    failed = sum(r.get("errors", 0) for r in readies)
    _log(
        args,
        f"bench: connected in {time.perf_counter() - started:.1f} s"
        + (f"; {failed:,} connection(s) FAILED" if failed else ""),
    )
    await workers.broadcast("load")
    await trio.sleep(args.warmup if args.scenario != "idle" else max(1.0, args.warmup))

    cpu0 = _cpu_times(pids) if pids else None
    main0 = sum(main_thread_cpu_seconds(p) for p in pids) if pids else None
    node_cpu0 = [cpu_seconds(p) for p in pids]
    pushed0 = await _cross_node_pushes(nodes)
    db0 = db_cpu() if db_cpu else None
    busy0 = machine_busy_seconds()
    self0 = _own_cpu()
    t0 = trio.current_time()
    await workers.broadcast("go")
    if flood is not None:
        flood.go()
    last = workers.progress()
    second = 0
    while trio.current_time() < t0 + args.duration:
        second += 1
        await trio.sleep_until(min(t0 + second, t0 + args.duration))
        now = workers.progress()
        cpu_note = ""
        if pids:
            used = sum(_cpu_times(pids)) - sum(cpu0 or (0.0, 0.0))
            cpu_note = f"  server CPU {100 * used / (trio.current_time() - t0):.0f}%"
        _log(
            args,
            f"[{second:4d}s] sent {now['sent']:,} (+{now['sent'] - last['sent']:,})  "
            f"delivered {now['delivered']:,} (+{now['delivered'] - last['delivered']:,})  "
            f"errors {now['errors']:,}  conns {now['conns']:,}{cpu_note}",
        )
        last = now
    t1 = trio.current_time()
    if flood is not None:
        flood.stop()
    cpu1 = _cpu_times(pids) if pids else None
    main1 = sum(main_thread_cpu_seconds(p) for p in pids) if pids else None
    node_cpu1 = [cpu_seconds(p) for p in pids]
    pushed1 = await _cross_node_pushes(nodes)
    db1 = db_cpu() if db_cpu else None
    busy1 = machine_busy_seconds()
    self1 = _own_cpu()
    rss_after = rss_kib(pid) if pid else None
    await workers.broadcast("stop")
    finals = await workers.wait_all("final", args.drain_timeout + 30.0)
    result = _result(args, finals, t1 - t0, cpu0, cpu1, rss_before, rss_after, connected)
    # The trio loop's share, the rest being the storage threads': where to look first when it is high.
    result["server_cpu_main_thread_s"] = (
        round(main1 - main0, 3) if main0 is not None and main1 is not None else None
    )
    # CPU the rest of the machine used meanwhile: a busy neighbour makes rates and latencies
    # (not the gateway's own CPU accounting) worth little, so the record says so.
    if db0 is not None and db1 is not None:
        # The database server's processes over the same window: on PostgreSQL, the other half of a message's cost.
        # Per message by the same count as server_cpu_us_per_msg (its CPU over its per-message figure).
        db_s = db1 - db0
        cpu, per_msg = result["server_cpu_s"], result["server_cpu_us_per_msg"]
        result["db_cpu_s"] = round(db_s, 3)
        result["db_cpu_us_per_msg"] = round(db_s * per_msg / cpu, 1) if cpu and per_msg else None
    if nodes:
        # server_cpu_s is summed over the nodes; each node's share, and the deliveries a node made on another
        # node's notice inside the window (ember_cluster_pushes_total: the receiver's node is not the sender's).
        result["nodes"] = len(nodes)
        result["node_cpu_s"] = [round(b - a, 3) for a, b in zip(node_cpu0, node_cpu1, strict=True)]
        result["cross_node_deliveries"] = pushed1 - pushed0
    ours = (result["server_cpu_s"] or 0.0) + result.get("db_cpu_s", 0.0) + result["client_cpu_s"] + (self1 - self0)
    result["other_cpu_s"] = round(max(0.0, busy1 - busy0 - ours), 2)
    return result


def _cpu_times(pids: Sequence[int]) -> tuple[float, float]:
    """(user, system) CPU seconds of all the processes, summed (the nodes of a cluster run)."""
    times = [cpu_times(p) for p in pids]
    return sum(t[0] for t in times), sum(t[1] for t in times)


async def _cross_node_pushes(nodes: Sequence[Target]) -> int:
    """Pushes the nodes made so far on other nodes' notices, from each node's /metrics (0 with no nodes)."""
    total = 0
    async with httpx.AsyncClient(timeout=10) as http:
        for node in nodes:
            text = (await http.get(f"{node.admin_url}/metrics")).text
            for line in text.splitlines():
                if line.startswith("ember_cluster_pushes_total "):
                    total += int(float(line.split()[1]))
    return total


def _result(
    args: argparse.Namespace,
    finals: list[dict[str, Any]],
    duration: float,
    cpu0: tuple[float, float] | None,
    cpu1: tuple[float, float] | None,
    rss_before: int | None,
    rss_after: int | None,
    connected: int,
) -> dict[str, Any]:
    window: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    latency, latency_ack = Latency(), Latency()
    for f in finals:
        window.update(f["window"])
        errors.update(f["error_kinds"])
        latency.add_encoded(f["latency"])
        latency_ack.add_encoded(f.get("latency_ack", ""))
    cpu = sys_cpu = None
    if cpu0 is not None and cpu1 is not None:
        cpu = round(sum(cpu1) - sum(cpu0), 3)
        sys_cpu = round(cpu1[1] - cpu0[1], 3)
    # What "per message" means: handshakes completed, pongs, or messages delivered inside the window.
    fanned = ("pairs", "group", "chatroom")
    per = window["delivered_in_window"] if args.scenario in fanned else window["delivered"]
    held = sum(f.get("conns", 0) for f in finals)
    result: dict[str, Any] = {
        "scenario": args.scenario,
        "params": _params(args),
        "duration_s": round(duration, 3),
        "sent": window["sent"],
        "acked": window["acked"],
        "delivered": window["delivered"],
        "errors": window["errors"],
        "delivered_per_s": round(per / duration, 1) if duration else None,
        "server_cpu_s": cpu,
        "server_cpu_us_per_msg": round(cpu * 1e6 / per, 1) if cpu is not None and per else None,
        "server_cpu_sys_s": sys_cpu,  # the kernel's share of server_cpu_s (syscalls, TCP)
        "server_rss_kib": rss_after,
        "server_rss_before_kib": rss_before,
        "rss_kib_per_conn": None,
        "latency": latency.summary(),
        "client_cpu_s": round(sum(f.get("client_cpu_s", 0.0) for f in finals), 3),
        "error_kinds": dict(errors),
    }
    if args.scenario == "idle":
        result["connections"] = held
        result["connected"] = connected
        if rss_after is not None and rss_before is not None and held:
            result["rss_kib_per_conn"] = round((rss_after - rss_before) / held, 2)
        # What a quiet gateway costs: all its CPU in the window (PONGs, idle deadlines, its threads) over
        # the connection-hours it held. server_cpu_us_per_msg is the same CPU per PING.
        if cpu is not None and held and duration:
            result["server_cpu_ms_per_conn_hour"] = round(cpu * 1e3 / (held * duration / 3600), 2)
    if args.scenario == "chatroom":
        # Every message acked that was sent in the sender's window is owed one push per member, once.
        numbers = [n for f in finals for n in f.get("acked_numbers", ())]
        got: Counter[str] = Counter()
        for f in finals:
            got.update(f.get("received", {}))
        result["undelivered"] = sum(max(0, args.members - got[str(n)]) for n in numbers)
        result["duplicated"] = sum(max(0, got[str(n)] - args.members) for n in numbers)
        result["unanswered"] = sum(f.get("unanswered", 0) for f in finals)
        result["delivered_in_window"] = window["delivered_in_window"]
        result["deliveries_per_server_cpu_s"] = round(per / cpu, 1) if cpu else None
    if args.scenario == "pairs":
        result["undelivered"] = sum(f.get("undelivered", 0) for f in finals)
        result["unanswered"] = sum(f.get("unanswered", 0) for f in finals)
        result["delivered_in_window"] = window["delivered_in_window"]
        result["latency_ack"] = latency_ack.summary()
    if args.scenario == "group":
        acked: list[str] = [key for f in finals for key in f.get("acked_keys", ())]
        received: Counter[str] = Counter()
        for f in finals:
            received.update(f.get("received", {}))
        expected = args.members - 1  # every other member's one connection
        result["undelivered"] = sum(max(0, expected - received[key]) for key in acked)
        result["duplicated"] = sum(max(0, received[key] - expected) for key in acked)
        result["acked_total"] = len(acked)
        result["unanswered"] = sum(f.get("unanswered", 0) for f in finals)
        result["refused"] = sum(f.get("refused", 0) for f in finals)  # 250: the fan-out backlog was full
        result["delivered_in_window"] = window["delivered_in_window"]
        result["server_cpu_us_per_delivery"] = result["server_cpu_us_per_msg"]
        result["deliveries_per_server_cpu_s"] = (
            round(window["delivered_in_window"] / cpu) if cpu else None
        )
        result["latency_ack"] = latency_ack.summary()
    label = {
        "pairs": "send→receive", "connect": "connect→CONNACK", "idle": "ping→pong", "group": "send→each member", "chatroom": "send→member",
    }[args.scenario]  # fmt: skip
    result["_curves"] = {label: latency}
    if args.scenario in ("pairs", "group"):
        result["_curves"]["send→ack"] = latency_ack
    return result


def _bench_error(exc: BaseException) -> BenchError | None:
    """The BenchError that ended the run, also from inside trio's exception groups."""
    if isinstance(exc, BenchError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _bench_error(inner)
            if found is not None:
                return found
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    try:
        result = trio.run(run, args)
    except (BenchError, BaseExceptionGroup) as exc:
        error = _bench_error(exc)
        if error is None:
            raise
        print(f"bench: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    curves = result.pop("_curves")
    if args.plot:
        p = result["params"]
        report.plot(args.plot, curves, f"ember {args.scenario} " + " ".join(f"{k}={v}" for k, v in p.items()))
        result["plot"] = str(args.plot)
    other_share = result["other_cpu_s"] / result["duration_s"] if result["duration_s"] else 0.0
    if other_share > 0.15:
        print(
            f"bench: WARNING: other processes used {100 * other_share:.0f}% of a core during the window; "
            f"rates and latencies are not representative (server CPU per message less affected)",
            file=sys.stderr,
        )
    line = report.json_line(result)
    if args.json:
        args.json.write_text(line + "\n")
    print(report.table(result))
    print(line, flush=True)
    if args.scenario in ("pairs", "group") and result.get("undelivered"):
        print(f"bench: {result['undelivered']} acked message(s) were never delivered", file=sys.stderr)
        return 1
    if args.scenario == "chatroom" and result.get("undelivered"):
        print(
            f"bench: {result['undelivered']} push(es) owed to members never arrived "
            f"(room counters: {result.get('room')})",
            file=sys.stderr,
        )
        return 1
    if args.scenario == "idle":
        if result["connections"] < args.connections:
            print(
                f"bench: only {result['connections']} of {args.connections} connections were held",
                file=sys.stderr,
            )
            return 1
    elif not result["delivered"]:
        print("bench: nothing was measured (no deliveries in the window)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
