"""``list_conversations``' ``types`` / ``lines`` filters, by property over random inboxes in a real SQLite file.

The rule under test: a filtered list is the unfiltered list with the other conversations left out, entry for
entry (last message, read mark, counts) and in the same order, and paging it with any page size and
``before`` = the last entry's id walks exactly that list. Stories mix private chats (both directions), groups
and channels on several lines, persist flags that hide, show or count, deletions for the user, read marks,
and messages still in the inbox log next to merged ones.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain.conversations import classifier
from protocol import codec
from storage import conversation_table, conversations
from storage.messages import Conversation, conversation_key
from storage.schema import migrate

# SQLite itself (its file, connection or PRAGMAs), not the backend-neutral store: tests/backends.py.
pytestmark = pytest.mark.sqlite_only

EXAMPLES = int(os.environ.get("FILTER_EXAMPLES", "60"))
ME = "me"
PEERS = ("ann", "ben")
T0 = 1767225600000
FIRST_ID = 7_000_000_000_000_000

message = st.tuples(
    st.sampled_from((0, 1, 3)),  # conversation type
    st.sampled_from(PEERS),  # the peer, or the group / channel id
    st.sampled_from((0, 1, 2)),  # line
    st.booleans(),  # sent by me
    st.sampled_from((3, 3, 1, 0)),  # persist flag: counted, counted, shown, hidden
    st.booleans(),  # deleted for me
    st.booleans(),  # still in the log (inbox_recent) rather than merged
)
story = st.lists(message, max_size=25)
marks = st.lists(st.tuples(st.sampled_from((0, 1, 3)), st.sampled_from(PEERS), st.integers(0, 25)), max_size=4)
type_filter = st.none() | st.sets(st.sampled_from((0, 1, 2, 3)), min_size=1).map(frozenset)
line_filter = st.none() | st.sets(st.sampled_from((0, 1, 2, 7)), min_size=1).map(frozenset)


def _fill(conn: sqlite3.Connection, messages: list[tuple[Any, ...]], read_marks: list[tuple[int, str, int]]) -> None:
    for user in (ME, *PEERS):
        conn.execute("INSERT INTO users (user_id, created_at, updated_at) VALUES (?, ?, ?)", (user, T0, T0))
    for seq, (kind, peer, line, mine, flag, deleted, in_log) in enumerate(messages, start=1):
        message_id = FIRST_ID + seq
        if kind == 0:
            sender, target = (ME, peer) if mine else (peer, ME)
        else:
            sender, target = (ME if mine else PEERS[1 - PEERS.index(peer)]), peer
        content = codec.pack({"type": 1, "searchable_content": f"m{seq}", "persist_flag": flag})
        key = conversation_key(Conversation(kind, target, line), sender)
        conn.execute(
            "INSERT INTO messages (message_id, conv_type, conv_target, conv_line, conv_key, from_user, content,"
            " server_time, to_users, persist_flag, only_for) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, NULL)",
            (message_id, kind, target, line, key, sender, content, T0 + seq, flag),
        )
        table = "inbox_recent" if in_log else "inbox"
        conn.execute(f"INSERT INTO {table} (user_id, seq, message_id) VALUES (?, ?, ?)", (ME, seq, message_id))
        if deleted:
            conn.execute(
                "INSERT INTO deleted_messages (user_id, message_id, deleted_at) VALUES (?, ?, ?)",
                (ME, message_id, T0),
            )
    conversation_table.rebuild(conn)  # rows written straight into inbox: index them as a merge would
    for kind, peer, upto in read_marks:
        conversations.advance_mark(
            conn, ME, conversations.READ_SCOPE, Conversation(kind, peer), FIRST_ID + upto, T0
        )


def _walk(conn: sqlite3.Connection, limit: int, types: Any, lines: Any) -> list[conversations.ConversationEntry]:
    entries: list[conversations.ConversationEntry] = []
    before = 0
    while True:
        page = conversations.list_conversations(conn, ME, before, limit, 0, classifier(ME), types, lines)
        entries += page.entries
        if not page.more:
            assert len(page.entries) <= limit
            return entries
        assert len(page.entries) == limit
        before = page.entries[-1].last.message_id


def _summary(entries: list[conversations.ConversationEntry]) -> list[tuple[Any, ...]]:
    return [(e.conv, e.last.message_id, e.last.content, e.read_to, e.unread, e.unread_mentions) for e in entries]


@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True)
@given(story, marks, type_filter, line_filter, st.integers(1, 4))
def test_a_filtered_list_is_the_whole_list_without_the_others_page_by_page(
    tmp_path_factory: Any, messages: list[tuple[Any, ...]], read_marks: list[tuple[int, str, int]],
    types: frozenset[int] | None, lines: frozenset[int] | None, limit: int,
) -> None:  # fmt: skip
    path: Path = tmp_path_factory.mktemp("filters") / "ember.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        migrate(conn)
        _fill(conn, messages, read_marks)
        whole = conversations.list_conversations(conn, ME, 0, 200, 0, classifier(ME)).entries
        want = [
            e for e in whole if (types is None or e.conv.type in types) and (lines is None or e.conv.line in lines)
        ]
        assert _summary(_walk(conn, limit, types, lines)) == _summary(want)
        assert _summary(_walk(conn, 200, None, None)) == _summary(whole)  # no filter: the list as it was
    finally:
        conn.close()
