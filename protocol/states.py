"""Which frames each state of the connection state machines reads, and what becomes of any other frame.

Data for SDK authors, printed in docs/PROTOCOL.md §2.1. The state machines in ``protocol.connection`` keep
their own dispatch (an if-chain per frame, on the hot path); tests/test_protocol_states.py feeds every frame
type, clear and sealed, in every state to the real ``ServerConnection`` and ``ClientConnection`` and checks
that each does what this table says, and that §2.1 prints exactly this table.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from . import events
from .connection import State
from .frames import FrameType


class Protection(enum.Enum):
    CLEAR = "clear"  # the ENCRYPTED flag unset
    SEALED = "sealed"  # ENCRYPTED, and it must open under the sender's key at the next counter (§6)
    EITHER = "clear or sealed"


class Otherwise(enum.Enum):
    """What becomes of a frame the state does not list (or one with the wrong protection)."""

    #: A ``ProtocolViolation`` event and the connection is CLOSED. The server then sends ERROR 2 (sealed once
    #: the success CONNACK went out, clear before) and closes; a client closes and reports −4 ServerDown.
    VIOLATION = "violation"
    #: Not read yet: kept until the CONNACK, then read as in OPEN (§5.4), or dropped after a failure CONNACK.
    BUFFERED = "buffered"
    #: Nothing more is read.
    IGNORED = "ignored"


@dataclass(frozen=True)
class Reads:
    """One frame a state accepts: the event it becomes and the state after it."""

    frame: FrameType
    protection: Protection
    events: tuple[type, ...]  # the event (one of them) ``receive_data`` returns for it
    then: tuple[State, ...]  # the state after it (several: decided by the body, see ``note``)
    note: str = ""


@dataclass(frozen=True)
class StateRule:
    meaning: str
    reads: tuple[Reads, ...]
    otherwise: Otherwise


_OPEN, _CLOSED = (State.OPEN,), (State.CLOSED,)

#: What the server reads from a client, by ``ServerConnection.state``.
SERVER_READS: dict[State, StateRule] = {
    State.AWAIT_CONNECT: StateRule(
        "HELLO sent, CONNECT not yet read",
        (Reads(FrameType.CONNECT, Protection.CLEAR, (events.ConnectRequested,), (State.AUTHENTICATING,)),),
        Otherwise.VIOLATION,
    ),
    State.AUTHENTICATING: StateRule(
        "CONNECT read, CONNACK not yet sent (the server looks up the session and opens the proof)",
        (),
        Otherwise.BUFFERED,
    ),
    State.OPEN: StateRule(
        "the success CONNACK sent",
        (
            Reads(
                FrameType.REQUEST, Protection.SEALED, (events.Request, events.BadRequest), _OPEN,
                "answered by a RESPONSE with the same request_id (a bad `p` map: code 251)",
            ),
            Reads(FrameType.PING, Protection.SEALED, (events.Ping,), _OPEN, "empty plaintext; answered by a PONG"),
            Reads(FrameType.DISCONNECT, Protection.SEALED, (events.Disconnect,), _CLOSED, "§8.5; no answer"),
        ),
        Otherwise.VIOLATION,
    ),
    State.CLOSED: StateRule("a DISCONNECT, a CONNACK failure, an ERROR or a violation ended it", (), Otherwise.IGNORED),
}

#: What a client reads from the server, by ``ClientConnection.state``.
CLIENT_READS: dict[State, StateRule] = {
    State.AWAIT_HELLO: StateRule(
        "TCP is up, CONNECT not yet sent",
        (
            Reads(
                FrameType.HELLO, Protection.CLEAR, (events.Hello,), (State.AWAIT_HELLO,),
                "once (a second HELLO is a violation); sending CONNECT then makes the state AUTHENTICATING",
            ),
            Reads(FrameType.ERROR, Protection.CLEAR, (events.ServerError,), _CLOSED),
        ),
        Otherwise.VIOLATION,
    ),
    State.AUTHENTICATING: StateRule(
        "CONNECT sent, CONNACK not yet read",
        (
            Reads(
                FrameType.CONNACK, Protection.SEALED, (events.ConnAck,), (State.OPEN, State.CLOSED),
                "s→c counter 0: code 1 → OPEN, any other code → CLOSED (that status, §7)",
            ),
            Reads(
                FrameType.CONNACK, Protection.CLEAR, (events.ConnAck,), _CLOSED,
                "only `{code: −6}`; a clear CONNACK with any other code is a violation (§5.3)",
            ),
            Reads(
                FrameType.ERROR, Protection.EITHER, (events.ServerError,), _CLOSED,
                "the server sends it clear here; a sealed one that opens is believed too",
            ),
        ),
        Otherwise.VIOLATION,
    ),
    State.OPEN: StateRule(
        "the success CONNACK read",
        (
            Reads(FrameType.RESPONSE, Protection.SEALED, (events.Response,), _OPEN, "matched to its REQUEST by request_id"),
            Reads(FrameType.NOTIFY, Protection.SEALED, (events.Notify,), _OPEN),
            Reads(FrameType.PONG, Protection.SEALED, (events.Pong,), _OPEN),
            Reads(FrameType.DISCONNECT, Protection.SEALED, (events.GoAway,), _CLOSED, "going away, §8.7"),
            Reads(FrameType.ERROR, Protection.SEALED, (events.ServerError,), _CLOSED),
        ),
        Otherwise.VIOLATION,
    ),
    State.CLOSED: StateRule(
        "DISCONNECT sent, or a CONNACK failure, an ERROR, a going-away DISCONNECT or a violation read",
        (),
        Otherwise.IGNORED,
    ),
}


def accepted(rule: StateRule, frame: FrameType, sealed: bool) -> Reads | None:
    """The row that accepts ``frame`` with this protection in that state, if any."""
    for reads in rule.reads:
        if reads.frame is frame and reads.protection in (
            Protection.EITHER, Protection.SEALED if sealed else Protection.CLEAR
        ):
            return reads
    return None
