"""Frame header layout and an incremental frame decoder.

Every frame on the wire is a 14-byte header followed by ``length`` body bytes::

    offset size field
    0      2    magic       b"EM" (0x45 0x4D)
    2      1    version     1
    3      1    type        FrameType
    4      1    flags       bit 0 = ENCRYPTED; other bits must be 0
    5      1    reserved    must be 0
    6      4    request_id  unsigned, big-endian (0 when the type has none)
    10     4    length      unsigned, big-endian: body bytes that follow

All integers are big-endian. When ENCRYPTED is set the body is AES-256-GCM
ciphertext plus its 16-byte tag and the 14 header bytes are the associated
data, so a changed header fails authentication too.
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

from .errors import ProtocolError

MAGIC = b"EM"
VERSION = 1
HEADER = struct.Struct(">2sBBBBII")
HEADER_SIZE = HEADER.size  # 14
DEFAULT_MAX_FRAME_BYTES = 256 * 1024
MAX_REQUEST_ID = 0xFFFF_FFFF


class FrameType(enum.IntEnum):
    HELLO = 1  # server → client, clear: server nonce and time
    CONNECT = 2  # client → server, clear: identity and sealed proof
    CONNACK = 3  # server → client: clear on failure, encrypted on success
    REQUEST = 4  # client → server, encrypted
    RESPONSE = 5  # server → client, encrypted
    NOTIFY = 6  # server → client, encrypted push
    PING = 7  # client → server, encrypted, empty plaintext
    PONG = 8  # server → client, encrypted, empty plaintext
    DISCONNECT = 9  # client → server, encrypted
    ERROR = 10  # server → client, then the server closes


class Flags(enum.IntFlag):
    NONE = 0
    ENCRYPTED = 1


# Plain-int lookups: calling an enum class or combining IntFlags costs about a microsecond
# each, and these run for every frame.
_TYPES = {int(t): t for t in FrameType}
_KNOWN_FLAGS = _ENCRYPTED = int(Flags.ENCRYPTED)


class Frame(NamedTuple):
    """One frame as read off the wire; ``header`` is kept as the AEAD's associated data."""

    type: FrameType
    flags: int
    request_id: int
    header: bytes
    body: bytes

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & _ENCRYPTED)


def encode_header(frame_type: int, flags: int, request_id: int, length: int) -> bytes:
    """Pack a frame header. Arguments are trusted (they come from our own code)."""
    return HEADER.pack(MAGIC, VERSION, frame_type, flags, 0, request_id, length)


def encode_frame(frame_type: int, body: bytes, *, request_id: int = 0) -> bytes:
    """A clear (unencrypted) frame: header plus body."""
    return encode_header(frame_type, 0, request_id, len(body)) + body


class FrameDecoder:
    """Splits a byte stream into frames, checking every header field.

    The declared length is checked against ``max_frame_bytes`` as soon as the
    header has arrived, before any of the body is buffered, so a peer cannot
    make the server hold a large body in memory.
    """

    __slots__ = ("_buffer", "max_frame_bytes")

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def next_frame(self) -> Frame | None:
        """The next complete frame, or None if more bytes are needed.

        Raises:
            ProtocolError: bad magic, version, type, flags or reserved byte, or
                a length over the limit. The decoder is unusable afterwards.
        """
        buf = self._buffer
        if len(buf) < HEADER_SIZE:
            if buf and not MAGIC.startswith(bytes(buf[:2])):
                raise ProtocolError("bad magic")
            return None
        magic, version, frame_type, flags, reserved, request_id, length = HEADER.unpack_from(buf)
        if magic != MAGIC:
            raise ProtocolError("bad magic")
        if version != VERSION:
            raise ProtocolError(f"unsupported frame version {version}")
        known_type = _TYPES.get(frame_type)
        if known_type is None:
            raise ProtocolError(f"unknown frame type {frame_type}")
        if flags & ~_KNOWN_FLAGS or reserved:
            raise ProtocolError("unknown flags")
        if length > self.max_frame_bytes:
            raise ProtocolError(f"frame of {length} bytes exceeds the limit of {self.max_frame_bytes}")
        end = HEADER_SIZE + length
        if len(buf) < end:
            return None
        header = bytes(buf[:HEADER_SIZE])
        body = bytes(buf[HEADER_SIZE:end])
        del buf[:end]
        return Frame(known_type, flags, request_id, header, body)
