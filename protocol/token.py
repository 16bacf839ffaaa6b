"""The token an app server hands to its client (SPEC §2).

A token is one ASCII string::

    "em1." + base64url_nopad(msgpack([user_id, client_id, platform, secret, credential]))

- ``secret`` (32 bytes) is the session secret. The client keeps it to itself:
  it never crosses the gateway socket, only proofs derived from it do.
- ``credential`` is opaque to the client. The server sealed it with its token
  key (``token.key``)::

      credential = nonce(12) ‖ AES-256-GCM(token_key, nonce,
                                           msgpack([user_id, client_id, platform, issued_at_ms, expires_at_ms]),
                                           aad=b"ember/1 credential")

  ``expires_at_ms`` 0 means the token does not expire.

The clear copies of user_id, client_id and platform let the SDK fill CONNECT
from the token alone; the server trusts only the sealed copy.

``base64url_nopad`` is strict both ways: only the 64 characters of the
alphabet, no padding, and zero unused bits in the last character, so a token
has exactly one spelling.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import codec
from .codes import MAX_ID_LEN
from .crypto import SECRET_SIZE
from .errors import FieldError, ProtocolError

PREFIX = "em1."
CREDENTIAL_AAD = b"ember/1 credential"
CREDENTIAL_NONCE_SIZE = 12
MAX_TOKEN_LEN = 1024
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


class TokenError(ValueError):
    """A token or credential that is malformed, forged, or sealed by another key."""


@dataclass(frozen=True, slots=True)
class TokenParts:
    """What the client reads out of its token."""

    user_id: str
    client_id: str
    platform: int
    secret: bytes
    credential: bytes


@dataclass(frozen=True, slots=True)
class Credential:
    """What the server reads out of a credential it sealed."""

    user_id: str
    client_id: str
    platform: int
    issued_at_ms: int
    expires_at_ms: int  # 0: never

    def expired(self, now_ms: int) -> bool:
        return self.expires_at_ms != 0 and now_ms >= self.expires_at_ms


def seal_credential(token_key: bytes, credential: Credential, *, nonce: bytes | None = None) -> bytes:
    nonce = os.urandom(CREDENTIAL_NONCE_SIZE) if nonce is None else nonce
    plaintext = codec.pack(
        [
            credential.user_id,
            credential.client_id,
            credential.platform,
            credential.issued_at_ms,
            credential.expires_at_ms,
        ]
    )
    return nonce + AESGCM(token_key).encrypt(nonce, plaintext, CREDENTIAL_AAD)


def open_credential(token_key: bytes, sealed: bytes) -> Credential:
    """Unseal a credential.

    Raises:
        TokenError: not sealed by ``token_key``, or not the documented shape.
    """
    if len(sealed) < CREDENTIAL_NONCE_SIZE + 16:
        raise TokenError("credential too short")
    nonce, ciphertext = sealed[:CREDENTIAL_NONCE_SIZE], sealed[CREDENTIAL_NONCE_SIZE:]
    try:
        plaintext = AESGCM(token_key).decrypt(nonce, ciphertext, CREDENTIAL_AAD)
    except InvalidTag:
        raise TokenError("credential not sealed by this server") from None
    try:
        fields = codec.unpack(plaintext)
        user_id, client_id, platform, issued_at_ms, expires_at_ms = fields
    except (ProtocolError, TypeError, ValueError):
        raise TokenError("credential malformed") from None
    if not (
        isinstance(user_id, str)
        and isinstance(client_id, str)
        and all(
            isinstance(n, int) and not isinstance(n, bool) for n in (platform, issued_at_ms, expires_at_ms)
        )
    ):
        raise TokenError("credential malformed")
    return Credential(user_id, client_id, platform, issued_at_ms, expires_at_ms)


def issue_token(
    token_key: bytes,
    *,
    user_id: str,
    client_id: str,
    platform: int,
    secret: bytes,
    issued_at_ms: int,
    expires_at_ms: int = 0,
    nonce: bytes | None = None,
) -> str:
    """Build the token string for a session. ``nonce`` is for test vectors only."""
    credential = seal_credential(
        token_key, Credential(user_id, client_id, platform, issued_at_ms, expires_at_ms), nonce=nonce
    )
    return encode_token(TokenParts(user_id, client_id, platform, secret, credential))


def encode_token(parts: TokenParts) -> str:
    body = codec.pack([parts.user_id, parts.client_id, parts.platform, parts.secret, parts.credential])
    return PREFIX + base64.urlsafe_b64encode(body).rstrip(b"=").decode("ascii")


def parse_token(token: str) -> TokenParts:
    """Split a token into its parts (client side; nothing is verified here).

    Raises:
        TokenError: the string is not a well-formed Ember token.
    """
    if not isinstance(token, str) or not token.startswith(PREFIX) or len(token) > MAX_TOKEN_LEN:
        raise TokenError("not an Ember token")
    encoded = token[len(PREFIX) :]
    # The standard decoder skips characters outside the alphabet, takes "+/" and "=" and ignores
    # the unused bits of the last character: several spellings would decode to one token.
    if not _BASE64URL.fullmatch(encoded):
        raise TokenError("token malformed")
    try:
        body = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        if base64.urlsafe_b64encode(body).rstrip(b"=") != encoded.encode("ascii"):
            raise TokenError("token malformed")  # non-zero unused bits in the last character
        items = codec.unpack(body)
        if not isinstance(items, list) or len(items) != 5:
            raise TokenError("token malformed")
        fields = codec.Fields(
            dict(zip(("user_id", "client_id", "platform", "secret", "credential"), items, strict=True))
        )
        return TokenParts(
            fields.text("user_id", min_len=1, max_len=MAX_ID_LEN, printable=True),
            fields.text("client_id", min_len=1, max_len=MAX_ID_LEN, printable=True),
            fields.integer("platform", lo=0, hi=255),
            fields.binary("secret", min_len=SECRET_SIZE, max_len=SECRET_SIZE),
            fields.binary("credential", min_len=CREDENTIAL_NONCE_SIZE + 16, max_len=512),
        )
    except (binascii.Error, ValueError, ProtocolError, FieldError) as exc:
        if isinstance(exc, TokenError):
            raise
        raise TokenError("token malformed") from None
