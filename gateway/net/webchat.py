"""The web chat page on the WebSocket listener (``server.ws_demo``): a few static files, answered over HTTP/1.1.

The files live in ``gateway/webchat/`` and ship in the wheel as package data (pyproject.toml): the page
(``index.html``, ``app.js``, ``style.css``) and ``ember.js``, the TypeScript SDK's browser bundle. The bundle is
built by esbuild from ``sdk/ts/src`` and **committed** (``npm run build:webchat`` in sdk/ts writes it), so a
plain ``pip install .`` needs no Node; tests/test_ts_sdk.py fails when it differs from a fresh build.

Each answer is the whole file, then the connection closes (a demo page of four files needs no keep-alive).
The headers confine the page to itself: its scripts, styles and connections may come only from the origin
that served it (``connect-src 'self'`` also covers ``ws://`` and ``wss://`` to the same host and port, CSP
Level 3), nothing may frame it, and no type is sniffed. Loaded once, when the listener opens.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

#: URL path → (file in gateway/webchat, Content-Type).
FILES = {
    b"/": ("index.html", b"text/html; charset=utf-8"),
    b"/app.js": ("app.js", b"text/javascript; charset=utf-8"),
    b"/ember.js": ("ember.js", b"text/javascript; charset=utf-8"),
    b"/style.css": ("style.css", b"text/css; charset=utf-8"),
}

#: Only the page's own files and its own origin's WebSocket; no inline script or style, no plugins, no
#: frames, no form posts elsewhere, no <base> rewriting.
CONTENT_SECURITY_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    b"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),  # revalidate: a gateway upgrade brings a new page and bundle
    (b"connection", b"close"),
)


class WebChatMissing(RuntimeError):
    """A file of the page is not installed (a broken install): ``ember serve`` refuses to start with it."""


@dataclass(frozen=True)
class WebChat:
    """The page's files, read once: path → (Content-Type, bytes)."""

    files: dict[bytes, tuple[bytes, bytes]]

    @classmethod
    def load(cls) -> WebChat:
        folder = resources.files("gateway") / "webchat"
        files = {}
        for path, (name, content_type) in FILES.items():
            try:
                files[path] = (content_type, (folder / name).read_bytes())
            except OSError as exc:
                raise WebChatMissing(
                    f"server.ws_demo: the web chat page's {name} is not installed ({exc.strerror})"
                ) from None
        return cls(files)

    def answer(self, method: bytes, path: bytes) -> tuple[int, bytes] | None:
        """The whole HTTP answer to ``method path``; None when the path is not the page's (a 404 is the caller's)."""
        found = self.files.get(path)
        if found is None:
            return None
        if method not in (b"GET", b"HEAD"):
            head = _head(405, b"Method Not Allowed", b"text/plain; charset=utf-8", 0, [(b"allow", b"GET, HEAD")])
            return 405, head
        content_type, body = found
        head = _head(200, b"OK", content_type, len(body), HEADERS)
        return 200, head if method == b"HEAD" else head + body


def _head(
    status: int, phrase: bytes, content_type: bytes, length: int, headers: tuple | list
) -> bytes:
    lines = [b"HTTP/1.1 %d %s" % (status, phrase), b"content-type: " + content_type]
    lines.append(b"content-length: %d" % length)
    lines += [name + b": " + value for name, value in headers]
    if not any(name == b"connection" for name, _ in headers):
        lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"
