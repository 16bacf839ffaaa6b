"""The admin API's edge check of every request body, before FastAPI parses it (issue 20).

Two things pydantic's per-field rules cannot see, checked once here for every endpoint:

- nesting: a body nested deeper than ``protocol.limits.MAX_VALUE_DEPTH`` is answered 251 ``body: ...``
  before ``json.loads`` recurses into it (no request is that deep; a hostile one cost a RecursionError);
- lone surrogates: JSON's ``"\\ud800"`` escape decodes to a ``str`` that is not UTF-8, which SQLite
  (and every later encoder) refuses with an exception. Any such string, in any field, is answered 251
  naming its path (``content.searchable_content``, ``to_users.0``).

JSON-text fields (``extra``) are the models' job (``models.Extra``), with the same checker as the client
protocol's. Runs inside the signature check, so an unsigned request is still answered 401.
"""

from __future__ import annotations

import json
import re

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from protocol.codes import ErrorCode
from protocol.limits import MAX_VALUE_DEPTH, json_depth, value_problem

from .answers import answer
from .auth import read_body, replay

# A \\uD800-\\uDFFF escape: the only way a JSON body can carry a lone surrogate (raw bytes of one are
# invalid UTF-8, refused by the parser). A body without one is not parsed here.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class BodyGuard:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:  # over the size limit: the signature check refuses those before this runs
            await JSONResponse(answer(ErrorCode.INVALID_PARAMETER, msg="body: too large"), 413)(scope, receive, send)
            return
        problem = body_problem(body)
        if problem is not None:
            await JSONResponse(answer(ErrorCode.INVALID_PARAMETER, msg=problem))(scope, receive, send)
            return
        await self._app(scope, replay(body, receive), send)


def body_problem(body: bytes) -> str | None:
    """``"<path>: <problem>"`` for a body too deep or holding a lone surrogate; None otherwise
    (malformed JSON is left to FastAPI, which answers it 251 ``body: not valid JSON``)."""
    if json_depth(body.decode("utf-8", "replace"), MAX_VALUE_DEPTH) > MAX_VALUE_DEPTH:
        return f"body: nested deeper than {MAX_VALUE_DEPTH}"
    if _SURROGATE_ESCAPE.search(body) is None:
        return None
    try:
        value = json.loads(body)
    except ValueError:
        return None
    found = value_problem(value, check_text=True)
    if found is None:
        return None
    path, problem = found
    return f"{path or 'body'}: {problem}"
