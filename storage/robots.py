"""Robots (issue 22): plain ``fn(conn, ...)`` functions on the writer thread (reads on a reader).

A robot is a user of type 1 (``UserType.ROBOT``) plus one ``robots`` row: its owner (a user), the secret
that signs its robot API calls and the callbacks sent to it, its callback URL and ``robot_extra``. The
user row and the robot row are written in one transaction. Destroying a robot removes the robot row (its
API access ends) and forbids the user (its sessions end, nobody can connect as it); the user row stays so
that its old messages keep a sender with a name.

Secrets at rest: the ``secret`` column never holds a robot's secret in clear (whoever reads it can sign
robot API calls as the robot and forge its callbacks' signatures). Each row holds
``"sealed1:" + base64(nonce ‖ AES-256-GCM(key, nonce, secret, aad = msgpack([robot_id, "robot"])))``
under a key derived from the server's token key with a label of its own (``storage.sealing``,
``ROBOT_SEAL_INFO``). The functions here take that ``SecretSeal`` and the records they return carry the
secret in clear, or None when the row does not open with this key (the database came from another
server, or the store was opened without a key): such a robot is refused, never accepted with a guess.
A database from before sealing (stop 18) has clear values; the store seals them when it opens
(``seal_clear``), so no schema version was needed.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from dataclasses import dataclass
from typing import Any

from protocol.codes import UserType
from storage import users
from storage.engine import Tx
from storage.records import UserRecord
from storage.sealing import SecretSeal

_COLUMNS = "robot_id, owner, secret, callback, robot_extra, created_at, updated_at"


@dataclass(frozen=True, slots=True)
class RobotRecord:
    robot_id: str
    owner: str
    secret: str | None  # in clear; None: the stored value does not open with this server's key
    callback: str
    robot_extra: str
    created_at: int
    updated_at: int


#: What a sealed value starts with; anything else in the column is a clear value of an older version.
SEALED_PREFIX = "sealed1:"


def _sealed(seal: SecretSeal, robot_id: str, secret: str) -> str:
    return SEALED_PREFIX + base64.b64encode(seal.seal(robot_id, "robot", secret.encode("utf-8"))).decode("ascii")


def _opened(seal: SecretSeal | None, robot_id: str, stored: str) -> str | None:
    if seal is None or not stored.startswith(SEALED_PREFIX):
        return None  # no key, or clear (only before ``seal_clear`` ran, which happens at open)
    try:
        sealed = base64.b64decode(stored[len(SEALED_PREFIX) :], validate=True)
    except binascii.Error:
        return None
    secret = seal.open(robot_id, "robot", sealed)
    return None if secret is None else secret.decode("utf-8")


def _record(seal: SecretSeal | None, row: Any) -> RobotRecord:
    robot_id, owner, stored, *rest = row
    return RobotRecord(robot_id, owner, _opened(seal, robot_id, stored), *rest)


def create_robot(conn: Tx, seal: SecretSeal, robot: RobotRecord, user: UserRecord) -> str:
    """Create the robot's user (type robot) and its row: "ok", "no_owner" or "taken" (the id is a user)."""
    assert robot.secret is not None
    if not users.existing_users(conn, [robot.owner]):
        return "no_owner"
    if not users.create_user(conn, dataclasses.replace(user, type=int(UserType.ROBOT))):
        return "taken"
    conn.execute(
        f"INSERT INTO robots ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (robot.robot_id, robot.owner, _sealed(seal, robot.robot_id, robot.secret), robot.callback, robot.robot_extra, robot.created_at,
         robot.updated_at),
    )  # fmt: skip
    return "ok"


def update_robot(
    conn: Tx, seal: SecretSeal, robot_id: str, fields: dict[str, str], now_ms: int
) -> RobotRecord | None:
    """Set the given columns (owner, secret, callback, robot_extra; checked by the caller); None if no robot."""
    if not fields:
        return get_robot(conn, seal, robot_id)
    if "secret" in fields:
        fields = {**fields, "secret": _sealed(seal, robot_id, fields["secret"])}
    assignments = "".join(f"{column} = ?, " for column in fields)
    cursor = conn.execute(
        f"UPDATE robots SET {assignments}updated_at = ? WHERE robot_id = ?", (*fields.values(), now_ms, robot_id)
    )
    return get_robot(conn, seal, robot_id) if cursor.rowcount else None


def destroy_robot(conn: Tx, robot_id: str) -> bool:
    """Remove the robot row (the gateway then forbids its user); False if there was none."""
    return conn.execute("DELETE FROM robots WHERE robot_id = ?", (robot_id,)).rowcount == 1


def get_robot(conn: Tx, seal: SecretSeal | None, robot_id: str) -> RobotRecord | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM robots WHERE robot_id = ?", (robot_id,)).fetchone()
    return None if row is None else _record(seal, row)


def robots_of(conn: Tx, seal: SecretSeal | None, owner: str) -> list[RobotRecord]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM robots WHERE owner = ? ORDER BY robot_id", (owner,))
    return [_record(seal, row) for row in rows]


def all_robots(conn: Tx, seal: SecretSeal | None) -> list[RobotRecord]:
    """Every robot: the gateway keeps them in memory (their secrets check each robot API call)."""
    return [_record(seal, row) for row in conn.execute(f"SELECT {_COLUMNS} FROM robots ORDER BY robot_id")]


def seal_clear(conn: Tx, seal: SecretSeal) -> int:
    """Seal the secrets an older version stored in clear (at open, in the writer's first transaction).

    Returns:
        How many were sealed (0: none was clear, nothing was written).
    """
    rows = conn.execute("SELECT robot_id, secret FROM robots WHERE secret NOT LIKE 'sealed1:%'").fetchall()
    conn.executemany(
        "UPDATE robots SET secret = ? WHERE robot_id = ?",
        [(_sealed(seal, robot_id, secret), robot_id) for robot_id, secret in rows],
    )
    return len(rows)
