"""The WebSocket transport: the HTTP/1.1 upgrade at ``/ws``, then one Ember frame per binary message.

docs/PROTOCOL.md §2.2 is the contract; this module is the server's side of it. The WebSocket protocol itself
(RFC 6455: the upgrade's accept token, frame headers, masking, fragments, control frames, UTF-8 of text) is
wsproto's, sans-I/O like ``protocol/``; the request line and headers are parsed by h11 (which wsproto uses
too), so a request for another path can be answered 404 before anything else is checked.

The upgrade, in order (``accept_websocket``), all within the handshake timeout counted from the accept:

1. read the request (h11 bounds it: 16 KiB of request line and headers); not HTTP: 400;
2. the peer's address: the socket's, or, when the socket's is one of ``server.trusted_proxies``, the client
   the ``X-Forwarded-For`` chain names (the rightmost address that is not a trusted proxy);
3. the path (query ignored) must be ``/ws``: else 404, or, with ``server.ws_demo`` on, a file of the web chat
   page when the path is one of its (``gateway/net/webchat.py``; the connection closes after it);
4. the ``Origin`` header, when there is one, must be listed in ``server.ws_allowed_origins``, or, with
   ``server.ws_demo`` on, be this listener's own (the origin of the page it served: ``Origin`` is
   ``http://`` or ``https://`` followed by the request's ``Host``): else 403;
5. a valid WebSocket upgrade (GET, ``Upgrade: websocket``, ``Sec-WebSocket-Version: 13``, a key): else
   400 or 426 (wsproto's checks); no extension and no subprotocol is accepted;
6. 101 Switching Protocols. Only then does the connection send HELLO, as the first binary message.

After it, ``WsTransport``: each protocol frame the connection sends is one binary message; each binary
message the peer sends must hold exactly one frame, header included (else: the protocol's violation, ERROR
2); a text message closes the connection with 1003, a message longer than a frame may be (14 +
``server.max_frame_bytes``) with 1009, both after answering what came before; a WebSocket ping is answered
with a pong by the transport (it never reaches the protocol, and does not count as activity for the idle
rule, which is the protocol's: a browser cannot send pings, so an SDK sends the protocol's PING).
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import h11
import trio
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    TextMessage,
)
from wsproto.events import Request as WsRequest
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

from gateway.net.transport import RECEIVE_SIZE
from gateway.net.webchat import WebChat
from gateway.outbox import Outbox, OutboxBudget
from protocol.frames import HEADER_SIZE

log = logging.getLogger("ember.websocket")

#: The one path the listener upgrades; any other answers 404.
WS_PATH = b"/ws"
#: The request line and headers may take this many bytes (h11's bound on an incomplete event).
MAX_REQUEST_BYTES = 16384

CLOSE_UNSUPPORTED_DATA = 1003  # a text message: the protocol is binary
CLOSE_MESSAGE_TOO_BIG = 1009  # longer than a frame may be
TEXT_REASON = "text messages are not part of the protocol: send binary messages"
ONE_FRAME_REASON = "a WebSocket message must hold exactly one frame"

#: Why an upgrade ended, counted by ``ember_websocket_upgrades_total{result}``.
UPGRADE_ACCEPTED = "accepted"
#: "page": not an upgrade but a file of the web chat page, served (server.ws_demo).
UPGRADE_RESULTS = (UPGRADE_ACCEPTED, "page", "not_found", "forbidden_origin", "bad_request", "timeout", "closed")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_origins(text: str) -> frozenset[str] | None:
    """``server.ws_allowed_origins`` as a set of normalised origins; None means any (``*``)."""
    origins = {part.strip().lower().rstrip("/") for part in text.split(",") if part.strip()}
    return None if "*" in origins else frozenset(origins)


def check_origin_list(text: str) -> str | None:
    """Why ``server.ws_allowed_origins`` is unusable, or None: each entry is ``*`` or ``scheme://host[:port]``."""
    for part in text.split(","):
        entry = part.strip()
        if not entry or entry == "*":
            continue
        scheme, sep, rest = entry.partition("://")
        if not sep or scheme.lower() not in ("http", "https") or not rest or "/" in rest.rstrip("/"):
            return f"{entry!r} is not an origin (scheme://host[:port], as a browser sends it, or *)"
    return None


def parse_networks(text: str) -> tuple[Network, ...]:
    """``server.trusted_proxies``: addresses or networks, comma-separated (raises ValueError)."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class WsSettings:
    """What the upgrade checks, built once from the config when the listener opens."""

    allowed_origins: frozenset[str] | None  # None: any origin (``*``)
    trusted_proxies: tuple[Network, ...]
    max_message_bytes: int  # one frame: header + server.max_frame_bytes
    webchat: WebChat | None = None  # the page's files, with server.ws_demo on

    def origin_allowed(self, origin: bytes | None, host: bytes | None = None) -> bool:
        """No Origin (not a browser) is allowed; a browser's page only from an origin the list names, or,
        with the web chat page served here, from this listener itself.

        The page this listener served has the origin ``http://<Host>`` (``https://`` behind a TLS proxy that
        passes ``Host`` on): a browser writes both headers itself, from the page's URL and the socket's, so a
        page of any other site cannot present its target's Host as its own Origin. (A site that rebinds its
        own name's DNS to this address makes the two agree, but then it is a page of its own origin talking
        to it, with no token or storage of this one's: what the Origin check guards is unchanged.)
        """
        if origin is None or self.allowed_origins is None:
            return True
        normal = origin.decode("latin-1").strip().lower().rstrip("/")
        if normal in self.allowed_origins:
            return True
        if self.webchat is None or not host:
            return False
        own = host.decode("latin-1").strip().lower()
        return normal in (f"http://{own}", f"https://{own}")

    def trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_proxies)

    def client_address(self, socket_host: str, forwarded_for: Iterable[bytes]) -> str:
        """The peer for logs: the socket's host, or behind trusted proxies the client they forward for.

        ``X-Forwarded-For`` is read right to left (each proxy appends the address it got the request from):
        the first address that is not a trusted proxy is the client; anything left of it was written by the
        client itself and is not believed. From an untrusted socket the header is ignored entirely.
        """
        if not self.trusted_proxies or not self.trusted(socket_host):
            return socket_host
        hops = [hop.strip() for value in forwarded_for for hop in value.decode("latin-1").split(",")]
        address = socket_host
        for hop in reversed(hops):
            try:
                address = str(ipaddress.ip_address(hop))
            except ValueError:
                break  # not an address (e.g. "unknown"): keep the last hop we could read
            if not self.trusted(address):
                break
        return address


class WsTransport:
    """One upgraded connection: protocol frames as binary messages (see the module docstring)."""

    __slots__ = (
        "_close",
        "_partial",
        "_peer_gone",
        "_trailing",
        "_ws",
        "ended",
        "fd",
        "max_message_bytes",
        "outbox",
        "peer",
        "stream",
        "violation",
    )

    def __init__(
        self, stream: trio.SocketStream, ws: Connection, peer: str, max_message_bytes: int, trailing: bytes = b""
    ) -> None:
        self.stream = stream
        self.fd = stream.socket.fileno()
        self._ws = ws
        self.peer = peer
        self.max_message_bytes = max_message_bytes
        self._trailing = trailing  # bytes that came behind the upgrade request (read at the first receive)
        self._partial = bytearray()  # a message that has not ended yet
        self._close: CloseConnection | None = None  # the Close to send at finish(), decided while reading
        self._peer_gone = False  # end of stream: no Close can be delivered
        self.ended = False
        self.violation: str | None = None

    def open_outbox(
        self, *, max_queued_bytes: int, on_overflow: Callable[[], object], budget: OutboxBudget
    ) -> Outbox:
        self.outbox = Outbox(self.stream, max_queued_bytes=max_queued_bytes, on_overflow=on_overflow, budget=budget)
        return self.outbox

    def send(self, frame: bytes) -> bool:
        """One protocol frame as one binary message (framed now, before the outbox joins anything).

        A method, not a bound method kept in an attribute as TCP's is: that would be a reference cycle, and
        every ended connection would wait for the cyclic collector (tests/test_websocket.py checks)."""
        ws = self._ws
        if ws.state is not ConnectionState.OPEN:
            return False  # a Close went or came: no data message may follow (RFC 6455 §5.5.1)
        return self.outbox.send(ws.send(BytesMessage(data=frame)))

    def read_ready(self) -> bytes | None:
        try:
            data = os.read(self.fd, RECEIVE_SIZE)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        if not data:
            self._peer_gone = self.ended = True
            return b""
        return self._take(data)

    async def receive(self) -> bytes:
        if self._trailing:
            data, self._trailing = self._take(self._trailing), b""
            if data is not None:
                return data
        while True:
            try:
                await trio.lowlevel.wait_readable(self.fd)
            except trio.ClosedResourceError:
                return b""
            data = self.read_ready()
            if data is not None:
                return data

    def _take(self, data: bytes) -> bytes | None:
        """Feed one read to wsproto; the frames of the messages it completed (None: none yet)."""
        ws = self._ws
        ws.receive_data(data)
        frames: list[bytes] = []
        for event in ws.events():
            if isinstance(event, BytesMessage):
                if not self._message(event, frames):
                    break
            elif isinstance(event, Ping):
                self.outbox.send(ws.send(event.response()))
            elif isinstance(event, TextMessage):
                self._end(CloseConnection(CLOSE_UNSUPPORTED_DATA, TEXT_REASON))
                break
            elif isinstance(event, CloseConnection):
                # The peer's Close (answered at finish with its code), or wsproto's verdict on bytes that are
                # not WebSocket (its code, e.g. 1002, sent at finish).
                self._end(event.response() if ws.state is ConnectionState.REMOTE_CLOSING else event)
                break
            # a Pong: nothing to do (the gateway sends no pings)
        if frames:
            return frames[0] if len(frames) == 1 else b"".join(frames)
        return b"" if self.ended else None

    def _message(self, event: BytesMessage, frames: list[bytes]) -> bool:
        """Collect a binary message's data; False when the connection must end (too long, not one frame)."""
        chunk = event.data
        partial = self._partial
        if len(partial) + len(chunk) > self.max_message_bytes:
            self._end(
                CloseConnection(CLOSE_MESSAGE_TOO_BIG, f"message longer than {self.max_message_bytes} bytes")
            )
            return False
        if not event.message_finished:
            partial += chunk
            return True
        if partial:
            partial += chunk
            message = bytes(partial)
            partial.clear()
        else:
            message = bytes(chunk)
        if len(message) < HEADER_SIZE or int.from_bytes(message[10:14]) != len(message) - HEADER_SIZE:
            self.violation = ONE_FRAME_REASON
            self.ended = True
            return False
        frames.append(message)
        return True

    def _end(self, close: CloseConnection) -> None:
        """Reading ends here; ``close`` goes out at finish(), after the answers to what came before."""
        self._close = close
        self.ended = True

    def finish(self, code: int, reason: str) -> None:
        """Send the Close: the one decided while reading (1003, 1009, an echo of the peer's), else ``code``."""
        ws = self._ws
        if self._peer_gone or ws.state not in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            return
        close = self._close or CloseConnection(code, reason)
        self.outbox.send(ws.send(close))

    async def aclose(self) -> None:
        self.outbox.detach()
        await self.stream.aclose()


def _http_response(status: int, phrase: str, body: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
    """A small HTTP/1.1 error answer to a request that is not upgraded; the connection closes after it."""
    payload = body.encode() + b"\n"
    lines = [f"HTTP/1.1 {status} {phrase}".encode(), b"content-type: text/plain; charset=utf-8"]
    lines += [b"content-length: " + str(len(payload)).encode(), b"connection: close"]
    lines.append(b"x-content-type-options: nosniff")
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


_PHRASES = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 426: "Upgrade Required", 431: "Request Header Fields Too Large"}


@dataclass
class Upgrade:
    """How an upgrade ended: the transport (accepted), or the result counted and the answer already sent."""

    result: str
    transport: WsTransport | None = None


async def accept_websocket(stream: trio.SocketStream, settings: WsSettings, deadline: float) -> Upgrade:
    """Run the upgrade on a freshly accepted socket, by ``deadline`` (trio's clock)."""
    with trio.move_on_at(deadline):
        return await _upgrade(stream, settings)
    return Upgrade("timeout")


async def _upgrade(stream: trio.SocketStream, settings: WsSettings) -> Upgrade:
    http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
    request: h11.Request | None = None
    while request is None:
        try:
            event = http.next_event()
        except h11.RemoteProtocolError as exc:
            return await _refuse(stream, exc.error_status_hint, "bad_request", "not an HTTP/1.1 request")
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                return Upgrade("closed")
            http.receive_data(data)
        elif isinstance(event, h11.Request):
            request = event
        else:  # ConnectionClosed, PAUSED or a stray event before any request
            return Upgrade("closed")
    headers = request.headers
    socket_host = _socket_host(stream)
    peer_host = settings.client_address(socket_host, (v for k, v in headers if k == b"x-forwarded-for"))
    peer = f"{peer_host}:{_socket_port(stream)}" if peer_host == socket_host else peer_host
    path = request.target.split(b"?", 1)[0]
    if path != WS_PATH:
        page = settings.webchat.answer(request.method, path) if settings.webchat is not None else None
        if page is None:
            return await _refuse(stream, 404, "not_found", "the WebSocket endpoint is /ws")
        status, answer = page
        await _send_answer(stream, answer)
        return Upgrade("page" if status == 200 else "bad_request")
    origin = next((v for k, v in headers if k == b"origin"), None)
    if not settings.origin_allowed(origin, next((v for k, v in headers if k == b"host"), None)):
        log.info("websocket refused peer=%s: origin not allowed (server.ws_allowed_origins)", peer)
        return await _refuse(stream, 403, "forbidden_origin", "origin not allowed")
    handshake = H11Handshake(ConnectionType.SERVER)
    try:
        handshake.initiate_upgrade_connection(list(headers), request.target)
        events = list(handshake.events())
    except RemoteProtocolError as exc:
        hint = exc.event_hint
        status = hint.status_code if isinstance(hint, RejectConnection) else 400
        extra = list(hint.headers) if isinstance(hint, RejectConnection) else []
        return await _refuse(stream, status, "bad_request", str(exc), extra)
    except h11.LocalProtocolError:
        return await _refuse(stream, 400, "bad_request", "not a WebSocket upgrade")
    if not any(isinstance(event, WsRequest) for event in events):
        return await _refuse(stream, 400, "bad_request", "not a WebSocket upgrade")
    accept = handshake.send(AcceptConnection())  # no extension, no subprotocol: the frames are sealed bytes
    ws = handshake.connection
    assert ws is not None
    try:
        await stream.send_all(accept)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return Upgrade("closed")
    trailing, _closed = http.trailing_data
    return Upgrade(
        UPGRADE_ACCEPTED, WsTransport(stream, ws, peer, settings.max_message_bytes, bytes(trailing))
    )


async def _refuse(
    stream: trio.SocketStream, status: int, result: str, body: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> Upgrade:
    await _send_answer(stream, _http_response(status, _PHRASES.get(status, "Error"), body, headers))
    return Upgrade(result)


async def _send_answer(stream: trio.SocketStream, answer: bytes) -> None:
    try:
        await stream.send_all(answer)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


def _socket_host(stream: trio.SocketStream) -> str:
    try:
        return str(stream.socket.getpeername()[0])
    except OSError:
        return "?"


def _socket_port(stream: trio.SocketStream) -> int:
    try:
        return int(stream.socket.getpeername()[1])
    except OSError:
        return 0
