"""Which search backend a transaction uses: each database its own (``storage.search.SearchBackend``).

SQLite: FTS5 fed through the ``search_recent`` log (``storage.search_fts5``). PostgreSQL: the plain token
table with a GIN index on its tokens (``storage.search_pg``). The query functions call ``SEARCH`` and
``merge_recent`` here and never name a backend, so the send path, recall, update and the admin rebuild are
written once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from storage import search_fts5, search_pg
from storage.engine import Tx, engine_of
from storage.search import IndexRow, SearchBackend, SearchQuery


def _backend(tx: Tx) -> SearchBackend:
    return search_pg.PG_SEARCH if engine_of(tx).name == "postgres" else search_fts5.FTS5


class SearchByEngine:
    """``SearchBackend`` that hands each call to the backend of the transaction's engine."""

    def index(self, tx: Tx, rows: Iterable[IndexRow]) -> None:
        _backend(tx).index(tx, rows)

    def remove(self, tx: Tx, message_ids: Sequence[int]) -> None:
        _backend(tx).remove(tx, message_ids)

    def search(self, tx: Tx, query: SearchQuery) -> list[tuple[Any, ...]]:
        return _backend(tx).search(tx, query)

    def rebuild_range(self, tx: Tx, after_id: int, count: int) -> tuple[int, int]:
        return _backend(tx).rebuild_range(tx, after_id, count)


def merge_recent(tx: Tx) -> None:
    """The inbox merge's step for search: SQLite moves the token log into FTS5; PostgreSQL has no log."""
    if engine_of(tx).name != "postgres":
        search_fts5.merge_recent(tx)


SEARCH: Final[SearchBackend] = SearchByEngine()
