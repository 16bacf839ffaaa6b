"""Opening a PostgreSQL connection, every failure one ``StorageError`` line with the password masked.

``ember serve`` prints a ``StorageError`` as it is and exits 1 (``gateway.cli``), so what a user reads
when the server is down, refuses the credentials or does not know the database is the one line built
here: the URL as ``url.mask_password`` shows it, then libpq's own words, folded onto one line.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

from storage.postgres.url import MASK, is_postgres_url, mask_password
from storage.writer import StorageError

if TYPE_CHECKING:
    import psycopg

#: Seconds libpq waits for a server that does not answer, unless the URL sets ``connect_timeout``
#: (libpq's own default is to wait for ever: a gateway would hang at start on a dropped route).
DEFAULT_CONNECT_TIMEOUT_SECONDS: Final = 10

#: What the server shows in ``pg_stat_activity.application_name`` unless the URL names another.
APPLICATION_NAME: Final = "ember"

INSTALL_HINT: Final = "pip install 'ember-im[postgresql]'"

# A password shorter than this is not scrubbed from libpq's messages (libpq never puts it there;
# replacing every "a" of a message for a one-letter password would only garble it).
_SCRUB_MIN_CHARS: Final = 4


def connect(url: str, **options: Any) -> psycopg.Connection[Any]:
    """A new connection to the database ``url`` names (libpq parameters honoured as written).

    ``options`` are psycopg's ``connect`` keyword arguments (``autocommit``, ``row_factory``, ...);
    libpq parameters belong in the URL.

    Raises:
        StorageError: psycopg is not installed, ``url`` is not a PostgreSQL URL libpq can parse, or the
            connection failed (server unreachable, credentials refused, no such database, ...). The
            message is one line and never holds the password.
    """
    psycopg = import_psycopg()
    shown = mask_password(url)
    if not is_postgres_url(url):
        raise StorageError(f"not a PostgreSQL URL (postgresql://...): {shown}")
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise StorageError(f"storage.url is not a valid PostgreSQL URL ({shown}): {one_line(exc, url)}") from None
    params.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT_SECONDS)
    params.setdefault("application_name", APPLICATION_NAME)
    try:
        return psycopg.connect(**params, **options)
    except psycopg.Error as exc:
        raise StorageError(f"cannot connect to PostgreSQL at {shown}: {one_line(exc, url)}") from None


def import_psycopg() -> Any:
    """The psycopg module, or a ``StorageError`` saying how to install it."""
    try:
        import psycopg
    except ImportError:
        raise StorageError(f"storage.url selects PostgreSQL, which needs psycopg: {INSTALL_HINT}") from None
    return psycopg


def one_line(exc: BaseException, url: str = "") -> str:
    """``exc``'s message on one line (libpq's span several), without the password of ``url``."""
    lines = (" ".join(line.split()) for line in str(exc).splitlines())
    text = "; ".join(line for line in lines if line)
    text = re.sub(r"^connection failed: ", "", text)  # psycopg's prefix; "cannot connect" says it
    password = _password_of(url)
    if len(password) >= _SCRUB_MIN_CHARS:
        text = text.replace(password, MASK)
    return text


def _password_of(url: str) -> str:
    """The password ``url`` holds (user info or query), or '' (no driver, or not a URL libpq parses)."""
    try:
        import psycopg
    except ImportError:
        return ""
    try:
        return str(psycopg.conninfo.conninfo_to_dict(url).get("password") or "")
    except psycopg.Error:
        return ""
