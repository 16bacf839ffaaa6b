"""The table-based conversation page (``storage.conversation_table``) answers what the full inbox scan answers.

Random stories run through the real storage functions in a real SQLite file: private sends both ways and
group sends (messages hidden, shown or counted, mentions), log merges at random points (so a page mixes the
table with rows still in ``inbox_recent``), deletes for the user, deletes for everyone, recalls, content
updates (which can hide or show a message), ``clear`` and read marks, most of them aimed at a conversation's
newest message; ``me`` leaving and rejoining the group (a former member keeps what it held), and the purge of
member tombstones (after which no group row names a former member). After the story, every page walk (any
page size, any filter, roaming on, or off with a window that cuts the story anywhere) equals the reference:
``list_by_scan``, the one-pass computation the list used before the table, with the same arguments.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.domain.conversations import classifier
from storage import conversations, groups
from storage import messages as m
from storage import sends as s
from storage.inboxes import InboxState
from storage.schema import migrate

EXAMPLES = int(os.environ.get("CONV_TABLE_EXAMPLES", "60"))
ME = "me"
PEERS = ("ann", "ben")
GROUP = "g1"
T0 = 1767225600000
FIRST_ID = 7_000_000_000_000_000

send = st.tuples(
    st.just("send"),
    st.sampled_from(("ann", "ben", GROUP)),  # a peer, or the group
    st.sampled_from((0, 1)),  # line
    st.booleans(),  # sent by me
    st.sampled_from((3, 3, 1, 0)),  # persist flag: counted, counted, shown, hidden
    st.booleans(),  # mentions me
)
# Aimed at the n-th newest message sent so far (0: the newest).
aimed = st.tuples(
    st.sampled_from(("delete_mine", "delete_all", "recall", "hide", "show", "clear", "read")), st.integers(0, 3)
)
membership = st.sampled_from((("leave",), ("join",), ("purge",)))
step = st.one_of(send, aimed, st.just(("merge",)), membership)
story = st.lists(step, max_size=40)


def _run(conn: sqlite3.Connection, steps: list[tuple[Any, ...]]) -> None:
    for user in (ME, *PEERS):
        conn.execute("INSERT INTO users (user_id, created_at, updated_at) VALUES (?, ?, ?)", (user, T0, T0))
    groups.create_group(conn, GROUP, "ann", {"name": "g"}, [("ann", 2), ("ben", 0), (ME, 0)], T0)
    inboxes, policy = InboxState(), s.SendPolicy()
    sent: list[int] = []
    member = True
    next_id = FIRST_ID
    for item in steps:
        next_id += 1
        now = T0 + next_id - FIRST_ID
        if item[0] == "send":
            _, target, line, mine, flag, mention = item
            content: dict[str, Any] = {"type": 1, "searchable_content": f"m{next_id}", "persist_flag": flag}
            if mention:
                content.update(mentioned_type=1, mentioned_targets=[ME])
            if target == GROUP:
                conv, sender = m.Conversation(1, GROUP, line), (ME if mine else "ann")
            else:
                conv, sender = (m.Conversation(0, target, line), ME) if mine else (m.Conversation(0, ME, line), target)
            result = s.send_message(conn, inboxes, m.Outgoing(next_id, now, conv, sender, content, flag), policy)
            if flag != 4 and result.message_id:
                sent.append(next_id)
        elif item[0] == "merge":
            inboxes.merge(conn)
        elif item[0] == "leave":
            if member:
                groups.remove_members(conn, GROUP, [ME], now)
            member = False
        elif item[0] == "join":
            if not member:
                groups.add_members(conn, GROUP, [ME], now)
            member = True
        elif item[0] == "purge":
            groups.purge_tombstones(conn, now + 1, 100)
        elif sent:
            action, back = item
            target_id = sent[-1 - min(back, len(sent) - 1)]
            found = m.get_message(conn, target_id)
            if found is None:
                continue
            mine_conv = found.conv
            if found.conv.type == 0 and found.conv.target == ME:
                mine_conv = m.Conversation(0, found.from_user, found.conv.line)
            if action == "delete_mine":
                m.delete_for_user(conn, ME, target_id, now)
            elif action == "delete_all":
                m.delete_for_everyone(conn, target_id)
            elif action == "recall":
                notice = m.Outgoing(next_id, now, found.conv, found.from_user, {"type": 80, "persist_flag": 1}, 1)
                m.recall(conn, inboxes, found.from_user, target_id, 10**9, notice)
            elif action in ("hide", "show"):
                flag = 0 if action == "hide" else 3
                m.update(conn, inboxes, None, target_id, {"type": 1, "persist_flag": flag}, None)
            elif action == "clear":
                ids = conversations.conversation_message_ids(conn, ME, mine_conv, target_id)
                conversations.clear(conn, ME, mine_conv, target_id, ids, now)
            else:
                conversations.advance_mark(conn, ME, conversations.READ_SCOPE, mine_conv, target_id, now)


def _walk(
    conn: sqlite3.Connection, lister: Any, limit: int, types: Any, lines: Any, min_time: int = 0
) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    before = 0
    while True:
        page = lister(conn, ME, before, limit, min_time, classifier(ME), types, lines)
        out += [
            (e.conv, e.last.message_id, e.last.content, e.last.from_user, e.read_to, e.unread, e.unread_mentions)
            for e in page.entries
        ]
        if not page.more:
            return out
        assert len(page.entries) == limit
        before = page.entries[-1].last.message_id


def _aimed_after_merge(action: str, target: str = "ann", flag: int = 3) -> list[tuple[Any, ...]]:
    """Two messages, merged into the table, then ``action`` on the newest: the cases a stale row shows."""
    return [("send", target, 0, False, 3, False), ("send", target, 0, False, flag, True), ("merge",), (action, 0)]


@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True)
@example(_aimed_after_merge("hide"), 3, None, None, 0)
@example(_aimed_after_merge("show", flag=0), 3, None, None, 0)
@example(_aimed_after_merge("delete_mine", GROUP), 1, None, None, 0)
@example(_aimed_after_merge("delete_all", GROUP), 1, None, None, 0)
@example(_aimed_after_merge("recall", GROUP, flag=0), 1, None, None, 0)
@example(_aimed_after_merge("clear"), 2, None, None, 0)
@example(_aimed_after_merge("read"), 2, None, None, 0)
@example(
    [("send", GROUP, 0, False, 3, False), ("send", GROUP, 0, False, 3, False), ("merge",), ("leave",), ("purge",),
     ("send", GROUP, 0, False, 3, False), ("merge",), ("delete_all", 1)], 1, None, None, 0,
)  # a former member, no group row naming it after the purge: its last is deleted for everyone
@example(
    [("send", GROUP, 0, False, 0, False), ("merge",), ("leave",), ("purge",), ("show", 0)], 1, None, None, 0,
)  # a former member whose only message there was hidden: shown, it lists the group again
@example(
    [("send", "ann", 0, False, 3, False), ("send", "ann", 0, False, 3, False), ("delete_mine", 0), ("merge",)],
    1, None, None, 0,
)  # the newest message deleted while still in the log: the merge must not make it the last
@given(story, st.integers(1, 3), st.sampled_from((None, frozenset({0}), frozenset({1, 3}))),
       st.sampled_from((None, frozenset({1}))), st.integers(0, 45))  # fmt: skip
def test_the_table_page_answers_what_the_scan_answers(
    tmp_path_factory: Any, steps: list[tuple[Any, ...]], limit: int, types: Any, lines: Any, window_start: int
) -> None:
    path: Path = tmp_path_factory.mktemp("convtable") / "ember.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        migrate(conn)
        conn.execute("BEGIN")
        _run(conn, steps)
        conn.execute("COMMIT")
        min_time = T0 + window_start  # roaming off: only what is at least this young (a step is 1 ms)
        for walk_limit, walk_types, walk_lines, since in ((limit, types, lines, 0), (200, None, None, 0),
                                                          (limit, types, lines, min_time)):  # fmt: skip
            want = _walk(conn, conversations.list_by_scan, walk_limit, walk_types, walk_lines, since)
            got = _walk(conn, conversations.list_conversations, walk_limit, walk_types, walk_lines, since)
            assert got == want
    finally:
        conn.close()


def test_a_migrated_database_lists_its_existing_inboxes(tmp_path: Path) -> None:
    """v12 fills the table from inboxes written before it (rows merged under the previous schema)."""
    from storage import schema

    conn = sqlite3.connect(tmp_path / "ember.db", isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        db = schema.Database(conn, recursive_triggers=False, execute_plugins=False)
        before_v12 = [mig.__name__ for mig in schema.MIGRATIONS].index("_v12_conversation_list")
        for migration in schema.MIGRATIONS[:before_v12]:
            migration(db)
        conn.execute(f"PRAGMA user_version = {before_v12}")
        conn.execute("COMMIT")
        for user in (ME, "ann"):
            conn.execute("INSERT INTO users (user_id, created_at, updated_at) VALUES (?, ?, ?)", (user, T0, T0))
        conn.execute("BEGIN")
        inboxes = InboxState()
        for n in range(1, 6):
            # No text: the send would index it for search (v13), whose tables this older schema lacks.
            content = {"type": 1, "content": f"m{n}", "persist_flag": 0 if n == 5 else 3}
            msg = m.Outgoing(FIRST_ID + n, T0 + n, m.Conversation(0, ME), "ann", content, content["persist_flag"])
            s.send_message(conn, inboxes, msg, s.SendPolicy())
        conn.execute("INSERT INTO inbox SELECT user_id, seq, message_id FROM inbox_recent")  # the old merge
        conn.execute("DELETE FROM inbox_recent")
        conn.execute("COMMIT")
        migrate(conn)
        assert schema.schema_version(conn) == schema.SCHEMA_VERSION
        page = conversations.list_conversations(conn, ME, 0, 50, 0, classifier(ME))
        assert [(e.conv.target, e.last.message_id, e.unread) for e in page.entries] == [("ann", FIRST_ID + 4, 4)]
        assert page.scanned < 10  # read from the table, not the inbox
    finally:
        conn.close()
