"""Message search (issue 26, docs/PROTOCOL.md "search_messages"): the request read and checked, the answer built.

Shared by the client method (the caller's own messages) and the admin API (one user's, or everyone's).
What is indexed and how a keyword matches is ``storage.search``'s; which messages a user may see is
the inbox's, as for pull (``storage.search.SearchQuery``). A page is newest first; ``next_cursor`` (the
last message's id, as a decimal string) asks for the messages older than it, so a page never moves
when new messages arrive, and one deleted in between just leaves a shorter page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.domain.messaging import read_conversation
from protocol.codec import Fields
from protocol.codes import MESSAGE_ID_MAX, ConversationType
from protocol.errors import FieldError
from protocol.limits import (
    SEARCH_DEFAULT_LIMIT,
    SEARCH_MAX_CONTENT_TYPES,
    SEARCH_MAX_KEYWORD_CHARS,
    SEARCH_MAX_LIMIT,
)
from storage import Store
from storage.messages import StoredMessage, conversation_key
from storage.search import KeywordError, SearchQuery, Term, highlights, parse_keyword

_TIME_MAX = 2**63 - 1
_CURSOR_DIGITS = len(str(MESSAGE_ID_MAX))


@dataclass(frozen=True, slots=True)
class Found:
    """One result: the message, and where the keyword is in its ``searchable_content``."""

    message: StoredMessage
    highlights: list[list[int]]

    @property
    def text(self) -> str:
        value = self.message.content.get("searchable_content")
        return value if isinstance(value, str) else ""


@dataclass(frozen=True, slots=True)
class Page:
    found: list[Found]
    next_cursor: str | None


def read_search(params: Fields, user_id: str | None) -> SearchQuery:
    """The query a request asks for; ``user_id`` None: every user's messages (the admin API's moderation
    search, where a private conversation cannot be named: it has two sides).

    Raises:
        FieldError: A field that is missing, of the wrong type or out of range (251), or a keyword that
            cannot be searched (``storage.search.parse_keyword``).
    """
    keyword = params.text("keyword", max_len=SEARCH_MAX_KEYWORD_CHARS)
    try:
        terms = parse_keyword(keyword)
    except KeywordError as exc:
        raise FieldError(params.path("keyword"), str(exc)) from None
    limit = params.integer("limit", lo=1, hi=SEARCH_MAX_LIMIT, default=SEARCH_DEFAULT_LIMIT)
    conv_type = conv_key = None
    conv_line = 0
    if params.raw.get("conv") is not None:
        conv = read_conversation(params)
        if conv.type == ConversationType.PRIVATE and user_id is None:
            raise FieldError(params.path("conv.type"), "a private conversation needs user_id (it has two sides)")
        conv_type, conv_line = conv.type, conv.line
        conv_key = conversation_key(conv, user_id or "")
    content_types = params.array("content_types", max_len=SEARCH_MAX_CONTENT_TYPES, default=[])
    if any(value.__class__ is not int or not 0 <= value < 2**31 for value in content_types):
        raise FieldError(params.path("content_types"), "items must be integers in 0..2147483647")
    cursor = params.text("cursor", max_len=_CURSOR_DIGITS, default=None)
    before_id = None
    if cursor is not None:
        if not (cursor.isascii() and cursor.isdigit()) or not 1 <= int(cursor) <= MESSAGE_ID_MAX:
            raise FieldError(params.path("cursor"), "not a cursor this server gave (next_cursor of a page)")
        before_id = int(cursor)
    return SearchQuery(
        terms=terms,
        limit=limit,
        user_id=user_id,
        conv_type=conv_type,
        conv_key=conv_key,
        conv_line=conv_line,
        from_user=params.identifier("from_user", default=None),
        content_types=sorted(set(content_types)),
        before=params.integer("before", lo=0, hi=_TIME_MAX, default=None),
        after=params.integer("after", lo=0, hi=_TIME_MAX, default=None),
        before_id=before_id,
    )


async def search(store: Store, query: SearchQuery) -> Page:
    """Run ``query`` on a reader connection; each result with its highlights."""
    return page_of(await store.search_messages(query), query)


def page_of(messages: list[StoredMessage], query: SearchQuery) -> Page:
    """The page of what ``query`` found: a full page has a ``next_cursor`` (the next may be empty)."""
    found = [Found(message, _highlights(message, query.terms)) for message in messages]
    more = len(messages) == query.limit
    return Page(found, str(messages[-1].message_id) if more and messages else None)


def _highlights(message: StoredMessage, terms: list[Term]) -> list[list[int]]:
    text = message.content.get("searchable_content")
    return highlights(text, terms) if isinstance(text, str) else []


def client_answer(page: Page) -> dict[str, Any]:
    """The client method's result (docs/PROTOCOL.md "search_messages")."""
    answer: dict[str, Any] = {
        "results": [{"message": found.message.to_wire(), "highlights": found.highlights} for found in page.found]
    }
    if page.next_cursor is not None:
        answer["next_cursor"] = page.next_cursor
    return answer
