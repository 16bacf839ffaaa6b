"""The index answers exactly what the matching rule says (issue 26, docs/PROTOCOL.md §9.12), checked against a
plain Python reading of the rule over random mixed Chinese/English texts, on the suite's backend
(``EMBER_TEST_BACKEND``): SQLite's FTS5 (``storage.search_fts5``) or PostgreSQL's GIN index (``storage.search_pg``).

The rule, as written here without the index: a message matches when, for every part of the keyword, a CJK
part occurs in its lowercased text as it is, and a word part starts some word of it (words: runs of letters
and digits, CJK excluded)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import messages
from storage.inboxes import InboxState
from storage.messages import Conversation, Outgoing
from storage.schema import migrate
from storage.search import KeywordError, SearchQuery, fold, parse_keyword
from storage.sends import SendPolicy, send_message
from tests import backends, pg

_CJK = "明天见我们开会下午点"
_PIECES = st.sampled_from([*_CJK, "a", "b", "ab", "Ab", "meet", "MEETING", "3", "30", " ", ",", "。", "-", "é", "İ"])
TEXT = st.lists(_PIECES, min_size=1, max_size=12).map("".join)
_WORD = re.compile("[^\\W_" + _CJK + "]+")


def expected(texts: list[str], keyword: str) -> list[int]:
    terms = parse_keyword(keyword)
    found = []
    for message_id, text in enumerate(texts, 1):
        folded = fold(text)
        words = _WORD.findall(folded)
        if all(
            any(word.startswith(term.text[:32]) for word in words) if term.column == "words" else term.text in folded
            for term in terms
        ):
            found.append(message_id)
    return sorted(found, reverse=True)


def _connection() -> Any:
    """An empty migrated database of the suite's backend (``EMBER_TEST_BACKEND``), as a transaction handle.
    PostgreSQL: one database for the module, emptied for each example (a new one per example cost ~2 s)."""
    if not backends.on_postgres():
        conn = sqlite3.connect(":memory:", isolation_level=None)
        migrate(conn)
        return conn
    from storage.postgres.connection import connect
    from storage.postgres.engine import wrap

    if not _databases:
        _databases.append(pg.server().create_database())
    conn = wrap(connect(_databases[0], autocommit=True))
    tables = [row[0] for row in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        " AND table_type = 'BASE TABLE' AND table_name <> 'schema_version'")]  # fmt: skip
    conn.execute(f"TRUNCATE {', '.join(tables)}")  # names from the catalog, not input
    return conn


#: The PostgreSQL database this module uses (dropped when it is done).
_databases: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _drop_databases() -> Iterator[None]:
    yield
    while _databases:
        pg.server().drop_later(_databases.pop())


def store(texts: list[str], merged: int) -> Any:
    """The texts sent by alice to bob; on SQLite the first ``merged`` of them moved into the FTS5 index by a
    merge of the inbox log, the others still in the search log (a search reads both). PostgreSQL has no log:
    every text is in its index at once."""
    conn = _connection()
    for user in ("alice", "bob"):
        conn.execute("INSERT INTO users (user_id, created_at, updated_at) VALUES (?, 0, 0)", (user,))
    inboxes = InboxState()
    conn.execute("BEGIN")
    for message_id, text in enumerate(texts, 1):
        content = {"type": 1, "searchable_content": text, "persist_flag": 3}
        msg = Outgoing(message_id, 1000 + message_id, Conversation(0, "bob"), "alice", content, 3)
        assert send_message(conn, inboxes, msg, SendPolicy()).code == 0
        if message_id == merged:
            inboxes.merge(conn)
    conn.execute("COMMIT")
    assert conn.execute("SELECT COUNT(*) FROM search_recent").fetchone()[0] <= len(texts) - (
        merged if 1 <= merged <= len(texts) else 0
    )
    return conn


#: Fewer examples on PostgreSQL: each one empties and refills a database over the network (~2 s each here).
@settings(max_examples=25 if backends.on_postgres() else 150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(TEXT, min_size=1, max_size=15),
    keywords=st.lists(TEXT, min_size=1, max_size=5),
    merged=st.integers(0, 15),
)
def test_the_index_finds_exactly_what_the_rule_says(texts: list[str], keywords: list[str], merged: int) -> None:
    conn = store(texts, merged)
    try:
        _check(conn, texts, keywords)
        if backends.on_postgres():
            from storage.search_pg import PgGinSearch

            # Again with a first id window of one row, so that a search walks many windows growing from the
            # newest (the production window, 2,000 rows, holds these few rows at once).
            narrow = PgGinSearch(first_window=1, estimate=False)
            _check(conn, texts, keywords, lambda c, q: [row[0] for row in narrow.search(c, q)])
            # Again with the planner kept off the table scan and the primary key's walk, so that the GIN index
            # answers (tables this small are otherwise read whole): both ways in give the same answers.
            _force_gin(conn)
            _check(conn, texts, keywords)
    finally:
        conn.close()


def _force_gin(conn: Any) -> None:
    conn.execute("SET enable_seqscan = off")
    conn.execute("SET enable_indexscan = off")


def _stored_search(conn: Any, query: SearchQuery) -> list[int]:
    return [m.message_id for m in messages.search(conn, query)]


def _check(conn: Any, texts: list[str], keywords: list[str], find: Callable[[Any, SearchQuery], list[int]] = _stored_search) -> None:
    for keyword in [*keywords, *texts[:3]]:  # parts of stored texts find something
        try:
            terms = parse_keyword(keyword)
        except KeywordError:
            continue
        for user in ("bob", None):
            found = find(conn, SearchQuery(terms, 100, user_id=user))
            assert found == expected(texts, keyword), (keyword, texts)
        # Paging by cursor through both parts gives the same list.
        pages, cursor = [], None
        while True:
            page = find(conn, SearchQuery(terms, 2, user_id="bob", before_id=cursor))
            pages += page
            if len(page) < 2:
                break
            cursor = page[-1]
        assert pages == expected(texts, keyword)


@pytest.mark.skipif(not backends.on_postgres(), reason="PostgreSQL's index: EMBER_TEST_BACKEND=postgresql")
def test_postgresql_answers_from_its_gin_index_with_the_planner_steered_to_it() -> None:
    """The second round above reads the GIN index (not a scan that evaluates every row's vector)."""
    from storage.search_pg import tsquery_text

    conn = store(["明天 meeting", "后天"], 0)
    try:
        _force_gin(conn)
        plan = "\n".join(row[0] for row in conn.execute(
            "EXPLAIN SELECT message_id FROM message_search s WHERE s.lexemes @@ ?::tsquery"
            " ORDER BY s.message_id DESC LIMIT 5", [tsquery_text(parse_keyword("明天 meet"))]))  # fmt: skip
        assert "message_search_lexemes" in plan, plan
        found = [m.message_id for m in messages.search(conn, SearchQuery(parse_keyword("明天 meet"), 5))]
        assert found == [1]
    finally:
        conn.close()
