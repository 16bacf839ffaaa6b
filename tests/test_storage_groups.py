"""Grouped sends: many sends in one call must do exactly what the same sends one by one do.

The writer runs consecutive private sends through ``send_private_group`` (a few
``executemany`` calls for the lot) and falls back to ``send_private`` (a group
of one) per send if the group raises. These tests hold groups of any size to a
reference model here, the send rules written plainly one message at a time, and
check the fallback through a real writer.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.codes import ErrorCode, UserStatus
from storage import UserRecord, inboxes, open_store
from storage.inboxes import InboxState
from storage.messages import (
    Conversation,
    Outgoing,
    SendResult,
    conversation_key,
)
from storage.schema import migrate
from storage.sends import SendPolicy, send_private, send_private_group
from storage.users import create_user
from tests.storage_helpers import held_writer

# SQLite itself (its file, connection or PRAGMAs), not the backend-neutral store: tests/backends.py.
pytestmark = pytest.mark.sqlite_only

# u3 is muted and u4 forbidden; "ghost" does not exist. u1 blocks u0; u2 has u0 as a friend.
USERS = {"u0": UserStatus.NORMAL, "u1": UserStatus.NORMAL, "u2": UserStatus.NORMAL}
USERS |= {"u3": UserStatus.MUTED, "u4": UserStatus.FORBIDDEN}
SENDERS = sorted(USERS)
RECIPIENTS = [*SENDERS, "ghost"]


def fresh_db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn)
    for user_id, status in USERS.items():
        create_user(conn, UserRecord(user_id, status=status))
    conn.execute("INSERT INTO blacklist (user_id, target, created_at) VALUES ('u1', 'u0', 1)")
    conn.execute("INSERT INTO friends (user_id, friend_id, created_at, updated_at) VALUES ('u2', 'u0', 1, 1)")
    return conn


def reference_send(conn: sqlite3.Connection, msg: Outgoing, policy: SendPolicy) -> SendResult:
    """The send rules (SPEC §5) for one message, plainly: the model the grouped code must match.

    It writes inbox rows straight into ``inbox`` and reads heads with SQL: no log, no cache.
    """

    def status(user_id: str) -> int | None:
        row = conn.execute("SELECT status FROM users WHERE user_id = ?", (user_id,)).fetchone()
        return None if row is None else row[0]

    def has(sql: str, *params: str) -> bool:
        return conn.execute(sql, params).fetchone() is not None

    sender, recipient = msg.from_user, msg.conv.target
    if status(sender) in (UserStatus.MUTED, UserStatus.FORBIDDEN):
        return SendResult(ErrorCode.FORBIDDEN_TO_SEND)
    if msg.client_msg_id is not None:
        row = conn.execute(
            "SELECT message_id, server_time, seq FROM client_message_ids WHERE from_user = ? AND client_msg_id = ?",
            (sender, msg.client_msg_id),
        ).fetchone()
        if row is not None:
            return SendResult(ErrorCode.SUCCESS, row[0], row[1], {sender: row[2]}, duplicate=True)
    if status(recipient) is None:
        return SendResult(ErrorCode.NOT_EXIST)
    owners, only_for = list(dict.fromkeys((recipient, sender))), None
    if recipient != sender:
        if has("SELECT 1 FROM blacklist WHERE user_id = ? AND target = ?", recipient, sender):
            if policy.blacklist_strategy == 0:
                return SendResult(ErrorCode.IN_BLACKLIST)
            owners, only_for = [sender], sender
        elif policy.disable_stranger_chat and not has(
            "SELECT 1 FROM friends WHERE user_id = ? AND friend_id = ?", recipient, sender
        ):
            return SendResult(ErrorCode.NOT_RIGHT)
    if msg.persist_flag == 4:  # transparent: live devices only, in no inbox
        return SendResult(ErrorCode.SUCCESS, msg.message_id, msg.server_time, live_only=owners)
    conn.execute(
        "INSERT INTO messages (message_id, conv_type, conv_target, conv_line, conv_key, from_user, content,"
        " server_time, to_users, persist_flag, only_for) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            msg.message_id, msg.conv.type, recipient, msg.conv.line, conversation_key(msg.conv, sender), sender,
            msgpack.packb(msg.content, use_bin_type=True), msg.server_time,
            json.dumps(msg.to_users) if msg.to_users else None, msg.persist_flag, only_for,
        ),
    )  # fmt: skip
    seqs = {}
    for owner in owners:
        seqs[owner] = seq = 1 + conn.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM inbox WHERE user_id = ?", (owner,)
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO inbox (user_id, seq, message_id) VALUES (?, ?, ?)", (owner, seq, msg.message_id)
        )
    if msg.client_msg_id is not None:
        conn.execute(
            "INSERT INTO client_message_ids (from_user, client_msg_id, message_id, server_time, seq)"
            " VALUES (?, ?, ?, ?, ?)",
            (sender, msg.client_msg_id, msg.message_id, msg.server_time, seqs[sender]),
        )
    return SendResult(ErrorCode.SUCCESS, msg.message_id, msg.server_time, seqs)


def rows(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """The stored state, with the log and the merged rows seen as one (the reference never logs)."""
    found = {
        table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
        for table in ("messages", "client_message_ids")
    }
    found["inbox"] = conn.execute(
        "SELECT user_id, seq, message_id FROM inbox UNION ALL SELECT user_id, seq, message_id FROM inbox_recent"
        " ORDER BY 1, 2"
    ).fetchall()
    return found


def assert_every_message_is_indexed_or_logged(conn: sqlite3.Connection) -> None:
    """Each stored message is in its conversation's index, or its inbox rows are still in the log."""
    indexed = conn.execute(
        "SELECT conv_type, conv_key, conv_line, message_id FROM conversation_index"
        " UNION SELECT m.conv_type, m.conv_key, m.conv_line, m.message_id FROM messages m"
        " JOIN inbox_recent r ON r.message_id = m.message_id ORDER BY 4"
    ).fetchall()
    assert indexed == conn.execute(
        "SELECT conv_type, conv_key, conv_line, message_id FROM messages ORDER BY 4"
    ).fetchall()


send = st.tuples(
    st.sampled_from(SENDERS),
    st.sampled_from(RECIPIENTS),
    st.sampled_from([None, "a", "b"]),  # a small set, so resends (same sender, same id) happen
    st.sampled_from([3, 3, 1, 4]),  # counted, persisted, transparent
)


def outgoing(number: int, sender: str, recipient: str, client_msg_id: str | None, persist: int) -> Outgoing:
    content = {"type": 1, "content": f"m{number}", "persist_flag": persist}
    return Outgoing(
        number, 1000 + number, Conversation(0, recipient), sender, content, persist, None, client_msg_id
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sends=st.lists(send, min_size=1, max_size=25),
    cuts=st.sets(st.integers(min_value=1, max_value=24), max_size=4),
    strategy=st.sampled_from([0, 1]),
    friends_only=st.booleans(),
    merge_rows=st.sampled_from([3, 7, inboxes.MERGE_ROWS]),  # small: the log is merged mid-group
)
def test_a_group_returns_and_writes_what_the_rules_say_one_by_one(
    sends: list[tuple[str, str, str | None, int]],
    cuts: set[int],
    strategy: int,
    friends_only: bool,
    merge_rows: int,
) -> None:
    policy = SendPolicy(blacklist_strategy=strategy, disable_stranger_chat=friends_only)
    msgs = [outgoing(n + 1, *spec) for n, spec in enumerate(sends)]

    one_by_one = fresh_db()
    expected = [reference_send(one_by_one, msg, policy) for msg in msgs]

    grouped, state = fresh_db(), InboxState()
    got: list[SendResult] = []
    bounds = [0, *sorted(c for c in cuts if c < len(msgs)), len(msgs)]
    default_merge_rows, inboxes.MERGE_ROWS = inboxes.MERGE_ROWS, merge_rows
    try:
        for start, end in zip(bounds, bounds[1:], strict=False):  # groups of any size, as batches come
            got += send_private_group(grouped, [(state, msg, policy) for msg in msgs[start:end]])
        assert got == expected
        assert rows(grouped) == rows(one_by_one)
        assert_every_message_is_indexed_or_logged(grouped)
        # The heads moved the same way: the next send (alone) gets the same seqs on both sides.
        following = outgoing(99, "u0", "u2", None, 3)
        assert send_private(grouped, state, following, policy) == reference_send(one_by_one, following, policy)
    finally:
        inboxes.MERGE_ROWS = default_merge_rows


async def test_a_group_that_fails_runs_its_sends_one_by_one(tmp_path: Path) -> None:
    """One bad send (a message id already stored) fails alone; the rest of its group is stored."""
    async with open_store(tmp_path / "ember.db") as store:
        for user_id in ("u0", "u1"):
            await store.create_user(UserRecord(user_id))
        policy = SendPolicy()
        results: dict[int, tuple[Any, BaseException | None]] = {}
        all_reported = trio.Event()

        def report(number: int):  # noqa: ANN202 - a callback factory
            def callback(result: Any, error: BaseException | None) -> None:
                results[number] = (result, error)
                if len(results) == 4:
                    all_reported.set()

            return callback

        async with held_writer(store.writer):  # so that the four sends form one group
            for number, message_id in enumerate([10, 11, 10, 12]):  # the third reuses the first's id
                msg = outgoing(message_id, "u0", "u1", None, 3)
                store.send_private_nowait(msg, policy, report(number))
        await all_reported.wait()

        assert isinstance(results[2][1], sqlite3.IntegrityError)
        stored = [results[n][0] for n in (0, 1, 3)]
        assert all(r is not None and r.code == ErrorCode.SUCCESS for r in stored)
        # The failed send's rollback left no trace: the others' rows are all there, seqs in order.
        assert [r.seqs["u1"] for r in stored] == sorted(r.seqs["u1"] for r in stored)
        page = await store.pull("u1", 0, 10)
        assert [m.message_id for _, m in page.messages] == [10, 11, 12]


@pytest.mark.parametrize("group_size", [1, 50])
async def test_grouped_sends_commit_before_they_are_reported(tmp_path: Path, group_size: int) -> None:
    db = tmp_path / "ember.db"
    async with open_store(db) as store:
        for user_id in ("u0", "u1"):
            await store.create_user(UserRecord(user_id))
        seen: list[int] = []
        done = trio.Event()

        def callback(result: Any, error: BaseException | None) -> None:
            assert error is None
            # Another connection sees the row as soon as the send is reported: it was committed.
            with sqlite3.connect(db) as reader:
                count = reader.execute(
                    "SELECT count(*) FROM messages WHERE message_id = ?", (result.message_id,)
                ).fetchone()[0]
            seen.append(count)
            if len(seen) == group_size:
                done.set()

        for n in range(group_size):
            store.send_private_nowait(outgoing(n + 1, "u0", "u1", None, 3), SendPolicy(), callback)
        await done.wait()
        assert seen == [1] * group_size
