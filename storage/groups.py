"""Hosted groups: plain ``fn(conn, ...)`` queries over ``groups`` and ``group_members``.

Facts only: who is a member and as what, the group's fields and its versions.
The rules (who may do what, by role and group type) live in ``gateway.domain.groups``,
which runs these functions on the writer thread inside one operation, so a
check and the change it allows are in the same transaction.

Versions: ``info_version`` goes up by one with every change of the group's own
fields, ``member_count`` included (so adding and removing members move it too);
``member_version`` with every change of its member list (a member
added, removed, its type, alias or extra changed), and each changed member row
takes the new ``member_version`` as its ``version``. A device that holds
version v asks for the rows above v; removed members stay as tombstones
(type 4) so that it learns who left, until they are older than the retention:
``purge_tombstones`` removes them and raises the group's ``member_horizon`` to
the highest version it removed, and a device holding a version below it gets
the member list again from 0 (docs/PROTOCOL.md §13.4).

Member types are ``protocol.codes.GroupMemberType`` numbers; storage only needs
to know which one is the tombstone.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from storage.engine import in_list

#: ``GroupMemberType.REMOVED``: the one member type storage itself gives meaning to (a tombstone).
REMOVED: Final = 4

#: The group fields an update may set (column names).
GROUP_FIELDS: Final = frozenset({"name", "portrait", "extra", "type", "join_type", "mute", "owner"})


@dataclass(frozen=True, slots=True)
class GroupRecord:
    group_id: str
    name: str
    portrait: str
    owner: str
    extra: str
    type: int
    join_type: int
    mute: int
    dismissed: bool
    info_version: int
    member_version: int
    member_count: int
    created_at: int
    updated_at: int

    def to_wire(self) -> dict[str, Any]:
        """The group info map clients see (docs/PROTOCOL.md §13)."""
        return {
            "group_id": self.group_id,
            "name": self.name,
            "portrait": self.portrait,
            "owner": self.owner,
            "extra": self.extra,
            "type": self.type,
            "join_type": self.join_type,
            "mute": self.mute,
            "member_count": self.member_count,
            "info_version": self.info_version,
            "member_version": self.member_version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class MemberRecord:
    group_id: str
    user_id: str
    type: int
    alias: str
    extra: str
    join_time: int
    version: int
    updated_at: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "type": self.type,
            "alias": self.alias,
            "extra": self.extra,
            "join_time": self.join_time,
            "version": self.version,
        }


_GROUP_COLUMNS: Final = (
    "group_id, name, portrait, owner, extra, type, join_type, mute, dismissed, info_version, member_version,"
    " member_count, created_at, updated_at"
)
_MEMBER_COLUMNS: Final = "group_id, user_id, type, alias, extra, join_time, version, updated_at"


def _group(row: Sequence[Any]) -> GroupRecord:
    return GroupRecord(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], bool(row[8]), *row[9:14]
    )


def _member(row: Sequence[Any]) -> MemberRecord:
    return MemberRecord(*row)


def get_group(conn: sqlite3.Connection, group_id: str) -> GroupRecord | None:
    """The group, dismissed ones included (``dismissed`` says), or None."""
    row = conn.execute(f"SELECT {_GROUP_COLUMNS} FROM groups WHERE group_id = ?", (group_id,)).fetchone()
    return None if row is None else _group(row)


def get_member(conn: sqlite3.Connection, group_id: str, user_id: str) -> MemberRecord | None:
    """The member row (a tombstone too), or None if the user never was a member."""
    row = conn.execute(
        f"SELECT {_MEMBER_COLUMNS} FROM group_members WHERE group_id = ? AND user_id = ?", (group_id, user_id)
    ).fetchone()
    return None if row is None else _member(row)


def get_members_of(conn: sqlite3.Connection, group_id: str, user_ids: Iterable[str]) -> dict[str, MemberRecord]:
    """The rows (tombstones too) of those of ``user_ids`` who have one, by user id."""
    among, values = in_list(conn, "user_id", list(user_ids))
    rows = conn.execute(
        f"SELECT {_MEMBER_COLUMNS} FROM group_members WHERE group_id = ? AND {among}", (group_id, *values)
    )
    return {row[1]: _member(row) for row in rows}


def member_types(conn: sqlite3.Connection, group_id: str) -> dict[str, tuple[int, int]]:
    """Every current member (no tombstones): user id → (type, join_time). For sends and fan-out."""
    return {
        row[0]: (row[1], row[2])
        for row in conn.execute(
            "SELECT user_id, type, join_time FROM group_members WHERE group_id = ? AND type != ?",
            (group_id, REMOVED),
        )
    }


def member_ids(conn: sqlite3.Connection, group_id: str) -> list[str]:
    """The current members' ids, sorted."""
    return [
        row[0]
        for row in conn.execute(
            "SELECT user_id FROM group_members WHERE group_id = ? AND type != ? ORDER BY user_id",
            (group_id, REMOVED),
        )
    ]




def create_group(
    conn: sqlite3.Connection,
    group_id: str,
    owner: str,
    fields: dict[str, Any],
    members: Sequence[tuple[str, int]],
    now_ms: int,
) -> bool:
    """Insert the group and its members ((user_id, type), the owner among them); False if the id exists.

    A dismissed group's id stays taken: its messages and tombstones still name it.
    """
    if conn.execute("SELECT 1 FROM groups WHERE group_id = ?", (group_id,)).fetchone() is not None:
        return False
    conn.execute(
        "INSERT INTO groups (group_id, name, portrait, owner, extra, type, join_type, mute, info_version,"
        " member_version, member_count, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, 1, ?, ?, ?)",
        (
            group_id, fields.get("name", ""), fields.get("portrait", ""), owner, fields.get("extra", ""),
            fields.get("type", 0), fields.get("join_type", 0), fields.get("mute", 0), len(members),
            now_ms, now_ms,
        ),
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO group_members (group_id, user_id, type, join_time, version, updated_at)"
        " VALUES (?, ?, ?, ?, 1, ?)",
        [(group_id, user_id, member_type, now_ms, now_ms) for user_id, member_type in members],
    )
    return True


def _bump_members(conn: sqlite3.Connection, group_id: str, count_delta: int, now_ms: int) -> int:
    """A change of the member list: the next member_version. A change of the count is also a change of the
    info (``member_count`` is one of its fields, docs/PROTOCOL.md §13.1), so it moves info_version too:
    else a device asking with the info version it holds would be told "unchanged" and keep the old count."""
    row = conn.execute(
        "UPDATE groups SET member_version = member_version + 1, member_count = member_count + ?,"
        " info_version = info_version + CASE WHEN ? <> 0 THEN 1 ELSE 0 END, updated_at = ? WHERE group_id = ? RETURNING member_version",
        (count_delta, count_delta, now_ms, group_id),
    ).fetchone()
    return int(row[0])


def add_members(conn: sqlite3.Connection, group_id: str, user_ids: Sequence[str], now_ms: int) -> int:
    """Make ``user_ids`` (none of them a current member) normal members joining now; the new member_version.

    A tombstone comes back to life with a new join time (and its old alias and extra cleared).
    """
    version = _bump_members(conn, group_id, len(user_ids), now_ms)
    conn.executemany(
        "INSERT INTO group_members (group_id, user_id, type, join_time, version, updated_at)"
        " VALUES (?, ?, 0, ?, ?, ?) ON CONFLICT (group_id, user_id) DO UPDATE SET type = 0, alias = '',"
        " extra = '', join_time = excluded.join_time, version = excluded.version, updated_at = excluded.updated_at",
        [(group_id, user_id, now_ms, version, now_ms) for user_id in user_ids],
    )
    return version


def remove_members(conn: sqlite3.Connection, group_id: str, user_ids: Sequence[str], now_ms: int) -> int:
    """Turn current members into tombstones; the new member_version."""
    version = _bump_members(conn, group_id, -len(user_ids), now_ms)
    conn.executemany(
        "UPDATE group_members SET type = ?, version = ?, updated_at = ? WHERE group_id = ? AND user_id = ?",
        [(REMOVED, version, now_ms, group_id, user_id) for user_id in user_ids],
    )
    return version


def set_member_types(
    conn: sqlite3.Connection, group_id: str, changes: Sequence[tuple[str, int]], now_ms: int
) -> int:
    """Set members' types ((user_id, type), never to or from the tombstone); the new member_version."""
    version = _bump_members(conn, group_id, 0, now_ms)
    conn.executemany(
        "UPDATE group_members SET type = ?, version = ?, updated_at = ? WHERE group_id = ? AND user_id = ?",
        [(member_type, version, now_ms, group_id, user_id) for user_id, member_type in changes],
    )
    return version


def set_member_field(
    conn: sqlite3.Connection, group_id: str, user_id: str, column: str, value: str, now_ms: int
) -> int:
    """Set a member's ``alias`` or ``extra``; the new member_version."""
    if column not in ("alias", "extra"):
        raise ValueError(f"not a member field: {column!r}")
    version = _bump_members(conn, group_id, 0, now_ms)
    conn.execute(
        f"UPDATE group_members SET {column} = ?, version = ?, updated_at = ? WHERE group_id = ? AND user_id = ?",
        (value, version, now_ms, group_id, user_id),
    )
    return version


def update_group(conn: sqlite3.Connection, group_id: str, fields: dict[str, Any], now_ms: int) -> int:
    """Set some of the group's fields (``GROUP_FIELDS``); the new info_version."""
    unknown = set(fields) - GROUP_FIELDS
    if unknown:
        raise ValueError(f"not group fields: {sorted(unknown)}")
    names = sorted(fields)
    assignments = "".join(f"{name} = ?, " for name in names)  # names are checked against GROUP_FIELDS
    row = conn.execute(
        f"UPDATE groups SET {assignments}info_version = info_version + 1, updated_at = ?"
        " WHERE group_id = ? RETURNING info_version",
        (*(fields[name] for name in names), now_ms, group_id),
    ).fetchone()
    return int(row[0])


def dismiss_group(conn: sqlite3.Connection, group_id: str, now_ms: int) -> None:
    """Mark the group dismissed and every member removed (the rows stay as tombstones)."""
    count = conn.execute(
        "SELECT member_count FROM groups WHERE group_id = ?", (group_id,)
    ).fetchone()[0]
    version = _bump_members(conn, group_id, -count, now_ms)  # the count drops to 0: info_version moves
    conn.execute("UPDATE groups SET dismissed = 1 WHERE group_id = ?", (group_id,))
    conn.execute(
        "UPDATE group_members SET type = ?, version = ?, updated_at = ? WHERE group_id = ? AND type != ?",
        (REMOVED, version, now_ms, group_id, REMOVED),
    )


def list_members(
    conn: sqlite3.Connection,
    group_id: str,
    since_version: int,
    after: tuple[int, str],
    limit: int,
) -> list[MemberRecord]:
    """Member rows changed after ``since_version``, ordered by (version, user_id), those after ``after``.

    Paging: the next page starts after the last row's (version, user_id); the
    first page passes (0, ""). With ``since_version`` 0 (a device that holds
    nothing) tombstones are left out: there is nothing to remove them from.
    """
    tombstones = "" if since_version > 0 else f" AND type != {REMOVED}"
    rows = conn.execute(
        f"SELECT {_MEMBER_COLUMNS} FROM group_members WHERE group_id = ? AND version > ?"
        f" AND (version, user_id) > (?, ?){tombstones} ORDER BY version, user_id LIMIT ?",
        (group_id, since_version, after[0], after[1], limit),
    )
    return [_member(row) for row in rows]


def member_horizon(conn: sqlite3.Connection, group_id: str) -> int:
    """The highest ``version`` of a member tombstone purged from the group (0: none ever was)."""
    row = conn.execute("SELECT member_horizon FROM groups WHERE group_id = ?", (group_id,)).fetchone()
    return 0 if row is None else int(row[0])


def purge_tombstones(conn: sqlite3.Connection, cutoff_ms: int, limit: int) -> int:
    """Remove up to ``limit`` member tombstones last changed before ``cutoff_ms``, oldest first, raising each
    group's ``member_horizon`` to the highest version removed from it; how many were removed.

    ``type = 4`` is written out (not bound) so that SQLite can use the partial index of tombstones.
    """
    rows = conn.execute(
        f"SELECT group_id, user_id, version FROM group_members WHERE type = {REMOVED} AND updated_at < ?"
        " ORDER BY updated_at LIMIT ?",
        (cutoff_ms, limit),
    ).fetchall()
    highest: dict[str, int] = {}
    for group_id, _, version in rows:
        highest[group_id] = max(highest.get(group_id, 0), version)
    conn.executemany(
        # Not SQLite's two-argument max() (PostgreSQL's is GREATEST): the CASE both spell alike.
        "UPDATE groups SET member_horizon = CASE WHEN member_horizon < ?1 THEN ?1 ELSE member_horizon END"
        " WHERE group_id = ?2",
        [(version, group_id) for group_id, version in highest.items()],
    )
    conn.executemany(
        f"DELETE FROM group_members WHERE group_id = ? AND user_id = ? AND type = {REMOVED}",
        [row[:2] for row in rows],
    )
    return len(rows)


def user_groups(conn: sqlite3.Connection, user_id: str) -> list[GroupRecord]:
    """The groups the user is a current member of, by group id."""
    rows = conn.execute(
        f"SELECT {', '.join('g.' + c.strip() for c in _GROUP_COLUMNS.split(','))} FROM group_members m"
        " JOIN groups g ON g.group_id = m.group_id WHERE m.user_id = ? AND m.type != ? ORDER BY g.group_id",
        (user_id, REMOVED),
    )
    return [_group(row) for row in rows]


def common_groups(conn: sqlite3.Connection, user_id: str, other: str) -> list[str]:
    """The ids of the groups both users are current members of, sorted."""
    return [
        row[0]
        for row in conn.execute(
            "SELECT a.group_id FROM group_members a JOIN group_members b"
            " ON b.group_id = a.group_id AND b.user_id = ? AND b.type != ?"
            " WHERE a.user_id = ? AND a.type != ? ORDER BY a.group_id",
            (other, REMOVED, user_id, REMOVED),
        )
    ]


def bulk_create_for_tests_and_bench(
    conn: sqlite3.Connection, group_id: str, owner: str, user_ids: Sequence[str], now_ms: int
) -> None:
    """Users (if missing) and a group of them owned by ``owner``, in a few statements (bench and tests)."""
    conn.executemany(
        "INSERT INTO users (user_id, created_at, updated_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        [(user_id, now_ms, now_ms) for user_id in dict.fromkeys([owner, *user_ids])],
    )
    members = [(owner, 2)] + [(user_id, 0) for user_id in dict.fromkeys(user_ids) if user_id != owner]
    if not create_group(conn, group_id, owner, {"name": group_id}, members, now_ms):
        raise ValueError(f"group {group_id} exists")
