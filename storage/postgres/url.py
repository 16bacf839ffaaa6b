"""PostgreSQL connection URLs: which strings select PostgreSQL, and how to show one without its password.

A URL is libpq's (``postgresql://user:password@host:port/dbname?sslmode=verify-full&...``): it goes to
libpq as written, so every libpq parameter is honoured. The password may sit in the user info or in a
``password=`` query parameter; ``mask_password`` hides both, and it is the only form of a URL that
Ember ever logs or prints. Nothing here needs the driver: ``gateway.config`` uses it to validate and
display ``storage.url`` where psycopg is not installed.
"""

from __future__ import annotations

import re
from typing import Final

#: The schemes libpq accepts for a connection URI.
SCHEMES: Final = ("postgresql://", "postgres://")
MASK: Final = "***"

# ``password=...`` among the query parameters, up to the next ``&`` or ``#``.
_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)[^&#]*")
# ``password=...`` in libpq's other form, ``host=db password='a b'`` (refused as storage.url, but
# masked in the error that says so).
_KEYWORD_PASSWORD = re.compile(r"(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)")


def is_postgres_url(url: str) -> bool:
    """Does ``url`` select PostgreSQL (one of libpq's URI schemes, any letter case)?"""
    return url.lower().startswith(SCHEMES)


def mask_password(url: str) -> str:
    """``url`` with any password replaced by ``***``: safe to log, print or put in an error.

    ``postgresql://ember:s3cret@db:5432/ember`` -> ``postgresql://ember:***@db:5432/ember``. The user
    info is everything before the LAST ``@`` ahead of the query, so a password holding a raw ``@`` or
    ``/`` (libpq wants them percent-encoded, but a user may not know) is still masked whole: when in
    doubt this masks too much, never too little.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _KEYWORD_PASSWORD.sub(lambda m: m.group(1) + MASK, url)
    query_at = rest.find("?")
    head, query = (rest, "") if query_at == -1 else (rest[:query_at], rest[query_at:])
    user_end = head.rfind("@")
    if user_end != -1 and ":" in head[:user_end]:
        user = head[:user_end].split(":", 1)[0]
        head = f"{user}:{MASK}{head[user_end:]}"
    return f"{scheme}{sep}{head}" + _QUERY_PASSWORD.sub(lambda m: m.group(1) + MASK, query)
