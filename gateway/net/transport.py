"""The seam under ``GatewayConnection``: what carries Ember frames to and from one peer.

The connection (``gateway/connection.py``) speaks the protocol of docs/PROTOCOL.md and nothing else; a
transport carries its frames. Each transport owns the peer's socket and an ``Outbox`` over it
(``gateway/outbox.py``: direct non-blocking writes, corking, the per-connection and process-wide bounds), and
gives the connection:

- ``send(frame)``: one whole protocol frame, header included; never blocks; False once the transport is
  closed or its outbox was cut. It frames at send time, before any join: TCP needs no framing, so its
  ``send`` *is* the outbox's (frames sent while corked leave in one write, a measured win); WebSocket wraps
  each frame in a binary message of its own first (the messages of one cork still leave in one write);
- ``read_ready()``: one non-blocking read (the read poller calls it when the socket is readable), returning
  the protocol bytes it brought, ``b""`` when reading must end (end of stream, or the transport ended it),
  or None when nothing for the protocol came (readiness without data; over WebSocket, a ping or part of a
  message);
- ``receive()``: the same, awaited, for the connection task's own reads (the handshake, the first read);
- ``ended`` and ``violation``: after a read, whether reading must end although protocol bytes came with it,
  and why, when the peer's bytes cannot be frames at all (the connection answers that like any protocol
  violation: ERROR 2). TCP never sets them;
- ``finish(code, reason)``: the transport's own goodbye, after the protocol's last frame (WebSocket: a Close
  message; TCP: nothing);
- ``aclose()``: stop writing, close the socket;
- ``peer``: the peer's address for logs (behind a trusted proxy, the client it forwards for);
- ``fd``: the socket's descriptor, for the read poller.

Keepalive and idle are not the transport's: the connection runs ``protocol.timers.IdleTimer`` on the protocol
bytes a transport returns, so both transports follow the protocol's own timers.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol

import trio

from gateway.outbox import Outbox, OutboxBudget

RECEIVE_SIZE = 65536

#: WebSocket close codes (RFC 6455 §7.4.1) the gateway sends; TCP ignores them.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011


class Transport(Protocol):
    """What ``GatewayConnection`` needs of its transport (the module docstring says what each member does)."""

    fd: int
    outbox: Outbox
    send: Callable[[bytes], bool]
    ended: bool
    violation: str | None

    @property
    def peer(self) -> str: ...

    def open_outbox(
        self, *, max_queued_bytes: int, on_overflow: Callable[[], object], budget: OutboxBudget
    ) -> Outbox: ...

    def read_ready(self) -> bytes | None: ...

    async def receive(self) -> bytes: ...

    def finish(self, code: int, reason: str) -> None: ...

    async def aclose(self) -> None: ...


class TcpTransport:
    """Frames straight on a TCP socket: the stream of frames is the stream of bytes."""

    __slots__ = ("fd", "outbox", "send", "stream")

    #: TCP bytes are always protocol bytes: a read never ends reading by itself, nor is it a violation.
    ended = False
    violation: str | None = None

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.fd = stream.socket.fileno()

    def open_outbox(
        self, *, max_queued_bytes: int, on_overflow: Callable[[], object], budget: OutboxBudget
    ) -> Outbox:
        self.outbox = Outbox(self.stream, max_queued_bytes=max_queued_bytes, on_overflow=on_overflow, budget=budget)
        self.send: Callable[[bytes], bool] = self.outbox.send  # no framing: a frame goes to the outbox as it is, one call
        return self.outbox

    @property
    def peer(self) -> str:
        try:
            host, port = self.stream.socket.getpeername()[:2]
            return f"{host}:{port}"
        except OSError:
            return "?"

    def read_ready(self) -> bytes | None:
        try:
            return os.read(self.fd, RECEIVE_SIZE)
        except BlockingIOError:
            return None  # readiness without data (rare): the poller asks again when there is some
        except OSError:
            return b""  # reset by the peer: the connection ends either way

    async def receive(self) -> bytes:
        """The peer's next bytes; ``b""`` at end of stream or when the connection broke.

        Waits until the socket is readable, then reads once. trio's ``receive_some`` reads first and
        waits only if nothing was there, which on a chat connection (a message, then quiet) fails a
        read every time: a wasted syscall per message at one message per read.
        """
        fd = self.fd
        while True:
            try:
                await trio.lowlevel.wait_readable(fd)
                return os.read(fd, RECEIVE_SIZE)
            except BlockingIOError:
                continue  # readiness without data (rare): wait again
            except (OSError, trio.ClosedResourceError):
                return b""  # reset by the peer, or closed under us: the connection ends either way

    def finish(self, code: int, reason: str) -> None:
        """Nothing to say: the protocol's last frame (DISCONNECT, ERROR, a CONNACK failure) says it."""

    async def aclose(self) -> None:
        self.outbox.detach()  # before the stream closes: its descriptor number may be reused at once
        await self.stream.aclose()
