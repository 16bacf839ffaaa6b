"""PostgreSQL's message search: ``storage.search``'s tokens in a GIN index, the same answers as SQLite's FTS5.

``message_search`` on PostgreSQL is a plain table of ``storage.search``'s three token lists keyed by message id
(schema v13, ``storage.postgres.schema``), written in the send's transaction and removed with the message (no
log as on SQLite: GIN's own ``fastupdate`` pending list already turns many small inserts into one merge).
Since schema v15 it also stores the row's tokens as a ``tsvector``, ``lexemes``, made in the same INSERT by
``array_to_tsvector`` from one space-separated list of them, and the GIN index ``message_search_lexemes`` is
on that column (v14 had it on the expression ``LEXEMES``, which v15 used once to fill the column). That
function takes each string as a lexeme verbatim, so PostgreSQL's text-search parser (which, depending on the
locale, would re-split or drop CJK characters, and stems English) never runs: the index holds exactly
Python's tokens.

One vector holds all three lists without labels, because they cannot collide: a ``uni`` token is one CJK
character, a ``bi`` token two, a ``words`` token has no CJK character at all; so a word prefix (``'meet':*``,
never starting with a CJK character) only ever meets word tokens. The one exception is ``bi``'s run break
(``storage.search.RUN_BREAK``, "0", which a query for the word 0 would find): ``LEXEMES`` leaves it out.

A query is a ``tsquery`` written as its text form with every lexeme quoted (``tsquery_text``), cast with
``::tsquery``, which reads lexemes verbatim too (``to_tsquery`` would parse and stem): a word term is a
prefix ``'meet':*``, a character a prefix too (``'明':*``: the pairs it starts, or itself as a run's last
character, ``storage.search.Document``), a run of three or more characters every pair of it (``'明天' &
'天见'``). The vector has no positions, so that last one is a superset: those rows, few, are checked again in
Python by ``storage.search.matches`` on the stored lists (the pairs at consecutive positions, as FTS5's
phrase), and the walk reads on until the page is full. Every other term the index answers exactly.

Who holds a message is the inbox, as on SQLite (an inbox row names it, none of ``deleted_messages``), and
the order newest first is the primary key's (``ORDER BY message_id DESC``, the cursor ``message_id < ?``).

**In id windows, newest first.** Left to itself, the planner has two ways in: the GIN index (every match of
the term, then a sort: cheap for a rare term, slow for one in every third message) or the primary key
backwards, testing each row's vector (cheap for a common term, the whole table for a rare one); it cannot know
which one a term needs, and PostgreSQL 15 took the second for every term (seconds on 200,000 messages,
bench/RESULTS.md). So ``search`` asks for the matches in a window of ids, ``low <= message_id < high``, newest
first, until the page is full or the oldest row is passed. Within a window either way in is bounded by the
window, and the planner's choice is made for the window's own values (``execute_unprepared``: never a generic
plan) with the column's statistics. Every window reads the term's whole GIN posting list again (a prefix
term's as a bitmap of all its matches), so the windows are sized to be few: the first spans what the planner's
estimate of the keyword's matches (``EXPLAIN``) says holds ``WINDOW_SAFETY`` pages, each next one what should
bring that many times the answers still wanted at the density and the user's share seen so far
(``next_span``). A common term fills the page in a narrow first window, a rare one is read to the end in one
or two.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Final, Protocol, cast

import msgpack

from storage.engine import Tx
from storage.search import RUN_BREAK, Document, IndexRow, SearchQuery, Term, index_row, matches

#: The lexemes of a ``message_search`` row computed from its token lists: what schema v14's expression index
#: was built on, and what schema v15 fills the stored column ``lexemes`` with for the rows already there. ``bi``'s
#: run breaks are dropped (" 0 " always stands between two pairs, never at an end); ``string_to_array('', ' ')``
#: is empty, so an empty list adds no empty lexeme (which ``array_to_tsvector`` refuses).
LEXEMES: Final = (
    f"array_to_tsvector(string_to_array(uni, ' ') || string_to_array(replace(bi, ' {RUN_BREAK} ', ' '), ' ')"
    " || string_to_array(words, ' '))"
)
#: Schema v14's index (``storage.postgres.schema._v14_search_index``), as released; v15 replaces it.
V14_INDEX: Final = f"CREATE INDEX message_search_lexemes ON message_search USING gin (({LEXEMES}))"
#: Schema v15's index: on the stored column.
CREATE_INDEX: Final = "CREATE INDEX message_search_lexemes ON message_search USING gin (lexemes)"
#: How many most common lexemes ``ANALYZE`` keeps for ``lexemes`` (10 times the default's 100 per 1,000): the
#: planner's estimate of a term's matches in a window, so that it picks the GIN bitmap for a rare term there.
STATISTICS_TARGET: Final = 1000

_COLUMNS: Final = (
    "m.message_id, m.conv_type, m.conv_target, m.conv_line, m.from_user, m.content, m.server_time, m.to_users,"
    " m.persist_flag"
)
#: One index row; ``lexemes`` is made in the same INSERT from one space-separated list of every token
#: (``_lexeme_list``): ``array_to_tsvector`` sorts it and drops the repeats.
_UPSERT: Final = (
    "INSERT INTO message_search (message_id, bi, uni, words, content_type, lexemes)"
    " VALUES (?, ?, ?, ?, ?, array_to_tsvector(string_to_array(?, ' ')))"
    " ON CONFLICT (message_id) DO UPDATE SET bi = excluded.bi, uni = excluded.uni, words = excluded.words,"
    " content_type = excluded.content_type, lexemes = excluded.lexemes"
)
#: The newest rows the first window holds when ``PgGinSearch`` is made without the planner's estimate (the
#: tests' walk of many windows).
FIRST_WINDOW: Final = 2000
WINDOW_GROWTH: Final = 4
#: How many rows matching the term a window after the first is sized to read at most, by the density of the
#: windows before (``next_span``): each one costs a heap visit and, for a user's search, an inbox probe.
WINDOW_MATCH_BUDGET: Final = 2000
#: How many times the answers still wanted a window after the first is sized to bring, at the share and density
#: seen: a window more (its posting list, its planning) cost ~5-30 ms here, a match more read ~10-40 µs.
WINDOW_SAFETY: Final = 4


def next_span(last: int, spanned: int, matched: int, found: int, need: int) -> int:
    """How many ids the next window spans, from what the windows so far said of the term: ``spanned`` ids held
    ``matched`` rows matching it, ``found`` of them answers (the user's; all of them admin-wide). Every window
    reads the term's whole GIN posting list again (a prefix term's as a bitmap of all its matches), and every
    match read costs a heap visit and an inbox probe, so the next window is sized to read about as many matches
    as should bring ``WINDOW_SAFETY`` times the ``need`` answers still wanted: the user's share of the matches and the matches'
    density per id both estimated with one more than seen (a window of no match is not taken for "none
    older"). If that is more than ``WINDOW_MATCH_BUDGET`` matches (a user holding few of a common term's), the
    window reads that many at most but still grows ``WINDOW_GROWTH`` times, so such a walk takes few windows.
    No match at all so far also takes the budget (a term that rare, or a keyword whose terms are each common
    but rarely together, is read to the end in one window more), a common term the span its density asks for.
    """
    share = (found + 1) / (matched + 2)
    wanted = WINDOW_SAFETY * need / share
    per_match = spanned / (matched + 1)
    if matched and wanted <= WINDOW_MATCH_BUDGET:
        return max(last, int(wanted * per_match))
    return max(last * WINDOW_GROWTH, int(WINDOW_MATCH_BUDGET * per_match))


def _plan_json(plan: Any) -> Any:
    """``EXPLAIN (FORMAT JSON)``'s answer: psycopg gives the json already read, or its text."""
    return json.loads(plan) if isinstance(plan, str) else plan


class _Unprepared(Protocol):
    """``storage.postgres.engine.PgTx``'s statement without a prepared (maybe generic) plan."""

    def execute_unprepared(self, sql: str, params: Sequence[Any] = ()) -> Any: ...


def _lexeme_list(doc: Document) -> str:
    """Every lexeme of ``doc`` as one space-separated list (the same set as ``LEXEMES``)."""
    bi = doc.bi.replace(f" {RUN_BREAK} ", " ")
    return " ".join(part for part in (doc.uni, bi, doc.words) if part)


def _rows(rows: Iterable[IndexRow]) -> list[tuple[Any, ...]]:
    return [(r.message_id, r.doc.bi, r.doc.uni, r.doc.words, r.content_type, _lexeme_list(r.doc)) for r in rows]


def _lexeme(token: str) -> str:
    """A lexeme in tsquery's text form: quoted, a quote or a backslash inside escaped (tokens hold letters and
    digits only, so this is a guard)."""
    return "'" + token.replace("\\", "\\\\").replace("'", "''") + "'"


def tsquery_text(terms: Sequence[Term]) -> str:
    """The ``tsquery`` (text form) every matching row's ``LEXEMES`` satisfies: all terms, AND."""
    parts = []
    for term in terms:
        if term.column in ("words", "uni"):  # one CJK character: a pair it starts, or itself (a run's last)
            parts.append(_lexeme(term.tokens[0]) + ":*")
        else:
            parts.extend(_lexeme(token) for token in term.tokens)
    return " & ".join(dict.fromkeys(parts))  # a pair twice in a run ("哈哈哈"): once is enough for the index


def merge_recent(conn: Tx) -> None:
    """Nothing to move: PostgreSQL writes ``message_search`` directly (the inbox merge calls this)."""


class PgGinSearch:
    """``storage.search.SearchBackend`` over PostgreSQL's ``message_search`` and its GIN index. The first id
    window spans what the planner's estimate of the term's matches (``estimate``) says should bring
    ``WINDOW_SAFETY`` times the page; without the estimate, ``first_window`` of the newest rows (the tests make
    it small to walk many windows)."""

    def __init__(self, first_window: int = FIRST_WINDOW, estimate: bool = True) -> None:
        if first_window < 1:
            raise ValueError("first_window must be at least 1")
        self.first_window = first_window
        self.estimate = estimate

    @staticmethod
    def _expected(tx: Tx, match: str) -> float:
        """The planner's estimate of the rows of ``message_search`` matching ``match`` (at least 1)."""
        plan = cast(_Unprepared, tx).execute_unprepared(
            "EXPLAIN (FORMAT JSON) SELECT 1 FROM message_search WHERE lexemes @@ ?::tsquery", [match]
        ).fetchone()
        return max(1.0, float(_plan_json(plan[0])[0]["Plan"]["Plan Rows"]))

    def index(self, tx: Tx, rows: Iterable[IndexRow]) -> None:
        values = _rows(rows)
        if values:
            tx.executemany(_UPSERT, values)

    def remove(self, tx: Tx, message_ids: Sequence[int]) -> None:
        tx.executemany("DELETE FROM message_search WHERE message_id = ?", [(mid,) for mid in message_ids])

    def search(self, tx: Tx, query: SearchQuery) -> list[tuple[Any, ...]]:
        where: list[str] = []
        params: list[Any] = []
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
        bounds = tx.execute("SELECT MIN(message_id), MAX(message_id) FROM message_search").fetchone()
        if bounds is None or bounds[0] is None:
            return []
        oldest, newest = int(bounds[0]), int(bounds[1])
        high = newest + 1 if query.before_id is None else min(query.before_id, newest + 1)
        match = tsquery_text(query.terms)
        if self.estimate:
            # The planner's estimate of the keyword's matches in the whole table (its statistics of ``lexemes``):
            # the first window spans what should hold WINDOW_SAFETY times the page at that density, so a rare
            # keyword is read in one window and a common one in a narrow one.
            density = self._expected(tx, match) / (newest - oldest + 1)
            low = max(oldest, high - int(WINDOW_SAFETY * query.limit / density) - 1)
        else:
            edge = tx.execute(
                "SELECT message_id FROM message_search WHERE message_id < ? ORDER BY message_id DESC OFFSET ? LIMIT 1",
                (high, self.first_window - 1),
            ).fetchone()
            low = oldest if edge is None else int(edge[0])
        if query.user_id is None:
            sql = (
                f"SELECT {_COLUMNS}{extra} FROM message_search s JOIN messages m ON m.message_id = s.message_id"
                f" WHERE s.lexemes @@ ?::tsquery AND s.message_id >= ? AND s.message_id < ?{filters}"
                " ORDER BY s.message_id DESC LIMIT ?"
            )
        else:
            # A user's: the window's matches first, on their own (MATERIALIZED: the planner picks the GIN bitmap
            # or the primary key for the term alone), then which of those the user holds, one index probe each.
            # Left to combine the two, PostgreSQL drove a rare term from all of a heavy user's inbox rows in the
            # window (seconds at 1,000,000 messages), or hashed all of them for every window.
            # The first column is how many rows of the window match the term (the user's or not): what the next
            # window's size is estimated from. One row of NULLs after it when the user holds none of them.
            sql = (
                "WITH c AS MATERIALIZED (SELECT message_id FROM message_search WHERE lexemes @@ ?::tsquery"
                " AND message_id >= ? AND message_id < ?)"
                f" SELECT n.total, r.* FROM (SELECT COUNT(*) AS total FROM c) n LEFT JOIN LATERAL"
                f" (SELECT {_COLUMNS}{extra} FROM c JOIN message_search s ON s.message_id = c.message_id"
                " JOIN messages m ON m.message_id = c.message_id"
                " WHERE (EXISTS (SELECT 1 FROM inbox i WHERE i.user_id = ? AND i.message_id = c.message_id OFFSET 0)"
                " OR c.message_id IN (SELECT message_id FROM inbox_recent WHERE user_id = ?))"
                " AND NOT EXISTS (SELECT 1 FROM deleted_messages d WHERE d.user_id = ? AND d.message_id = c.message_id)"
                f"{filters} ORDER BY c.message_id DESC LIMIT ?) r ON true ORDER BY r.message_id DESC"
            )
        user = query.user_id

        def window(low: int, high: int, want: int) -> tuple[list[tuple[Any, ...]], int]:
            """Up to ``want`` matches with ``low <= id < high``, newest first (read on past rows the recheck drops),
            and how many rows of the window match the term (at least; all of them when fewer than ``want`` are
            found)."""
            out: list[tuple[Any, ...]] = []
            seen = 0
            while len(out) < want:
                ask = want - len(out)
                held = [] if user is None else [user, user, user]
                rows = cast(_Unprepared, tx).execute_unprepared(sql, [match, low, high, *held, *params, ask]).fetchall()
                if user is not None:  # the term's count first; a row of NULLs when none is the user's
                    if rows and not seen:  # (a second read after the recheck counts a part of the window again)
                        seen = int(rows[0][0])
                    rows = [row[1:] for row in rows if row[1] is not None]
                else:
                    seen += len(rows)
                if not recheck:
                    return rows, seen
                out += [row[:-3] for row in rows if matches(Document(*row[-3:]), query.terms)]
                if len(rows) < ask:
                    break
                high = rows[-1][0]
            return out, seen

        found: list[tuple[Any, ...]] = []
        spanned = matched = 0
        while high > oldest:
            rows, seen = window(low, high, query.limit - len(found))
            found += rows
            if len(found) >= query.limit:
                break
            spanned += high - low
            matched += seen
            span = next_span(high - low, spanned, matched, len(found), query.limit - len(found))
            high, low = low, max(oldest, low - span)
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
