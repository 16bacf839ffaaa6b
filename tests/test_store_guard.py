"""What open_store checks first: the SQLite library's version, and that no other store owns the database.

The second-process case (a real second ``ember serve`` on the same data folder) is in
tests/test_single_owner.py.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from storage import StorageError, open_store
from storage.sqlite.guard import MIN_SQLITE_VERSION, check_sqlite_version, lock_path

# SQLite itself (its file, connection or PRAGMAs), not the backend-neutral store: tests/backends.py.
pytestmark = pytest.mark.sqlite_only


def test_an_older_sqlite_is_refused_naming_both_versions() -> None:
    with pytest.raises(StorageError) as refused:
        check_sqlite_version((3, 37, 2))
    assert "SQLite 3.37.2 is too old" in str(refused.value)
    assert "3.38.0 or newer" in str(refused.value)
    with pytest.raises(StorageError):
        check_sqlite_version((2, 99, 99))


def test_the_minimum_and_the_linked_library_pass() -> None:
    check_sqlite_version(MIN_SQLITE_VERSION)
    check_sqlite_version((3, 45, 1))
    check_sqlite_version()  # the library these tests run on
    assert sqlite3.sqlite_version_info >= MIN_SQLITE_VERSION


async def test_a_second_store_on_the_same_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "ember.db"
    async with open_store(db) as first:
        with pytest.raises(StorageError) as refused:
            async with open_store(db):
                pytest.fail("a second store opened a database that is in use")
        message = str(refused.value)
        assert "already used by another Ember process" in message
        assert f"(pid {os.getpid()})" in message
        assert str(db) in message
        # The refusal changed nothing for the owner.
        assert await first.last_message_id() == 0
        assert await first.get_user("nobody") is None


async def test_the_lock_goes_with_the_store(tmp_path: Path) -> None:
    db = tmp_path / "ember.db"
    async with open_store(db):
        assert lock_path(db).exists()
    async with open_store(db) as again:  # closed: free to open
        assert await again.last_message_id() == 0


async def test_other_databases_in_the_same_folder_are_independent(tmp_path: Path) -> None:
    async with open_store(tmp_path / "a.db"), open_store(tmp_path / "b.db") as b:
        assert await b.last_message_id() == 0
