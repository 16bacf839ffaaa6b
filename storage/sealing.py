"""Session secrets at rest: sealed with AES-256-GCM under a key only the running server holds.

A session secret is what a device proves at CONNECT, and the root of that connection's frame keys: whoever
reads it can answer a HELLO as the device (with its token's credential) and decrypt a recorded connection of
that session. So the ``sessions.secret`` column never holds it in clear, and a copied database, a backup or
a replica gives no one a secret. Each row holds::

    sealed = nonce(12) ‖ AES-256-GCM(key, nonce, secret, aad = msgpack([user_id, client_id]))
    key    = HKDF-SHA256(token.key's 32 bytes, salt = none, info = "ember/1 session secret at rest")

The key is derived from the server's token key under a label of its own, so it is never the key that seals
credentials. The (user_id, client_id) as associated data ties a sealed secret to its row: moved to another
row it does not open. Nonces are random: the sessions one key ever seals stay far below the 2^32 at which
random 96-bit nonces would begin to risk a repeat.

A database whose secrets were sealed under another token key (the server's key changed, or the database
was moved to another server) opens none of them: every such session answers -6 SecretKeyMismatch, as a
server moved without its database would, until its device gets a new token.
"""

from __future__ import annotations

import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocol import codec

#: The HKDF label of the at-rest key: no other key of the server is derived with it.
SEAL_INFO: Final = b"ember/1 session secret at rest"
#: The label of the robots' at-rest key (``storage.robots``): a key of its own, so that a sealed robot
#: secret can never be opened as a session's, whatever the two rows' ids.
ROBOT_SEAL_INFO: Final = b"ember/1 robot secret at rest"
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16


class SecretSeal:
    """Seals and opens secrets for one server key. Thread-safe (it holds only the key).

    Args:
        server_key: The server's key material: ``token.key``'s 32 bytes.
        info: The HKDF label of this seal's key: ``SEAL_INFO`` (sessions) or ``ROBOT_SEAL_INFO``.
    """

    def __init__(self, server_key: bytes, info: bytes = SEAL_INFO) -> None:
        if len(server_key) != 32:
            raise ValueError("the server key is 32 bytes")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(server_key)
        self._aead = AESGCM(key)

    def seal(self, user_id: str, client_id: str, secret: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, secret, _row(user_id, client_id))

    def open(self, user_id: str, client_id: str, sealed: bytes) -> bytes | None:
        """The secret, or None when ``sealed`` was not sealed by this key for this row."""
        if len(sealed) < NONCE_BYTES + TAG_BYTES:
            return None
        try:
            return self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], _row(user_id, client_id))
        except InvalidTag:
            return None


def _row(user_id: str, client_id: str) -> bytes:
    # msgpack of the pair: unambiguous whatever the ids contain.
    return codec.pack([user_id, client_id])
