"""A real gateway in the test's trio run: real sockets on 127.0.0.1, a real SQLite file.

``await start_gateway(nursery, tmp_path, server={...})`` serves until the test's
nursery is cancelled. With ``EMBER_TEST_BACKEND=postgresql`` it stores on a PostgreSQL
database of the tests' private server instead, one per data folder (``tests.backends``). Raw helpers below speak the protocol with
``protocol.ClientConnection`` for tests that need to misbehave on purpose.
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

import client
from gateway.clock import ManualClock
from gateway.config import Config
from gateway.server import Running, serve
from protocol import events
from protocol.codes import ConnectionStatus
from protocol.connection import ClientConnection
from protocol.token import parse_token
from storage import UserRecord
from tests import backends
from tests.ports import free_port


@dataclass
class Gateway:
    running: Running
    clock: ManualClock
    config: Config
    #: What ``RawClient.open`` speaks to this gateway: "tcp", or "ws" (``tests.ws_client.WsRawClient``, the
    #: same members over the WebSocket listener), so that one test runs over both transports.
    transport: str = "tcp"

    @property
    def host(self) -> str:
        return self.running.host

    @property
    def port(self) -> int:
        return self.running.port

    @property
    def services(self) -> Any:
        return self.running.services

    async def user(self, user_id: str, **info: Any) -> str:
        await self.services.store.create_user(UserRecord(user_id, **info))
        return user_id

    async def token(self, user_id: str, client_id: str = "c1", platform: int = 2) -> str:
        code, token = await self.services.sessions.get_token(user_id, client_id, platform)
        assert code == 0, code
        assert token is not None
        return token


async def start_gateway(
    nursery: trio.Nursery,
    data_dir: Path,
    clock: ManualClock | None = None,
    read_poller: bool = True,
    transport: str = "tcp",
    **sections: dict[str, Any],
) -> Gateway:
    """``transport="ws"`` also opens the WebSocket listener and makes ``RawClient.open`` use it."""
    sections.setdefault("server", {})
    sections["server"] = {"port": 0, **sections["server"]}
    if transport == "ws":
        sections["server"].setdefault("ws_port", free_port())
    sections["admin"] = {"port": 0, **sections.get("admin", {})}
    await trio.Path(data_dir).mkdir(parents=True, exist_ok=True)
    if backends.on_postgres() and not sections.get("storage", {}).get("url"):
        url = await trio.to_thread.run_sync(backends.storage_url, data_dir)
        sections["storage"] = {**sections.get("storage", {}), "url": url}
    config = Config.default(data_dir, **sections)
    clock = clock or ManualClock()
    running = await nursery.start(functools.partial(serve, config, clock=clock, read_poller=read_poller))
    return Gateway(running, clock, config, transport)




#: Seconds a test waits for /openapi.json: its first request builds the document (~0.5 s of CPU, in a
#: worker thread), which takes several seconds on a busy machine; httpx's default is 5 s.
OPENAPI_TIMEOUT = 60.0

#: Reconnect backoff of SDK clients in tests (first, max): retries in 10-50 ms rather than the SDK's seconds.
FAST_BACKOFF = (0.01, 0.05)


@asynccontextmanager
async def sdk(
    gw: Gateway, user: str, device: str = "phone", platform: int = 2, **kwargs: Any
) -> AsyncIterator[client.Client]:
    """An SDK client for ``user`` on ``device`` (a client id of its own), on the gateway's clock, fast backoff."""
    token = await gw.token(user, f"{user}-{device}", platform)
    kwargs.setdefault("clock", gw.clock.now_ms)
    kwargs.setdefault("backoff", FAST_BACKOFF)
    async with client.connect(gw.host, gw.port, token, **kwargs) as c:
        yield c


def client_for(token: str, **override: Any) -> ClientConnection:
    """The client state machine for the session ``token`` names; ``override`` replaces any of its fields.

    (``ClientConnection.from_token`` without the override: tests forge credentials, secrets and platforms.)
    """
    parts = parse_token(token)
    fields: dict[str, Any] = {
        "user_id": parts.user_id,
        "client_id": parts.client_id,
        "platform": parts.platform,
        "secret": parts.secret,
        "credential": parts.credential,
        "client_nonce": os.urandom(32),
        **override,
    }
    return ClientConnection(**fields)


class RawClient:
    """A socket plus the client state machine, with no SDK behaviour in between."""

    def __init__(self, stream: trio.SocketStream, proto: ClientConnection) -> None:
        self.stream = stream
        self.proto = proto
        self.received: list[Any] = []
        self.sent: list[bytes] = []

    @classmethod
    async def open(cls, gw: Gateway, token: str, **override: Any) -> Any:
        """Over the gateway's transport (``Gateway.transport``): a RawClient, or a WsRawClient (same members)."""
        if getattr(gw, "transport", "tcp") == "ws":  # stand-ins for Gateway (test_process's) have none
            from tests.ws_client import WsRawClient  # it builds on this module

            return await WsRawClient.open(gw, token, **override)
        stream = await trio.open_tcp_stream(gw.host, gw.port)
        return cls(stream, client_for(token, **override))

    async def send(self, data: bytes) -> None:
        self.sent.append(data)
        await self.stream.send_all(data)

    async def next_event(self) -> Any:
        """The next event from the server; ``None`` when the server closed the socket."""
        while not self.received:
            data = await self.stream.receive_some(65536)
            if not data:
                return None
            self.received.extend(self.proto.receive_data(data))
        return self.received.pop(0)

    async def handshake(self, client_time_ms: int) -> Any:
        hello = await self.next_event()
        assert isinstance(hello, events.Hello), hello
        await self.send(self.proto.connect(client_time_ms))
        return await self.next_event()

    @classmethod
    async def connected(cls, gw: Gateway, token: str, **override: Any) -> Any:
        """``open`` and ``handshake``, asserting the gateway answered CONNECTED."""
        client = await cls.open(gw, token, **override)
        ack = await client.handshake(gw.clock.now_ms())
        assert isinstance(ack, events.ConnAck) and ack.code == ConnectionStatus.CONNECTED, ack
        return client

    async def closed_by_server(self) -> bool:
        """Read until EOF; True when the server closed (events before it are kept)."""
        while True:
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:
                return True
            if not data:
                return True
            self.received.extend(self.proto.receive_data(data))

    async def aclose(self) -> None:
        await self.stream.aclose()
