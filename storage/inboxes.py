"""What the writer thread keeps about inboxes: each user's head, and the rows not yet merged.

Why rows wait before they reach their indexes: a commit costs mostly per page
it writes, and an index keyed by user (``inbox``) or by conversation
(``conversation_index``) puts each message's entries on pages of their own, one
per recipient and one for the conversation. Written at every commit, that was
three scattered pages per message, half of the writer's CPU at window 1.
So a send appends its inbox rows to ``inbox_recent``, a plain log whose new
rows share its last page whoever they belong to, and the writer keeps what
it needs of that log in memory: each user's highest seq in it and its row count
(reads run on reader connections over the tables, ``storage.readers``). Once enough
rows have piled up, ``merge`` moves them all into ``inbox`` and
``conversation_index`` in one statement each, sorted, so a user's page takes
many rows at once; the log is then emptied.

How many is enough follows the load. A merge pauses the batch it runs in
(~12 ms for 4096 rows of 100 users), which a quiet gateway's latency shows: at
2000 msg/s, merging at 4096 rows put the p99 at 5-15 ms instead of ~5. A busy
writer, whose sends come in big groups, merges at ``MERGE_ROWS``, where a merge
costs the least per row; a quiet one, whose groups hold a message or two,
merges at an eighth of that, in pauses of a millisecond or two.

The tables are the truth, in every committed state: a user's inbox is their
rows in ``inbox`` followed by their rows in ``inbox_recent`` (a merge moves the
whole log, so the merged seqs of a user are all below the ones still in the
log), and a message is in its conversation's index, or its inbox rows are in
the log. What is kept in memory is reloaded from the log when it might disagree:
at first use (after a restart or a crash) and after any rollback in the writer
(``forget``), so it never outlives a write that did not commit.

Only the writer touches an ``InboxState``, whichever thread holds its connection (a small batch
runs on the trio thread, see ``storage.writer``); every method takes the writer's connection,
inside the writer's transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from operator import itemgetter

from storage import conversation_table
from storage.engine import insert_many
from storage.search_backends import merge_recent

#: Most rows the log holds before a send merges it. Bigger merges put more rows on each page they
#: write (with 100 busy users, ~40 per page at 4096) but pause that one batch longer.
MERGE_ROWS = 4096
#: The log is merged at ``MERGE_ROWS_PER_GROUP_ROW`` times the rows a send group usually brings
#: (a moving average), within [``MERGE_ROWS`` / 8, ``MERGE_ROWS``]. Window 1 of the bench brings
#: ~40 rows a group (merges at 4096), 2000 msg/s ~2-4 (merges at 512).
MERGE_ROWS_PER_GROUP_ROW = 100

#: A conversation as the index keys it: (conv_type, conv_key, conv_line).
ConversationKey = tuple[int, str, int]

_seq = itemgetter(0)

_LOAD_RECENT = "SELECT user_id, MAX(seq), COUNT(*) FROM inbox_recent GROUP BY user_id"
# Sorted by key, so that each page of the index is found once and takes its rows in order.
_MERGE_INBOX = (
    "INSERT INTO inbox (user_id, seq, message_id)"
    " SELECT user_id, seq, message_id FROM inbox_recent ORDER BY user_id, seq"
)
# Every stored message has inbox rows, written with it: the log names the messages to index.
# DO NOTHING on a conflict: the index is a set, and a merge that failed on a duplicate would stop every
# send. (Both databases take ON CONFLICT; SQLite needs the WHERE before it to parse an INSERT ... SELECT.)
_MERGE_CONVERSATIONS = (
    "INSERT INTO conversation_index (conv_type, conv_key, conv_line, message_id)"
    " SELECT m.conv_type, m.conv_key, m.conv_line, m.message_id FROM messages m"
    " WHERE m.message_id IN (SELECT message_id FROM inbox_recent) ORDER BY 1, 2, 3, 4 ON CONFLICT DO NOTHING"
)


class InboxState:
    """Last seq per user (a cache), and each user's last seq in ``inbox_recent``; writer thread only.

    Args:
        max_heads: Most heads cached; past it the cache starts over (each head reloads when next used).
    """

    #: False: the heads are this writer's to hand out (one owner of the database). True
    #: (``storage.postgres.seqs.SharedInboxState``): reserved in the database, as several writers share it;
    #: a send group then numbers its rows from 1 per owner and shifts them once ``reserve`` has answered.
    shared = False

    def __init__(self, max_heads: int = 200_000) -> None:
        self._heads: dict[str, int] = {}
        self._max_heads = max_heads
        self._loaded = False  # the two below match inbox_recent
        self._recent_heads: dict[str, int] = {}  # user -> highest seq in the log
        self._recent_rows = 0
        self._rows_per_append = 0.0  # moving average of the rows an append brings
        self._merge_early = False  # set by may_merge: the next append merges, on the writer thread

    # --- heads ---------------------------------------------------------------------------------

    def current(self, conn: sqlite3.Connection, user_id: str) -> int:
        """The user's highest seq (0 for an empty inbox)."""
        head = self._heads.get(user_id)
        if head is None:
            self._load(conn)
            head = self._recent_heads.get(user_id)
            if head is None:
                row = conn.execute("SELECT MAX(seq) FROM inbox WHERE user_id = ?", (user_id,)).fetchone()
                head = row[0] or 0
            if len(self._heads) >= self._max_heads:
                self._heads.clear()  # cheap and correct: every entry reloads
            self._heads[user_id] = head
        return head

    def take(self, conn: sqlite3.Connection, user_id: str) -> int:
        """The user's next seq, given out now."""
        seq = self.current(conn, user_id) + 1
        self._heads[user_id] = seq
        return seq

    def reserve(self, conn: sqlite3.Connection, counts: Mapping[str, int]) -> dict[str, int]:
        """Take ``counts[user]`` consecutive seqs for each user; each one's first, sorted by user.

        ``storage.engine.SeqAllocator``: the sorted order is what a shared database locks rows in.
        """
        firsts = {}
        for user_id in sorted(counts):
            first = self.current(conn, user_id) + 1
            self._heads[user_id] = first + counts[user_id] - 1
            firsts[user_id] = first
        return firsts

    def advance(self, taken: dict[str, int]) -> None:
        """Record seqs given out by ``send_private_group`` (each above its user's ``current``)."""
        self._heads.update(taken)

    def forget(self) -> None:
        """Reload heads and what is kept of the log from the tables when next used.

        The writer calls this after any rollback; tests call it after changing the tables under us.
        """
        self._heads.clear()
        self._loaded = False

    # --- rows ----------------------------------------------------------------------------------

    def append(self, conn: sqlite3.Connection, rows: list[tuple[str, int, int]]) -> None:
        """Store inbox rows (user_id, seq, message_id) of messages just inserted, each user's in seq order.

        Merges the log when it has grown long enough (see the module docstring).
        """
        self._load(conn)  # first: a load after the insert would copy these rows twice
        insert_many(conn, "INSERT INTO inbox_recent (user_id, seq, message_id) VALUES (?, ?, ?)", rows)
        self._recent_rows += len(rows)
        self._rows_per_append += (len(rows) - self._rows_per_append) / 16
        if self._merge_early or self._recent_rows >= self.merge_at():
            self.merge(conn)
            return
        heads = self._recent_heads
        for user_id, seq, _ in rows:
            heads[user_id] = seq

    def merge(self, conn: sqlite3.Connection) -> None:
        """Move every row of the log into ``inbox`` and ``conversation_index``, and empty it."""
        conn.execute(_MERGE_INBOX)
        conn.execute(_MERGE_CONVERSATIONS)
        conversation_table.merged(conn)  # each user's conversations, for the list (storage.conversation_table)
        conn.execute("DELETE FROM inbox_recent")
        merge_recent(conn)  # the search tokens of the same messages: one FTS5 segment per merge
        self._merge_early = False
        self._recent_heads = {}
        self._recent_rows = 0

    def merge_at(self) -> int:
        """How many rows in the log make the next append merge it, under the current load."""
        wanted = int(self._rows_per_append * MERGE_ROWS_PER_GROUP_ROW)
        return min(MERGE_ROWS, max(MERGE_ROWS // 8, wanted, 1))

    def may_merge(self, appends: int, rows: int) -> bool:
        """Could ``appends`` appends, ``rows`` rows in all, merge the log (or first load it)?

        Asked before a batch runs on the trio thread, where a merge's pause would stop every
        connection (storage.writer). Each append moves the average rows per append at most a
        sixteenth of the way down, so the merge point cannot fall below the bound used here.
        A yes also makes the next append merge, early: the batch that was refused runs on the
        writer thread and merges there, and the batches after it fit again (without this,
        every batch between the bound and the merge point would go to the thread).
        """
        if not self._loaded or self._merge_early:
            return True
        lowest_average = self._rows_per_append * (15 / 16) ** appends
        lowest = min(MERGE_ROWS, max(MERGE_ROWS // 8, int(lowest_average * MERGE_ROWS_PER_GROUP_ROW), 1))
        self._merge_early = self._recent_rows + rows >= lowest
        return self._merge_early

    @property
    def recent_rows(self) -> int:
        """Rows in the log (as of the last load or change), for tests and metrics."""
        return self._recent_rows

    def _load(self, conn: sqlite3.Connection) -> None:
        if self._loaded:
            return
        heads: dict[str, int] = {}
        rows = 0
        for user_id, seq, count in conn.execute(_LOAD_RECENT):
            heads[user_id] = seq
            rows += count
        self._recent_heads, self._recent_rows = heads, rows
        self._loaded = True
