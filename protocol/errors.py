"""The two exceptions the protocol layer raises."""

from __future__ import annotations


class ProtocolError(Exception):
    """The peer broke the protocol: the connection must be closed.

    Raised for malformed or oversized frames, frames that fail authentication,
    frames out of place for the connection's state, and bodies that are not
    the documented MessagePack shape. ``reason`` is a short text safe to log and
    to send back to the peer (it never contains body bytes or secrets).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FieldError(ValueError):
    """A field of a decoded body has the wrong type, length or range.

    Inside a REQUEST this becomes a RESPONSE with code 251 (invalid parameter)
    and the connection stays open; inside the handshake it is a ProtocolError.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
