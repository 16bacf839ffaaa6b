"""SQLite's message search: an FTS5 table over ``storage.search``'s tokens, fed through a log. All of search's
SQL is here.

``message_search`` has one row per indexed message (rowid = message_id) with the three token lists
(``bi``, ``uni``, ``words``) and the content type (unindexed: a filter). Its tokenizer is FTS5's
``ascii``: it splits on ASCII spaces and punctuation only and leaves every other character in its
token, so it sees exactly the tokens Python made (which hold only ASCII letters and digits, already
lowercased, and non-ASCII characters) and adds no rules of its own.

**Through a log, like inbox rows.** FTS5 writes a new segment (and its structure record, and some merge work)
at every commit that touched it: measured in the gateway, ~40 µs more CPU per message at ``bench pairs``'
commits of a few messages (bench/RESULTS.md, "Session 8 — search"). So a send writes its tokens to
``search_recent``, a plain table keyed by message id whose new rows share its last page, in the send's own
transaction; the inbox log's merge (``storage.inboxes.InboxState.merge``, every 512–4096 inbox rows) moves
them all into ``message_search`` with one ``INSERT … SELECT`` (``merge_recent``), so FTS5 builds one segment
per merge. A search reads both: the FTS5 matches, and the user's rows still in the log, matched in Python
by the same rule (``storage.search.matches``), at most a few thousand rows.

Who holds a message is the inbox, as for pull: a message is the user's if an inbox row of theirs names
it (``inbox_by_message``, an index this migration adds, or the log ``inbox_recent``) and they did not
delete it. The FTS5 query walks the matches newest first (``ORDER BY rowid DESC`` is FTS5's own order) and
keeps those the user holds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any, Final

import msgpack

from storage.search import Document, IndexRow, SearchQuery, Term, index_row, matches

CREATE_TABLE: Final = (
    "CREATE VIRTUAL TABLE message_search USING fts5(bi, uni, words, content_type UNINDEXED, tokenize = 'ascii')"
)
#: The log of tokens not yet in ``message_search`` (see the module docstring).
CREATE_RECENT: Final = (
    "CREATE TABLE search_recent (message_id INTEGER PRIMARY KEY, bi TEXT NOT NULL, uni TEXT NOT NULL,"
    " words TEXT NOT NULL, content_type INTEGER NOT NULL)"
)
#: Which inbox rows name a message: the search's "is it this user's?" is one lookup per match.
CREATE_INBOX_INDEX: Final = "CREATE INDEX inbox_by_message ON inbox (user_id, message_id)"

_INSERT: Final = "INSERT INTO message_search (rowid, bi, uni, words, content_type) VALUES (?, ?, ?, ?, ?)"
#: One message's tokens into the log (``storage.sends``' SQLite fast path writes it directly too).
INSERT_RECENT: Final = "INSERT INTO search_recent (message_id, bi, uni, words, content_type) VALUES (?, ?, ?, ?, ?)"
_DELETE: Final = "DELETE FROM message_search WHERE rowid = ?"
_DELETE_RECENT: Final = "DELETE FROM search_recent WHERE message_id = ?"
_COLUMNS: Final = (
    "m.message_id, m.conv_type, m.conv_target, m.conv_line, m.from_user, m.content, m.server_time, m.to_users,"
    " m.persist_flag"
)


def _rows(rows: Iterable[IndexRow]) -> list[tuple[Any, ...]]:
    return [(r.message_id, r.doc.bi, r.doc.uni, r.doc.words, r.content_type) for r in rows]


def _quote(token: str) -> str:
    return '"' + token.replace('"', '""') + '"'


def match_expression(terms: Sequence[Term]) -> str:
    """The FTS5 query: every term, in its column; a word as a prefix, a CJK run as the phrase of its pairs, one
    CJK character as a pair it starts or a run's last character (``storage.search.Document``)."""
    parts = []
    for term in terms:
        phrase = " ".join(_quote(token) for token in term.tokens)
        if term.column == "words":
            parts.append(f"words : ({phrase} *)")
        elif term.column == "uni":
            parts.append(f"(bi : ({phrase} *) OR uni : ({phrase}))")
        else:
            parts.append(f"bi : ({phrase})")
    return " AND ".join(parts)


def merge_recent(conn: sqlite3.Connection) -> None:
    """Move the log's tokens into ``message_search`` (one FTS5 segment) and empty it; the inbox merge calls it."""
    # OR REPLACE: an entry already indexed is replaced rather than failing the merge, which would fail the
    # send that brought it, and every send after it (every path keeps one entry per message; this is a guard).
    conn.execute(
        "INSERT OR REPLACE INTO message_search (rowid, bi, uni, words, content_type)"
        " SELECT message_id, bi, uni, words, content_type FROM search_recent ORDER BY message_id"
    )
    conn.execute("DELETE FROM search_recent")


class Fts5Search:
    """``storage.search.SearchBackend`` over SQLite FTS5, fed through ``search_recent``."""

    def index(self, tx: sqlite3.Connection, rows: Iterable[IndexRow]) -> None:
        values = _rows(rows)
        if values:
            tx.executemany(INSERT_RECENT, values)

    def remove(self, tx: sqlite3.Connection, message_ids: Sequence[int]) -> None:
        ids = [(message_id,) for message_id in message_ids]
        tx.executemany(_DELETE, ids)
        tx.executemany(_DELETE_RECENT, ids)

    def search(self, tx: sqlite3.Connection, query: SearchQuery) -> list[tuple[Any, ...]]:
        where: list[str] = []
        params: list[Any] = []
        if query.before_id is not None:
            where.append("s.rowid < ?")
            params.append(query.before_id)
        if query.user_id is not None:
            where.append(
                "(EXISTS (SELECT 1 FROM inbox i WHERE i.user_id = ? AND i.message_id = s.rowid)"
                " OR s.rowid IN (SELECT message_id FROM inbox_recent WHERE user_id = ?))"
                " AND NOT EXISTS (SELECT 1 FROM deleted_messages d WHERE d.user_id = ? AND d.message_id = s.rowid)"
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
        # The log first (a scan of at most a few thousand rows, matched here), then the index: both newest first.
        pending = [
            row[:-3]
            for row in tx.execute(
                f"SELECT {_COLUMNS}, s.bi, s.uni, s.words FROM search_recent s JOIN messages m"
                f" ON m.message_id = s.message_id WHERE 1{filters.replace('s.rowid', 's.message_id')}"
                " ORDER BY s.message_id DESC",
                params,
            )
            if matches(Document(*row[-3:]), query.terms)
        ][: query.limit]
        indexed = tx.execute(
            f"SELECT {_COLUMNS} FROM message_search s JOIN messages m ON m.message_id = s.rowid"
            f" WHERE message_search MATCH ?{filters} ORDER BY s.rowid DESC LIMIT ?",
            [match_expression(query.terms), *params, query.limit],
        ).fetchall()
        if not pending:
            return indexed
        return sorted(pending + indexed, key=itemgetter(0), reverse=True)[: query.limit]

    def rebuild_range(self, tx: sqlite3.Connection, after_id: int, count: int) -> tuple[int, int]:
        rows = tx.execute(
            "SELECT message_id, content FROM messages WHERE message_id > ? ORDER BY message_id LIMIT ?",
            (after_id, count),
        ).fetchall()
        if not rows:  # past the last message: drop entries of messages that are gone
            tx.execute("DELETE FROM message_search WHERE rowid > ?", (after_id,))
            tx.execute("DELETE FROM search_recent WHERE message_id > ?", (after_id,))
            return 0, 0
        last = rows[-1][0]
        tx.execute("DELETE FROM message_search WHERE rowid > ? AND rowid <= ?", (after_id, last))
        tx.execute("DELETE FROM search_recent WHERE message_id > ? AND message_id <= ?", (after_id, last))
        fresh = [row for row in (index_row(mid, msgpack.unpackb(content)) for mid, content in rows) if row]
        values = _rows(fresh)
        if values:
            tx.executemany(_INSERT, values)  # straight into the index: a rebuild step is a batch already
        return last, len(fresh)


def migrate(conn: sqlite3.Connection) -> int:
    """Migration v13's work: the table, the inbox index, and every stored message indexed."""
    conn.execute(CREATE_TABLE)
    conn.execute(CREATE_RECENT)
    conn.execute(CREATE_INBOX_INDEX)
    backend, after, total = Fts5Search(), 0, 0
    while True:
        after, done = backend.rebuild_range(conn, after, 5000)
        if not after:
            return total
        total += done


#: The backend of SQLite databases.
FTS5: Final = Fts5Search()
