"""Message search (issue 26): what is indexed, how a keyword becomes a query, and the backend interface.

Nothing here speaks SQL. The text is segmented in Python before it reaches any index, so every
backend indexes and queries the very same tokens and gives the same answers:

- a run of CJK characters (Han, kana, Hangul) gives its overlapping pairs of characters (``bi``) and
  its last character (``uni``): Chinese words are one or two characters with no spaces around them,
  so a one-character query is a ``bi`` token starting with it or a ``uni`` token, a two-character one a
  ``bi`` token, and a longer run the phrase of its pairs (each pair at the next position: the run
  itself, as a substring);
- every other run of letters and digits is a lowercased word (``words``), matched by prefix
  (``meet`` finds "Meeting");
- everything else (spaces, punctuation, emoji) only separates.

A keyword's parts must all be found (AND); "明天 meeting 3点" is the terms 明天, meeting*, 3* and 点.
What is indexed of a message is its ``searchable_content`` (a file message's file name is its
``searchable_content``, WildfireChat's convention; the content map has no other name field), for
the content types people write: not recall or update notices, nor server notifications.

A backend (``SearchBackend``) keeps one index row per message, written in the message's own
transaction, and answers a ``SearchQuery`` newest first. SQLite's is ``storage.search_fts5``;
docs/ARCHITECTURE.md ("Search") says how PostgreSQL's does the same over these tokens.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from protocol.codes import NOTIFICATION_CONTENT_TYPES, ContentType
from protocol.limits import SEARCH_MAX_KEYWORD_CHARS
from storage.engine import Tx

#: Longest keyword, in characters (a longer one is answered 251).
MAX_KEYWORD_CHARS: Final = SEARCH_MAX_KEYWORD_CHARS
#: Most terms a keyword may hold (each is one more index lookup).
MAX_TERMS: Final = 16
#: A word is indexed and queried by its first this many characters (a longer query word still finds
#: its word: it is a prefix of it).
MAX_WORD_CHARS: Final = 32
#: Most highlighted ranges returned per message.
MAX_HIGHLIGHTS: Final = 32
#: Token between two CJK runs in ``bi``: no query ever asks for it, and it keeps the pairs of two runs
#: from being adjacent (so "明天。见" does not match the phrase 明天见).
RUN_BREAK: Final = "0"

_NOT_INDEXED: Final = frozenset({int(ContentType.RECALL), int(ContentType.UPDATE)})


#: The CJK ranges: Han (with extensions and compatibility ideographs), Hiragana, Katakana, Hangul.
_CJK_CLASS: Final = (
    "\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0003ffff\uf900-\ufaff\u3040-\u30ff\u31f0-\u31ff"
    "\uac00-\ud7af\u1100-\u11ff\u3130-\u318f"
)
#: Runs of letters and digits (``str.isalnum``: ``\w`` less the underscore), CJK ones included.
_ALNUM: Final = re.compile(r"[^\W_]+")
#: The words (letters and digits that are not CJK) and the CJK runs of a folded text.
_WORD: Final = re.compile(f"[^\\W_{_CJK_CLASS}]+")
_CJK_RUN: Final = re.compile(f"[{_CJK_CLASS}]+")
_ASCII_WORD: Final = re.compile("[a-z0-9]+")
#: Splits an alphanumeric run into its CJK runs (odd parts) and what lies between them (even parts).
_CJK_SPLIT: Final = re.compile(f"([{_CJK_CLASS}]+)")


def fold(text: str) -> str:
    """Lowercase, keeping the length: offsets into the result are offsets into ``text`` (a character whose
    lowercase is longer, like "İ", stays as it is)."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(low if len(low := char.lower()) == 1 else char for char in text)


@dataclass(frozen=True, slots=True)
class Run:
    """A stretch of ``fold(text)``: ``cjk`` characters, or a word; ``start`` is its offset."""

    cjk: bool
    start: int
    text: str


def _runs(folded: str) -> list[tuple[bool, int, str]]:
    """(cjk, start, text) of each CJK run and word of an already folded text, in order. Regular expressions
    rather than a loop over characters: this runs for every message sent, and a Python loop cost ~60 µs
    for 100 characters (bench/RESULTS.md, "Session 8 — search")."""
    found: list[tuple[bool, int, str]] = []
    for match in _ALNUM.finditer(folded):
        text = match.group()
        if text.isascii():
            found.append((False, match.start(), text))
            continue
        start = match.start()
        for index, part in enumerate(_CJK_SPLIT.split(text)):
            if part:
                found.append((index % 2 == 1, start, part))
                start += len(part)
    return found


def runs(folded: str) -> list[Run]:
    """The CJK runs and the words of an already folded text, in order."""
    return [Run(*run) for run in _runs(folded)]


def _pairs(text: str) -> list[str]:
    return [text[i : i + 2] for i in range(len(text) - 1)]


@dataclass(frozen=True, slots=True)
class Document:
    """A message's text as every index stores it: three space-separated token lists.

    ``uni`` holds the last character of each CJK run, not every character: every other character starts a
    pair in ``bi``, so a one-character query is "a pair starting with it, or it in ``uni``" (a prefix query
    on ``bi``), and a message of Chinese text costs its pairs plus one token per run instead of nearly two
    tokens per character (the index's insert is paid per token: bench/RESULTS.md). Entries written before
    (with every character in ``uni``) hold a superset of that and answer the same."""

    bi: str
    uni: str
    words: str


def document(text: str) -> Document:
    """The tokens of ``text``. On the send path (every message): a few ``findall`` calls, no loop over
    characters in Python (a loop cost ~60 µs for 100 characters; bench/RESULTS.md, "Session 8 — search")."""
    folded = fold(text)
    if folded.isascii():  # most messages: a simpler pattern, no CJK
        return Document("", "", " ".join([word[:MAX_WORD_CHARS] for word in _ASCII_WORD.findall(folded)]))
    words = " ".join([word[:MAX_WORD_CHARS] for word in _WORD.findall(folded)])
    cjk_runs = _CJK_RUN.findall(folded)
    pairs = [" ".join([run[i : i + 2] for i in range(len(run) - 1)]) for run in cjk_runs if len(run) > 1]
    # ``uni``: each run's last character only (the only one that starts no pair); see ``Document``.
    return Document(f" {RUN_BREAK} ".join(pairs), " ".join([run[-1] for run in cjk_runs]), words)


def indexed_text(content: dict[str, Any]) -> str | None:
    """The text of a content map that search covers, or None when the message is not indexed."""
    kind = content.get("type")
    if kind in _NOT_INDEXED or kind in NOTIFICATION_CONTENT_TYPES:
        return None
    text = content.get("searchable_content")
    return text if isinstance(text, str) and text else None


@dataclass(frozen=True, slots=True)
class IndexRow:
    """One message's index entry."""

    message_id: int
    content_type: int
    doc: Document


def index_row(message_id: int, content: dict[str, Any]) -> IndexRow | None:
    text = indexed_text(content)
    if text is None:
        return None
    doc = document(text)
    if not (doc.uni or doc.words):
        return None  # only punctuation or emoji: nothing a keyword can find
    return IndexRow(message_id, int(content.get("type", 0)), doc)


@dataclass(frozen=True, slots=True)
class Term:
    """One part of a keyword: ``column`` is ``bi``, ``uni`` or ``words``; ``tokens`` a phrase in it
    (``words``: one token, matched as a prefix). ``text`` is what to highlight (folded)."""

    column: str
    tokens: tuple[str, ...]
    text: str


class KeywordError(ValueError):
    """The keyword cannot be searched; the message says why (answered 251)."""


def parse_keyword(keyword: str) -> list[Term]:
    """The keyword's terms, every one of which a message must hold.

    Raises:
        KeywordError: Empty or blank, longer than ``MAX_KEYWORD_CHARS``, no letter, digit or CJK
            character in it, or more than ``MAX_TERMS`` terms.
    """
    if not keyword.strip():
        raise KeywordError("must not be empty")
    if len(keyword) > MAX_KEYWORD_CHARS:
        raise KeywordError(f"at most {MAX_KEYWORD_CHARS} characters")
    terms: list[Term] = []
    for run in runs(fold(keyword)):
        if not run.cjk:
            terms.append(Term("words", (run.text[:MAX_WORD_CHARS],), run.text))
        elif len(run.text) == 1:
            terms.append(Term("uni", (run.text,), run.text))
        else:
            terms.append(Term("bi", tuple(_pairs(run.text)), run.text))
    if not terms:
        raise KeywordError("needs a letter, a digit or a CJK character")
    unique = list(dict.fromkeys(terms))
    if len(unique) > MAX_TERMS:
        raise KeywordError(f"at most {MAX_TERMS} words")
    return unique


def highlights(text: str, terms: Sequence[Term]) -> list[list[int]]:
    """Where ``terms`` occur in ``text``: sorted, merged ``[start, end)`` ranges of character (code point)
    offsets. A word term marks the prefix it matched of each word; a CJK term each occurrence."""
    folded = fold(text)
    spans: list[tuple[int, int]] = []
    text_runs = runs(folded)
    for term in terms:
        if term.column == "words":
            for run in text_runs:
                if not run.cjk and run.text.startswith(term.text):
                    spans.append((run.start, run.start + len(term.text)))
        else:
            at = folded.find(term.text)
            while at >= 0:
                spans.append((at, at + len(term.text)))
                at = folded.find(term.text, at + 1)
    spans.sort()
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged[:MAX_HIGHLIGHTS]


def matches(doc: Document, terms: Sequence[Term]) -> bool:
    """Whether ``doc`` holds every term, by the rule every index follows: a word term is a prefix of a word
    token, a ``uni`` term a ``uni`` token or the first character of a pair, a ``bi`` term the consecutive pairs
    of its run."""
    for term in terms:
        if term.column == "words":
            prefix = term.tokens[0]
            if not any(word.startswith(prefix) for word in doc.words.split()):
                return False
        elif term.column == "uni":
            char = term.tokens[0]
            if char not in doc.uni.split() and not any(pair.startswith(char) for pair in doc.bi.split()):
                return False
        else:
            pairs, phrase = doc.bi.split(), list(term.tokens)
            width = len(phrase)
            if not any(pairs[i : i + width] == phrase for i in range(len(pairs) - width + 1)):
                return False
    return True


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """What to find. ``user_id`` None searches every stored message (the admin API's moderation search);
    otherwise only what that user holds: messages in their inbox (so a group's only from when they
    joined, as pull), less those they deleted. ``conv_key`` is ``storage.messages.conversation_key``'s
    name of the conversation (with ``conv_type`` and ``conv_line``). Times are ``server_time`` ms:
    ``after <= server_time < before``. ``before_id``: only messages older than this id (the cursor)."""

    terms: list[Term]
    limit: int
    user_id: str | None = None
    conv_type: int | None = None
    conv_key: str | None = None
    conv_line: int = 0
    from_user: str | None = None
    content_types: list[int] = field(default_factory=list)
    before: int | None = None
    after: int | None = None
    before_id: int | None = None


class SearchBackend(Protocol):
    """One backend's index: written inside the writer's transaction (``tx``, ``storage.engine.Tx``), read on
    a reader. Every method takes the engine's transaction handle; SQLite's implementation is
    ``storage.search_fts5.Fts5Search``, and a PostgreSQL engine brings its own (docs/ARCHITECTURE.md "Search")."""

    def index(self, tx: Tx, rows: Iterable[IndexRow]) -> None:
        """Add (or replace) these messages' entries."""

    def remove(self, tx: Tx, message_ids: Sequence[int]) -> None:
        """Drop these messages' entries (absent ones are fine)."""

    def search(self, tx: Tx, query: SearchQuery) -> list[tuple[Any, ...]]:
        """Up to ``query.limit`` matching messages, newest (highest id) first, as
        ``storage.messages``' message columns."""

    def rebuild_range(self, tx: Tx, after_id: int, count: int) -> tuple[int, int]:
        """Re-index the next ``count`` messages with ids above ``after_id`` from their stored content;
        returns (the last id done, 0 when none are left; how many were indexed)."""
