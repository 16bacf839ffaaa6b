"""Relations (SPEC §6, §7, §9): friend requests, friends, blacklists and user settings, each a synced stream.

Plain ``fn(conn, ...)`` functions, like ``storage.users``: writes run on the writer thread
(``Store.run``), reads on reader connections (``Store.read``). Product rules that need the
stored state to decide (the friend-request windows) take their numbers as arguments
(``RequestPolicy``) and answer with an ``Outcome``; the gateway maps outcomes to codes.

**Streams.** Every user has four streams, named in ``STREAMS``: ``friend`` (its friend rows),
``friend_request`` (requests it sent and received), ``blacklist`` (whom it blocked) and
``setting`` (its settings). A stream has a *head* (``relation_heads``): the number of changes
ever made to it. Every change to a row gives the row the next version of its owner's stream,
so within one stream versions are unique and increasing, and "what changed since version v"
is the rows (and tombstones) with a version above v, oldest first, read in pages. A deletion
leaves a *tombstone* (``relation_tombstones``) carrying the version of the deletion; adding
the row back removes it. A device that was away for a month pulls from the version it
holds and converges, deletions included.

**Retention.** Tombstones do not stay for good: ``purge_tombstones`` removes those older than
the retention (``gateway.domain.tombstones`` runs it) and raises the stream's *horizon*
(``relation_heads.horizon``) to the highest version it removed. A device holding a version
below the horizon may have missed one of those deletions, so ``sync_page`` answers it with the
stream from 0 flagged ``reset``: it drops its copy and takes the new one (docs/PROTOCOL.md §12.1).

A friend request is one row per (from, to): the latest request from A to B. It is in two
streams, A's (sent) and B's (received), with a version in each (``from_version``,
``to_version``).

Changes come back as ``Change(user_id, stream, head)`` so the caller can tell that user's
live devices the new head.
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from protocol.codes import FriendRequestStatus

#: The four synced streams of a user.
FRIEND: Final = "friend"
FRIEND_REQUEST: Final = "friend_request"
BLACKLIST: Final = "blacklist"
SETTING: Final = "setting"
STREAMS: Final = (FRIEND, FRIEND_REQUEST, BLACKLIST, SETTING)

# Friend request states, as plain ints (protocol.codes.FriendRequestStatus defines them).
REQUEST_SENT: Final = int(FriendRequestStatus.SENT)
REQUEST_ACCEPTED: Final = int(FriendRequestStatus.ACCEPTED)
REQUEST_REJECTED: Final = int(FriendRequestStatus.REJECTED)


class Outcome(enum.Enum):
    """Why a relation write did nothing (the gateway maps each to an ``ErrorCode``)."""

    OK = "ok"
    NO_USER = "no_user"  # the other user does not exist
    NOT_FOUND = "not_found"  # no such friend / no pending request
    ALREADY_FRIENDS = "already_friends"
    BLACKLISTED = "blacklisted"  # the target has blacklisted the sender
    PENDING = "pending"  # a pending request younger than the repeat window
    REJECTED = "rejected"  # rejected less than the reject window ago
    EXPIRED = "expired"  # handling a request older than the expiration window


@dataclass(frozen=True, slots=True)
class RequestPolicy:
    """The friend-request windows (SPEC §7), in milliseconds. A request of age ``a`` is "younger than w"
    when ``a < w``: at exactly ``w`` the window has passed."""

    repeat_ms: int
    reject_ms: int
    expiration_ms: int


@dataclass(frozen=True, slots=True)
class Change:
    """A stream of ``user_id`` moved to ``head``."""

    user_id: str
    stream: str
    head: int


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    changes: tuple[Change, ...] = ()
    value: Any = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a stream: ``items`` (dicts, oldest change first, each with ``version`` and
    ``deleted``) and the stream's ``head`` in the same snapshot. ``reset``: the page is the stream
    from 0, answering a device whose version is below the horizon (it drops its copy first)."""

    items: list[dict[str, Any]]
    head: int
    reset: bool = False


_IN_CHUNK: Final = 500


# ------------------------------------------------------------------------------------- versions


def _allocate(conn: sqlite3.Connection, user_id: str, stream: str, count: int = 1) -> int:
    """Take ``count`` new versions of the user's stream; return the first (they run first .. first+count-1)."""
    head = conn.execute(
        "INSERT INTO relation_heads (user_id, stream, version) VALUES (?, ?, ?)"
        " ON CONFLICT (user_id, stream) DO UPDATE SET version = relation_heads.version + excluded.version RETURNING version",
        (user_id, stream, count),
    ).fetchone()[0]
    return int(head) - count + 1


def _tombstone(
    conn: sqlite3.Connection, user_id: str, stream: str, item: str, version: int, now_ms: int, scope: int = 0
) -> None:
    conn.execute(
        "INSERT INTO relation_tombstones (user_id, stream, scope, item, version, deleted_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, stream, scope, item) DO UPDATE SET"
        " version = excluded.version, deleted_at = excluded.deleted_at",
        (user_id, stream, scope, item, version, now_ms),
    )


def _untombstone(conn: sqlite3.Connection, user_id: str, stream: str, item: str, scope: int = 0) -> None:
    conn.execute(
        "DELETE FROM relation_tombstones WHERE user_id = ? AND stream = ? AND scope = ? AND item = ?",
        (user_id, stream, scope, item),
    )


def heads(conn: sqlite3.Connection, user_id: str) -> dict[str, int]:
    """The user's head of every stream (0 for a stream never changed)."""
    found = dict(
        conn.execute("SELECT stream, version FROM relation_heads WHERE user_id = ?", (user_id,)).fetchall()
    )
    return {stream: int(found.get(stream, 0)) for stream in STREAMS}


def _head(conn: sqlite3.Connection, user_id: str, stream: str) -> int:
    row = conn.execute(
        "SELECT version FROM relation_heads WHERE user_id = ? AND stream = ?", (user_id, stream)
    ).fetchone()
    return 0 if row is None else int(row[0])


def _user_exists(conn: sqlite3.Connection, user_id: str) -> bool:
    return conn.execute("SELECT 1 FROM users WHERE user_id = ?", (user_id,)).fetchone() is not None


# -------------------------------------------------------------------------------------- friends


def are_friends(conn: sqlite3.Connection, user_id: str, other: str) -> bool:
    """Is ``other`` in ``user_id``'s friend list?"""
    return (
        conn.execute("SELECT 1 FROM friends WHERE user_id = ? AND friend_id = ?", (user_id, other)).fetchone()
        is not None
    )


def _befriend(conn: sqlite3.Connection, pairs: Sequence[tuple[str, str]], now_ms: int) -> list[Change]:
    """Add each (user, friend) row that is missing, with the next versions of the owners' friend streams."""
    missing: dict[str, list[str]] = {}
    for user_id, friend_id in dict.fromkeys(pairs):
        if user_id != friend_id and not are_friends(conn, user_id, friend_id):
            missing.setdefault(user_id, []).append(friend_id)
    changes = []
    for user_id, friend_ids in missing.items():
        first = _allocate(conn, user_id, FRIEND, len(friend_ids))
        conn.executemany(
            "INSERT INTO friends (user_id, friend_id, alias, extra, created_at, updated_at, version)"
            " VALUES (?, ?, '', '', ?, ?, ?)",
            [(user_id, f, now_ms, now_ms, first + i) for i, f in enumerate(friend_ids)],
        )
        conn.executemany(
            "DELETE FROM relation_tombstones WHERE user_id = ? AND stream = 'friend' AND scope = 0 AND item = ?",
            [(user_id, f) for f in friend_ids],
        )
        changes.append(Change(user_id, FRIEND, first + len(friend_ids) - 1))
    return changes


def add_friends(conn: sqlite3.Connection, user_id: str, friend_ids: Sequence[str], now_ms: int) -> Result:
    """Make ``user_id`` and each of ``friend_ids`` friends, both sides (admin and bulk set-up; no request)."""
    pairs = [p for f in friend_ids for p in ((user_id, f), (f, user_id))]
    return Result(Outcome.OK, tuple(_befriend(conn, pairs, now_ms)))


def delete_friend(conn: sqlite3.Connection, user_id: str, friend_id: str, now_ms: int) -> Result:
    """Remove the friendship, both sides, leaving tombstones; NOT_FOUND if ``friend_id`` is not a friend."""
    if not are_friends(conn, user_id, friend_id):
        return Result(Outcome.NOT_FOUND)
    changes = []
    for owner, other in ((user_id, friend_id), (friend_id, user_id)):
        if conn.execute("DELETE FROM friends WHERE user_id = ? AND friend_id = ?", (owner, other)).rowcount:
            version = _allocate(conn, owner, FRIEND)
            _tombstone(conn, owner, FRIEND, other, version, now_ms)
            changes.append(Change(owner, FRIEND, version))
    return Result(Outcome.OK, tuple(changes))


def set_friend_fields(
    conn: sqlite3.Connection, user_id: str, friend_id: str, now_ms: int, alias: str | None, extra: str | None
) -> Result:
    """Set the owner's alias and/or extra of a friend (only the owner's row); NOT_FOUND if not a friend."""
    row = conn.execute(
        "SELECT alias, extra FROM friends WHERE user_id = ? AND friend_id = ?", (user_id, friend_id)
    ).fetchone()
    if row is None:
        return Result(Outcome.NOT_FOUND)
    new_alias = row[0] if alias is None else alias
    new_extra = row[1] if extra is None else extra
    if (new_alias, new_extra) == tuple(row):
        return Result(Outcome.OK)  # nothing changed: no new version
    version = _allocate(conn, user_id, FRIEND)
    conn.execute(
        "UPDATE friends SET alias = ?, extra = ?, updated_at = ?, version = ? WHERE user_id = ? AND friend_id = ?",
        (new_alias, new_extra, now_ms, version, user_id, friend_id),
    )
    return Result(Outcome.OK, (Change(user_id, FRIEND, version),))


_FRIEND_COLUMNS: Final = "friend_id, alias, extra, created_at, updated_at, version"


def _friend(row: Sequence[Any], deleted: bool = False) -> dict[str, Any]:
    if deleted:
        return {"friend_id": row[0], "version": row[1], "deleted": True}
    return {
        "friend_id": row[0], "alias": row[1], "extra": row[2], "created_at": row[3], "updated_at": row[4],
        "version": row[5], "deleted": False,
    }  # fmt: skip


def list_friends(conn: sqlite3.Connection, user_id: str) -> list[dict[str, Any]]:
    """The user's friends, by friend id."""
    return [
        _friend(row)
        for row in conn.execute(
            f"SELECT {_FRIEND_COLUMNS} FROM friends WHERE user_id = ? ORDER BY friend_id", (user_id,)
        )
    ]


def _merge(
    live: Iterable[tuple[int, dict[str, Any]]], gone: Iterable[tuple[int, dict[str, Any]]], limit: int
) -> list[dict[str, Any]]:
    both = sorted([*live, *gone], key=lambda pair: pair[0])
    return [item for _, item in both[:limit]]


def sync_friends(conn: sqlite3.Connection, user_id: str, after: int, limit: int) -> Page:
    """The friend rows and tombstones of ``user_id`` with a version above ``after``, oldest first."""
    live = [
        (row[5], _friend(row))
        for row in conn.execute(
            f"SELECT {_FRIEND_COLUMNS} FROM friends WHERE user_id = ? AND version > ? ORDER BY version LIMIT ?",
            (user_id, after, limit),
        )
    ]
    return Page(_merge(live, _tombstones(conn, user_id, FRIEND, after, limit, "friend_id"), limit),
                _head(conn, user_id, FRIEND))  # fmt: skip


def _tombstones(
    conn: sqlite3.Connection, user_id: str, stream: str, after: int, limit: int, name: str
) -> list[tuple[int, dict[str, Any]]]:
    rows = conn.execute(
        "SELECT scope, item, version FROM relation_tombstones WHERE user_id = ? AND stream = ? AND version > ?"
        " ORDER BY version LIMIT ?",
        (user_id, stream, after, limit),
    ).fetchall()
    if stream == SETTING:
        return [(v, {"scope": s, "key": item, "version": v, "deleted": True}) for s, item, v in rows]
    return [(v, {name: item, "version": v, "deleted": True}) for _, item, v in rows]


# ------------------------------------------------------------------------------ friend requests


_REQUEST_COLUMNS: Final = "from_user, to_user, reason, extra, status, is_read, created_at, updated_at"


def _request(row: Sequence[Any], version: int) -> dict[str, Any]:
    return {
        "from": row[0], "to": row[1], "reason": row[2], "extra": row[3], "status": row[4],
        "read": bool(row[5]), "created_at": row[6], "updated_at": row[7], "version": version, "deleted": False,
    }  # fmt: skip


def _touch_request(
    conn: sqlite3.Connection, from_user: str, to_user: str, *, sender: bool = True, receiver: bool = True
) -> list[Change]:
    """Give the request row new versions in the sender's and/or receiver's stream."""
    changes = []
    if sender:
        version = _allocate(conn, from_user, FRIEND_REQUEST)
        conn.execute(
            "UPDATE friend_requests SET from_version = ? WHERE from_user = ? AND to_user = ?",
            (version, from_user, to_user),
        )
        changes.append(Change(from_user, FRIEND_REQUEST, version))
    if receiver:
        version = _allocate(conn, to_user, FRIEND_REQUEST)
        conn.execute(
            "UPDATE friend_requests SET to_version = ? WHERE from_user = ? AND to_user = ?",
            (version, from_user, to_user),
        )
        changes.append(Change(to_user, FRIEND_REQUEST, version))
    return changes


def send_friend_request(
    conn: sqlite3.Connection,
    from_user: str,
    to_user: str,
    reason: str,
    extra: str,
    now_ms: int,
    policy: RequestPolicy,
) -> Result:
    """SPEC §7's rules, in order: the target exists, not already friends, not blacklisted by the target,
    then the earlier request from A to B: pending and younger than ``repeat_ms`` → PENDING; rejected
    less than ``reject_ms`` ago → REJECTED; anything else (none, accepted, older) → the new request
    replaces it. ``from_user != to_user`` is the caller's to check."""
    if not _user_exists(conn, to_user):
        return Result(Outcome.NO_USER)
    if are_friends(conn, from_user, to_user):
        return Result(Outcome.ALREADY_FRIENDS)
    if (
        conn.execute(
            "SELECT 1 FROM blacklist WHERE user_id = ? AND target = ?", (to_user, from_user)
        ).fetchone()
        is not None
    ):
        return Result(Outcome.BLACKLISTED)
    row = conn.execute(
        "SELECT status, created_at, updated_at FROM friend_requests WHERE from_user = ? AND to_user = ?",
        (from_user, to_user),
    ).fetchone()
    if row is not None:
        status, created_at, updated_at = row
        if status == REQUEST_SENT and now_ms - created_at < policy.repeat_ms:
            return Result(Outcome.PENDING)
        if status == REQUEST_REJECTED and now_ms - updated_at < policy.reject_ms:
            return Result(Outcome.REJECTED)
    conn.execute(
        f"INSERT INTO friend_requests ({_REQUEST_COLUMNS}, from_version, to_version)"
        " VALUES (?, ?, ?, ?, 0, 0, ?, ?, 0, 0) ON CONFLICT (from_user, to_user) DO UPDATE SET"
        " reason = excluded.reason, extra = excluded.extra, status = 0, is_read = 0,"
        " created_at = excluded.created_at, updated_at = excluded.updated_at",
        (from_user, to_user, reason, extra, now_ms, now_ms),
    )
    return Result(Outcome.OK, tuple(_touch_request(conn, from_user, to_user)))


def handle_friend_request(
    conn: sqlite3.Connection, to_user: str, from_user: str, accept: bool, now_ms: int, policy: RequestPolicy
) -> Result:
    """``to_user`` accepts or rejects the pending request from ``from_user``.

    NOT_FOUND when there is no pending one; EXPIRED when it is ``expiration_ms`` old or older.
    Accepting makes both friends (both friend streams move) in this same transaction.
    """
    row = conn.execute(
        "SELECT status, created_at FROM friend_requests WHERE from_user = ? AND to_user = ?",
        (from_user, to_user),
    ).fetchone()
    if row is None or row[0] != REQUEST_SENT:
        return Result(Outcome.NOT_FOUND)
    if now_ms - row[1] >= policy.expiration_ms:
        return Result(Outcome.EXPIRED)
    conn.execute(
        "UPDATE friend_requests SET status = ?, is_read = 1, updated_at = ? WHERE from_user = ? AND to_user = ?",
        (REQUEST_ACCEPTED if accept else REQUEST_REJECTED, now_ms, from_user, to_user),
    )
    changes = _touch_request(conn, from_user, to_user)
    if accept:
        changes += _befriend(conn, [(to_user, from_user), (from_user, to_user)], now_ms)
    return Result(Outcome.OK, tuple(changes))


def mark_requests_read(conn: sqlite3.Connection, user_id: str, until_ms: int) -> Result:
    """Mark the user's received unread requests made at or before ``until_ms`` as read; value: how many."""
    senders = [
        row[0]
        for row in conn.execute(
            "SELECT from_user FROM friend_requests WHERE to_user = ? AND is_read = 0 AND created_at <= ?",
            (user_id, until_ms),
        )
    ]
    if not senders:
        return Result(Outcome.OK, (), 0)
    first = _allocate(conn, user_id, FRIEND_REQUEST, len(senders))
    conn.executemany(
        "UPDATE friend_requests SET is_read = 1, to_version = ? WHERE from_user = ? AND to_user = ?",
        [(first + i, sender, user_id) for i, sender in enumerate(senders)],
    )
    return Result(Outcome.OK, (Change(user_id, FRIEND_REQUEST, first + len(senders) - 1),), len(senders))


def unread_request_count(conn: sqlite3.Connection, user_id: str) -> int:
    return int(
        conn.execute(
            "SELECT COUNT(*) FROM friend_requests WHERE to_user = ? AND is_read = 0 AND status = 0",
            (user_id,),
        ).fetchone()[0]
    )


def get_request(conn: sqlite3.Connection, from_user: str, to_user: str) -> dict[str, Any] | None:
    row = conn.execute(
        f"SELECT {_REQUEST_COLUMNS}, to_version FROM friend_requests WHERE from_user = ? AND to_user = ?",
        (from_user, to_user),
    ).fetchone()
    return None if row is None else _request(row, row[8])


def sync_friend_requests(conn: sqlite3.Connection, user_id: str, after: int, limit: int) -> Page:
    """Requests the user sent or received whose version in its stream is above ``after``, oldest first."""
    rows = conn.execute(
        f"SELECT * FROM (SELECT {_REQUEST_COLUMNS}, from_version AS v FROM friend_requests"
        " WHERE from_user = ? AND from_version > ?"
        f" UNION ALL SELECT {_REQUEST_COLUMNS}, to_version AS v FROM friend_requests"
        " WHERE to_user = ? AND to_version > ?) AS requests ORDER BY v LIMIT ?",
        (user_id, after, user_id, after, limit),
    ).fetchall()
    return Page([_request(row, row[8]) for row in rows], _head(conn, user_id, FRIEND_REQUEST))


# ------------------------------------------------------------------------------------ blacklist


def set_blacklist(conn: sqlite3.Connection, user_id: str, target: str, blocked: bool, now_ms: int) -> Result:
    """Block or unblock ``target``; a change moves the user's blacklist stream (no change, no version)."""
    if blocked:
        present = conn.execute(
            "SELECT 1 FROM blacklist WHERE user_id = ? AND target = ?", (user_id, target)
        ).fetchone()
        if present is not None:
            return Result(Outcome.OK)
        version = _allocate(conn, user_id, BLACKLIST)
        conn.execute(
            "INSERT INTO blacklist (user_id, target, created_at, version) VALUES (?, ?, ?, ?)",
            (user_id, target, now_ms, version),
        )
        _untombstone(conn, user_id, BLACKLIST, target)
    else:
        if not conn.execute(
            "DELETE FROM blacklist WHERE user_id = ? AND target = ?", (user_id, target)
        ).rowcount:
            return Result(Outcome.OK)
        version = _allocate(conn, user_id, BLACKLIST)
        _tombstone(conn, user_id, BLACKLIST, target, version, now_ms)
    return Result(Outcome.OK, (Change(user_id, BLACKLIST, version),))


def get_blacklist(conn: sqlite3.Connection, user_id: str) -> list[str]:
    return [
        row[0]
        for row in conn.execute("SELECT target FROM blacklist WHERE user_id = ? ORDER BY target", (user_id,))
    ]


def sync_blacklist(conn: sqlite3.Connection, user_id: str, after: int, limit: int) -> Page:
    live = [
        (row[2], {"user_id": row[0], "created_at": row[1], "version": row[2], "deleted": False})
        for row in conn.execute(
            "SELECT target, created_at, version FROM blacklist WHERE user_id = ? AND version > ?"
            " ORDER BY version LIMIT ?",
            (user_id, after, limit),
        )
    ]
    return Page(_merge(live, _tombstones(conn, user_id, BLACKLIST, after, limit, "user_id"), limit),
                _head(conn, user_id, BLACKLIST))  # fmt: skip


# ------------------------------------------------------------------------------------- settings


def put_setting(
    conn: sqlite3.Connection, user_id: str, scope: int, key: str, value: str, now_ms: int
) -> Result:
    """Set (or, with an empty ``value``, remove) a setting; value: the user's setting head afterwards."""
    row = conn.execute(
        "SELECT value FROM user_settings WHERE user_id = ? AND scope = ? AND key = ?", (user_id, scope, key)
    ).fetchone()
    current = None if row is None else row[0]
    if (current or "") == value:
        return Result(Outcome.OK, (), _head(conn, user_id, SETTING))
    version = _allocate(conn, user_id, SETTING)
    if value:
        conn.execute(
            "INSERT INTO user_settings (user_id, scope, key, value, updated_at, version) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (user_id, scope, key) DO UPDATE SET value = excluded.value,"
            " updated_at = excluded.updated_at, version = excluded.version",
            (user_id, scope, key, value, now_ms, version),
        )
        _untombstone(conn, user_id, SETTING, key, scope)
    else:
        conn.execute(
            "DELETE FROM user_settings WHERE user_id = ? AND scope = ? AND key = ?", (user_id, scope, key)
        )
        _tombstone(conn, user_id, SETTING, key, version, now_ms, scope)
    return Result(Outcome.OK, (Change(user_id, SETTING, version),), version)


def _setting(row: Sequence[Any]) -> dict[str, Any]:
    return {"scope": row[0], "key": row[1], "value": row[2], "updated_at": row[3], "version": row[4],
            "deleted": False}  # fmt: skip


def setting_head(conn: sqlite3.Connection, user_id: str) -> int:
    """The user's ``setting`` stream head (the version ``put_setting`` answers)."""
    return _head(conn, user_id, SETTING)


def get_setting(conn: sqlite3.Connection, user_id: str, scope: int, key: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT scope, key, value, updated_at, version FROM user_settings WHERE user_id = ? AND scope = ? AND key = ?",
        (user_id, scope, key),
    ).fetchone()
    return None if row is None else _setting(row)


def list_settings(conn: sqlite3.Connection, user_id: str, scope: int | None = None) -> list[dict[str, Any]]:
    sql = "SELECT scope, key, value, updated_at, version FROM user_settings WHERE user_id = ?"
    args: tuple[Any, ...] = (user_id,)
    if scope is not None:
        sql += " AND scope = ?"
        args += (scope,)
    return [_setting(row) for row in conn.execute(sql + " ORDER BY scope, key", args)]


def sync_settings(conn: sqlite3.Connection, user_id: str, after: int, limit: int) -> Page:
    live = [
        (row[4], _setting(row))
        for row in conn.execute(
            "SELECT scope, key, value, updated_at, version FROM user_settings WHERE user_id = ? AND version > ?"
            " ORDER BY version LIMIT ?",
            (user_id, after, limit),
        )
    ]
    return Page(_merge(live, _tombstones(conn, user_id, SETTING, after, limit, "key"), limit),
                _head(conn, user_id, SETTING))  # fmt: skip


#: The sync read of each stream: ``fn(conn, user_id, after, limit) -> Page``.
SYNC: Final = {
    FRIEND: sync_friends,
    FRIEND_REQUEST: sync_friend_requests,
    BLACKLIST: sync_blacklist,
    SETTING: sync_settings,
}


# ------------------------------------------------------------------------------------ retention


def horizon(conn: sqlite3.Connection, user_id: str, stream: str) -> int:
    """The highest version of a tombstone purged from the user's stream (0: none ever was)."""
    row = conn.execute(
        "SELECT horizon FROM relation_heads WHERE user_id = ? AND stream = ?", (user_id, stream)
    ).fetchone()
    return 0 if row is None else int(row[0])


def needs_reset(after: int, full_sync_head: int, horizon_version: int) -> bool:
    """Whether a device asking from ``after`` may have missed a purged tombstone.

    A purged tombstone has a version at most ``horizon_version``. A device holding ``after`` has seen
    every change up to it, so it misses none when ``after`` reaches the horizon; 0 holds nothing, so
    nothing can be missing. A device still in the middle of a sync from 0 (pages are read one by
    one) holds only rows that were live at its first page, whose ``head`` it sends along as
    ``full_sync_head``: a tombstone it could need was made after that page, so its version is above
    that head as well as above ``after``. Without this, a stream longer than one page whose horizon
    lies past the first page's last version would be reset again at every page, for ever.
    """
    return after > 0 and max(after, full_sync_head) < horizon_version


def sync_page(
    conn: sqlite3.Connection, stream: str, user_id: str, after: int, full_sync_head: int, limit: int
) -> Page:
    """One sync page of ``stream`` (``SYNC``), or, when the device is below the horizon (``needs_reset``),
    the first page from 0 flagged ``reset``. One read: the horizon and the page are from the same snapshot."""
    if needs_reset(after, full_sync_head, horizon(conn, user_id, stream)):
        page = SYNC[stream](conn, user_id, 0, limit)
        return Page(page.items, page.head, reset=True)
    return SYNC[stream](conn, user_id, after, limit)


def purge_tombstones(conn: sqlite3.Connection, cutoff_ms: int, limit: int) -> int:
    """Remove up to ``limit`` tombstones made before ``cutoff_ms``, oldest first, raising each stream's
    horizon to the highest version removed from it; how many were removed (fewer than ``limit``: no more)."""
    rows = conn.execute(
        "SELECT user_id, stream, scope, item, version FROM relation_tombstones WHERE deleted_at < ?"
        " ORDER BY deleted_at LIMIT ?",
        (cutoff_ms, limit),
    ).fetchall()
    highest: dict[tuple[str, str], int] = {}
    for user_id, stream, _, _, version in rows:
        highest[(user_id, stream)] = max(highest.get((user_id, stream), 0), version)
    conn.executemany(
        # Not SQLite's two-argument max() (PostgreSQL's is GREATEST): the CASE both spell alike.
        "UPDATE relation_heads SET horizon = CASE WHEN horizon < ?1 THEN ?1 ELSE horizon END"
        " WHERE user_id = ?2 AND stream = ?3",
        [(version, user_id, stream) for (user_id, stream), version in highest.items()],
    )
    conn.executemany(
        "DELETE FROM relation_tombstones WHERE user_id = ? AND stream = ? AND scope = ? AND item = ?",
        [row[:4] for row in rows],
    )
    return len(rows)
