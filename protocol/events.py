"""Events the connection state machines hand to their drivers.

``ServerConnection.receive_data`` yields the client-side events below the
first rule; ``ClientConnection.receive_data`` yields the server-side ones.
They are plain frozen dataclasses: the driver decides what to do with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .codec import Fields


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """The peer broke the protocol; always the last event, and the connection is CLOSED.

    The server's driver answers with ``ServerConnection.error`` and closes the
    socket; the client's driver closes. ``reason`` is safe to log.
    """

    reason: str


# --- sent by the client, seen by the server ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectRequested:
    """A well-formed CONNECT. The driver looks up the session and calls ``authenticate``.

    Everything here is clear, so unauthenticated. ``user_id`` and ``client_id``
    select the session whose secret must open the proof, which binds them; the
    clear ``platform`` and ``keepalive_seconds`` are copies for logs only: act
    on the ones in ``ConnectProof``, which the proof authenticates.
    """

    user_id: str
    client_id: str
    platform: int  # clear copy: act on ConnectProof.platform
    keepalive_seconds: int  # clear copy: act on ConnectProof.keepalive_seconds
    client_nonce: bytes = field(repr=False)
    proof: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ConnectProof:
    """The opened CONNECT proof: what the client sealed with the session secret over this HELLO."""

    credential: bytes = field(repr=False)
    client_time_ms: int
    platform: int
    keepalive_seconds: int  # 0: let the server choose


@dataclass(frozen=True, slots=True)
class Request:
    request_id: int
    method: str
    params: Fields = field(repr=False)


@dataclass(frozen=True, slots=True)
class BadRequest:
    """A REQUEST whose body is a map but names no valid method or params: answer 251.

    ``field`` (with ``problem``): the params part that failed the edge check (too deep), for ``r``.
    """

    request_id: int
    reason: str
    field: str | None = None
    problem: str = ""


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    clear_session: bool


# --- sent by the server, seen by the client ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    server_nonce: bytes = field(repr=False)
    server_time_ms: int


@dataclass(frozen=True, slots=True)
class ConnAck:
    code: int  # protocol.codes.ConnectionStatus
    server_time_ms: int = 0
    keepalive_seconds: int = 0
    heads: dict[str, int] = field(default_factory=dict)
    #: False for the one CONNACK that comes in clear (−6 before the proof opened): anyone on the path
    #: could have sent it, so an SDK retries before believing it (docs/PROTOCOL.md §7).
    sealed: bool = True


@dataclass(frozen=True, slots=True)
class Response:
    request_id: int
    code: int  # protocol.codes.ErrorCode
    result: Any = None


@dataclass(frozen=True, slots=True)
class Notify:
    topic: str
    data: Any = None


@dataclass(frozen=True, slots=True)
class Pong:
    pass


@dataclass(frozen=True, slots=True)
class ServerError:
    """The server is closing the connection and says why."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class GoAway:
    """The server is going away (a sealed DISCONNECT, §8.7): reconnect after ``retry_ms``, to
    ``redirect`` ("host:port") when it is not empty."""

    reason: str
    retry_ms: int
    redirect: str = ""


ServerEvent = ConnectRequested | Request | BadRequest | Ping | Disconnect | ProtocolViolation
ClientEvent = Hello | ConnAck | Response | Notify | Pong | ServerError | GoAway | ProtocolViolation
