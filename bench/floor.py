"""What the bare minimum of a light-load message costs on this machine: the floor under ``bench pairs --rate``.

Not Ember: four throwaway servers that do a chosen part of what the gateway does for a private message, with
nothing else around it, driven like ``bench pairs --rate`` (pairs of connections, a sender's request answered
with an ack on its own socket and a push to its receiver's). Their CPU per message is what that part costs
here at that rate, wake-ups and cold caches included, so the gateway's figure can be read against it
(bench/RESULTS.md, "Session 6"):

- ``echo-raw``: a plain ``select.epoll`` loop, no trio: read the request, write an ack and a push;
- ``echo-trio``: the same under trio, reads served as Ember's read poller does (one task, an epoll set of its
  own, ``trio.lowlevel.wait_readable`` on it);
- ``crypto``: ``echo-trio`` plus what the frames need: AES-256-GCM open, MessagePack decode, and the ack and
  push encoded and sealed;
- ``commit``: ``crypto`` plus a SQLite transaction per pass (WAL, ``synchronous = NORMAL``, on the trio
  thread): a check query, a message row and two inbox rows per message, COMMIT before the acks.

    python -m bench.floor commit --rate 2000 --pairs 50 --duration 5

``--linger-ms`` makes a trio server wait after each wake-up before it reads (the latency-for-CPU trade a
gateway could make); ``--client-work-us`` makes the clients as busy as ``bench pairs``' own.

Loopback only; the server and the two client processes are this command's children and end with it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any

import msgpack
import trio
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KINDS = ("echo-raw", "echo-trio", "crypto", "commit")
_LENGTH = struct.Struct(">I")  # each frame: a 4-byte length, then the bytes
_NONCE = struct.Struct(">4xQ")  # a per-direction counter, as Ember's frames use
_KEY = bytes(range(32))  # both sides know it: key exchange is not what is measured
_TEXT = "x" * 100


def _frames(buffer: bytearray) -> list[bytes]:
    out = []
    while len(buffer) >= 4:
        (size,) = _LENGTH.unpack_from(buffer)
        if len(buffer) < 4 + size:
            break
        out.append(bytes(buffer[4 : 4 + size]))
        del buffer[: 4 + size]
    return out


class _Peer:
    """One server-side connection: its socket, role (b"s" sender / b"r" receiver), pair and counters."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.fd = sock, sock.fileno()
        self.role: bytes | None = None
        self.pair = -1
        self.buffer = bytearray()
        self.opened = self.sealed = 0


class _Server:
    def __init__(self, kind: str, port: int) -> None:
        self.kind = kind
        self.aead = AESGCM(_KEY)
        self.listener = socket.create_server(("127.0.0.1", port), backlog=1024)
        self.listener.setblocking(False)
        self.epoll = select.epoll()
        self.epoll.register(self.listener.fileno(), select.EPOLLIN)
        self.peers: dict[int, _Peer] = {}
        self.receivers: dict[int, _Peer] = {}
        self.db: sqlite3.Connection | None = None
        self.seqs: dict[str, int] = {}
        self.message_id = 0
        if kind == "commit":
            self.folder = tempfile.TemporaryDirectory()
            db = sqlite3.connect(os.path.join(self.folder.name, "floor.db"), isolation_level=None)
            db.execute("PRAGMA page_size=2048")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE users (user_id TEXT PRIMARY KEY, status INTEGER NOT NULL)")
            db.execute("CREATE TABLE messages (message_id INTEGER PRIMARY KEY, from_user TEXT, target TEXT,"
                       " content BLOB, server_time INTEGER)")  # fmt: skip
            db.execute("CREATE TABLE inbox_recent (user_id TEXT, seq INTEGER, message_id INTEGER)")
            db.executemany("INSERT INTO users VALUES (?, 0)", [(f"{r}{i}",) for r in "sr" for i in range(10_000)])
            self.db = db

    def pass_(self, ready: list[tuple[int, int]]) -> None:
        """Serve every ready socket once; then commit (``commit``) and answer what the pass read."""
        work: list[tuple[_Peer, Any]] = []
        for fd, _ in ready:
            if fd == self.listener.fileno():
                self._accept()
                continue
            peer = self.peers[fd]
            data = os.read(fd, 65536)
            if not data:
                self.epoll.unregister(fd)
                del self.peers[fd]
                peer.sock.close()
                continue
            peer.buffer += data
            for frame in _frames(peer.buffer):
                if peer.role is None:
                    peer.role, peer.pair = frame[:1], int(frame[1:])
                    if peer.role == b"r":
                        self.receivers[peer.pair] = peer
                elif self.kind in ("echo-raw", "echo-trio"):
                    work.append((peer, frame))
                else:
                    plain = self.aead.decrypt(_NONCE.pack(peer.opened), frame, None)
                    peer.opened += 1
                    work.append((peer, msgpack.unpackb(plain)))
        if not work:
            return
        if self.db is not None:
            self._commit(work)
        for peer, request in work:
            receiver = self.receivers.get(peer.pair)
            if self.kind in ("echo-raw", "echo-trio"):
                os.write(peer.fd, _LENGTH.pack(60) + bytes(60))
                if receiver is not None:
                    push = request + bytes(75)  # the size of a sealed push
                    os.write(receiver.fd, _LENGTH.pack(len(push)) + push)
                continue
            ack = {"id": request["id"], "c": 0, "r": {"message_id": self.message_id, "server_time": 1, "seq": 1}}
            self._send(peer, msgpack.packb(ack))
            if receiver is not None:
                self._send(receiver, msgpack.packb({"t": "msg", "d": {"seq": 1, "message": request["p"]}}))

    def _send(self, peer: _Peer, plain: bytes) -> None:
        sealed = self.aead.encrypt(_NONCE.pack(peer.sealed), plain, None)
        peer.sealed += 1
        os.write(peer.fd, _LENGTH.pack(len(sealed)) + sealed)

    def _commit(self, work: list[tuple[_Peer, Any]]) -> None:
        db = self.db
        assert db is not None
        db.execute("BEGIN IMMEDIATE")
        for peer, request in work:
            sender, target = f"s{peer.pair}", request["p"]["target"]
            db.execute("SELECT (SELECT status FROM users WHERE user_id = ?1),"
                       " (SELECT status FROM users WHERE user_id = ?2)", (sender, target)).fetchone()  # fmt: skip
            self.message_id += 1
            db.execute("INSERT INTO messages VALUES (?, ?, ?, ?, ?)",
                       (self.message_id, sender, target, msgpack.packb(request["p"]), 0))  # fmt: skip
            rows = []
            for owner in (target, sender):
                self.seqs[owner] = seq = self.seqs.get(owner, 0) + 1
                rows.append((owner, seq, self.message_id))
            db.executemany("INSERT INTO inbox_recent VALUES (?, ?, ?)", rows)
        db.execute("COMMIT")

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.peers[sock.fileno()] = _Peer(sock)
            self.epoll.register(sock.fileno(), select.EPOLLIN)


def _serve(kind: str, port: int, linger_s: float) -> None:
    server = _Server(kind, port)
    print("ready", flush=True)
    if kind == "echo-raw":
        while True:
            server.pass_(server.epoll.poll(-1, 512))

    async def run() -> None:
        while True:
            await trio.lowlevel.wait_readable(server.epoll.fileno())
            if linger_s:  # let more arrive first: fewer passes (and commits), each message later
                await trio.sleep(linger_s)
            server.pass_(server.epoll.poll(0, 512))

    trio.run(run)


def _client(port: int, first: int, count: int, interval: float, seconds: float, work_s: float) -> None:
    """``count`` pairs from ``first``: each sender sends every ``interval`` s (open loop) for ``seconds``;
    ``work_s`` of CPU spent per frame received (``bench pairs``' clients spend ~150 us a frame)."""
    aead = AESGCM(_KEY)
    got = {"acks": 0, "pushes": 0, "sent": 0}

    async def drain(stream: trio.SocketStream, key: str) -> None:
        buffer = bytearray()
        while data := await stream.receive_some(65536):
            buffer += data
            frames = len(_frames(buffer))
            got[key] += frames
            if work_s:
                busy_until = time.thread_time() + frames * work_s
                while time.thread_time() < busy_until:
                    pass

    async def pair(index: int) -> None:
        sender = await trio.open_tcp_stream("127.0.0.1", port)
        receiver = await trio.open_tcp_stream("127.0.0.1", port)
        for stream, role in ((sender, b"s"), (receiver, b"r")):
            hello = role + str(index).encode()
            await stream.send_all(_LENGTH.pack(len(hello)) + hello)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain, sender, "acks")
            nursery.start_soon(drain, receiver, "pushes")
            await trio.sleep(0.5)  # every pair connected
            next_at, end = trio.current_time() + random.random() * interval, trio.current_time() + seconds
            sealed_count = 0  # this connection's nonce counter
            while next_at < end:
                await trio.sleep_until(next_at)
                next_at += interval
                params = {"target": f"r{index}", "content": {"type": 1, "searchable_content": _TEXT}}
                plain = msgpack.packb({"m": "send_message", "id": got["sent"], "p": params})
                sealed = aead.encrypt(_NONCE.pack(sealed_count), plain, None)
                sealed_count += 1
                got["sent"] += 1
                await sender.send_all(_LENGTH.pack(len(sealed)) + sealed)
            await trio.sleep(0.5)  # the last answers
            nursery.cancel_scope.cancel()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for index in range(first, first + count):
                nursery.start_soon(pair, index)

    trio.run(main)
    print(json.dumps(got), flush=True)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(
    kind: str, rate: float, pairs: int, duration: float, warmup: float, linger_ms: float, client_work_us: float
) -> dict[str, Any]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    me = [sys.executable, "-m", "bench.floor"]
    server = subprocess.Popen([*me, "_serve", kind, str(port), str(linger_ms / 1000)], stdout=subprocess.PIPE, text=True)
    clients: list[subprocess.Popen[str]] = []
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise SystemExit("bench.floor: the server did not start")
        half = pairs // 2
        seconds = warmup + duration + 0.5
        for first, count in ((0, half), (half, pairs - half)):
            args = [str(port), str(first), str(count), str(pairs / rate), str(seconds), str(client_work_us / 1e6)]
            clients.append(subprocess.Popen([*me, "_client", *args], stdout=subprocess.PIPE, text=True))
        time.sleep(0.5 + warmup)  # connected, then warmed up
        before, started = _cpu_seconds(server.pid), time.monotonic()
        time.sleep(duration)
        cpu, elapsed = _cpu_seconds(server.pid) - before, time.monotonic() - started
        totals = {"acks": 0, "pushes": 0, "sent": 0}
        for client in clients:
            out, _ = client.communicate(timeout=seconds + 30)
            for key, value in json.loads(out.strip().splitlines()[-1]).items():
                totals[key] += value
    finally:
        for process in (*clients, server):
            if process.poll() is None:
                process.kill()
                process.wait()
    delivered = rate * elapsed  # open loop: what was scheduled inside the window
    return {
        "kind": kind,
        "rate": rate,
        "linger_ms": linger_ms,
        "client_work_us": client_work_us,
        "pairs": pairs,
        "duration_s": round(elapsed, 3),
        "server_cpu_s": round(cpu, 3),
        "server_cpu_us_per_msg": round(cpu / delivered * 1e6, 1),
        **totals,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_serve"]:
        _serve(argv[1], int(argv[2]), float(argv[3]))
        return 0
    if argv[:1] == ["_client"]:
        port, first, count, interval, seconds, work = argv[1:7]
        _client(int(port), int(first), int(count), float(interval), float(seconds), float(work))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--rate", type=float, default=2000, help="messages per second in all (default 2000)")
    parser.add_argument("--pairs", type=int, default=50, help="sender/receiver pairs (default 50)")
    parser.add_argument("--duration", type=float, default=5, help="measured seconds (default 5)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of load before measuring (default 2)")
    parser.add_argument("--linger-ms", type=float, default=0,
                        help="trio servers: wait this long after a wake-up before reading (default 0)")  # fmt: skip
    parser.add_argument("--client-work-us", type=float, default=0,
                        help="CPU the clients spend per frame they receive (default 0)")  # fmt: skip
    args = parser.parse_args(argv)
    record = _measure(
        args.kind, args.rate, args.pairs, args.duration, args.warmup, args.linger_ms, args.client_work_us
    )
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
