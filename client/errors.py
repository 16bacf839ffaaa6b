"""Exceptions the SDK raises. None of them ever carries the token or the session secret."""

from __future__ import annotations

from typing import Any

from protocol.codes import ConnectionStatus


class ClientError(Exception):
    """Base class of every SDK error."""


class ConnectError(ClientError):
    """The first connection attempt failed; ``status`` says why.

    ``status`` is the failure code of the server's CONNACK (-3, -5, -6, -7, -9), or
    ``SERVER_DOWN`` when TCP could not connect or the handshake broke or timed out.
    """

    def __init__(self, status: ConnectionStatus, *, clear: bool = False) -> None:
        super().__init__(f"connect failed: {status.name} ({int(status)})")
        self.status = status
        #: The server's status came in a clear CONNACK (only −6 can), which anyone on the path could forge.
        self.clear = clear


class ClientClosed(ClientError):
    """The connection a call needed is gone.

    Raised by a request or ping whose connection dropped before the answer came
    (the request may or may not have run on the server), and by any call once the
    client has stopped for good (after ``disconnect``, a terminal status, or a lost
    transport with ``reconnect=False``). ``status`` is the client's status then.
    """

    def __init__(self, status: ConnectionStatus) -> None:
        super().__init__(f"connection closed: {status.name} ({int(status)})")
        self.status = status


class RequestTimeout(ClientError, TimeoutError):
    """No answer (or no usable connection) within the call's timeout."""

    def __init__(self, method: str, timeout: float) -> None:
        super().__init__(f"{method}: no answer within {timeout:g} s")
        self.method = method
        self.timeout = timeout


class RequestFailed(ClientError):
    """The server answered a ``Client.messages`` call with an error code.

    (``Client.request`` returns such answers instead; the typed facades raise.)
    ``detail`` is the response's result, e.g. ``{"field", "problem"}`` for 251.
    """

    def __init__(self, method: str, code: int, detail: Any = None) -> None:
        super().__init__(f"{method}: error code {int(code)}")
        self.method = method
        self.code = code
        self.detail = detail
