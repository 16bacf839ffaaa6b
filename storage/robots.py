"""Robots (issue 22): plain ``fn(conn, ...)`` functions on the writer thread (reads on a reader).

A robot is a user of type 1 (``UserType.ROBOT``) plus one ``robots`` row: its owner (a user), the secret
that signs its robot API calls and the callbacks sent to it, its callback URL and ``robot_extra``. The
user row and the robot row are written in one transaction. Destroying a robot removes the robot row (its
API access ends) and forbids the user (its sessions end, nobody can connect as it); the user row stays so
that its old messages keep a sender with a name.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from dataclasses import dataclass

from protocol.codes import UserType
from storage import users
from storage.records import UserRecord

_COLUMNS = "robot_id, owner, secret, callback, robot_extra, created_at, updated_at"


@dataclass(frozen=True, slots=True)
class RobotRecord:
    robot_id: str
    owner: str
    secret: str
    callback: str
    robot_extra: str
    created_at: int
    updated_at: int


def create_robot(conn: sqlite3.Connection, robot: RobotRecord, user: UserRecord) -> str:
    """Create the robot's user (type robot) and its row: "ok", "no_owner" or "taken" (the id is a user)."""
    if not users.existing_users(conn, [robot.owner]):
        return "no_owner"
    if not users.create_user(conn, dataclasses.replace(user, type=int(UserType.ROBOT))):
        return "taken"
    conn.execute(
        f"INSERT INTO robots ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (robot.robot_id, robot.owner, robot.secret, robot.callback, robot.robot_extra, robot.created_at,
         robot.updated_at),
    )  # fmt: skip
    return "ok"


def update_robot(conn: sqlite3.Connection, robot_id: str, fields: dict[str, str], now_ms: int) -> RobotRecord | None:
    """Set the given columns (owner, secret, callback, robot_extra; checked by the caller); None if no robot."""
    if not fields:
        return get_robot(conn, robot_id)
    assignments = "".join(f"{column} = ?, " for column in fields)
    cursor = conn.execute(
        f"UPDATE robots SET {assignments}updated_at = ? WHERE robot_id = ?", (*fields.values(), now_ms, robot_id)
    )
    return get_robot(conn, robot_id) if cursor.rowcount else None


def destroy_robot(conn: sqlite3.Connection, robot_id: str) -> bool:
    """Remove the robot row (the gateway then forbids its user); False if there was none."""
    return conn.execute("DELETE FROM robots WHERE robot_id = ?", (robot_id,)).rowcount == 1


def get_robot(conn: sqlite3.Connection, robot_id: str) -> RobotRecord | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM robots WHERE robot_id = ?", (robot_id,)).fetchone()
    return None if row is None else RobotRecord(*row)


def robots_of(conn: sqlite3.Connection, owner: str) -> list[RobotRecord]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM robots WHERE owner = ? ORDER BY robot_id", (owner,))
    return [RobotRecord(*row) for row in rows]


def all_robots(conn: sqlite3.Connection) -> list[RobotRecord]:
    """Every robot: the gateway keeps them in memory (their secrets check each robot API call)."""
    return [RobotRecord(*row) for row in conn.execute(f"SELECT {_COLUMNS} FROM robots ORDER BY robot_id")]
