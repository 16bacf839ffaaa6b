"""Admin request signatures (SPEC §10): the pure function both the server and the CLI use.

Signed bytes: ``nonce + "|" + timestamp + "|" + body``, where nonce and
timestamp are the ``X-Nonce`` and ``X-Timestamp`` header values as sent
(ASCII) and body is the raw request body, byte for byte. The signature is the
lowercase hex HMAC-SHA256 of those bytes, keyed with the UTF-8 bytes of
``admin.secret``. See docs/ADMIN_API.md for a worked example.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

NONCE_HEADER = "X-Nonce"
TIMESTAMP_HEADER = "X-Timestamp"
SIGN_HEADER = "X-Sign"
MAX_NONCE_LEN = 64


def sign(secret: bytes, nonce: str, timestamp: str, body: bytes) -> str:
    """The ``X-Sign`` value for one request.

    Args:
        secret: The HMAC key: ``admin.secret`` encoded as UTF-8.
        nonce: The ``X-Nonce`` header value (printable ASCII, no ``|``).
        timestamp: The ``X-Timestamp`` header value (decimal milliseconds).
        body: The exact request body bytes.
    """
    message = nonce.encode("ascii") + b"|" + timestamp.encode("ascii") + b"|" + body
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def valid_nonce(nonce: str) -> bool:
    """1–64 printable ASCII characters, no space and no ``|``.

    ``|`` is the field separator of the signed bytes: keeping it out of the
    nonce means one signed message has exactly one reading.
    """
    return 1 <= len(nonce) <= MAX_NONCE_LEN and all("!" <= ch <= "~" for ch in nonce) and "|" not in nonce


def signed_headers(secret: bytes, nonce: str, timestamp_ms: int, body: bytes) -> dict[str, str]:
    """The three headers that sign ``body``; for clients (the CLI, tests)."""
    timestamp = str(timestamp_ms)
    return {
        NONCE_HEADER: nonce,
        TIMESTAMP_HEADER: timestamp,
        SIGN_HEADER: sign(secret, nonce, timestamp, body),
    }


def signed_json(
    secret: bytes, payload: Any, timestamp_ms: int, nonce: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """A JSON request body and every header to POST it with (signature and content type).

    The one way clients here (the CLI, the load tester, tests) build an admin
    call; ``nonce`` defaults to 128 random bits.
    """
    body = json.dumps(payload, separators=(",", ":")).encode()
    nonce = secrets.token_hex(16) if nonce is None else nonce
    return body, {**signed_headers(secret, nonce, timestamp_ms, body), "content-type": "application/json"}
