"""One load-generating connection: a trio socket plus ``protocol.ClientConnection``, nothing else.

Cheap on purpose, so the client is never what a benchmark measures:

- no SDK, no per-request futures: callers feed received bytes to the state
  machine and act on the events themselves;
- writes go straight to the non-blocking socket with ``os.write`` (no
  checkpoint, no task switch); only when the kernel buffer is full does a
  flush task take over, and nothing is written directly while it holds bytes,
  so frames stay in order. Several frames made together are joined into one write;
- any task may write (the pinger and the load loop share a connection).

With ``transport="ws"`` it speaks the WebSocket listener instead (docs/PROTOCOL.md §2.2): the upgrade at
``/ws`` after the TCP connect, then each frame as one masked binary message (wsproto), and the messages
received unwrapped before the state machine sees them — the cost a browser's client would add to the
gateway, which is what ``bench pairs --transport ws`` compares with TCP.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import AcceptConnection, BytesMessage, Ping, RejectConnection, Request

from protocol import events
from protocol.connection import ClientConnection
from protocol.frames import HEADER_SIZE
from protocol.token import parse_token

RECEIVE_SIZE = 65536
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux


class ConnectFailed(Exception):
    """The handshake did not end with CONNACK Connected."""

    def __init__(self, status: int | None, why: str) -> None:
        super().__init__(why)
        self.status = status


class BenchConn:
    __slots__ = (
        "proto",
        "stream",
        "transport",
        "_ws",
        "_partial",
        "_fd",
        "_pending",
        "_flushing",
        "_nursery",
        "last_write",
        "closed",
        "ping_sent_ns",
    )

    def __init__(self, token: str, keepalive_seconds: int, transport: str = "tcp") -> None:
        self.proto = ClientConnection.from_token(
            parse_token(token), client_nonce=os.urandom(32), keepalive_seconds=keepalive_seconds
        )
        self.transport = transport  # "tcp", or "ws": the WebSocket listener (port is then server.ws_port)
        self._ws: Connection | None = None  # after the upgrade
        self._partial = b""  # a WebSocket message not yet complete
        self.stream: trio.SocketStream | None = None
        self._fd = -1
        self._pending: list[bytes] = []
        self._flushing = False
        self._nursery: trio.Nursery | None = None
        self.last_write = 0.0
        self.closed = False
        self.ping_sent_ns = 0  # when the PING now awaiting its PONG went out (0: none)

    async def open(self, host: str, port: int, local_address: str | None, nursery: trio.Nursery) -> None:
        """TCP connect (from ``local_address`` when given); ``nursery`` hosts the flush task if needed."""
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if local_address is not None:
                # Pick the port at connect time, per destination: many sources, each with its own ports.
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                await sock.bind((local_address, 0))
            await sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        self.stream = trio.SocketStream(sock)
        self._fd = sock.fileno()
        self._nursery = nursery
        if self.transport == "ws":
            await self._upgrade(host, port)

    async def _upgrade(self, host: str, port: int) -> None:
        """The WebSocket opening handshake; raises ``ConnectFailed`` unless the server switches protocols."""
        assert self.stream is not None
        ws = WSConnection(ConnectionType.CLIENT)
        await self.stream.send_all(ws.send(Request(host=f"{host}:{port}", target="/ws")))
        while True:
            data = await self.stream.receive_some(RECEIVE_SIZE)
            if not data:
                raise ConnectFailed(None, "closed during the WebSocket upgrade")
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, RejectConnection):
                    raise ConnectFailed(None, f"WebSocket upgrade refused: HTTP {event.status_code}")
                if isinstance(event, AcceptConnection):
                    assert ws.connection is not None
                    self._ws = ws.connection
                    rest = b"".join(
                        bytes(e.data) for e in ws.connection.events() if isinstance(e, BytesMessage)
                    )  # HELLO, if it came with the 101 (a message split there is not expected of the server)
                    self._partial = rest
                    return

    def _unwrap(self, data: bytes) -> bytes:
        """WebSocket bytes in, the frames of the messages they completed out (pings answered)."""
        ws = self._ws
        assert ws is not None
        ws.receive_data(data)
        frames = []
        for event in ws.events():
            if isinstance(event, BytesMessage):
                self._partial += event.data
                if event.message_finished:
                    frames.append(self._partial)
                    self._partial = b""
            elif isinstance(event, Ping):
                self.write_raw(ws.send(event.response()))
        return b"".join(frames)

    async def receive(self) -> list[Any]:
        """The events of the next bytes from the server; [] at EOF (``closed`` is then set)."""
        assert self.stream is not None
        while True:
            try:
                data = await self.stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self.closed = True
                return []
            if self._ws is not None:
                data = self._unwrap(data)
            got = self.proto.receive_data(data)
            if got:
                return got

    async def handshake(self, client_time_ms: int | None = None) -> events.ConnAck:
        """HELLO → CONNECT → CONNACK; raises ``ConnectFailed`` unless the answer is Connected."""
        early, self._partial = (self._partial, b"") if self._ws is not None else (b"", self._partial)
        got = self.proto.receive_data(early) if early else await self.receive()
        if not got or not isinstance(got[0], events.Hello):
            raise ConnectFailed(None, f"expected HELLO, got {got[:1] or 'EOF'}")
        now = int(time.time() * 1000) if client_time_ms is None else client_time_ms
        self.write(self.proto.connect(now))
        rest = got[1:] or await self.receive()
        if not rest or not isinstance(rest[0], events.ConnAck):
            raise ConnectFailed(None, f"expected CONNACK, got {rest[:1] or 'EOF'}")
        ack = rest[0]
        if ack.code != 1:
            raise ConnectFailed(ack.code, f"CONNACK status {ack.code}")
        return ack

    def write(self, data: bytes) -> None:
        """Send frames (one, or several joined) now if the socket takes them, else queue behind a flush
        task. Never blocks. Over WebSocket each frame becomes a binary message of its own first."""
        ws = self._ws
        if ws is not None and data and not self.closed:
            messages = []
            while data:
                end = HEADER_SIZE + int.from_bytes(data[10:14])
                messages.append(ws.send(BytesMessage(data=data[:end])))
                data = data[end:]
            data = b"".join(messages)
        self.write_raw(data)

    def write_raw(self, data: bytes) -> None:
        """Bytes as they are (already WebSocket-framed, over WebSocket)."""
        if self.closed or not data:
            return
        self.last_write = trio.current_time()
        if not self._pending:
            try:
                sent = os.write(self._fd, data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.closed = True
                return
            if sent == len(data):
                return
            data = data[sent:]
        self._pending.append(data)
        if not self._flushing and self._nursery is not None:
            self._flushing = True
            self._nursery.start_soon(self._flush)

    async def _flush(self) -> None:
        assert self.stream is not None
        try:
            while self._pending and not self.closed:
                data = b"".join(self._pending)
                self._pending.clear()
                await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.closed = True
        finally:
            self._pending.clear()
            self._flushing = False

    async def wait_closed_by_server(self) -> None:
        """Read (and drop) until the server closes."""
        while not self.closed:
            await self.receive()

    async def aclose(self) -> None:
        self.closed = True
        if self.stream is not None:
            # The descriptor number may be reused once closed; nothing writes to it after this.
            self._fd = -1
            await self.stream.aclose()
