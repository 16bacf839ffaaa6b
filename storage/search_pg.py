"""PostgreSQL's message search: ``storage.search``'s tokens in a GIN index, the same answers as SQLite's FTS5.

``message_search`` on PostgreSQL is a plain table of ``storage.search``'s three token lists keyed by message id
(schema v13, ``storage.postgres.schema``), written in the send's transaction and removed with the message (no
log as on SQLite: GIN's own ``fastupdate`` pending list already turns many small inserts into one merge).
Schema v14 adds ``message_search_lexemes``, a GIN index on the expression ``LEXEMES``: the row's tokens as a
``tsvector``, made by ``array_to_tsvector`` from the space-separated lists. That function takes each string
as a lexeme verbatim, so PostgreSQL's text-search parser (which, depending on the locale, would re-split or
drop CJK characters, and stems English) never runs: the index holds exactly Python's tokens.

One vector holds all three lists without labels, because they cannot collide: a ``uni`` token is one CJK
character, a ``bi`` token two, a ``words`` token has no CJK character at all; so a word prefix (``'meet':*``,
never starting with a CJK character) only ever meets word tokens. The one exception is ``bi``'s run break
(``storage.search.RUN_BREAK``, "0", which a query for the word 0 would find): ``LEXEMES`` leaves it out.

A query is a ``tsquery`` written as its text form with every lexeme quoted (``tsquery_text``), cast with
``::tsquery``, which reads lexemes verbatim too (``to_tsquery`` would parse and stem): a word term is a
prefix ``'meet':*``, a character ``'明'``, a run of three or more characters every pair of it (``'明天' &
'天见'``). The vector has no positions, so that last one is a superset: those rows, few, are checked again in
Python by ``storage.search.matches`` on the stored lists (the pairs at consecutive positions, as FTS5's
phrase), and the walk reads on until the page is full. Every other term the index answers exactly.

Who holds a message is the inbox, as on SQLite (an inbox row names it, none of ``deleted_messages``), and
the order newest first is the primary key's (``ORDER BY message_id DESC``, the cursor ``message_id < ?``).
The query leaves the planner two ways in: the GIN index (rare terms: every match, then the sort) or the primary
key backwards, filtered by the vector (common terms: the first matches end the page). Measured
(bench/RESULTS.md, "bench search"): PostgreSQL 15 takes the second way for every term, costing the vector
expression as nearly free, so a rare term reads the whole table (seconds on 200,000 messages); the fixes
(a stored vector column, or a GIN-first walk in growing id windows) are listed there, not built yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

import msgpack

from storage.engine import Tx
from storage.search import RUN_BREAK, Document, IndexRow, SearchQuery, Term, index_row, matches

#: The lexemes of a ``message_search`` row: what the GIN index is built on, and what every query compares
#: (PostgreSQL uses an expression index only for the very same expression). ``bi``'s run breaks are dropped
#: (" 0 " always stands between two pairs, never at an end); ``string_to_array('', ' ')`` is empty, so an
#: empty list adds no empty lexeme (which ``array_to_tsvector`` refuses).
LEXEMES: Final = (
    f"array_to_tsvector(string_to_array(uni, ' ') || string_to_array(replace(bi, ' {RUN_BREAK} ', ' '), ' ')"
    " || string_to_array(words, ' '))"
)
#: Schema v14's index (``storage.postgres.schema._v14_search_index``).
CREATE_INDEX: Final = f"CREATE INDEX message_search_lexemes ON message_search USING gin (({LEXEMES}))"

_COLUMNS: Final = (
    "m.message_id, m.conv_type, m.conv_target, m.conv_line, m.from_user, m.content, m.server_time, m.to_users,"
    " m.persist_flag"
)
_UPSERT: Final = (
    "INSERT INTO message_search (message_id, bi, uni, words, content_type) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (message_id) DO UPDATE SET bi = excluded.bi, uni = excluded.uni, words = excluded.words,"
    " content_type = excluded.content_type"
)


def _rows(rows: Iterable[IndexRow]) -> list[tuple[Any, ...]]:
    return [(r.message_id, r.doc.bi, r.doc.uni, r.doc.words, r.content_type) for r in rows]


def _lexeme(token: str) -> str:
    """A lexeme in tsquery's text form: quoted, a quote or a backslash inside escaped (tokens hold letters and
    digits only, so this is a guard)."""
    return "'" + token.replace("\\", "\\\\").replace("'", "''") + "'"


def tsquery_text(terms: Sequence[Term]) -> str:
    """The ``tsquery`` (text form) every matching row's ``LEXEMES`` satisfies: all terms, AND."""
    parts = []
    for term in terms:
        if term.column == "words":
            parts.append(_lexeme(term.tokens[0]) + ":*")
        else:
            parts.extend(_lexeme(token) for token in term.tokens)
    return " & ".join(dict.fromkeys(parts))  # a pair twice in a run ("哈哈哈"): once is enough for the index


def merge_recent(conn: Tx) -> None:
    """Nothing to move: PostgreSQL writes ``message_search`` directly (the inbox merge calls this)."""


class PgGinSearch:
    """``storage.search.SearchBackend`` over PostgreSQL's ``message_search`` and its GIN index."""

    def index(self, tx: Tx, rows: Iterable[IndexRow]) -> None:
        values = _rows(rows)
        if values:
            tx.executemany(_UPSERT, values)

    def remove(self, tx: Tx, message_ids: Sequence[int]) -> None:
        tx.executemany("DELETE FROM message_search WHERE message_id = ?", [(mid,) for mid in message_ids])

    def search(self, tx: Tx, query: SearchQuery) -> list[tuple[Any, ...]]:
        where: list[str] = []
        params: list[Any] = []
        if query.user_id is not None:
            where.append(
                "(EXISTS (SELECT 1 FROM inbox i WHERE i.user_id = ? AND i.message_id = s.message_id)"
                " OR s.message_id IN (SELECT message_id FROM inbox_recent WHERE user_id = ?))"
                " AND NOT EXISTS (SELECT 1 FROM deleted_messages d WHERE d.user_id = ? AND d.message_id = s.message_id)"
            )
            params += [query.user_id] * 3
        if query.conv_type is not None:
            where.append("m.conv_type = ? AND m.conv_key = ? AND m.conv_line = ?")
            params += [query.conv_type, query.conv_key, query.conv_line]
        if query.from_user is not None:
            where.append("m.from_user = ?")
            params.append(query.from_user)
        if query.content_types:
            where.append(f"s.content_type IN ({', '.join('?' * len(query.content_types))})")
            params += query.content_types
        if query.before is not None:
            where.append("m.server_time < ?")
            params.append(query.before)
        if query.after is not None:
            where.append("m.server_time >= ?")
            params.append(query.after)
        filters = "".join(f" AND {clause}" for clause in where)
        # Only a run of three or more CJK characters needs the second look (the vector has no positions).
        recheck = any(len(term.tokens) > 1 for term in query.terms)
        extra = ", s.bi, s.uni, s.words" if recheck else ""
        match = tsquery_text(query.terms)

        def page(below: int | None) -> list[tuple[Any, ...]]:
            # No cursor, no ``message_id <`` condition: the planner would take the primary key for an index on it.
            cursor = "" if below is None else " AND s.message_id < ?"
            return tx.execute(
                f"SELECT {_COLUMNS}{extra} FROM message_search s JOIN messages m ON m.message_id = s.message_id"
                f" WHERE {LEXEMES} @@ ?::tsquery{cursor}{filters} ORDER BY s.message_id DESC LIMIT ?",
                [match, *([] if below is None else [below]), *params, query.limit],
            ).fetchall()

        if not recheck:
            return page(query.before_id)
        found: list[tuple[Any, ...]] = []
        below = query.before_id
        while len(found) < query.limit:
            rows = page(below)
            found += [row[:-3] for row in rows if matches(Document(*row[-3:]), query.terms)]
            if len(rows) < query.limit:
                break
            below = rows[-1][0]
        return found[: query.limit]

    def rebuild_range(self, tx: Tx, after_id: int, count: int) -> tuple[int, int]:
        rows = tx.execute(
            "SELECT message_id, content FROM messages WHERE message_id > ? ORDER BY message_id LIMIT ?",
            (after_id, count),
        ).fetchall()
        if not rows:  # past the last message: drop entries of messages that are gone
            tx.execute("DELETE FROM message_search WHERE message_id > ?", (after_id,))
            return 0, 0
        last = rows[-1][0]
        tx.execute("DELETE FROM message_search WHERE message_id > ? AND message_id <= ?", (after_id, last))
        fresh = [row for row in (index_row(mid, msgpack.unpackb(bytes(content))) for mid, content in rows) if row]
        self.index(tx, fresh)
        return last, len(fresh)


#: The backend of PostgreSQL databases.
PG_SEARCH: Final = PgGinSearch()
