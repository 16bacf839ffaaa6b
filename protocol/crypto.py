"""Key derivation and AEAD frame protection.

After the handshake both sides hold the session secret (32 bytes) and the two
32-byte nonces exchanged in HELLO and CONNECT. From them HKDF-SHA256 derives:

- the proof key, which seals the client's CONNECT proof, with the exact bytes
  of the HELLO frame as associated data (the transcript: a changed HELLO, its
  time included, makes the proof fail);
- one key per direction for every later frame.

Each direction counts its frames from 0; the AES-GCM nonce of frame ``n`` is
four zero bytes followed by ``n`` as an 8-byte big-endian integer. Because
every frame's nonce is implied by its position, a replayed, dropped or
reordered frame fails authentication, and the per-direction keys keep a
frame from being reflected back to its sender.
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import ProtocolError

SECRET_SIZE = 32
NONCE_SIZE = 32  # the HELLO and CONNECT nonces
KEY_SIZE = 32  # AES-256
TAG_SIZE = 16

PROOF_INFO = b"ember/1 connect proof"
KEYS_INFO = b"ember/1 frame keys"
ZERO_NONCE = bytes(12)

_COUNTER = struct.Struct(">4xQ")
_MAX_COUNTER = 2**64 - 1


def hkdf(secret: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(secret)


def derive_proof_key(secret: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    """Key that seals the CONNECT proof: HKDF(secret, salt=server_nonce‖client_nonce, PROOF_INFO)."""
    return hkdf(secret, server_nonce + client_nonce, PROOF_INFO, KEY_SIZE)


def derive_frame_keys(secret: bytes, server_nonce: bytes, client_nonce: bytes) -> tuple[bytes, bytes]:
    """(client→server key, server→client key): the two halves of a 64-byte HKDF output."""
    okm = hkdf(secret, server_nonce + client_nonce, KEYS_INFO, 2 * KEY_SIZE)
    return okm[:KEY_SIZE], okm[KEY_SIZE:]


def seal_proof(proof_key: bytes, plaintext: bytes, hello_frame: bytes) -> bytes:
    """Seal the proof, binding ``hello_frame`` (the HELLO's header and body, as received) as AAD.

    The proof uses a fresh key per handshake, so the all-zero nonce is safe.
    """
    return AESGCM(proof_key).encrypt(ZERO_NONCE, plaintext, hello_frame)


def open_proof(proof_key: bytes, sealed: bytes, hello_frame: bytes) -> bytes | None:
    """The proof's plaintext, or None when it was not sealed with this key over this HELLO."""
    try:
        return AESGCM(proof_key).decrypt(ZERO_NONCE, sealed, hello_frame)
    except (InvalidTag, ValueError):
        return None


class DirectionCipher:
    """AES-256-GCM for one direction of one connection, with its frame counter.

    ``seal`` and ``open`` each advance the counter; a failed ``open`` raises
    and the connection is finished (its counter no longer matches the peer's).
    """

    __slots__ = ("_aead", "_counter", "_key")

    def __init__(self, key: bytes) -> None:
        self._key = key
        # Built at first use and kept while the connection is busy: construction costs about as much
        # as a small seal. But it holds ~2.5 KiB of key schedule, so an idle connection drops it
        # (release) and most idle connections never hold one at all.
        self._aead: AESGCM | None = None
        self._counter = 0

    @property
    def frames(self) -> int:
        """Frames sealed or opened so far in this direction (the counter; metrics read it)."""
        return self._counter

    def release(self) -> None:
        """Free the key schedule until the next seal or open (for idle connections)."""
        self._aead = None

    def _cipher(self) -> AESGCM:
        if self._aead is None:
            self._aead = AESGCM(self._key)
        return self._aead

    # seal and open take the next nonce (the direction's counter, then one more) inline: they run for every frame.
    def seal(self, header: bytes, plaintext: bytes) -> bytes:
        counter = self._counter
        if counter > _MAX_COUNTER:  # pragma: no cover - 2**64 frames
            raise ProtocolError("frame counter exhausted")
        self._counter = counter + 1
        return (self._aead or self._cipher()).encrypt(_COUNTER.pack(counter), plaintext, header)

    def open(self, header: bytes, ciphertext: bytes) -> bytes:
        counter = self._counter
        if counter > _MAX_COUNTER:  # pragma: no cover - 2**64 frames
            raise ProtocolError("frame counter exhausted")
        self._counter = counter + 1
        try:
            return (self._aead or self._cipher()).decrypt(_COUNTER.pack(counter), ciphertext, header)
        except (InvalidTag, ValueError):
            raise ProtocolError("frame failed authentication") from None
