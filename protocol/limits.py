"""The edge checks every peer-sent value goes through, on both edges (client protocol and admin API).

Two checks, one place (issue 20):

- ``value_problem``: a decoded request (a REQUEST's params, an admin JSON body) nests at most
  ``MAX_VALUE_DEPTH`` containers deep, and (``check_text``) every string in it encodes as UTF-8,
  i.e. holds no lone surrogate. MessagePack strings are decoded strictly (``protocol.codec``), so
  they always encode; JSON's ``"\\ud800"`` escape decodes to a lone surrogate, so admin bodies are
  checked.
- ``json_text_problem``: a JSON-text field (every ``extra``) is JSON nested at most
  ``MAX_JSON_DEPTH`` deep. The depth is counted before ``json.loads`` runs, so a hostile
  ``"[" * 4000`` is answered 251 and never reaches the parser's recursion (RecursionError, a 500
  or a closed connection before).

Both return what is wrong (None when fine) so each edge answers 251 its own way, naming the field.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: Levels of containers a request may nest, its own top-level map the first: the deepest documented params
#: are three levels (params, ``notify_content``, an array in it), so 16 leaves room and bounds every walk.
MAX_VALUE_DEPTH = 16
#: Arrays and objects in arrays and objects a JSON-text field may nest.
MAX_JSON_DEPTH = 32

# --- message search (issue 26): what a search_messages request (or the admin search) may ask ---
#: Longest keyword, in characters.
SEARCH_MAX_KEYWORD_CHARS = 100
#: Most results a page may ask for (``limit``: 1..this; 20 when absent).
SEARCH_MAX_LIMIT = 100
SEARCH_DEFAULT_LIMIT = 20
#: Most content types a ``content_types`` filter may list.
SEARCH_MAX_CONTENT_TYPES = 32

# What the depth scan looks at: brackets, and what starts or escapes inside a string (brackets there are text).
_SPECIAL = re.compile(r'[\[\]{}"\\]')


def json_depth(text: str, limit: int = MAX_JSON_DEPTH) -> int:
    """How deep ``text``'s arrays and objects nest; never recurses, linear in ``len(text)``.

    Past ``limit`` it stops counting and answers ``limit + 1``; at most ``limit`` it may answer any value
    up to ``limit`` (the fast path counts brackets). Malformed text gets an answer too (``json.loads``
    judges it).
    (A regex matching whole strings would backtrack quadratically on a run of ``\\"``.)"""
    # Fast path (C speed): no more opening brackets than the limit cannot nest deeper than it.
    opening = text.count("[") + text.count("{")
    if opening <= limit:
        return opening
    depth = deepest = 0
    in_string = False
    escaped_at = -1  # the index of the character a backslash escapes
    for special in _SPECIAL.finditer(text):
        char, at = special.group(), special.start()
        if at == escaped_at:
            continue
        if in_string:
            if char == "\\":
                escaped_at = at + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if depth > limit:
                    return depth
        elif char in "]}":
            depth -= 1
    return deepest


def json_text_problem(text: str) -> str | None:
    """What is wrong with ``text`` as a JSON-text field, or None (the empty string is not JSON)."""
    if json_depth(text) > MAX_JSON_DEPTH:
        return f"JSON nested deeper than {MAX_JSON_DEPTH}"
    try:
        json.loads(text)
    except ValueError:
        return "must be JSON text"
    return None


def utf8_problem(text: str) -> str | None:
    """None when ``text`` encodes as UTF-8 (no lone surrogate), else what is wrong."""
    if text.isascii():
        return None
    try:
        text.encode()
    except UnicodeEncodeError:
        return "must be UTF-8 text (a lone surrogate)"
    return None


def value_problem(value: Any, *, check_text: bool) -> tuple[str, str] | None:
    """``(path, problem)`` for the first part of a decoded request that nests too deep or (with
    ``check_text``) holds a string that is not UTF-8; None when all is fine.

    ``path`` names it as a 251 does: keys and indexes joined by dots (``content.extra``,
    ``to_users.2``). One pass over the containers; bounded recursion (``MAX_VALUE_DEPTH``).
    """
    if not check_text and not _too_deep(value, MAX_VALUE_DEPTH):
        return None  # the send path's case: a bare walk of the containers, no path built (~1 us)
    return _walk(value, MAX_VALUE_DEPTH, check_text)


def _too_deep(value: Any, depth_left: int) -> bool:
    cls = value.__class__
    if cls is dict:
        items: Any = value.values()
    elif cls is list:
        items = value
    else:
        return False
    if depth_left == 0:
        return True
    for item in items:
        item_cls = item.__class__
        if (item_cls is dict or item_cls is list) and _too_deep(item, depth_left - 1):
            return True
    return False


def _walk(value: Any, depth_left: int, check_text: bool) -> tuple[str, str] | None:
    cls = value.__class__
    if cls is str:
        if check_text:
            problem = utf8_problem(value)
            if problem is not None:
                return "", problem
        return None
    if cls is dict:
        items: Any = value.items()
    elif cls is list:
        items = enumerate(value)
    else:
        return None
    if depth_left == 0:
        return "", f"nested deeper than {MAX_VALUE_DEPTH}"
    for key, item in items:
        item_cls = item.__class__
        if item_cls is dict or item_cls is list or (check_text and (item_cls is str or key.__class__ is str)):
            if check_text and key.__class__ is str and (problem := utf8_problem(key)) is not None:
                return str(key), problem
            found = _walk(item, depth_left - 1, check_text)
            if found is not None:
                path, problem = found
                return (f"{key}.{path}" if path else str(key)), problem
    return None
