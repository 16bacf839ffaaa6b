"""The WebSocket transport: the gateway's ``server.ws_port`` (HTTP/1.1 upgrade at ``/ws``), one binary
message per protocol frame, both ways (docs/PROTOCOL.md, "Transports").

wsproto does RFC 6455 (sans-I/O, the way ``protocol/`` is written); this class only moves its bytes over a
trio TCP stream. Above it nothing changes: the same handshake, frames, keepalive and DISCONNECT as over TCP.

- The upgrade runs inside ``open``, before the server's HELLO; a refusal (an HTTP status instead of 101, for
  instance 403 for an Origin the gateway does not allow) or a broken upgrade is an ``OSError``, which the
  dialer reports as SERVER_DOWN like a refused TCP connect. No Origin header is sent: this is not a browser.
- ``send`` seals nothing and joins nothing across frames: each frame becomes its own (masked) binary message,
  and the messages of one call go out in one write.
- ``receive`` answers the server's WebSocket pings itself and hands up the payload bytes of the binary
  messages as wsproto delivers them, a message's pieces included: the state machine above reassembles frames
  from bytes and applies its frame limit, so nothing here buffers a whole message (a server's endless
  message costs no memory), and a frame split over messages, which the gateway never sends, still reads. The server's Close is answered and read as the end of the stream;
  a text message, which the protocol never uses, ends the connection (close code 1003).
- ``send_eof`` (after DISCONNECT) sends the Close (1000) that docs/PROTOCOL.md §2.2 asks of a client that
  ends its connection; the gateway echoes it and closes, and the reader reads that as the end.
- GOAWAY's ``redirect`` names a TCP address, so a WebSocket client ignores it and comes back to its own
  host and port (the client tells its dialer so).
"""

from __future__ import annotations

import errno
from collections.abc import Sequence

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .link import Transport

#: The path the gateway serves its WebSocket listener at.
WEBSOCKET_PATH = "/ws"

_RECV_BYTES = 65536
_NORMAL_CLOSURE = 1000
_UNSUPPORTED_DATA = 1003  # RFC 6455 §7.4.1: a text message


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class WebSocketTransport(Transport):
    """One WebSocket connection to the gateway (see the module docstring)."""

    def __init__(self, stream: trio.SocketStream, ws: WSConnection, backlog: list[Event]) -> None:
        self._stream = stream
        self._ws = ws
        self._backlog = backlog  # events that came in the same read as the upgrade's answer (HELLO)
        self._send_lock = trio.Lock()  # the writer's frames and the reader's pongs share one stream
        self._closed_by_server = False

    @classmethod
    async def open(cls, host: str, port: int, *, path: str = WEBSOCKET_PATH) -> WebSocketTransport:
        """TCP connect and upgrade. Raises ``OSError`` when the gateway cannot be reached or refuses."""
        stream = await trio.open_tcp_stream(host, port)
        try:
            ws = WSConnection(ConnectionType.CLIENT)
            await stream.send_all(ws.send(Request(host=_authority(host, port), target=path)))
            while True:
                data = await stream.receive_some(_RECV_BYTES)
                ws.receive_data(data or None)
                events = list(ws.events())
                for index, event in enumerate(events):
                    if isinstance(event, AcceptConnection):
                        return cls(stream, ws, events[index + 1 :])
                    if isinstance(event, RejectConnection):
                        raise ConnectionRefusedError(
                            errno.ECONNREFUSED, f"WebSocket upgrade refused (HTTP {event.status_code})"
                        )
                    if not isinstance(event, RejectData):
                        raise ConnectionError(errno.EPROTO, "unexpected answer to the WebSocket upgrade")
                if not data:
                    raise ConnectionError(errno.ECONNRESET, "closed during the WebSocket upgrade")
        except (trio.BrokenResourceError, RemoteProtocolError) as exc:
            await trio.aclose_forcefully(stream)
            raise ConnectionError(errno.EPROTO, f"WebSocket upgrade failed: {type(exc).__name__}") from None
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise

    async def send(self, frames: Sequence[bytes]) -> None:
        try:
            data = b"".join([self._ws.send(Message(data=frame)) for frame in frames])
        except LocalProtocolError:
            raise trio.ClosedResourceError("the WebSocket is closing") from None
        async with self._send_lock:
            await self._stream.send_all(data)

    async def receive(self) -> bytes:
        while True:
            if self._closed_by_server:
                return b""
            events, self._backlog = self._backlog, []
            if not events:
                data = await self._stream.receive_some(_RECV_BYTES)
                try:
                    self._ws.receive_data(data or None)
                    events = list(self._ws.events())
                except RemoteProtocolError:
                    raise trio.BrokenResourceError("the server broke the WebSocket protocol") from None
                if not data:
                    self._closed_by_server = True  # the TCP stream ended, with or without a Close
            received = await self._take(events)
            if received:
                return received

    async def _take(self, events: list[Event]) -> bytes:
        """Apply one read's events: the payload bytes of the binary messages in them."""
        out = bytearray()
        for event in events:
            if isinstance(event, BytesMessage):
                out += event.data
            elif isinstance(event, Ping):
                await self._send_control(event.response())
            elif isinstance(event, CloseConnection):
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    await self._send_control(event.response())
                self._closed_by_server = True
                break
            elif isinstance(event, TextMessage):
                await self._send_control(CloseConnection(_UNSUPPORTED_DATA, "binary messages only"))
                raise trio.BrokenResourceError("the server sent a text message")
        return bytes(out)

    async def _send_control(self, event: Event) -> None:
        try:
            data = self._ws.send(event)
        except LocalProtocolError:
            return  # closing already
        async with self._send_lock:
            await self._stream.send_all(data)

    async def send_eof(self) -> None:
        await self._send_control(CloseConnection(_NORMAL_CLOSURE))

    async def aclose(self) -> None:
        await self._stream.aclose()
