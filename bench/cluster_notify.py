"""``python -m bench.cluster_notify``: LISTEN/NOTIFY as the cluster uses it, on a real PostgreSQL.

Two measurements, both through the real parts (``gateway.cluster.postgres``):

- **round trip**: one notice at a time, from just before the sender's ``SELECT pg_notify`` (autocommit:
  its own transaction) to the moment the receiving node's trio loop takes it from ``NoticeListener``'s
  channel (so: commit, PostgreSQL's delivery, the listener thread's decode and the hand-off to trio).
  The send time travels in the payload (one process, one monotonic clock).
- **batches**: a writer thread stores batches of ``--batch`` message rows (an ordinary logged table, one
  transaction each) with ``notify_holders`` in the same transaction, recipients spread over ``--nodes``
  listening nodes (plus a share offline); every node's consumer drains its channel. Reported: batches,
  messages and notices per second, first with no notice at all ("none", the baseline), then with
  ``notify_holders`` ("per_batch"), and with ``--per-message`` with one ``pg_notify`` per recipient
  ("per_message", the design measured before issue 24's notice per node per batch).
- **listener burst**: ``--burst`` notices committed at once to one node: how many per second its listener
  (thread, decode, hand-off to trio) takes.

``--spawn`` starts a private server (``bench.pgserver``: initdb + pg_ctl on a temp folder; as root it runs as
the distribution's ``postgres`` user) and reports its CPU per batch; ``--url`` uses an existing server instead.
One JSON line per measurement on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

import trio

from bench.pgserver import PrivateServer, private_server
from gateway.cluster.postgres.database import connect
from gateway.cluster.postgres.listener import NoticeListener
from gateway.cluster.postgres.nodes import NodeLease
from gateway.cluster.postgres.notices import CloseUserNotice, channel_name, encode, send_notice
from gateway.cluster.postgres.notify import notify_holders
from gateway.cluster.postgres.presence import PresenceTable
from gateway.cluster.postgres.tables import NODES, PRESENCE, Connection, ensure_tables


def server_cpu_seconds(server: PrivateServer | None) -> float | None:
    """CPU the server's processes (postmaster and its children) have used so far, or None if unknown."""
    return server.cpu_seconds() if server is not None else None


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def burst(url: str, count: int) -> dict[str, Any]:
    """How fast one node's listener takes notices: ``count`` sent in one transaction, all received."""
    listener = NoticeListener(url, 2, lambda: None, capacity=count)
    sender = connect(url)

    def send_all() -> None:
        payloads = [encode(CloseUserNotice(1, f"user-{i}", 0)) for i in range(count)]
        with sender.transaction():
            sender.execute("SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS t(p)", (channel_name(2), payloads))

    async with trio.open_nursery() as nursery:
        await nursery.start(listener.run)
        await trio.to_thread.run_sync(send_all)
        started = time.perf_counter()
        for _ in range(count):
            await listener.notices.receive()
        seconds = time.perf_counter() - started
        nursery.cancel_scope.cancel()
    sender.close()
    return {"measure": "listener_burst", "count": count, "notices_per_s": round(count / seconds)}


async def round_trip(url: str, count: int) -> dict[str, Any]:
    listener = NoticeListener(url, 2, lambda: None)
    sender = connect(url)
    samples: list[float] = []

    def send_one() -> None:
        sent = time.perf_counter_ns()
        send_notice(sender, 2, CloseUserNotice(1, str(sent), 0))

    async with trio.open_nursery() as nursery:
        await nursery.start(listener.run)
        for _ in range(count):
            await trio.to_thread.run_sync(send_one)
            notice = await listener.notices.receive()
            assert isinstance(notice, CloseUserNotice)
            samples.append((time.perf_counter_ns() - int(notice.user_id)) / 1e6)
        nursery.cancel_scope.cancel()
    sender.close()
    samples.sort()
    return {
        "measure": "round_trip",
        "count": len(samples),
        "p50_ms": round(percentile(samples, 0.50), 3),
        "p99_ms": round(percentile(samples, 0.99), 3),
        "max_ms": round(samples[-1], 3),
    }


def prepare_batches(url: str, nodes: int, users_per_node: int) -> list[str]:
    """Presence rows for ``nodes`` listening nodes (ids 2..), the writer being node 1; the user ids."""
    with connect(url) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {NODES}, {PRESENCE}, bench_messages")
        conn.execute(f"DROP SEQUENCE IF EXISTS {PRESENCE}_generation")
        ensure_tables(conn)
        conn.execute("CREATE TABLE bench_messages (owner text, seq bigint, body bytea, PRIMARY KEY (owner, seq))")
        users: list[str] = []
        for node_id in range(1, nodes + 2):
            NodeLease(node_id, lease_seconds=3600).claim(conn)
            if node_id == 1:
                continue
            presence = PresenceTable(node_id)
            with conn.transaction():
                for i in range(users_per_node):
                    user_id = f"user-{node_id}-{i}"
                    presence.register(conn, user_id, "phone", 2)
                    users.append(user_id)
        users.extend(f"offline-{i}" for i in range(users_per_node))
    return users


def write_batches(conn: Connection, users: list[str], batch: int, mode: str, stop: threading.Event) -> tuple[int, int]:
    """Store batches until ``stop``; (batches, notices sent)."""
    presence = PresenceTable(1)
    body = b"x" * 100
    seq = batches = sent = 0
    cursor = 0
    while not stop.is_set():
        recipients: dict[str, int] = {}
        rows = []
        for _ in range(batch):
            seq += 1
            user_id = users[cursor % len(users)]
            cursor += 7  # spread each batch over the nodes
            recipients[user_id] = seq
            rows.append((user_id, seq, body))
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany("INSERT INTO bench_messages VALUES (%s, %s, %s)", rows)
            if mode == "per_message":
                holders = presence.holders(conn, recipients)
                node_of = {u: n for n, us in holders.items() for u in us}
                channels, payloads = [], []
                for user_id, user_seq in recipients.items():
                    if user_id in node_of:
                        channels.append(channel_name(node_of[user_id]))
                        payloads.append(encode(CloseUserNotice(1, f"{user_id}:{user_seq}", 0)))
                cur.execute("SELECT pg_notify(c, p) FROM unnest(%s::text[], %s::text[]) AS t(c, p)", (channels, payloads))
                sent += len(payloads)
            elif mode == "per_batch":
                sent += sum(notify_holders(conn, presence, recipients).notices.values())
        batches += 1
    return batches, sent


async def batches(url: str, server: PrivateServer | None, args: argparse.Namespace, mode: str) -> dict[str, Any]:
    users = prepare_batches(url, args.nodes, args.users_per_node)
    listeners = [NoticeListener(url, node_id, lambda: None, capacity=1 << 16) for node_id in range(2, args.nodes + 2)]
    received = 0
    expected: int | None = None  # notices sent, once the writer stopped
    caught_up = trio.Event()

    async def drain(listener: NoticeListener) -> None:
        nonlocal received
        async for _ in listener.notices:
            received += 1
            if expected is not None and received >= expected:
                caught_up.set()

    async def stop_later() -> None:
        await trio.sleep(args.duration)
        stop.set()

    writer = connect(url)
    stop = threading.Event()
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            await nursery.start(listener.run)
            nursery.start_soon(drain, listener)
        cpu0, wall0 = server_cpu_seconds(server), time.perf_counter()
        nursery.start_soon(stop_later)
        written, sent = await trio.to_thread.run_sync(write_batches, writer, users, args.batch, mode, stop)
        wall = time.perf_counter() - wall0
        cpu1 = server_cpu_seconds(server)
        expected = sent
        if received >= sent:
            caught_up.set()
        with trio.move_on_after(10):  # let the listeners catch up with what was sent
            await caught_up.wait()
        nursery.cancel_scope.cancel()
    writer.close()
    out: dict[str, Any] = {
        "measure": mode,
        "nodes": args.nodes,
        "batch": args.batch,
        "seconds": round(wall, 2),
        "batches_per_s": round(written / wall),
        "messages_per_s": round(written * args.batch / wall),
        "notices_sent_per_s": round(sent / wall),
        "notices_received": received,
        "notices_sent": sent,
        "dropped": sum(listener.dropped for listener in listeners),
    }
    if cpu0 is not None and cpu1 is not None:
        out["postgres_cpu_us_per_batch"] = round((cpu1 - cpu0) / written * 1e6, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cluster_notify", description=(__doc__ or "").splitlines()[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--spawn", action="store_true", help="start a private PostgreSQL server")
    where.add_argument("--url", help="an existing server (its CPU is not reported)")
    p.add_argument("--round-trips", type=int, default=2000)
    p.add_argument("--nodes", type=int, default=2, help="listening nodes besides the writer")
    p.add_argument("--users-per-node", type=int, default=500)
    p.add_argument("--batch", type=int, default=50, help="message rows (recipients) per transaction")
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--per-message", action="store_true", help="also measure one pg_notify per recipient")
    p.add_argument("--burst", type=int, default=20000, help="notices in the listener's burst")
    p.add_argument("--no-fsync", action="store_true", help="spawned server: fsync off (commit cost without the disk)")
    args = p.parse_args(argv)

    async def run(url: str, server: PrivateServer | None) -> None:
        print(json.dumps(await round_trip(url, args.round_trips)), flush=True)
        print(json.dumps(await burst(url, args.burst)), flush=True)
        for mode in ("none", "per_batch", "per_message") if args.per_message else ("none", "per_batch"):
            print(json.dumps(await batches(url, server, args, mode)), flush=True)

    if args.spawn:
        with private_server(fsync=not args.no_fsync) as server:
            trio.run(run, server.url, server)
    else:
        trio.run(run, args.url, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
