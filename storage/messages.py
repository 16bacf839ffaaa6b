"""Messages and inboxes: plain ``fn(conn, ...)`` operations that run on the writer thread.

Each user has an inbox: rows (user_id, seq) → message_id with seq increasing
per user. A send inserts the message once and one inbox row per recipient (and
one for the sender, for their other devices); the inbox rows go to a log first
and reach ``inbox`` and the conversation index later, many at a time (see
``storage.inboxes``). Sequence numbers come from ``InboxState``, a cache owned
by the writer thread, so a send costs inserts only; it is right because this
thread is the only writer of inboxes and inbox rows are never removed.

What a user sees of a message: it is in their inbox (pull), or in a
conversation they are part of and not hidden from them (history); and they
have not deleted it (``deleted_messages``). A deleted message leaves a hole
in a user's sequence, and clients skip holes. (A failed operation does not:
after any rollback the writer has the heads reloaded from the tables.)
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from operator import itemgetter
from typing import Any, Final

import msgpack

from protocol.codes import ContentType, ConversationType, ErrorCode, PersistFlag
from storage import conversation_table
from storage.engine import in_list, json_array_contains
from storage.inboxes import ConversationKey, InboxState
from storage.search import SearchQuery, index_row
from storage.search_backends import SEARCH

# Plain ints on the hot path (an IntEnum compares slower); their meaning lives in protocol.codes.
PRIVATE: Final = int(ConversationType.PRIVATE)
GROUP: Final = int(ConversationType.GROUP)
CHANNEL: Final = int(ConversationType.CHANNEL)
#: ``GroupMemberType.REMOVED``; storage.groups keeps the same number.
MEMBER_REMOVED: Final = 4
RECALL_CONTENT_TYPE: Final = int(ContentType.RECALL)
PERSIST_TRANSPARENT: Final = int(PersistFlag.TRANSPARENT)
#: The search index every write keeps in step with the messages, in the same transaction (issue 26).
#: SQLite's is FTS5; a PostgreSQL engine brings its own next to it (docs/ARCHITECTURE.md "Search").


@dataclass(frozen=True, slots=True)
class Conversation:
    type: int
    target: str
    line: int = 0


@dataclass(slots=True)
class Outgoing:
    """A validated message ready to store; built on the trio side."""

    message_id: int
    server_time: int
    conv: Conversation
    from_user: str
    content: dict
    persist_flag: int
    to_users: list[str] | None = None
    client_msg_id: str | None = None

    def to_wire(self) -> dict:
        return message_wire(self)


def message_wire(msg: Outgoing | StoredMessage) -> dict:
    """The message map clients see in pushes, pulls and history (docs/PROTOCOL.md)."""
    wire = {
        "message_id": msg.message_id,
        "conv": {"type": msg.conv.type, "target": msg.conv.target, "line": msg.conv.line},
        "from": msg.from_user,
        "content": msg.content,
        "server_time": msg.server_time,
    }
    if msg.to_users:
        wire["to_users"] = msg.to_users
    return wire


@dataclass(slots=True)
class SendResult:
    """What a send did. ``code`` is an ErrorCode; on success ``seqs`` maps user → inbox seq."""

    code: int
    message_id: int = 0
    server_time: int = 0
    seqs: dict[str, int] = field(default_factory=dict)
    duplicate: bool = False
    live_only: list[str] = field(default_factory=list)  # transparent: deliver to these users' live devices
    callback: str | None = None  # a channel message for its callback URL (storage.channels.ROUTE_CALLBACK)
    # A cluster: the recipients with no live connection on any node, found in the batch's transaction
    # (gateway.cluster.postgres.wiring); None: ask this node's presence.
    cluster_offline: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class StoredMessage:
    message_id: int
    conv: Conversation
    from_user: str
    content: dict
    server_time: int
    to_users: list[str] | None
    persist_flag: int

    def to_wire(self) -> dict:
        return message_wire(self)


_MESSAGE_COLUMNS: Final = (
    "m.message_id, m.conv_type, m.conv_target, m.conv_line, m.from_user, m.content, m.server_time, m.to_users,"
    " m.persist_flag"
)
#: Rows a user deleted for themselves are skipped everywhere a user reads.
_NOT_DELETED: Final = (
    "NOT EXISTS (SELECT 1 FROM deleted_messages d WHERE d.user_id = ? AND d.message_id = m.message_id)"
)
#: Roughly what a pulled message adds to a RESPONSE besides its content (ids, conversation, seq).
PULL_ROW_OVERHEAD: Final = 160


def _message(row: Sequence) -> StoredMessage:
    return StoredMessage(
        message_id=row[0],
        conv=Conversation(row[1], row[2], row[3]),
        from_user=row[4],
        content=msgpack.unpackb(row[5]),
        server_time=row[6],
        to_users=json.loads(row[7]) if row[7] else None,
        persist_flag=row[8],
    )


def conversation_key(conv: Conversation, from_user: str) -> str:
    """One name for a conversation from both sides: a private chat is its two user ids, sorted."""
    if conv.type == PRIVATE:
        return "\n".join(sorted((from_user, conv.target)))  # ids are printable: no newline in them
    return conv.target


INSERT_MESSAGE: Final = (
    "INSERT INTO messages (message_id, conv_type, conv_target, conv_line, conv_key, from_user, content,"
    " server_time, to_users, persist_flag, only_for) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_CLIENT_MSG_ID: Final = (
    "INSERT INTO client_message_ids (from_user, client_msg_id, message_id, server_time, seq)"
    " VALUES (?, ?, ?, ?, ?)"
)


#: Content is stored as MessagePack; one Packer reused (this runs on the writer thread only).
_pack_content = msgpack.Packer(use_bin_type=True).pack


def message_index_key(msg: Outgoing) -> ConversationKey:
    """The message's conversation as ``conversation_index`` keys it."""
    return (msg.conv.type, conversation_key(msg.conv, msg.from_user), msg.conv.line)


def _stored_key(message: StoredMessage) -> ConversationKey:
    """A stored message's conversation as ``conversation_index`` and ``storage.conversation_table`` key it."""
    return (message.conv.type, conversation_key(message.conv, message.from_user), message.conv.line)


def message_row(msg: Outgoing, key: ConversationKey, only_for: str | None) -> tuple:
    return (
        msg.message_id, msg.conv.type, msg.conv.target, msg.conv.line, key[1], msg.from_user,
        _pack_content(msg.content), msg.server_time,
        json.dumps(msg.to_users) if msg.to_users else None, msg.persist_flag, only_for,
    )  # fmt: skip


def _append(
    conn: sqlite3.Connection,
    inboxes: InboxState,
    msg: Outgoing,
    owners: Sequence[str],
    only_for: str | None = None,
) -> dict[str, int]:
    """Insert the message row and one inbox row per owner; return owner → seq."""
    key = message_index_key(msg)
    conn.execute(INSERT_MESSAGE, message_row(msg, key, only_for))
    search_row = index_row(msg.message_id, msg.content)  # notifications and notices are not indexed: None
    if search_row is not None:
        SEARCH.index(conn, [search_row])
    # One reserve for all owners: sorted, as a shared database locks their head rows (storage.postgres.seqs).
    firsts = inboxes.reserve(conn, dict.fromkeys(owners, 1))
    seqs = {owner: firsts[owner] for owner in dict.fromkeys(owners)}
    inboxes.append(conn, [(owner, seq, msg.message_id) for owner, seq in seqs.items()])
    return seqs


def store_notification(
    conn: sqlite3.Connection, inboxes: InboxState, msg: Outgoing, owners: Sequence[str]
) -> SendResult:
    """Store a server-made message (a group notification) for ``owners``; transparent ones only report them."""
    if msg.persist_flag == PERSIST_TRANSPARENT:
        return SendResult(ErrorCode.SUCCESS, msg.message_id, msg.server_time, live_only=list(owners))
    if not owners:
        return SendResult(ErrorCode.SUCCESS, msg.message_id, msg.server_time)
    seqs = _append(conn, inboxes, msg, owners)
    return SendResult(ErrorCode.SUCCESS, msg.message_id, msg.server_time, seqs)


@dataclass(frozen=True, slots=True)
class PullResult:
    messages: list[tuple[int, StoredMessage]]  # (seq, message), in seq order
    head: int


@dataclass(frozen=True, slots=True)
class PulledRows:
    """A page of the inbox as stored: ``rows`` are ``(seq, *MESSAGE_COLUMNS)``, content still packed.

    For the gateway's pull, which splices the stored content into its answer
    instead of decoding and encoding it again (``gateway.domain.messaging``).
    """

    rows: list[tuple[Any, ...]]
    head: int


#: The columns of a row of ``PulledRows.rows`` after its seq, in order.
MESSAGE_COLUMNS: Final = (
    "message_id", "conv_type", "conv_target", "conv_line", "from_user", "content", "server_time", "to_users",
    "persist_flag",
)  # fmt: skip


def pull(
    conn: sqlite3.Connection,
    user_id: str,
    after_seq: int,
    limit: int,
    min_time: int,
    max_bytes: int,
) -> PullResult:
    """``pull_rows`` with each message decoded."""
    page = pull_rows(conn, user_id, after_seq, limit, min_time, max_bytes)
    return PullResult([(row[0], _message(row[1:])) for row in page.rows], page.head)


def pull_rows(
    conn: sqlite3.Connection,
    user_id: str,
    after_seq: int,
    limit: int,
    min_time: int,
    max_bytes: int,
) -> PulledRows:
    """The user's inbox after ``after_seq``, oldest first; only messages at or after ``min_time``.

    A page holds at most ``limit`` messages and, past its first message, about
    ``max_bytes``, so that the RESPONSE fits a frame. A page shorter than
    ``limit`` can therefore mean "more to come": clients pull until a page is
    empty or reaches ``head``.

    Reads only committed tables (a reader connection runs it: ``storage.readers``),
    in one read transaction. The merged rows (``inbox``) come first; only if
    they run out does the page go on with the rows still in the log
    (``inbox_recent``), which all have higher seqs.

    With ``min_time`` set, the page starts at the first message that young
    (``first_seq_since``: a binary search over the inbox's primary key), so a new
    device's first pull costs the same in a 100-message inbox as in a
    million-message one instead of walking every older row.
    """
    if min_time > 0:
        after_seq = max(after_seq, first_seq_since(conn, user_id, min_time) - 1)
    rows = conn.execute(
        f"SELECT i.seq, {_MESSAGE_COLUMNS} FROM inbox i JOIN messages m ON m.message_id = i.message_id"
        f" WHERE i.user_id = ? AND i.seq > ? AND m.server_time >= ? AND {_NOT_DELETED}"
        " ORDER BY i.seq LIMIT ?",
        (user_id, after_seq, min_time, user_id, limit),
    ).fetchall()
    if len(rows) < limit:
        # The log is at most a few thousand rows (storage.inboxes.MERGE_ROWS) and has no index: a scan.
        rows += conn.execute(
            f"SELECT r.seq, {_MESSAGE_COLUMNS} FROM inbox_recent r JOIN messages m ON m.message_id = r.message_id"
            f" WHERE r.user_id = ? AND r.seq > ? AND m.server_time >= ? AND {_NOT_DELETED}"
            " ORDER BY r.seq LIMIT ?",
            (user_id, after_seq, min_time, user_id, limit - len(rows)),
        ).fetchall()
    size = 0
    for count, row in enumerate(rows):
        size += len(row[6]) + PULL_ROW_OVERHEAD
        if count and size > max_bytes:
            del rows[count:]
            break
    return PulledRows(rows, committed_head(conn, user_id))


def committed_head(conn: sqlite3.Connection, user_id: str) -> int:
    """The user's highest committed seq (0 for an empty inbox), from the tables alone."""
    row = conn.execute(
        "SELECT MAX(s) FROM (SELECT MAX(seq) AS s FROM inbox_recent WHERE user_id = ?"
        " UNION ALL SELECT MAX(seq) FROM inbox WHERE user_id = ?) AS heads",
        (user_id, user_id),
    ).fetchone()
    return row[0] or 0


def first_seq_since(conn: sqlite3.Connection, user_id: str, min_time: int) -> int:
    """The lowest merged seq whose message is at least ``min_time`` old, by binary search; 1 if none.

    Seqs of a user are handed out in the order messages are stored, and their
    ``server_time`` grows with it (message ids and times come from one clock, see
    ``gateway.ids``), so ``server_time`` along a user's seqs is sorted, up to the
    clock's own hiccups; a probe that lands on a hole (a message deleted for
    everyone) looks at the next row that exists. Only ``inbox`` is searched: the
    log holds the newest few thousand rows, which the page query filters itself.
    Each probe is two primary-key lookups: about 2·log2(n) of them in all.
    """
    probe = (
        "SELECT i.seq, m.server_time FROM inbox i JOIN messages m ON m.message_id = i.message_id"
        " WHERE i.user_id = ? AND i.seq >= ? AND i.seq < ? ORDER BY i.seq LIMIT 1"
    )
    top = conn.execute("SELECT MAX(seq) FROM inbox WHERE user_id = ?", (user_id,)).fetchone()[0]
    if not top:
        return 1
    # Every message below lo is older than min_time; every one at or above hi is not (hi = top + 1:
    # none is). Holes (no row, or no message) satisfy both, so they never stop the search.
    lo, hi = 1, top + 1
    while lo < hi:
        mid = (lo + hi) // 2
        row = conn.execute(probe, (user_id, mid, hi)).fetchone()
        if row is None or row[1] >= min_time:
            hi = mid  # [mid, hi) holds only holes, or starts (after holes) with a young enough message
        else:
            lo = row[0] + 1
    return lo


def head(conn: sqlite3.Connection, inboxes: InboxState, user_id: str) -> int:
    return inboxes.current(conn, user_id)


def last_message_id(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COALESCE(MAX(message_id), 0) FROM messages").fetchone()[0]


def get_message(conn: sqlite3.Connection, message_id: int) -> StoredMessage | None:
    row = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages m WHERE m.message_id = ?", (message_id,)
    ).fetchone()
    return None if row is None else _message(row)


def _holders(conn: sqlite3.Connection, message_id: int) -> tuple[StoredMessage, list[str]] | None:
    """The message and who still sees it: its parties, less a hidden side and those who deleted it.

    A group message's parties are the group's current members (of them, with ``to_users``, only
    those named and the sender).
    """
    row = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS}, m.only_for FROM messages m WHERE m.message_id = ?", (message_id,)
    ).fetchone()
    if row is None:
        return None
    message, only_for = _message(row), row[9]
    if message.conv.type == GROUP:
        members = [
            r[0]
            for r in conn.execute(
                "SELECT user_id FROM group_members WHERE group_id = ? AND type != ? ORDER BY user_id",
                (message.conv.target, MEMBER_REMOVED),
            )
        ]
        if message.to_users:
            named = {*message.to_users, message.from_user}
            members = [user_id for user_id in members if user_id in named]
        parties = members
    elif message.conv.type == CHANNEL and only_for is None:
        if message.to_users:
            parties = list(dict.fromkeys((*message.to_users, message.from_user)))
        else:
            parties = [
                r[0]
                for r in conn.execute(
                    "SELECT user_id FROM channel_listeners WHERE channel_id = ?"
                    " UNION SELECT owner FROM channels WHERE channel_id = ?"
                    " UNION SELECT ? ORDER BY 1",
                    (message.conv.target, message.conv.target, message.from_user),
                )
            ]
    else:
        parties = (
            [only_for] if only_for is not None else list(dict.fromkeys((message.from_user, message.conv.target)))
        )
    if not parties:
        return message, []
    among, values = in_list(conn, "user_id", parties)
    deleted = {
        user_id
        for (user_id,) in conn.execute(
            f"SELECT user_id FROM deleted_messages WHERE message_id = ? AND {among}", (message_id, *values)
        )
    }
    return message, [user_id for user_id in parties if user_id not in deleted]


def delete_for_user(conn: sqlite3.Connection, user_id: str, message_id: int, now_ms: int) -> bool:
    """The message is gone for this user, for good; False if they did not have it."""
    found = _holders(conn, message_id)
    if found is None or user_id not in found[1]:
        return False
    conn.execute(
        "INSERT INTO deleted_messages (user_id, message_id, deleted_at) VALUES (?, ?, ?)",
        (user_id, message_id, now_ms),
    )
    conversation_table.refresh(conn, user_id, _stored_key(found[0]))
    return True


def delete_for_everyone(conn: sqlite3.Connection, message_id: int) -> list[str] | None:
    """Remove the message for everyone, content included; None if unknown.

    Returns the users who still had it (to tell their devices). The message
    row goes, so its content is erased from the database (an operator's
    delete is often a removal for legal or moderation reasons); the inbox rows
    that pointed at it stay as holes. An idempotency id pointing at it still
    answers with the original ack, since the message was sent.
    """
    found = _holders(conn, message_id)
    if found is None:
        return None
    message = found[0]
    conn.execute(
        "DELETE FROM conversation_index"
        " WHERE conv_type = ? AND conv_key = ? AND conv_line = ? AND message_id = ?",
        (message.conv.type, conversation_key(message.conv, message.from_user), message.conv.line, message_id),
    )  # if it is still in the log, the merge finds no message to index
    conn.execute("DELETE FROM messages WHERE message_id = ?", (message_id,))
    conn.execute("DELETE FROM deleted_messages WHERE message_id = ?", (message_id,))
    conversation_table.changed(conn, _stored_key(message), message_id, _listed(message), False)
    SEARCH.remove(conn, [message_id])
    return found[1]


def _listed(message: StoredMessage) -> bool:
    """Is the stored message in its holders' conversation lists (by its content's persist flag)?"""
    return conversation_table.is_listed(message.content.get("persist_flag", conversation_table.DEFAULT_FLAG))


def _set_content(conn: sqlite3.Connection, message: StoredMessage, content: dict) -> None:
    """Replace a message's content (update, recall). ``persist_flag`` is written with it, so that the column
    stays the content's flag (``storage.conversation_table`` reads it), and the conversation rows it can move
    are refreshed."""
    flag = content.get("persist_flag", conversation_table.DEFAULT_FLAG)
    conn.execute(
        "UPDATE messages SET content = ?, persist_flag = ? WHERE message_id = ?",
        (msgpack.packb(content, use_bin_type=True), flag, message.message_id),
    )
    conversation_table.changed(
        conn, _stored_key(message), message.message_id, _listed(message), conversation_table.is_listed(flag)
    )


def _only_holder(message: StoredMessage, holders: list[str]) -> str | None:
    """The ``only_for`` of a private message's notice that only one side still holds (the other deleted the
    original): that side. A private message's holders are then always its ``only_for``, or both sides, which
    history and the conversation list (``storage.conversation_table``) read from the conversation index."""
    return holders[0] if message.conv.type == PRIVATE and len(holders) == 1 else None


#: The gateway's rule for recalling another member's group message: ``(operator's member type) -> allowed``.
GroupRecallCheck = Callable[[int], bool]


def recall(
    conn: sqlite3.Connection,
    inboxes: InboxState,
    operator: str,
    message_id: int,
    window_ms: int,
    notice: Outgoing,
    group_recall: GroupRecallCheck | None = None,
) -> tuple[SendResult, Outgoing | None]:
    """Replace a message with a recall notice for everyone, and deliver the notice.

    ``notice`` is the type-80 message to append; what is stored is a copy with the original's
    conversation, sender and ``to_users``, returned with the result on success (None otherwise).
    ``notice`` itself is left as it was: this runs on the writer thread, and the caller's object is
    the caller's. Codes: 253 unknown or already recalled, 248 not the sender (in a group: nor
    allowed by ``group_recall`` for the operator's member type), 24 past the window. The notice
    goes to those who still have the message.
    """
    found = _holders(conn, message_id)
    if found is None or found[0].content.get("type") == RECALL_CONTENT_TYPE:
        return SendResult(ErrorCode.NOT_EXIST), None
    message, holders = found
    if message.from_user != operator:
        if message.conv.type != GROUP or group_recall is None:
            return SendResult(ErrorCode.NOT_RIGHT), None
        row = conn.execute(
            "SELECT type FROM group_members WHERE group_id = ? AND user_id = ?", (message.conv.target, operator)
        ).fetchone()
        if row is None or row[0] == MEMBER_REMOVED or not group_recall(row[0]):
            return SendResult(ErrorCode.NOT_RIGHT), None
    if notice.server_time - message.server_time > window_ms:
        return SendResult(ErrorCode.RECALL_TIME_EXPIRED), None
    _set_content(conn, message, notice.content)
    SEARCH.remove(conn, [message_id])  # a recalled message is found by nobody
    stored = replace(
        notice,
        conv=message.conv,
        from_user=message.from_user,
        to_users=list(message.to_users) if message.to_users else None,
    )
    if not holders:
        return SendResult(ErrorCode.SUCCESS, stored.message_id, stored.server_time, {}), stored
    seqs = _append(conn, inboxes, stored, holders, _only_holder(message, holders))
    return SendResult(ErrorCode.SUCCESS, stored.message_id, stored.server_time, seqs), stored


UPDATE_CONTENT_TYPE: Final = int(ContentType.UPDATE)


def update(
    conn: sqlite3.Connection,
    inboxes: InboxState,
    operator: str | None,
    message_id: int,
    content: dict,
    notice: Outgoing | None,
    may_update: Callable[[StoredMessage], bool] | None = None,
) -> SendResult:
    """Replace a message's content for everyone who has it, and deliver an update notice (type 81).

    ``operator`` None is the admin API (any message); otherwise only the sender, and only when
    ``may_update(message)`` (the gateway's rule: which content types). The notice (ids and content set by
    the caller; its conversation, sender and ``to_users`` here from the original) goes to every inbox that
    still holds the message, so a device that was offline pulls it. Codes: 253 unknown or recalled,
    248 not the sender or a type that may not be updated.
    """
    found = _holders(conn, message_id)
    if found is None or found[0].content.get("type") == RECALL_CONTENT_TYPE:
        return SendResult(ErrorCode.NOT_EXIST)
    message, holders = found
    if operator is not None and (message.from_user != operator or (may_update is not None and not may_update(message))):
        return SendResult(ErrorCode.NOT_RIGHT)
    _set_content(conn, message, content)
    SEARCH.remove(conn, [message_id])  # found by its new text from now on
    search_row = index_row(message_id, content)
    if search_row is not None:
        SEARCH.index(conn, [search_row])
    if notice is None:  # not distributed: only the stored content changes
        return SendResult(ErrorCode.SUCCESS)
    notice.conv = message.conv
    notice.from_user = message.from_user
    if not holders:
        return SendResult(ErrorCode.SUCCESS, notice.message_id, notice.server_time, {})
    notice.to_users = list(message.to_users) if message.to_users else None
    seqs = _append(conn, inboxes, notice, holders, _only_holder(message, holders))
    return SendResult(ErrorCode.SUCCESS, notice.message_id, notice.server_time, seqs)


def held_message(conn: sqlite3.Connection, user_id: str, message_id: int) -> StoredMessage | None:
    """The message if ``user_id`` still holds it (a party to it who did not delete it), else None."""
    found = _holders(conn, message_id)
    if found is None or user_id not in found[1]:
        return None
    return found[0]


def remote_history(
    conn: sqlite3.Connection,
    user_id: str,
    conv: Conversation,
    before_id: int,
    count: int,
) -> list[StoredMessage]:
    """Up to ``count`` of the user's messages in ``conv`` (as the user sees it) before ``before_id``, newest first.

    The conversation's messages are in ``conversation_index`` or, not yet
    merged, named by the log (``inbox_recent``): the newest ``count`` of each
    part, put together. Reads committed tables only (a reader connection runs it).
    For a group, see ``group_history`` (this one does not check membership).
    """
    visible = f"(m.only_for IS NULL OR m.only_for = ?) AND {_NOT_DELETED}"
    return _history(conn, conv, conversation_key(conv, user_id), before_id, count, visible, (user_id, user_id))


def group_history(
    conn: sqlite3.Connection, user_id: str, conv: Conversation, before_id: int, count: int
) -> list[StoredMessage] | None:
    """A group's history as a current member sees it; None if the user is not one.

    Only messages from the member's (latest) join time on, and of those sent
    with ``to_users`` only the ones that name the user or that the user sent.
    """
    row = conn.execute(
        "SELECT type, join_time FROM group_members WHERE group_id = ? AND user_id = ?", (conv.target, user_id)
    ).fetchone()
    if row is None or row[0] == MEMBER_REMOVED:
        return None
    visible = (
        f"m.server_time >= ? AND (m.to_users IS NULL OR m.from_user = ? OR {json_array_contains(conn, 'm.to_users')})"
        f" AND {_NOT_DELETED}"
    )
    return _history(conn, conv, conv.target, before_id, count, visible, (row[1], user_id, user_id, user_id))


def channel_history(
    conn: sqlite3.Connection, user_id: str, conv: Conversation, before_id: int, count: int
) -> list[StoredMessage]:
    """A channel's history as the user sees it: posts to everyone, and the messages that name the
    user in ``to_users`` or that the user sent (one kept for its sender only stays the sender's).

    The gateway checks first that the user may read the channel (``gateway.domain.channels``).
    """
    visible = (
        "(m.only_for IS NULL OR m.only_for = ?)"
        f" AND (m.to_users IS NULL OR m.from_user = ? OR {json_array_contains(conn, 'm.to_users')})"
        f" AND {_NOT_DELETED}"
    )
    return _history(conn, conv, conv.target, before_id, count, visible, (user_id, user_id, user_id, user_id))


def _history(
    conn: sqlite3.Connection,
    conv: Conversation,
    key: str,
    before_id: int,
    count: int,
    visible: str,
    visible_params: tuple[Any, ...],
) -> list[StoredMessage]:
    rows = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM conversation_index c JOIN messages m ON m.message_id = c.message_id"
        " WHERE c.conv_type = ? AND c.conv_key = ? AND c.conv_line = ? AND c.message_id < ?"
        f" AND {visible} ORDER BY c.message_id DESC LIMIT ?",
        (conv.type, key, conv.line, before_id, *visible_params, count),
    ).fetchall()
    recent = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages m WHERE m.message_id IN (SELECT message_id FROM inbox_recent)"
        " AND m.conv_type = ? AND m.conv_key = ? AND m.conv_line = ? AND m.message_id < ?"
        f" AND {visible} ORDER BY m.message_id DESC LIMIT ?",
        (conv.type, key, conv.line, before_id, *visible_params, count),
    ).fetchall()
    if recent:
        rows += recent
        rows.sort(key=itemgetter(0), reverse=True)
        del rows[count:]
    return [_message(row) for row in rows]



def search(conn: sqlite3.Connection, query: SearchQuery) -> list[StoredMessage]:
    """The messages ``query`` finds, newest first (``storage.search``; a reader connection runs it)."""
    return [_message(row) for row in SEARCH.search(conn, query)]


def rebuild_search_range(conn: sqlite3.Connection, after_id: int, count: int) -> tuple[int, int]:
    """One step of rebuilding the search index: the next ``count`` messages after ``after_id``, re-indexed
    from their stored content (a writer operation); (last id done or 0 when finished, how many indexed)."""
    return SEARCH.rebuild_range(conn, after_id, count)
