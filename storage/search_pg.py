"""PostgreSQL's message search, first version: the same tokens and the same rule as SQLite's, matched in Python.

``message_search`` on PostgreSQL is a plain table of ``storage.search``'s token lists keyed by message id
(schema v13, ``storage.postgres.schema``), written in the send's transaction (no log: PostgreSQL has no
per-commit segment cost to amortise). A search walks the caller's candidate rows newest first in pages,
filtered in SQL exactly as SQLite's FTS5 query is (the inbox says whose a message is, a deletion hides it,
conversation / sender / type / time filters), and keeps those ``storage.search.matches`` accepts, until the
page is full. So both backends give the same answers by construction, and the shared tests check it.

What this is not yet: fast on a large history. The walk is O(the caller's messages that pass the filters)
where SQLite's FTS5 is O(matches); the planned index is a ``tsvector`` over the same tokens with GIN
(docs/ARCHITECTURE.md, "Search"). Correct first, so that a PostgreSQL deployment has the feature.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

import msgpack

from storage.engine import Tx
from storage.search import Document, IndexRow, SearchQuery, index_row, matches

_COLUMNS: Final = (
    "m.message_id, m.conv_type, m.conv_target, m.conv_line, m.from_user, m.content, m.server_time, m.to_users,"
    " m.persist_flag"
)
_UPSERT: Final = (
    "INSERT INTO message_search (message_id, bi, uni, words, content_type) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (message_id) DO UPDATE SET bi = excluded.bi, uni = excluded.uni, words = excluded.words,"
    " content_type = excluded.content_type"
)
#: Candidate rows read per round trip while a page fills.
_WALK_PAGE: Final = 500


def _rows(rows: Iterable[IndexRow]) -> list[tuple[Any, ...]]:
    return [(r.message_id, r.doc.bi, r.doc.uni, r.doc.words, r.content_type) for r in rows]


def merge_recent(conn: Tx) -> None:
    """Nothing to move: PostgreSQL writes ``message_search`` directly (the inbox merge calls this)."""


class PgScanSearch:
    """``storage.search.SearchBackend`` over PostgreSQL's plain ``message_search`` table."""

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
        found: list[tuple[Any, ...]] = []
        below = query.before_id
        while len(found) < query.limit:
            rows = tx.execute(
                f"SELECT {_COLUMNS}, s.bi, s.uni, s.words FROM message_search s"
                f" JOIN messages m ON m.message_id = s.message_id"
                f" WHERE s.message_id < ?{filters} ORDER BY s.message_id DESC LIMIT ?",
                [below if below is not None else 2**63 - 1, *params, _WALK_PAGE],
            ).fetchall()
            found += [row[:-3] for row in rows if matches(Document(*row[-3:]), query.terms)]
            if len(rows) < _WALK_PAGE:
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
PG_SEARCH: Final = PgScanSearch()
