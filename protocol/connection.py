"""The client and server sides of an Ember connection as sans-I/O state machines.

In the manner of h11: ``receive_data(bytes)`` returns the events those bytes
complete, and each ``send``-style method returns the bytes to write. Neither
class touches a socket, a clock or a database; the driver (``gateway/`` or
``client/``) supplies times and secrets and does the I/O.

Handshake (see docs/PROTOCOL.md for the bytes)::

    server                                   client
    HELLO {nonce, time}            ───────►
                                   ◄───────  CONNECT {user, client, platform, keepalive, nonce, proof}
    (look up the session secret, open the proof, check the credential)
    CONNACK, encrypted, {code, …}  ───────►  (success, or a failure decided after the proof opened)
     or a clear CONNACK {code: -6}           (no session, or the proof did not open), then close
    REQUEST/RESPONSE/NOTIFY/PING/PONG/DISCONNECT, all encrypted

The proof is sealed with the session secret, over this connection's fresh
server nonce, with the exact HELLO frame as associated data, and it carries
the platform and keepalive the server acts on: a recorded CONNECT is useless
later and a changed HELLO or proof does not open. Only the server that holds
the secret can seal a CONNACK, so the client believes a sealed one, whatever
its code, and a clear one only when it says SecretKeyMismatch: the one answer
a server can give without the secret (and so the one anyone could forge).

A peer's protocol error never raises out of ``receive_data``: it becomes a
final ``ProtocolViolation`` event after any events decoded before it, and the
connection is CLOSED. Which frames each state reads is tabled in
``protocol.states`` (tested against these classes); the keepalive and idle
deadlines are ``protocol.timers``, which the drivers feed their clock.
"""

from __future__ import annotations

import enum
from typing import Any

from . import codec, events
from .codes import MAX_ID_LEN, ConnectionStatus
from .crypto import (
    NONCE_SIZE,
    SECRET_SIZE,
    TAG_SIZE,
    DirectionCipher,
    derive_frame_keys,
    derive_proof_key,
    open_proof,
    seal_proof,
)
from .errors import FieldError, ProtocolError
from .frames import (
    DEFAULT_MAX_FRAME_BYTES,
    HEADER,
    MAGIC,
    MAX_REQUEST_ID,
    VERSION,
    Flags,
    Frame,
    FrameDecoder,
    FrameType,
    encode_frame,
)
from .limits import value_problem
from .token import TokenParts

MAX_METHOD_LEN = 64
# A sealed frame's header, packed in ``_seal`` without ``encode_header``'s call (every frame sent).
_HEADER_PACK = HEADER.pack
_ENCRYPTED = int(Flags.ENCRYPTED)
MAX_PROOF_BYTES = 1024
MAX_KEEPALIVE_SECONDS = 3600
MIN_STATUS, MAX_STATUS = -128, 127  # the range of a CONNACK code

#: What ``authenticate`` returns for a proof that opened but is not the documented map: its empty
#: credential fails every credential check (TokenIncorrect).
MALFORMED_PROOF = events.ConnectProof(b"", 0, -1, 0)


class State(enum.Enum):
    AWAIT_HELLO = "await_hello"  # client: TCP is up, the server's HELLO has not arrived
    AWAIT_CONNECT = "await_connect"  # server: HELLO sent, waiting for CONNECT
    AUTHENTICATING = "authenticating"  # CONNECT sent / received, CONNACK not yet
    OPEN = "open"
    CLOSED = "closed"


def encode_notify_body(topic: str, data: Any) -> bytes:
    """The plaintext of a NOTIFY: encode it once, then seal it per connection."""
    return codec.pack({"t": topic, "d": data})


# {"t": "msg", "d": {"seq": <seq>, "message": <message>}} in the order msgpack writes it, split
# around the two values: a message pushed to many inboxes is encoded once, not once per inbox.
_MSG_PUSH_MIDDLE = codec.pack("message")
_MSG_PUSH_HEAD = codec.pack({"t": "msg", "d": {"seq": 0, "message": 0}}).split(b"\x00" + _MSG_PUSH_MIDDLE)[0]


# {"c": <code>, "r": <result>} split around the two values, for a result already packed.
_RESPONSE_HEAD = codec.map_header(2) + codec.pack("c")
_RESPONSE_R = codec.pack("r")


def encode_response_body(code: int, result: Any) -> bytes:
    """The plaintext of a RESPONSE: ``{c, r}``; a ``codec.Packed`` result is spliced in as it is,
    which gives the same bytes as packing the value it holds."""
    if isinstance(result, codec.Packed):
        return b"".join((_RESPONSE_HEAD, codec.pack(int(code)), _RESPONSE_R, result.data))
    return codec.pack({"c": int(code), "r": result})


def encode_msg_push(seq: int, packed_message: bytes) -> bytes:
    """``encode_notify_body("msg", {"seq": seq, "message": m})`` from ``m`` already packed."""
    return b"".join((_MSG_PUSH_HEAD, codec.pack(seq), _MSG_PUSH_MIDDLE, packed_message))


# {"t": "message_updated", "d": {"seq": <seq>, "message": <notice>}}, split the same way (docs/PROTOCOL.md §9.11).
_UPDATE_PUSH_HEAD = codec.pack({"t": "message_updated", "d": {"seq": 0, "message": 0}}).split(b"\x00" + _MSG_PUSH_MIDDLE)[0]


def encode_update_push(seq: int, packed_notice: bytes) -> bytes:
    """``encode_notify_body("message_updated", {"seq": seq, "message": n})`` from ``n`` already packed."""
    return b"".join((_UPDATE_PUSH_HEAD, codec.pack(seq), _MSG_PUSH_MIDDLE, packed_notice))


#: Bounds of a server DISCONNECT's fields (§8.7): a client never waits more than an hour on a server's word.
MAX_RETRY_MS = 3_600_000
MAX_REDIRECT_LEN = 261  # a DNS name (253), ":" and a port

class _Sealed:
    """Shared plumbing: decoder, per-direction ciphers, sealed frame encoding."""

    __slots__ = ("_decoder", "_established", "_receiver", "_sender", "state")

    def __init__(self, max_frame_bytes: int) -> None:
        self._decoder = FrameDecoder(max_frame_bytes)
        self._sender: DirectionCipher | None = None
        self._receiver: DirectionCipher | None = None
        self._established = False  # the success CONNACK was sent / received: every frame is sealed now
        self.state = State.CLOSED

    def release_keys(self) -> None:
        """Drop the ciphers' key schedules (~5 KiB) while the connection is idle; rebuilt on use."""
        for cipher in (self._sender, self._receiver):
            if cipher is not None:
                cipher.release()

    def frame_counts(self) -> tuple[int, int]:
        """(sealed frames sent, sealed frames received) so far: the ciphers' counters, free to keep."""
        sender, receiver = self._sender, self._receiver
        return (sender.frames if sender else 0, receiver.frames if receiver else 0)

    def _seal(self, frame_type: FrameType, plaintext: bytes, request_id: int = 0) -> bytes:
        assert self._sender is not None, "no keys yet"
        header = _HEADER_PACK(MAGIC, VERSION, frame_type, _ENCRYPTED, 0, request_id, len(plaintext) + TAG_SIZE)
        return header + self._sender.seal(header, plaintext)

    def _open(self, frame: Frame) -> bytes:
        if not frame.encrypted or self._receiver is None:
            raise ProtocolError(f"{frame.type.name} must be encrypted")
        return self._receiver.open(frame.header, frame.body)

    def _drain(self, data: bytes, readable: tuple[State, ...], handle: Any) -> list[Any]:
        """Feed bytes, then turn complete frames into events while the state allows reading."""
        if self.state is State.CLOSED:
            return []
        self._decoder.feed(data)
        out: list[Any] = []
        try:
            decoder = self._decoder
            while self.state in readable:
                frame = decoder.next_frame()
                if frame is None:
                    break
                event = handle(frame)
                if event is not None:
                    out.append(event)
                if not decoder._buffer:  # (most reads bring whole frames: no call to find none is left)
                    break
        except ProtocolError as exc:
            self.state = State.CLOSED
            out.append(events.ProtocolViolation(exc.reason))
        except FieldError as exc:
            self.state = State.CLOSED
            out.append(events.ProtocolViolation(f"invalid field {exc}"))
        return out


class ServerConnection(_Sealed):
    """The gateway's side of one connection."""

    __slots__ = ("_connect", "_hello", "_server_nonce", "_server_time_ms")

    def __init__(
        self, *, server_nonce: bytes, server_time_ms: int, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    ) -> None:
        super().__init__(max_frame_bytes)
        if len(server_nonce) != NONCE_SIZE:
            raise ValueError("server nonce must be 32 bytes")
        self._server_nonce = server_nonce
        # Made once: the proof's associated data is these exact bytes.
        self._hello = encode_frame(
            FrameType.HELLO, codec.pack({"nonce": server_nonce, "time": server_time_ms})
        )
        self._connect: events.ConnectRequested | None = None
        self.state = State.AWAIT_CONNECT

    def hello(self) -> bytes:
        """The HELLO frame, to send as soon as TCP is up."""
        return self._hello

    def receive_data(self, data: bytes) -> list[events.ServerEvent]:
        """Events completed by ``data``.

        While AUTHENTICATING the bytes are only buffered (the keys do not exist
        yet); call ``receive_data(b"")`` after ``accept`` to read them.
        """
        return self._drain(data, (State.AWAIT_CONNECT, State.OPEN), self._handle)

    def _handle(self, frame: Frame) -> events.ServerEvent | None:
        if self.state is State.AWAIT_CONNECT:
            if frame.type is not FrameType.CONNECT or frame.encrypted:
                raise ProtocolError("expected CONNECT")
            fields = codec.unpack_map(frame.body)
            self._connect = events.ConnectRequested(
                user_id=fields.text("user", min_len=1, max_len=MAX_ID_LEN, printable=True),
                client_id=fields.text("client", min_len=1, max_len=MAX_ID_LEN, printable=True),
                platform=fields.integer("platform", lo=0, hi=255),
                keepalive_seconds=fields.integer("keepalive", lo=0, hi=MAX_KEEPALIVE_SECONDS, default=0),
                client_nonce=fields.binary("nonce", min_len=NONCE_SIZE, max_len=NONCE_SIZE),
                proof=fields.binary("proof", min_len=TAG_SIZE, max_len=MAX_PROOF_BYTES),
            )
            self.state = State.AUTHENTICATING
            return self._connect
        if frame.type is FrameType.REQUEST:
            receiver = self._receiver
            if not frame.flags & _ENCRYPTED or receiver is None:  # (``_open``, inline: every request)
                raise ProtocolError(f"{frame.type.name} must be encrypted")
            body = codec.unpack(receiver.open(frame.header, frame.body))
            if not isinstance(body, dict):
                raise ProtocolError("body is not a map")
            # The common case straight from the dict (a short printable method name, a map or no params);
            # anything else through the getters, whose error names the field.
            method = body.get("m")
            raw_params = body.get("p")
            if raw_params is None:
                raw_params = {}
            if not (
                method.__class__ is str
                and 0 < len(method) <= MAX_METHOD_LEN
                and method.isprintable()
                and raw_params.__class__ is dict
            ):
                fields = codec.Fields(body)
                try:
                    method = fields.text("m", min_len=1, max_len=MAX_METHOD_LEN, printable=True)
                    raw_params = fields.mapping("p", default={}).raw
                except FieldError as exc:
                    return events.BadRequest(frame.request_id, str(exc))
            # Unprefixed, so a 251 names the field as the method's documentation does.
            params = codec.Fields(raw_params)
            # The one edge check every method's params pass before any handler reads them (issue 20).
            deep = value_problem(raw_params, check_text=False)
            if deep is not None:
                return events.BadRequest(frame.request_id, f"{deep[0]}: {deep[1]}", field=deep[0], problem=deep[1])
            return events.Request(frame.request_id, method, params)
        if frame.type is FrameType.PING:
            if self._open(frame):
                raise ProtocolError("PING carries no body")
            return events.Ping()
        if frame.type is FrameType.DISCONNECT:
            plaintext = self._open(frame)
            clear = codec.unpack_map(plaintext).boolean("clear", default=False) if plaintext else False
            self.state = State.CLOSED
            return events.Disconnect(clear_session=clear)
        raise ProtocolError(f"unexpected {frame.type.name} from a client")

    def authenticate(self, secret: bytes) -> events.ConnectProof | None:
        """Open the CONNECT proof with the session secret.

        Returns:
            None when the proof was not sealed with ``secret`` over this
            connection's HELLO (answer SecretKeyMismatch, in clear).
            Otherwise the proof, and the connection has its keys: every
            CONNACK is sealed from now on. When the plaintext is not the
            documented shape the result is ``MALFORMED_PROOF``, whose empty
            credential no check accepts (answer TokenIncorrect).
        """
        if self.state is not State.AUTHENTICATING or self._connect is None:
            raise RuntimeError("authenticate() needs a CONNECT first")
        if len(secret) != SECRET_SIZE:
            return None
        c = self._connect
        proof_key = derive_proof_key(secret, self._server_nonce, c.client_nonce)
        plaintext = open_proof(proof_key, c.proof, self._hello)
        if plaintext is None:
            return None
        # The proof opened: this peer holds the secret, so the frame keys are this session's.
        to_server, to_client = derive_frame_keys(secret, self._server_nonce, c.client_nonce)
        self._receiver, self._sender = DirectionCipher(to_server), DirectionCipher(to_client)
        try:
            fields = codec.unpack_map(plaintext)
            return events.ConnectProof(
                credential=fields.binary("cred", max_len=MAX_PROOF_BYTES),
                client_time_ms=fields.integer("time"),
                platform=fields.integer("platform", lo=0, hi=255),
                keepalive_seconds=fields.integer("keepalive", lo=0, hi=MAX_KEEPALIVE_SECONDS, default=0),
            )
        except (ProtocolError, FieldError):
            return MALFORMED_PROOF

    def accept(self, *, server_time_ms: int, keepalive_seconds: int, heads: dict[str, int]) -> bytes:
        """The encrypted success CONNACK; the connection is OPEN afterwards."""
        if self.state is not State.AUTHENTICATING or self._sender is None:
            raise RuntimeError("accept() needs a CONNECT whose proof opened")
        self.state = State.OPEN
        self._established = True
        body = {
            "code": int(ConnectionStatus.CONNECTED),
            "time": server_time_ms,
            "keepalive": keepalive_seconds,
            "heads": heads,
        }
        return self._seal(FrameType.CONNACK, codec.pack(body))

    def reject(self, code: ConnectionStatus) -> bytes:
        """A failure CONNACK; the connection is CLOSED afterwards.

        Sealed (s→c frame 0) once the proof opened, so that nobody on the path
        can forge the code; clear otherwise, which only SecretKeyMismatch may be
        (no session, or the proof did not open: the server holds no key yet).
        """
        if code == ConnectionStatus.CONNECTED:
            raise ValueError("reject() takes a failure code")
        if self.state is not State.AUTHENTICATING:
            raise RuntimeError("reject() answers a CONNECT")
        sealed = self._sender is not None
        if not sealed and code != ConnectionStatus.SECRET_KEY_MISMATCH:
            raise ValueError("before the proof opened the only answer is SecretKeyMismatch")
        body = codec.pack({"code": int(code)})
        self.state = State.CLOSED
        return self._seal(FrameType.CONNACK, body) if sealed else encode_frame(FrameType.CONNACK, body)

    def response(self, request_id: int, code: int, result: Any = None) -> bytes:
        """A RESPONSE; ``result`` may be a ``codec.Packed`` (see ``encode_response_body``)."""
        if result.__class__ is dict or result is None:  # (an ack, an answer with no result: packed here)
            return self._seal(FrameType.RESPONSE, codec.pack({"c": int(code), "r": result}), request_id)
        return self._seal(FrameType.RESPONSE, encode_response_body(code, result), request_id)

    def notify(self, topic: str, data: Any = None) -> bytes:
        return self._seal(FrameType.NOTIFY, encode_notify_body(topic, data))

    def notify_body(self, body: bytes) -> bytes:
        """Seal a NOTIFY plaintext made once by ``encode_notify_body`` for many connections."""
        return self._seal(FrameType.NOTIFY, body)

    def pong(self) -> bytes:
        return self._seal(FrameType.PONG, b"")

    def goaway(self, reason: str, retry_ms: int, redirect: str = "") -> bytes:
        """A sealed DISCONNECT (server → client, docs/PROTOCOL.md §8.7): the server is going away; the
        client reconnects after ``retry_ms`` (to ``redirect``, "host:port", when not empty). Then CLOSED."""
        if not self._established:
            raise RuntimeError("goaway() needs an established connection")
        body = codec.pack({"reason": reason[:200], "retry_ms": int(retry_ms), "redirect": redirect})
        self.state = State.CLOSED
        return self._seal(FrameType.DISCONNECT, body)

    def error(self, code: int, reason: str) -> bytes:
        """An ERROR frame, sealed once the handshake completed; the connection is CLOSED afterwards."""
        body = codec.pack({"code": int(code), "reason": reason[:200]})
        # Not ``state is OPEN``: after a ProtocolViolation the state is already CLOSED,
        # yet the peer still expects (and must only trust) a sealed frame.
        sealed = self._established
        self.state = State.CLOSED
        return self._seal(FrameType.ERROR, body) if sealed else encode_frame(FrameType.ERROR, body)


class ClientConnection(_Sealed):
    """The SDK's side of one connection."""

    __slots__ = (
        "_client_nonce",
        "_credential",
        "_hello",
        "_keepalive",
        "_next_request_id",
        "_secret",
        "_server_nonce",
        "client_id",
        "platform",
        "user_id",
    )

    def __init__(
        self,
        *,
        user_id: str,
        client_id: str,
        platform: int,
        secret: bytes,
        credential: bytes,
        client_nonce: bytes,
        keepalive_seconds: int = 0,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        super().__init__(max_frame_bytes)
        if len(client_nonce) != NONCE_SIZE:
            raise ValueError("client nonce must be 32 bytes")
        self.user_id, self.client_id, self.platform = user_id, client_id, platform
        self._secret = secret
        self._credential = credential
        self._client_nonce = client_nonce
        self._keepalive = keepalive_seconds
        self._server_nonce: bytes | None = None
        self._hello = b""  # the HELLO frame as received: the proof's associated data
        self._next_request_id = 1
        self.state = State.AWAIT_HELLO

    @classmethod
    def from_token(
        cls, parts: TokenParts, *, client_nonce: bytes, keepalive_seconds: int = 0
    ) -> ClientConnection:
        """A connection for the session a parsed token names (``protocol.token.parse_token``)."""
        return cls(
            user_id=parts.user_id,
            client_id=parts.client_id,
            platform=parts.platform,
            secret=parts.secret,
            credential=parts.credential,
            client_nonce=client_nonce,
            keepalive_seconds=keepalive_seconds,
        )

    def receive_data(self, data: bytes) -> list[events.ClientEvent]:
        return self._drain(data, (State.AWAIT_HELLO, State.AUTHENTICATING, State.OPEN), self._handle)

    def _handle(self, frame: Frame) -> events.ClientEvent | None:
        if frame.type is FrameType.ERROR:
            # Clear only before the handshake completes: afterwards anyone on the path could forge it.
            sealed = frame.encrypted or self._established
            fields = codec.unpack_map(self._open(frame) if sealed else frame.body)
            self.state = State.CLOSED
            return events.ServerError(fields.integer("code"), fields.text("reason", max_len=1000, default=""))
        if self.state is State.AWAIT_HELLO:
            if frame.type is not FrameType.HELLO or frame.encrypted or self._server_nonce is not None:
                raise ProtocolError("expected HELLO")
            fields = codec.unpack_map(frame.body)
            self._server_nonce = fields.binary("nonce", min_len=NONCE_SIZE, max_len=NONCE_SIZE)
            time_ms = fields.integer("time")
            self._hello = frame.header + frame.body
            return events.Hello(self._server_nonce, time_ms)
        if self.state is State.AUTHENTICATING:
            if frame.type is not FrameType.CONNACK:
                raise ProtocolError("expected CONNACK")
            if not frame.encrypted:
                # Anyone on the path could send a clear CONNACK. It is believed only for the one
                # answer a server gives without the secret; any other (success above all) is forged.
                code = codec.unpack_map(frame.body).integer("code", lo=MIN_STATUS, hi=MAX_STATUS)
                if code != ConnectionStatus.SECRET_KEY_MISMATCH:
                    raise ProtocolError(f"unauthenticated CONNACK with code {code}")
                self.state = State.CLOSED
                return events.ConnAck(code, sealed=False)
            fields = codec.unpack_map(self._open(frame))
            code = fields.integer("code", lo=MIN_STATUS, hi=MAX_STATUS)
            if code != ConnectionStatus.CONNECTED:
                self.state = State.CLOSED  # a sealed failure: the server decided it after the proof opened
                return events.ConnAck(code)
            heads = fields.mapping("heads", default={})
            self.state = State.OPEN
            self._established = True
            return events.ConnAck(
                ConnectionStatus.CONNECTED,
                fields.integer("time"),
                fields.integer("keepalive", lo=0, hi=MAX_KEEPALIVE_SECONDS),
                {key: heads.integer(key) for key in heads.raw},
            )
        if frame.type is FrameType.RESPONSE:
            fields = codec.unpack_map(self._open(frame))
            return events.Response(frame.request_id, fields.integer("c"), fields.raw.get("r"))
        if frame.type is FrameType.NOTIFY:
            fields = codec.unpack_map(self._open(frame))
            return events.Notify(fields.text("t", min_len=1, max_len=MAX_METHOD_LEN), fields.raw.get("d"))
        if frame.type is FrameType.PONG:
            self._open(frame)
            return events.Pong()
        if frame.type is FrameType.DISCONNECT:
            fields = codec.unpack_map(self._open(frame))
            self.state = State.CLOSED
            return events.GoAway(  # every key required: a body of another shape is a violation
                fields.text("reason", max_len=1000),
                fields.integer("retry_ms", lo=0, hi=MAX_RETRY_MS),
                fields.text("redirect", max_len=MAX_REDIRECT_LEN, printable=True),
            )
        raise ProtocolError(f"unexpected {frame.type.name} from the server")

    def connect(self, client_time_ms: int) -> bytes:
        """The CONNECT frame, once HELLO has arrived."""
        if self.state is not State.AWAIT_HELLO or self._server_nonce is None:
            raise RuntimeError("connect() needs the server's HELLO first")
        proof_key = derive_proof_key(self._secret, self._server_nonce, self._client_nonce)
        plaintext = codec.pack(
            {
                "cred": self._credential,
                "time": client_time_ms,
                "platform": self.platform,
                "keepalive": self._keepalive,
            }
        )
        proof = seal_proof(proof_key, plaintext, self._hello)
        to_server, to_client = derive_frame_keys(self._secret, self._server_nonce, self._client_nonce)
        self._sender, self._receiver = DirectionCipher(to_server), DirectionCipher(to_client)
        self.state = State.AUTHENTICATING
        body = {
            "user": self.user_id,
            "client": self.client_id,
            "platform": self.platform,
            "keepalive": self._keepalive,
            "nonce": self._client_nonce,
            "proof": proof,
        }
        return encode_frame(FrameType.CONNECT, codec.pack(body))

    def request(self, method: str, params: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """(request id, REQUEST frame). Ids count up from 1 and wrap after 2**32 - 1."""
        request_id = self._next_request_id
        self._next_request_id = request_id % MAX_REQUEST_ID + 1
        return request_id, self._seal(
            FrameType.REQUEST, codec.pack({"m": method, "p": params or {}}), request_id
        )

    def ping(self) -> bytes:
        return self._seal(FrameType.PING, b"")

    def disconnect(self, clear_session: bool = False) -> bytes:
        self.state = State.CLOSED
        return self._seal(FrameType.DISCONNECT, codec.pack({"clear": clear_session}))
