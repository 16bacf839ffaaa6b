"""User info on demand (SPEC §6, FAQ 4 and 9): not pushed on change; the SDK fetches and caches."""

from __future__ import annotations

from typing import Any

from gateway.rpc.dispatch import Caller, method
from gateway.services import Services
from protocol.codec import Fields
from protocol.codes import ErrorCode
from protocol.errors import FieldError
from storage.records import USER_INFO_FIELDS, UserRecord

MAX_USERS_PER_REQUEST = 100
#: Every field a user sees of its own info; others see ``user.public_fields`` of it (plus id and updated_at).
ALL_FIELDS = ("user_id", *USER_INFO_FIELDS, "updated_at")


@method("get_user_info")
async def get_user_info(services: Services, caller: Caller, params: Fields) -> tuple[int, Any]:
    """{user_ids: [str], refresh: bool, known?: {user_id: updated_at}} → {users: [...], unchanged?: [str]}.

    The users found, in the order asked. A user gets all of its own info; of others, only the
    fields in ``user.public_fields`` (by default not mobile, email or address), plus ``user_id``
    and ``updated_at``.

    ``known`` is what the SDK's cache holds: a user whose ``updated_at`` equals the one given is
    left out of ``users`` and named in ``unchanged`` instead (present only when ``known`` was
    sent), so a refresh of many users costs little. ``refresh`` is accepted for SDK
    compatibility: the server always answers from storage. With user hosting off the server
    keeps no info, so only ids come back.
    """
    user_ids = params.text_list("user_ids", max_items=MAX_USERS_PER_REQUEST)
    params.boolean("refresh", default=False)
    known = _known(params)
    if not services.config.user.hosting:
        return ErrorCode.SUCCESS, {"users": [{"user_id": u} for u in dict.fromkeys(user_ids)]}
    records = await services.store.get_users(list(dict.fromkeys(user_ids)))
    public = ("user_id", *services.config.user.public_field_names, "updated_at")
    changed = [r for r in records if known is None or known.get(r.user_id) != r.updated_at]
    answer: dict[str, Any] = {"users": [_info(r, ALL_FIELDS if r.user_id == caller.user_id else public) for r in changed]}
    if known is not None:
        answer["unchanged"] = [r.user_id for r in records if known.get(r.user_id) == r.updated_at]
    return ErrorCode.SUCCESS, answer


def _info(record: UserRecord, fields: tuple[str, ...]) -> dict[str, Any]:
    """The fields shown, and ``type`` when it is not 0 (1: a robot, for a badge; docs/PROTOCOL.md §9.2)."""
    info = {f: getattr(record, f) for f in fields}
    if record.type:
        info["type"] = record.type
    return info


def _known(params: Fields) -> dict[str, int] | None:
    if "known" not in params:
        return None
    known = params.mapping("known").raw
    if len(known) > MAX_USERS_PER_REQUEST:
        raise FieldError("known", f"at most {MAX_USERS_PER_REQUEST} entries")
    for value in known.values():
        if value.__class__ is not int:
            raise FieldError("known", "values must be integers (updated_at, ms)")
    return dict(known)
