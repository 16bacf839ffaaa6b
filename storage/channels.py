"""Channels (conversation type 3): plain ``fn(conn, ...)`` queries over ``channels``, ``channel_listeners``
and ``channel_invites``; the writer's run of channel sends builds on them in ``storage.sends``.

Facts only: the channel's fields and version, who listens (and which listeners are
managers), who was invited to a private channel. The rules (who may post, listen,
invite, manage; where a listener's message goes) live in ``gateway.domain.channels``; a
send asks them through ``SendPolicy.channel_route``.

``info_version`` goes up by one with every change of the channel's own fields
(owner, state and private flag included), so a device holding version v asks for
the info only when it changed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from storage.engine import in_list

#: ``ChannelState.DESTROYED``: the one state storage gives meaning to (the channel is gone).
DESTROYED: Final = 1

#: The channel fields an update may set (column names).
CHANNEL_FIELDS: Final = frozenset(
    {"name", "portrait", "description", "extra", "owner", "private", "callback", "callback_only"}
)

#: Where a channel send goes, as the gateway's rule (``SendPolicy.channel_route``) answers it:
#: to every listener (and the owner, the managers and the sender's own inbox) ...
ROUTE_LISTENERS: Final = 0
#: ... to the owner alone (and the sender's own inbox): ``to_users`` becomes ``[owner]`` ...
ROUTE_OWNER: Final = 1
#: ... or to the callback URL: stored for the sender only, ``to_users`` ``[owner]``, the result names the URL.
ROUTE_CALLBACK: Final = 2


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    channel_id: str
    name: str
    portrait: str
    description: str
    extra: str
    owner: str
    private: bool
    callback: str
    callback_only: bool
    info_version: int
    state: int
    created_at: int
    updated_at: int

    @property
    def destroyed(self) -> bool:
        return self.state == DESTROYED

    def to_wire(self, with_callback: bool) -> dict[str, Any]:
        """The channel info map (docs/PROTOCOL.md §15); the callback URL only for its owner (or the admin)."""
        wire: dict[str, Any] = {
            "channel_id": self.channel_id,
            "name": self.name,
            "portrait": self.portrait,
            "desc": self.description,
            "extra": self.extra,
            "owner": self.owner,
            "private": self.private,
            "callback_only": self.callback_only,
            "state": self.state,
            "info_version": self.info_version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if with_callback:
            wire["callback"] = self.callback
        return wire


@dataclass(frozen=True, slots=True)
class ListenerRecord:
    channel_id: str
    user_id: str
    manager: bool
    listened_at: int


_COLUMNS: Final = (
    "channel_id, name, portrait, description, extra, owner, private, callback, callback_only, info_version,"
    " state, created_at, updated_at"
)


def _channel(row: Sequence[Any]) -> ChannelRecord:
    return ChannelRecord(
        row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]), row[7], bool(row[8]), *row[9:13]
    )


def get_channel(conn: sqlite3.Connection, channel_id: str) -> ChannelRecord | None:
    """The channel, destroyed ones included (``destroyed`` says), or None."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM channels WHERE channel_id = ?", (channel_id,)).fetchone()
    return None if row is None else _channel(row)


def create_channel(
    conn: sqlite3.Connection, channel_id: str, owner: str, fields: dict[str, Any], now_ms: int
) -> bool:
    """Insert the channel (info_version 1); False if the id is taken (a destroyed channel's too)."""
    cursor = conn.execute(
        f"INSERT INTO channels ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 0, ?, ?) ON CONFLICT DO NOTHING",
        (
            channel_id, fields.get("name", ""), fields.get("portrait", ""), fields.get("description", ""),
            fields.get("extra", ""), owner, int(bool(fields.get("private", False))), fields.get("callback", ""),
            int(bool(fields.get("callback_only", False))), now_ms, now_ms,
        ),
    )  # fmt: skip
    return cursor.rowcount == 1


def update_channel(conn: sqlite3.Connection, channel_id: str, fields: dict[str, Any], now_ms: int) -> int:
    """Set some of the channel's fields (``CHANNEL_FIELDS``); the new info_version."""
    unknown = set(fields) - CHANNEL_FIELDS
    if unknown:
        raise ValueError(f"not channel fields: {sorted(unknown)}")
    names = sorted(fields)
    assignments = "".join(f"{name} = ?, " for name in names)  # names are checked against CHANNEL_FIELDS
    values = [int(v) if isinstance(v, bool) else v for v in (fields[name] for name in names)]
    row = conn.execute(
        f"UPDATE channels SET {assignments}info_version = info_version + 1, updated_at = ?"
        " WHERE channel_id = ? RETURNING info_version",
        (*values, now_ms, channel_id),
    ).fetchone()
    return int(row[0])


def destroy_channel(conn: sqlite3.Connection, channel_id: str, now_ms: int) -> list[str]:
    """Mark the channel destroyed, drop its listeners and invitations; the listeners it had."""
    listeners = listener_ids(conn, channel_id)
    conn.execute(
        "UPDATE channels SET state = ?, info_version = info_version + 1, updated_at = ? WHERE channel_id = ?",
        (DESTROYED, now_ms, channel_id),
    )
    conn.execute("DELETE FROM channel_listeners WHERE channel_id = ?", (channel_id,))
    conn.execute("DELETE FROM channel_invites WHERE channel_id = ?", (channel_id,))
    return listeners


def get_listener(conn: sqlite3.Connection, channel_id: str, user_id: str) -> ListenerRecord | None:
    row = conn.execute(
        "SELECT channel_id, user_id, manager, listened_at FROM channel_listeners WHERE channel_id = ? AND user_id = ?",
        (channel_id, user_id),
    ).fetchone()
    return None if row is None else ListenerRecord(row[0], row[1], bool(row[2]), row[3])


def get_listeners_of(conn: sqlite3.Connection, channel_id: str, user_ids: Iterable[str]) -> dict[str, bool]:
    """Which of ``user_ids`` listen: user id → manager flag."""
    among, values = in_list(conn, "user_id", list(user_ids))
    return {
        row[0]: bool(row[1])
        for row in conn.execute(
            f"SELECT user_id, manager FROM channel_listeners WHERE channel_id = ? AND {among}",
            (channel_id, *values),
        )
    }


def add_listener(conn: sqlite3.Connection, channel_id: str, user_id: str, now_ms: int) -> bool:
    """The user listens from now (not a manager); False if it already did (nothing changed)."""
    cursor = conn.execute(
        "INSERT INTO channel_listeners (channel_id, user_id, manager, listened_at) VALUES (?, ?, 0, ?)"
        " ON CONFLICT DO NOTHING",
        (channel_id, user_id, now_ms),
    )
    return cursor.rowcount == 1


def remove_listener(conn: sqlite3.Connection, channel_id: str, user_id: str) -> bool:
    """The user no longer listens (nor manages); False if it did not listen."""
    cursor = conn.execute(
        "DELETE FROM channel_listeners WHERE channel_id = ? AND user_id = ?", (channel_id, user_id)
    )
    return cursor.rowcount == 1


def set_managers(conn: sqlite3.Connection, channel_id: str, user_ids: Sequence[str], manager: bool) -> None:
    """Set or clear the manager flag of listeners."""
    conn.executemany(
        "UPDATE channel_listeners SET manager = ? WHERE channel_id = ? AND user_id = ?",
        [(int(manager), channel_id, user_id) for user_id in user_ids],
    )


def listener_ids(conn: sqlite3.Connection, channel_id: str) -> list[str]:
    """Every listener's id, sorted."""
    return [
        row[0]
        for row in conn.execute(
            "SELECT user_id FROM channel_listeners WHERE channel_id = ? ORDER BY user_id", (channel_id,)
        )
    ]


def list_listeners(
    conn: sqlite3.Connection, channel_id: str, after_user: str, limit: int
) -> list[ListenerRecord]:
    """A page of the listeners, by user id, those after ``after_user``."""
    rows = conn.execute(
        "SELECT channel_id, user_id, manager, listened_at FROM channel_listeners"
        " WHERE channel_id = ? AND user_id > ? ORDER BY user_id LIMIT ?",
        (channel_id, after_user, limit),
    )
    return [ListenerRecord(r[0], r[1], bool(r[2]), r[3]) for r in rows]


def listener_count(conn: sqlite3.Connection, channel_id: str) -> int:
    return int(
        conn.execute("SELECT COUNT(*) FROM channel_listeners WHERE channel_id = ?", (channel_id,)).fetchone()[0]
    )


def add_invites(conn: sqlite3.Connection, channel_id: str, user_ids: Sequence[str], now_ms: int) -> None:
    conn.executemany(
        "INSERT INTO channel_invites (channel_id, user_id, invited_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        [(channel_id, user_id, now_ms) for user_id in user_ids],
    )


def is_invited(conn: sqlite3.Connection, channel_id: str, user_id: str) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM channel_invites WHERE channel_id = ? AND user_id = ?", (channel_id, user_id)
        ).fetchone()
        is not None
    )


def owned_channels(conn: sqlite3.Connection, user_id: str) -> list[ChannelRecord]:
    """The live channels the user owns, by id."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM channels WHERE owner = ? AND state != ? ORDER BY channel_id", (user_id, DESTROYED)
    )
    return [_channel(row) for row in rows]


def listened_channels(conn: sqlite3.Connection, user_id: str) -> list[ChannelRecord]:
    """The live channels the user listens to, by id."""
    cols = ", ".join("c." + c.strip() for c in _COLUMNS.split(","))
    rows = conn.execute(
        f"SELECT {cols} FROM channel_listeners l JOIN channels c ON c.channel_id = l.channel_id"
        " WHERE l.user_id = ? AND c.state != ? ORDER BY c.channel_id",
        (user_id, DESTROYED),
    )
    return [_channel(row) for row in rows]




def bulk_create_for_tests_and_bench(
    conn: sqlite3.Connection, channel_id: str, owner: str, listeners: Sequence[str], now_ms: int
) -> None:
    """Users (if missing) and a channel owned by ``owner`` with these listeners, in a few statements.

    For tests and benches: it writes no scope 8/9 settings (the gateway's operations do).
    """
    conn.executemany(
        "INSERT INTO users (user_id, created_at, updated_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        [(user_id, now_ms, now_ms) for user_id in dict.fromkeys([owner, *listeners])],
    )
    if not create_channel(conn, channel_id, owner, {"name": channel_id}, now_ms):
        raise ValueError(f"channel {channel_id} exists")
    conn.executemany(
        "INSERT INTO channel_listeners (channel_id, user_id, manager, listened_at) VALUES (?, ?, 0, ?)",
        [(channel_id, user_id, now_ms) for user_id in dict.fromkeys(listeners) if user_id != owner],
    )


#: Sender roles ``SendPolicy.channel_route`` is asked about (``ListenerRole``'s numbers in the gateway).
ROLE_NONE: Final = -1  # neither owner nor listener
ROLE_LISTENER: Final = 0
ROLE_MANAGER: Final = 1
ROLE_OWNER: Final = 2
