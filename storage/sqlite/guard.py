"""What ``open_store`` checks before it touches a database: the SQLite version, and that nobody else owns it.

**SQLite version.** The queries use features that need a recent SQLite (Python's ``sqlite3`` module uses
whatever library it was linked with, often the system's):

=====================================  ========  ==============================================
feature                                since     where
=====================================  ========  ==============================================
``->>`` JSON operator                  3.38.0    ``storage/messages.py`` (group checks, pulls)
``json_each`` built in (JSON1 default)  3.38.0    ``storage/messages.py``
``RETURNING``                          3.35.0    ``storage/sessions.py`` (issue and end sessions)
upsert ``ON CONFLICT … DO UPDATE``     3.24.0    ``storage/sessions.py``, ``users.py``, ``messages.py``
``WITHOUT ROWID`` tables, WAL          3.8.2     ``storage/schema.py``, ``storage/writer.py``
=====================================  ========  ==============================================

So ``MIN_SQLITE_VERSION`` is 3.38.0, checked at open with a message naming both versions, rather than a
syntax error at the first send.

**One owner.** The writer keeps state in memory that is right only while it is the database's one writer:
each user's last inbox seq (``storage.inboxes.InboxState``) and its copy of the inbox log. A second gateway
on the same file would hand out the same seqs. So a store holds an exclusive lock on ``<database>.lock`` for
its whole life (``DatabaseLock``): ``fcntl.flock`` on Unix, ``msvcrt.locking`` on Windows. The kernel drops
the lock when the process ends in any way (SIGKILL included), so a crash never leaves a stale lock; the pid
written in the file is only for the message.

**The owner's files.** The database holds every message; its files are made the owner's alone (0600) before
SQLite opens them (``tighten_database_files``). Not with the umask: it is the whole process's, and another
thread creating a file meanwhile would get it too. SQLite creates ``-wal`` and ``-shm`` itself with the
database file's own permissions, so creating that file 0600 is enough for new databases; the files of a
database an older version made (0644) are chmod-ed to 0600 at open, and the caller logs it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
from pathlib import Path
from types import TracebackType
from typing import Final

from storage.errors import StorageError

#: Oldest SQLite library the queries work with (see the module docstring for why).
MIN_SQLITE_VERSION: Final = (3, 38, 0)

#: What a database's lock file is called: the database's own name with this added.
LOCK_SUFFIX: Final = ".lock"


def check_sqlite_version(found: tuple[int, int, int] = sqlite3.sqlite_version_info) -> None:
    """Raise ``StorageError`` if ``found`` (by default the linked library's version) is too old."""
    if tuple(found) < MIN_SQLITE_VERSION:
        have = ".".join(map(str, found))
        need = ".".join(map(str, MIN_SQLITE_VERSION))
        raise StorageError(
            f"SQLite {have} is too old: Ember needs SQLite {need} or newer (the JSON ->> operator)."
            " Python's sqlite3 module uses the SQLite library it was built with; use a Python built"
            " with a newer one"
        )


#: The files SQLite keeps beside a database (write-ahead log, shared memory index, rollback journal).
SIDE_SUFFIXES: Final = ("-wal", "-shm", "-journal")


def tighten_database_files(database: str | os.PathLike[str]) -> list[Path]:
    """Create the database file 0600 if missing, and make it, its side files and its lock file 0600.

    Returns:
        The existing files whose mode let the group or others in (now 0600), for the caller to report.
        Nothing is done on Windows, whose files have no such modes.
    """
    if sys.platform == "win32":
        return []
    path = Path(database)
    # O_CREAT with an explicit mode: the file SQLite then opens, and so its -wal and -shm, are 0600.
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    except OSError as exc:
        raise StorageError(f"cannot open database {path}: {exc.strerror}") from exc
    tightened = []
    for file in (path, *(path.with_name(path.name + suffix) for suffix in (*SIDE_SUFFIXES, LOCK_SUFFIX))):
        try:
            mode = file.stat().st_mode & 0o777
            if mode & 0o077:
                os.chmod(file, 0o600)
                tightened.append(file)
        except FileNotFoundError:
            continue
        except OSError as exc:  # e.g. owned by another user: refuse rather than serve from an open file
            raise StorageError(f"cannot make {file} private (mode 0600): {exc.strerror}") from exc
    return tightened


def lock_path(database: str | os.PathLike[str]) -> Path:
    path = Path(database)
    return path.with_name(path.name + LOCK_SUFFIX)


class DatabaseLock:
    """An exclusive lock on ``<database>.lock``, held from ``acquire`` until ``release``.

    Per open file, not per process: a second ``DatabaseLock`` on the same database fails even in the
    same process (two stores in one process would break the same way two processes do).
    """

    def __init__(self, database: str | os.PathLike[str]) -> None:
        self.database = Path(database)
        self.path = lock_path(database)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise ``StorageError`` naming the process that holds it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StorageError(f"cannot open lock file {self.path}: {exc.strerror}") from exc
        try:
            if not _try_lock(fd):
                holder = _read_pid(fd)
                raise StorageError(
                    f"database {self.database} is already used by another Ember process"
                    f"{f' (pid {holder})' if holder else ''}: only one gateway may write a database."
                    " Stop that one, or give this one another data folder"
                )
            _write_pid(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Let go (closing the file releases the lock). Idempotent. The file stays: removing it could
        race with another process that has just opened it."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> DatabaseLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


#: Where the pid goes in the lock file. Not byte 0: msvcrt locks a byte range, which others then cannot read.
_PID_OFFSET: Final = 1

if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, _PID_OFFSET)
    os.lseek(fd, _PID_OFFSET, os.SEEK_SET)
    os.write(fd, f"{os.getpid()}\n".encode())


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        os.lseek(fd, _PID_OFFSET, os.SEEK_SET)
        return int(os.read(fd, 32).decode().strip())
    return None
