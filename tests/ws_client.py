"""A WebSocket client for tests (wsproto over a trio socket), and the raw protocol client over it.

``WsClient`` speaks RFC 6455 through wsproto: the upgrade (refusals raise ``WsRefused`` with the HTTP
status), binary and text messages, pings, raw bytes for misbehaving on purpose, and the server's Close.
``WsRawClient`` is ``tests.harness.RawClient`` over it (same members, so ``tests.test_messaging.Device``
wraps either): each protocol frame goes out as one binary message, and each binary message received must
hold exactly one frame (docs/PROTOCOL.md §2.2) — the client asserts it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from protocol import events
from protocol.codes import ConnectionStatus
from protocol.connection import ClientConnection
from protocol.frames import HEADER_SIZE
from tests.harness import Gateway, client_for


class WsRefused(Exception):
    """The server answered the upgrade with an HTTP status other than 101."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"upgrade refused: {status} {body!r}")
        self.status = status
        self.body = body


def split_frames(data: bytes) -> list[bytes]:
    """Cut a run of whole protocol frames at their headers' lengths (tests join frames for TCP)."""
    frames = []
    while data:
        end = HEADER_SIZE + int.from_bytes(data[10:14])
        frames.append(data[:end])
        data = data[end:]
    return frames


class WsClient:
    """One WebSocket connection, client side."""

    def __init__(self, stream: trio.SocketStream, ws: WSConnection) -> None:
        self.stream = stream
        self.ws = ws
        self._events: list[Event] = []
        self._partial = bytearray()
        self.eof = False

    @classmethod
    async def open(
        cls, host: str, port: int, *, path: str = "/ws", headers: Iterable[tuple[str, str]] = ()
    ) -> WsClient:
        stream = await trio.open_tcp_stream(host, port)
        ws = WSConnection(ConnectionType.CLIENT)
        extra = [(name.encode(), value.encode()) for name, value in headers]
        await stream.send_all(ws.send(Request(host=f"{host}:{port}", target=path, extra_headers=extra)))
        client = cls(stream, ws)
        status, body = 0, b""
        try:
            while True:
                event = await client._next_raw()
                if event is None:
                    raise WsRefused(status, body)  # closed without an answer (status 0) or after a refusal's body
                if isinstance(event, AcceptConnection):
                    return client
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        raise WsRefused(status, b"")
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished:
                        raise WsRefused(status, body)
        except BaseException:
            await stream.aclose()
            raise

    async def _next_raw(self) -> Event | None:
        while not self._events:
            if self.eof:
                return None
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:
                data = b""
            if not data:
                self.eof = True
                return None
            self.ws.receive_data(data)
            self._events.extend(self.ws.events())
        return self._events.pop(0)

    async def next_event(self) -> Event | None:
        """The next whole message (``BytesMessage``/``TextMessage`` with all its data), Pong or Close;
        None once the server closed the socket. A Close is answered, as RFC 6455 asks."""
        while True:
            event = await self._next_raw()
            if event is None:
                return None
            if isinstance(event, BytesMessage):
                self._partial += event.data
                if event.message_finished:
                    data, self._partial = bytes(self._partial), bytearray()
                    return BytesMessage(data=data)
                continue
            if isinstance(event, CloseConnection) and self.ws.state is ConnectionState.REMOTE_CLOSING:
                try:
                    await self.stream.send_all(self.ws.send(event.response()))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            if isinstance(event, Ping):
                await self.stream.send_all(self.ws.send(event.response()))
                continue
            return event

    async def send_bytes(self, *messages: bytes) -> None:
        """Each as one binary message, all in one write."""
        await self.stream.send_all(b"".join(self.ws.send(BytesMessage(data=m)) for m in messages))

    async def send_text(self, text: str) -> None:
        await self.stream.send_all(self.ws.send(TextMessage(data=text)))

    async def ping(self, payload: bytes) -> None:
        await self.stream.send_all(self.ws.send(Ping(payload=payload)))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def aclose(self) -> None:
        await self.stream.aclose()


async def open_ws(gw: Gateway, **kwargs: Any) -> WsClient:
    return await WsClient.open(gw.host, gw.running.ws_port, **kwargs)


class WsRawClient:
    """``tests.harness.RawClient`` over WebSocket: the client state machine, one frame per message."""

    def __init__(self, ws: WsClient, proto: ClientConnection) -> None:
        self.ws = ws
        self.proto = proto
        self.received: list[Any] = []
        self.sent: list[bytes] = []
        self.close: CloseConnection | None = None  # the server's Close, once read

    @classmethod
    async def open(cls, gw: Gateway, token: str, **override: Any) -> WsRawClient:
        return cls(await open_ws(gw), client_for(token, **override))

    async def send(self, data: bytes) -> None:
        """Frames (one or several, joined as for TCP), each as its own binary message."""
        self.sent.append(data)
        await self.ws.send_bytes(*split_frames(data))

    async def _read(self) -> bool:
        """One message into ``received``; False once the server closed (its Close kept in ``close``)."""
        event = await self.ws.next_event()
        if event is None:
            return False
        if isinstance(event, CloseConnection):
            self.close = event
            return False
        assert isinstance(event, BytesMessage), event
        message = bytes(event.data)
        assert len(message) == HEADER_SIZE + int.from_bytes(message[10:14]), "a message holds exactly one frame"
        self.received.extend(self.proto.receive_data(message))
        return True

    async def next_event(self) -> Any:
        """The next protocol event from the server; None when the server closed the connection."""
        while not self.received:
            if not await self._read():
                return None
        return self.received.pop(0)

    async def handshake(self, client_time_ms: int) -> Any:
        hello = await self.next_event()
        assert isinstance(hello, events.Hello), hello
        await self.send(self.proto.connect(client_time_ms))
        return await self.next_event()

    @classmethod
    async def connected(cls, gw: Gateway, token: str, **override: Any) -> WsRawClient:
        client = await cls.open(gw, token, **override)
        ack = await client.handshake(gw.clock.now_ms())
        assert isinstance(ack, events.ConnAck) and ack.code == ConnectionStatus.CONNECTED, ack
        return client

    async def closed_by_server(self) -> bool:
        while await self._read():
            pass
        return True

    async def aclose(self) -> None:
        await self.ws.aclose()


__all__ = ["Pong", "WsClient", "WsRawClient", "WsRefused", "open_ws", "split_frames"]
