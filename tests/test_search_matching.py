"""The index answers exactly what the matching rule says (issue 26, docs/PROTOCOL.md §9.12), checked against a
plain Python reading of the rule over random mixed Chinese/English texts: the FTS5 backend today, and the
same test for any backend that implements ``storage.search.SearchBackend`` (PostgreSQL's must pass it too).

The rule, as written here without the index: a message matches when, for every part of the keyword, a CJK
part occurs in its lowercased text as it is, and a word part starts some word of it (words: runs of letters
and digits, CJK excluded)."""

from __future__ import annotations

import re
import sqlite3

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import messages
from storage.inboxes import InboxState
from storage.messages import Conversation, Outgoing
from storage.schema import migrate
from storage.search import KeywordError, SearchQuery, fold, parse_keyword
from storage.sends import SendPolicy, send_message

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


def store(texts: list[str], merged: int) -> sqlite3.Connection:
    """The texts sent by alice to bob; the first ``merged`` of them moved into the FTS5 index by a merge of
    the inbox log, the others still in the search log (a search reads both)."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn)
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


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(TEXT, min_size=1, max_size=15),
    keywords=st.lists(TEXT, min_size=1, max_size=5),
    merged=st.integers(0, 15),
)
def test_the_index_finds_exactly_what_the_rule_says(texts: list[str], keywords: list[str], merged: int) -> None:
    conn = store(texts, merged)
    for keyword in [*keywords, *texts[:3]]:  # parts of stored texts find something
        try:
            terms = parse_keyword(keyword)
        except KeywordError:
            continue
        for user in ("bob", None):
            found = [m.message_id for m in messages.search(conn, SearchQuery(terms, 100, user_id=user))]
            assert found == expected(texts, keyword), (keyword, texts)
        # Paging by cursor through both parts gives the same list.
        pages, cursor = [], None
        while True:
            page = messages.search(conn, SearchQuery(terms, 2, user_id="bob", before_id=cursor))
            pages += [m.message_id for m in page]
            if len(page) < 2:
                break
            cursor = page[-1].message_id
        assert pages == expected(texts, keyword)
