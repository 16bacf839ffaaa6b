"""The admin API's one answer shape: ``{"code", "msg", "result"}`` (docs/ADMIN_API.md "Answers")."""

from __future__ import annotations

from typing import Any

from protocol.codes import ErrorCode

from . import models as m


def answer(code: int = ErrorCode.SUCCESS, result: Any = None, msg: str | None = None) -> dict[str, Any]:
    """The body of every answer; ``msg`` defaults to the code's name ("not exist")."""
    if msg is None:
        msg = ErrorCode(code).name.lower().replace("_", " ")
    return {"code": int(code), "msg": msg, "result": result if code == ErrorCode.SUCCESS else None}


#: The answers every signed endpoint may give besides its own (auth.SignatureMiddleware), for the OpenAPI doc.
SIGNED_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": m.Answer[None], "description": "unsigned, stale, wrongly signed or replayed (code 242)"},
    413: {"model": m.Answer[None], "description": "body over 1 MiB (code 251)"},
    429: {"model": m.Answer[None], "description": "too many signed requests in the window (code 250)"},
}
