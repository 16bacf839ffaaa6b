"""The plain values the storage layer hands out: users, sessions, and issue results.

They are frozen so that a record read from the database can be shared between
tasks (caches, fan-out) without anyone mutating it behind the others' backs.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Session states, as stored in ``sessions.state``.
SESSION_ACTIVE = "active"
SESSION_DELETED = "deleted"

#: Why a session was deleted (``sessions.deleted_reason``), SPEC §2:
#: ``kicked`` by a newer token on the same platform class (or an admin kick),
#: ``cleared`` by a disconnect with ``clear_session = 1``, ``destroyed`` by the
#: admin API, ``forbidden`` because its user was forbidden, ``replaced`` because
#: another user's session took over the same client_id.
END_REASONS = frozenset({"kicked", "cleared", "destroyed", "forbidden", "replaced"})

#: Length of a session secret in bytes (256 bits, SPEC §2).
SECRET_BYTES = 32

#: The user columns an app server may change with ``update_user`` (status has
#: its own call because forbidding a user also ends their sessions).
USER_INFO_FIELDS: dict[str, type] = {
    "name": str,
    "display_name": str,
    "portrait": str,
    "gender": int,
    "mobile": str,
    "email": str,
    "address": str,
    "company": str,
    "social": str,
    "extra": str,
}


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One row of ``users``.

    Attributes:
        user_id: The user's id (1–64 printable characters, SPEC §1).
        extra: Free-form JSON text supplied by the app server, or ``""``.
        status: A ``protocol.codes.UserStatus`` value.
        created_at: Milliseconds since the epoch.
        updated_at: Milliseconds since the epoch of the last info or status change.
        type: A ``protocol.codes.UserType`` value: 1 for a robot (set only by robot/create).
    """

    user_id: str
    name: str = ""
    display_name: str = ""
    portrait: str = ""
    gender: int = 0
    mobile: str = ""
    email: str = ""
    address: str = ""
    company: str = ""
    social: str = ""
    extra: str = ""
    status: int = 0
    created_at: int = 0
    updated_at: int = 0
    type: int = 0  # protocol.codes.UserType (migration _v11_robots); last, as its column is


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One row of ``sessions``: what a token for (user_id, client_id) stands on.

    Attributes:
        platform: A ``protocol.codes.Platform`` value.
        secret: The 32-byte session secret, in clear (the database holds it sealed:
            ``storage.sealing``), or None when it does not open with this server's key
            (sealed under another ``token.key``): no proof can match it then (-6). A
            deleted session keeps it, so the gateway can still check a client's proof
            and answer Kickedoff (-7) rather than SecretKeyMismatch (-6).
        state: ``"active"`` or ``"deleted"``.
        deleted_reason: One of ``END_REASONS`` when deleted, else ``None``.
        created_at: When the row was first created (ms); kept across re-issues.
        issued_at: When the current secret was issued (ms).
        last_seen: Last time a connection on this session was seen (ms).
    """

    user_id: str
    client_id: str
    platform: int
    secret: bytes | None
    state: str
    deleted_reason: str | None
    created_at: int
    issued_at: int
    last_seen: int


@dataclass(frozen=True, slots=True)
class IssueResult:
    """What ``Store.issue_session`` did.

    Attributes:
        session: The session as it now stands (active, new secret).
        ended: ``(user_id, client_id)`` of every session this call deleted (kicked
            or replaced), so the gateway can push KICKED to them and close them.
    """

    session: SessionRecord
    ended: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class ChatroomRecord:
    """One row of ``chatrooms`` (the room itself; its members are only in the gateway's memory).

    Attributes:
        extra: JSON text supplied by the app server, or ``""``.
        state: the app's own value, carried as given (WildfireChat: 0 normal, 1 not started, 2 ended).
    """

    chatroom_id: str
    title: str = ""
    portrait: str = ""
    extra: str = ""
    state: int = 0
    created_at: int = 0
    updated_at: int = 0
