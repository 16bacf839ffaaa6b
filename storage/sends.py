"""The writer's send groups (SPEC §5, §8, §15): private, group and channel sends, checked and stored in bulk.

The writer hands consecutive sends to ``send_message_group`` as one group; it splits them into runs of
one conversation type and each run checks its rules and writes through one ``SendBatch`` (one
``executemany`` per table). A send alone (the admin API's, or one whose group raised) goes through
``send_message``: the same code with a group of one.

Why a module of its own: the private, group and channel runs all build on ``SendBatch``, and the
channel run needs ``storage.channels``' facts; with the send path here, ``storage.messages`` (messages,
inboxes, pulls, history) and ``storage.channels`` (channel facts) import neither each other nor this.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from protocol.codes import ErrorCode, UserStatus
from storage.channels import (
    ROLE_LISTENER,
    ROLE_MANAGER,
    ROLE_NONE,
    ROLE_OWNER,
    ROUTE_CALLBACK,
    ROUTE_LISTENERS,
    ROUTE_OWNER,
    ChannelRecord,
    get_channel,
)
from storage.engine import engine_of, in_list, insert_many, pipeline
from storage.engine import pairs as pairs_of
from storage.inboxes import InboxState
from storage.messages import (
    CHANNEL,
    GROUP,
    INSERT_CLIENT_MSG_ID,
    INSERT_MESSAGE,
    MEMBER_REMOVED,
    PERSIST_TRANSPARENT,
    SEARCH,
    Outgoing,
    SendResult,
    message_index_key,
    message_row,
)
from storage.search import IndexRow, index_row
from storage.search_fts5 import INSERT_RECENT

#: The gateway's rule for who may send into a group: ``(sender's member type, group muted) -> code``.
GroupSendCheck = Callable[[int, bool], int]
#: The gateway's rule for channel sends: ``(sender's role, callback_only) -> (code, route)``
#: (roles and routes: ``storage.channels.ROLE_*``, ``ROUTE_*``).
ChannelRoute = Callable[[int, bool], tuple[int, int]]


@dataclass(frozen=True, slots=True)
class SendPolicy:
    """The config switches a send obeys (SPEC §5), and the gateway's rule for group senders (SPEC §8).

    Without ``group_check`` every current member may send; without ``channel_route`` channel sends
    answer 254.
    """

    blacklist_strategy: int = 0
    disable_stranger_chat: bool = False
    group_check: GroupSendCheck | None = None
    channel_route: ChannelRoute | None = None


def send_message(
    conn: sqlite3.Connection, inboxes: InboxState, msg: Outgoing, policy: SendPolicy
) -> SendResult:
    """Check and store one message of any conversation type built so far (private or group)."""
    return send_message_group(conn, [(inboxes, msg, policy)])[0]


def send_message_group(
    conn: sqlite3.Connection, ops: list[tuple[InboxState, Outgoing, SendPolicy]]
) -> list[SendResult]:
    """Consecutive sends of every kind: each run of private, group or channel sends, grouped.

    Seqs handed out by a run are in ``InboxState`` before the next run starts, so
    the runs together give exactly what the sends one by one give.
    """
    if all(msg.conv.type != GROUP and msg.conv.type != CHANNEL for _, msg, _ in ops):
        return send_private_group(conn, ops)  # the common case: no runs to split
    runs = {GROUP: send_group_messages, CHANNEL: send_channel_messages}
    results: list[SendResult] = []
    start = 0
    while start < len(ops):
        kind = ops[start][1].conv.type
        end = start + 1
        while end < len(ops) and ops[end][1].conv.type == kind:
            end += 1
        results += runs.get(kind, send_private_group)(conn, ops[start:end])
        start = end
    return results


def _known_ids_cursor(conn: sqlite3.Connection, msgs: list[Outgoing]) -> Any:
    """The query of the originals of ``msgs``' client_msg_ids, sent (its rows read by ``_known_ids_rows``)."""
    resends = [(m.from_user, m.client_msg_id) for m in msgs if m.client_msg_id is not None]
    if not resends:
        return None
    table, sender, msg_id, values = pairs_of(conn, "j", resends)
    return conn.execute(
        f"SELECT c.from_user, c.client_msg_id, c.message_id, c.server_time, c.seq FROM {table}"
        f" JOIN client_message_ids c ON c.from_user = {sender} AND c.client_msg_id = {msg_id}",
        values,
    )


def _known_ids_rows(cursor: Any) -> dict[tuple[str, str | None], SendResult]:
    if cursor is None:
        return {}
    return {
        (row[0], row[1]): SendResult(ErrorCode.SUCCESS, row[2], row[3], {row[0]: row[4]}, duplicate=True)
        for row in cursor.fetchall()
    }


class SendBatch:
    """What one writer group of sends writes, gathered so that each table gets one ``executemany``.

    Shared by the private, group and channel send groups: each checks its own rules, then calls
    ``answered_before`` (the checks every send starts with) and ``store`` (one message row, an inbox row per
    owner with the next seq, the client_msg_id). ``write`` flushes it all and moves the inbox heads.
    ``status`` holds the users table's status of the users concerned (one missing from it does not exist);
    ``read`` builds a batch with both facts read in bulk, a small private group reads its own (``_private_facts``).
    """

    __slots__ = (
        "conn", "inboxes", "status", "known_ids", "taken", "message_rows", "inbox_rows", "id_rows", "search_rows",
        "relative", "relative_keys",
    )  # fmt: skip

    def __init__(
        self,
        conn: sqlite3.Connection,
        inboxes: InboxState,
        status: dict[str, int],
        known_ids: dict[tuple[str, str | None], SendResult],
    ) -> None:
        self.conn = conn
        self.inboxes = inboxes
        self.status = status
        self.known_ids = known_ids
        self.taken: dict[str, int] = {}  # owner -> last seq given out in this group
        self.message_rows: list[tuple] = []
        self.inbox_rows: list[tuple[str, int, int]] = []
        self.id_rows: list[tuple] = []
        self.search_rows: list[IndexRow] = []  # the search index's entries, written with the messages
        # A shared database (``inboxes.shared``): seqs are numbered from 1 per owner in the group, and every
        # dict holding them is shifted in place at ``write``, once ONE sorted ``reserve`` gave each owner's first.
        self.relative: list[dict[str, int]] = []
        self.relative_keys: set[tuple[str, str | None]] = set()  # known_ids entries of this group (relative)

    @classmethod
    def read(
        cls, conn: sqlite3.Connection, inboxes: InboxState, msgs: list[Outgoing], user_ids: set[str]
    ) -> SendBatch:
        """A batch for ``msgs``, with ``status`` read for ``user_ids``: one query per kind of fact."""
        return cls.read_with(conn, inboxes, msgs, user_ids)[0]

    @classmethod
    def read_with(
        cls,
        conn: sqlite3.Connection,
        inboxes: InboxState,
        msgs: list[Outgoing],
        user_ids: set[str],
        *also: tuple[str, str, str, set[tuple[str, str]]],
    ) -> tuple[SendBatch, list[set[tuple[str, str]]]]:
        """``read``, and which of each ``also`` (table, first, second, pairs) are rows of table (``_pairs_cursor``):
        all in one pipeline (PostgreSQL: one round trip for every fact of the group)."""
        among, values = in_list(conn, "user_id", list(user_ids))
        with pipeline(conn):
            status_rows = conn.execute(f"SELECT user_id, status FROM users WHERE {among}", values)
            known = _known_ids_cursor(conn, msgs)
            present = [_pairs_cursor(conn, *one) for one in also]
        status = dict(status_rows.fetchall())
        known_ids = _known_ids_rows(known)
        return cls(conn, inboxes, status, known_ids), [_pairs_rows(cursor) for cursor in present]

    def answered_before(self, msg: Outgoing) -> SendResult | None:
        """The answer of the checks every send starts with: the sender may not send (247), or the message
        is a resend of a known client_msg_id (the original ack); None when the send goes on."""
        if self.status.get(msg.from_user) in (UserStatus.MUTED, UserStatus.FORBIDDEN):
            return SendResult(ErrorCode.FORBIDDEN_TO_SEND)
        if msg.client_msg_id is not None:
            key = (msg.from_user, msg.client_msg_id)
            known = self.known_ids.get(key)
            if known is not None:
                seqs = dict(known.seqs)
                if key in self.relative_keys:
                    self.relative.append(seqs)
                return SendResult(ErrorCode.SUCCESS, known.message_id, known.server_time, seqs, True)
        return None

    def store(self, msg: Outgoing, owners: Iterable[str], only_for: str | None) -> dict[str, int]:
        """Queue the message row and an inbox row per owner; returns each owner's seq."""
        index_key = message_index_key(msg)
        self.message_rows.append(message_row(msg, index_key, only_for))
        search_row = index_row(msg.message_id, msg.content)
        if search_row is not None:
            self.search_rows.append(search_row)
        seqs = {}
        message_id = msg.message_id
        taken, current, inbox_rows = self.taken, self.inboxes.current, self.inbox_rows
        if self.inboxes.shared:
            for owner in owners:
                seq = taken.get(owner, 0) + 1  # relative: shifted at write
                seqs[owner] = taken[owner] = seq
                inbox_rows.append((owner, seq, message_id))
            self.relative.append(seqs)
        else:
            for owner in owners:
                seq = (taken.get(owner) or current(self.conn, owner)) + 1
                seqs[owner] = taken[owner] = seq
                inbox_rows.append((owner, seq, message_id))
        if msg.client_msg_id is not None:
            sender = msg.from_user
            key = (sender, msg.client_msg_id)
            self.id_rows.append((sender, msg.client_msg_id, message_id, msg.server_time, seqs[sender]))
            known = {sender: seqs[sender]}
            self.known_ids[key] = SendResult(ErrorCode.SUCCESS, message_id, msg.server_time, known, duplicate=True)
            if self.inboxes.shared:
                self.relative.append(known)
                self.relative_keys.add(key)
        return seqs

    def _shift(self) -> None:
        """Shared database: reserve every owner's seqs in one sorted statement, then make the group's
        relative seqs (1, 2, ... per owner) the real ones, in every row and every dict handed out."""
        firsts = self.inboxes.reserve(self.conn, self.taken)  # taken: how many rows each owner got
        base = {user_id: first - 1 for user_id, first in firsts.items()}
        for seqs in self.relative:
            for user_id in seqs:
                seqs[user_id] += base[user_id]
        self.inbox_rows = [(user_id, seq + base[user_id], mid) for user_id, seq, mid in self.inbox_rows]
        self.id_rows = [(*row[:4], row[4] + base[row[0]]) for row in self.id_rows]
        self.taken = {user_id: count + base[user_id] for user_id, count in self.taken.items()}

    def write(self) -> None:
        if self.inboxes.shared and self.taken:
            self._shift()
        # One pipeline for the writes (PostgreSQL: one round trip for every table, not one each; an
        # error surfaces at its end, still inside the group, whose savepoint rules then apply).
        with pipeline(self.conn):
            self._write()

    def _write(self) -> None:
        if self.message_rows:
            insert_many(self.conn, INSERT_MESSAGE, self.message_rows)
            if self.search_rows:  # before the inbox rows: a merge they bring takes these tokens too
                SEARCH.index(self.conn, self.search_rows)
            self.inboxes.append(self.conn, self.inbox_rows)
        if self.id_rows:
            insert_many(self.conn, INSERT_CLIENT_MSG_ID, self.id_rows)
        self.inboxes.advance(self.taken)


def send_group_messages(
    conn: sqlite3.Connection, ops: list[tuple[InboxState, Outgoing, SendPolicy]]
) -> list[SendResult]:
    """Check and store group messages, in order: one message row, one inbox row per owner, in bulk.

    Checks for each message, in order: the sender may send at all (247), a
    resend of a known client_msg_id (the original ack), the group exists and is
    not dismissed (253), the sender is a current member (9), the gateway's rule
    for the sender's member type and the group's mute (``policy.group_check``:
    248 silenced, 241 muted), ``to_users`` and user mentions name only members
    (9). Owners: every current member, or with ``to_users`` those users and the
    sender; nobody else gets an inbox row, and history hides it from the rest
    (``group_history``). Group operations never run inside this group (only
    sends do), so the member lists read once here hold for all of it.
    """
    msgs = [msg for _, msg, _ in ops]
    batch = SendBatch.read(conn, ops[0][0], msgs, {m.from_user for m in msgs})
    groups: dict[str, tuple[bool, dict[str, int]] | None] = {}  # group id -> (muted, member -> type)
    results: list[SendResult] = []
    for msg, (_, _, policy) in zip(msgs, ops, strict=True):
        sender, group_id = msg.from_user, msg.conv.target
        early = batch.answered_before(msg)
        if early is not None:
            results.append(early)
            continue
        if group_id not in groups:
            groups[group_id] = _group_for_send(conn, group_id)
        group = groups[group_id]
        if group is None:
            results.append(SendResult(ErrorCode.NOT_EXIST))
            continue
        muted, members = group
        member_type = members.get(sender)
        if member_type is None:
            results.append(SendResult(ErrorCode.NOT_IN_GROUP))
            continue
        if policy.group_check is not None:
            code = policy.group_check(member_type, muted)
            if code:
                results.append(SendResult(code))
                continue
        mentioned = msg.content.get("mentioned_targets") if msg.content.get("mentioned_type") == 1 else None
        if (msg.to_users and not members.keys() >= set(msg.to_users)) or (
            mentioned and not members.keys() >= set(mentioned)
        ):
            results.append(SendResult(ErrorCode.NOT_IN_GROUP))
            continue
        owners: Any = dict.fromkeys((*msg.to_users, sender)) if msg.to_users else members
        if msg.persist_flag == PERSIST_TRANSPARENT:
            results.append(SendResult(ErrorCode.SUCCESS, msg.message_id, msg.server_time, live_only=list(owners)))
            continue
        seqs = batch.store(msg, owners, None)
        results.append(SendResult(ErrorCode.SUCCESS, msg.message_id, msg.server_time, seqs))
    batch.write()
    return results


def _group_for_send(conn: sqlite3.Connection, group_id: str) -> tuple[bool, dict[str, int]] | None:
    row = conn.execute("SELECT mute, dismissed FROM groups WHERE group_id = ?", (group_id,)).fetchone()
    if row is None or row[1]:
        return None
    members = dict(
        conn.execute(
            "SELECT user_id, type FROM group_members WHERE group_id = ? AND type != ?", (group_id, MEMBER_REMOVED)
        ).fetchall()
    )
    return bool(row[0]), members




def send_private(
    conn: sqlite3.Connection, inboxes: InboxState, msg: Outgoing, policy: SendPolicy
) -> SendResult:
    """Check and store one private message (or find the original of a resend): a group of one.

    One implementation of the rules serves both: the writer runs consecutive
    sends as a group, and a send alone (the admin API's, or one whose group
    raised) goes through here.
    """
    return send_private_group(conn, [(inboxes, msg, policy)])[0]


def send_private_group(
    conn: sqlite3.Connection, ops: list[tuple[InboxState, Outgoing, SendPolicy]]
) -> list[SendResult]:
    """Check and store private messages (or find the originals of resends), in order.

    Checks for each message, in order: the sender may send (247), a resend of
    a known client_msg_id (the original ack), the recipient exists (253), the
    recipient's blacklist (246, or a silent drop: reported as sent, it reaches
    only the sender's own devices and the recipient's history never shows it),
    friends-only mode (248). A message to oneself has one owner.

    The writer runs consecutive sends through this (see ``storage.writer``): one
    query per kind of check for the whole group and one ``executemany`` per
    table, instead of about seven statements and a savepoint per message. Nothing
    a send checks (users, blacklists, friends) can change inside a group, since
    only sends are in it; what sends change themselves (client_msg_ids, inbox
    heads) is tracked here as the group goes. If anything raises, the writer
    rolls the group back and runs each send alone.
    """
    if len(ops) <= SMALL_GROUP and not ops[0][0].shared and engine_of(conn).name == "sqlite":
        return _send_private_small(conn, ops)
    return _send_private_general(conn, ops)


def _send_private_general(
    conn: sqlite3.Connection, ops: list[tuple[InboxState, Outgoing, SendPolicy]]
) -> list[SendResult]:
    """``send_private_group`` through ``SendBatch``: every engine, any group size (and the reference the
    SQLite fast path ``_send_private_small`` is tested against)."""
    msgs = [msg for _, msg, _ in ops]
    if len(ops) <= SMALL_GROUP:
        status, known_ids, blocked, friends = _private_facts(conn, ops)
        batch = SendBatch(conn, ops[0][0], status, known_ids)
    else:
        batch, (blocked, friends) = SendBatch.read_with(
            conn, ops[0][0], msgs, {u for m in msgs for u in (m.from_user, m.conv.target)},
            ("blacklist", "user_id", "target", {(m.conv.target, m.from_user) for m in msgs}),
            ("friends", "user_id", "friend_id",
             {(msg.conv.target, msg.from_user) for _, msg, policy in ops if policy.disable_stranger_chat}),
        )  # fmt: skip
    results: list[SendResult] = []
    for msg, (_, _, policy) in zip(msgs, ops, strict=True):
        sender, recipient = msg.from_user, msg.conv.target
        early = batch.answered_before(msg)
        if early is not None:
            results.append(early)
            continue
        if recipient not in batch.status:
            results.append(SendResult(ErrorCode.NOT_EXIST))
            continue
        owners = [recipient, sender] if recipient != sender else [sender]
        only_for = None
        if recipient != sender:
            if (recipient, sender) in blocked:
                if policy.blacklist_strategy == 0:
                    results.append(SendResult(ErrorCode.IN_BLACKLIST))
                    continue
                owners, only_for = [sender], sender  # as in send_private: a silent drop
            elif policy.disable_stranger_chat and (recipient, sender) not in friends:
                results.append(SendResult(ErrorCode.NOT_RIGHT))
                continue
        if msg.persist_flag == PERSIST_TRANSPARENT:
            results.append(SendResult(ErrorCode.SUCCESS, msg.message_id, msg.server_time, live_only=owners))
            continue
        seqs = batch.store(msg, owners, only_for)
        results.append(SendResult(ErrorCode.SUCCESS, msg.message_id, msg.server_time, seqs))
    batch.write()
    return results


def _send_private_small(
    conn: sqlite3.Connection, ops: list[tuple[InboxState, Outgoing, SendPolicy]]
) -> list[SendResult]:
    """``send_private_group`` for a small group on SQLite (most groups at light load: one or two sends).

    The same checks in the same order, on the same facts (``_PRIVATE_FACTS``, one statement per message,
    all read before anything is written; ``_PRIVATE_FACTS_NO_ID`` for one without a client_msg_id), and the same rows written in the same order, as the general path
    with ``_private_facts`` and ``SendBatch``; only in one function, with the rows built in place and the
    SQLite statements run directly, not through the engine and search-backend dispatch. That was about a
    third of the trio thread's Python per inline send (bench/RESULTS.md, "Issue 27: ... (branch h-fast)").
    tests/test_sends_fast.py runs the same sends through both paths and compares every result and row.
    """
    inboxes = ops[0][0]
    execute = conn.execute
    rows = [
        execute(_PRIVATE_FACTS, (msg.from_user, msg.conv.target, msg.client_msg_id, policy.disable_stranger_chat))
        .fetchone()
        if msg.client_msg_id is not None
        else execute(_PRIVATE_FACTS_NO_ID, (msg.from_user, msg.conv.target, policy.disable_stranger_chat)).fetchone()
        for _, msg, policy in ops
    ]
    # A later send of a group may resend an earlier one's client_msg_id, or concern its users: then every
    # message's facts go into the two maps first (as ``_private_facts`` does); a group of one reads its row.
    alone = len(ops) == 1
    status: dict[str, int] = {}
    known: dict[tuple[str, str | None], tuple[int, int, int]] = {}
    if not alone:
        for (_, msg, _), row in zip(ops, rows, strict=True):
            if row[0] is not None:
                status[msg.from_user] = row[0]
            if row[1] is not None:
                status[msg.conv.target] = row[1]
            if row[4] is not None:
                known[(msg.from_user, msg.client_msg_id)] = (row[4], row[5], row[6])
    results: list[SendResult] = []
    message_rows: list[tuple] = []
    search_rows: list[tuple] = []
    inbox_rows: list[tuple[str, int, int]] = []
    id_rows: list[tuple] = []
    taken: dict[str, int] = {}
    current = inboxes.current
    for (_, msg, policy), row in zip(ops, rows, strict=True):
        sender, recipient, client_msg_id = msg.from_user, msg.conv.target, msg.client_msg_id
        if alone:
            sender_status, recipient_status = row[0], row[1]
            original = None if row[4] is None else (row[4], row[5], row[6])
        else:
            sender_status, recipient_status = status.get(sender), status.get(recipient)
            original = known.get((sender, client_msg_id))
        if sender_status == UserStatus.MUTED or sender_status == UserStatus.FORBIDDEN:
            results.append(SendResult(ErrorCode.FORBIDDEN_TO_SEND))
            continue
        if client_msg_id is not None and original is not None:  # a resend: the original ack
            results.append(SendResult(ErrorCode.SUCCESS, original[0], original[1], {sender: original[2]}, True))
            continue
        if recipient_status is None:
            results.append(SendResult(ErrorCode.NOT_EXIST))
            continue
        only_for = None
        if recipient != sender:
            owners = [recipient, sender]
            if row[2]:  # the recipient blacklists the sender
                if policy.blacklist_strategy == 0:
                    results.append(SendResult(ErrorCode.IN_BLACKLIST))
                    continue
                owners, only_for = [sender], sender  # a silent drop: it reaches only the sender
            elif policy.disable_stranger_chat and not row[3]:
                results.append(SendResult(ErrorCode.NOT_RIGHT))
                continue
        else:
            owners = [sender]
        if msg.persist_flag == PERSIST_TRANSPARENT:
            results.append(SendResult(ErrorCode.SUCCESS, msg.message_id, msg.server_time, live_only=owners))
            continue
        message_id = msg.message_id
        message_rows.append(message_row(msg, message_index_key(msg), only_for))
        search_row = index_row(message_id, msg.content)
        if search_row is not None:
            doc = search_row.doc
            search_rows.append((message_id, doc.bi, doc.uni, doc.words, search_row.content_type))
        seqs = {}
        for owner in owners:
            seq = (taken.get(owner) or current(conn, owner)) + 1
            seqs[owner] = taken[owner] = seq
            inbox_rows.append((owner, seq, message_id))
        if client_msg_id is not None:
            id_rows.append((sender, client_msg_id, message_id, msg.server_time, seqs[sender]))
            known[(sender, client_msg_id)] = (message_id, msg.server_time, seqs[sender])
        results.append(SendResult(ErrorCode.SUCCESS, message_id, msg.server_time, seqs))
    if message_rows:
        conn.executemany(INSERT_MESSAGE, message_rows)
        if search_rows:  # before the inbox rows: a merge they bring takes these tokens too
            conn.executemany(INSERT_RECENT, search_rows)
        inboxes.append(conn, inbox_rows)
    if id_rows:
        conn.executemany(INSERT_CLIENT_MSG_ID, id_rows)
    inboxes.advance(taken)
    return results


#: A private send group this small reads its facts with one statement per message (``_private_facts``):
#: at light load most groups hold one or two sends, and four ``json_each`` queries cost more than one
#: statement of plain ``=`` lookups each (bench/RESULTS.md, "Session 6").
SMALL_GROUP: Final = 4

# Everything a private send checks, for one (sender, recipient, client_msg_id, friends-only): both users'
# status (NULL: no such user), whether the recipient blacklists the sender, whether the recipient has the
# sender as a friend (looked up only in friends-only mode), and the original of a resend of that
# client_msg_id (NULLs when there is none).
_PRIVATE_FACTS: Final = (
    "SELECT (SELECT status FROM users WHERE user_id = ?1), (SELECT status FROM users WHERE user_id = ?2),"
    " EXISTS (SELECT 1 FROM blacklist WHERE user_id = ?2 AND target = ?1),"
    " CASE WHEN ?4 <> 0 THEN EXISTS (SELECT 1 FROM friends WHERE user_id = ?2 AND friend_id = ?1) ELSE FALSE END,"
    " c.message_id, c.server_time, c.seq"
    " FROM (SELECT 1) AS one LEFT JOIN client_message_ids c ON c.from_user = ?1 AND c.client_msg_id = ?3"
)

#: ``_PRIVATE_FACTS`` for a message without a client_msg_id (no resend to look for): the same columns, the
#: original's NULL, without the join (4.2 -> 3.4 us a statement here).
_PRIVATE_FACTS_NO_ID: Final = (
    "SELECT (SELECT status FROM users WHERE user_id = ?1), (SELECT status FROM users WHERE user_id = ?2),"
    " EXISTS (SELECT 1 FROM blacklist WHERE user_id = ?2 AND target = ?1),"
    " CASE WHEN ?3 <> 0 THEN EXISTS (SELECT 1 FROM friends WHERE user_id = ?2 AND friend_id = ?1) ELSE FALSE END,"
    " NULL, NULL, NULL"
)


def _private_facts(
    conn: sqlite3.Connection, ops: list[tuple[InboxState, Outgoing, SendPolicy]]
) -> tuple[
    dict[str, int], dict[tuple[str, str | None], SendResult], set[tuple[str, str]], set[tuple[str, str]]
]:
    """What ``send_private_group`` reads for a small group: status by user, known client_msg_ids, the
    (recipient, sender) pairs blacklisted and those that are friends; one statement per message."""
    status: dict[str, int] = {}
    known_ids: dict[tuple[str, str | None], SendResult] = {}
    blocked: set[tuple[str, str]] = set()
    friends: set[tuple[str, str]] = set()
    params = [
        (msg.from_user, msg.conv.target, msg.client_msg_id, policy.disable_stranger_chat) for _, msg, policy in ops
    ]
    if engine_of(conn).pipelined:
        with pipeline(conn):  # PostgreSQL: every message's statement in one round trip
            cursors = [conn.execute(_PRIVATE_FACTS, one) for one in params]
        rows = [cursor.fetchone() for cursor in cursors]
    else:  # SQLite: each at once (one cached statement, reused)
        rows = [conn.execute(_PRIVATE_FACTS, one).fetchone() for one in params]
    for (_, msg, _), row in zip(ops, rows, strict=True):
        sender, recipient = msg.from_user, msg.conv.target
        if row[0] is not None:
            status[sender] = row[0]
        if row[1] is not None:
            status[recipient] = row[1]
        if row[2]:
            blocked.add((recipient, sender))
        if row[3]:
            friends.add((recipient, sender))
        if row[4] is not None:
            known_ids[(sender, msg.client_msg_id)] = SendResult(
                ErrorCode.SUCCESS, row[4], row[5], {sender: row[6]}, duplicate=True
            )
    return status, known_ids, blocked, friends


def _pairs_cursor(
    conn: sqlite3.Connection, table: str, first: str, second: str, pairs: set[tuple[str, str]]
) -> Any:
    """The query of which of ``pairs`` are rows of ``table`` (keyed by ``first``, ``second``), one for all,
    sent (None when there are no pairs); its rows read by ``_pairs_rows``."""
    if not pairs:
        return None
    # Table and column names are this module's constants, never input; the values are bound.
    wanted, a, b, values = pairs_of(conn, "j", pairs)
    sql = f"SELECT t.{first}, t.{second} FROM {wanted} JOIN {table} t ON t.{first} = {a} AND t.{second} = {b}"
    return conn.execute(sql, values)


def _pairs_rows(cursor: Any) -> set[tuple[str, str]]:
    return set() if cursor is None else {(row[0], row[1]) for row in cursor.fetchall()}




def _channel_for_send(conn: sqlite3.Connection, channel_id: str) -> tuple[ChannelRecord, dict[str, bool]] | None:
    channel = get_channel(conn, channel_id)
    if channel is None or channel.destroyed:
        return None
    listeners = {
        row[0]: bool(row[1])
        for row in conn.execute("SELECT user_id, manager FROM channel_listeners WHERE channel_id = ?", (channel_id,))
    }
    return channel, listeners



def send_channel_messages(
    conn: sqlite3.Connection, ops: list[tuple[InboxState, Outgoing, SendPolicy]]
) -> list[SendResult]:
    """Check and store channel messages, in order: one message row, one inbox row per owner, in bulk.

    Checks for each message, in order: the sender may send at all (247), a resend
    of a known client_msg_id (the original ack), the channel exists and is not
    destroyed (253), then the gateway's rule (``policy.channel_route``) for the
    sender's role (owner, manager, listener, none) and the channel's
    ``callback_only``: a code, or where the message goes (``ROUTE_*``).
    ``ROUTE_LISTENERS`` owners: every listener, the owner and the sender, or with
    ``to_users`` (listeners or the owner only, else 21) those and the sender.
    ``ROUTE_OWNER``: the owner and the sender, ``to_users`` set to ``[owner]``.
    ``ROUTE_CALLBACK``: the sender only (``only_for``), ``to_users`` ``[owner]``,
    and the result's ``callback`` names the URL. Channel operations never run
    inside this group (only sends do), so the listener lists read once here hold.
    """
    msgs = [msg for _, msg, _ in ops]
    batch = SendBatch.read(conn, ops[0][0], msgs, {m.from_user for m in msgs})
    channels: dict[str, tuple[ChannelRecord, dict[str, bool]] | None] = {}
    results: list[SendResult] = []
    for msg, (_, _, policy) in zip(msgs, ops, strict=True):
        sender, channel_id = msg.from_user, msg.conv.target
        early = batch.answered_before(msg)
        if early is not None:
            results.append(early)
            continue
        if channel_id not in channels:
            channels[channel_id] = _channel_for_send(conn, channel_id)
        found = channels[channel_id]
        if found is None:
            results.append(SendResult(ErrorCode.NOT_EXIST))
            continue
        if policy.channel_route is None:
            results.append(SendResult(ErrorCode.NOT_IMPLEMENTED))
            continue
        channel, listeners = found
        if sender == channel.owner:
            role = ROLE_OWNER
        elif sender in listeners:
            role = ROLE_MANAGER if listeners[sender] else ROLE_LISTENER
        else:
            role = ROLE_NONE
        code, route = policy.channel_route(role, channel.callback_only)
        if code:
            results.append(SendResult(code))
            continue
        only_for = None
        callback = None
        owners: Any
        if route == ROUTE_LISTENERS:
            if msg.to_users:
                if not all(u in listeners or u == channel.owner for u in msg.to_users):
                    results.append(SendResult(ErrorCode.NOT_IN_CHANNEL))
                    continue
                owners = dict.fromkeys((*msg.to_users, sender))
            else:
                owners = {**listeners, channel.owner: False, sender: False}
        else:
            msg.to_users = [channel.owner]  # the message says where it went; never to another listener
            if route == ROUTE_OWNER:
                owners = dict.fromkeys((channel.owner, sender))
            else:
                owners, only_for, callback = [sender], sender, channel.callback
        if msg.persist_flag == PERSIST_TRANSPARENT:
            live = [sender] if route == ROUTE_CALLBACK else list(owners)
            results.append(
                SendResult(ErrorCode.SUCCESS, msg.message_id, msg.server_time, live_only=live, callback=callback)
            )
            continue
        seqs = batch.store(msg, owners, only_for)
        results.append(SendResult(ErrorCode.SUCCESS, msg.message_id, msg.server_time, seqs, callback=callback))
    batch.write()
    return results
