"""Request and answer bodies of the admin API, as pydantic models.

Requests are strict (no "5" for 5, no ``true`` for 1) and refuse unknown
fields, so a typo in an app server's call is a clear 251 rather than a field
silently ignored. The models also make FastAPI's OpenAPI document exact.
"""

from __future__ import annotations

import json
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from gateway.sessions import valid_id
from protocol.codes import MAX_PLATFORM

T = TypeVar("T")

MAX_TEXT = 1024
MAX_EXTRA = 8192


def _check_id(value: str) -> str:
    if not valid_id(value):
        raise ValueError("must be 1-64 printable characters without leading or trailing whitespace")
    return value


def _check_json(value: str) -> str:
    # ``extra`` is the customer's extension point (SPEC §5): JSON text, so it can grow.
    if value:
        try:
            json.loads(value)
        except ValueError:
            raise ValueError("must be JSON text or empty") from None
    return value


Id = Annotated[str, AfterValidator(_check_id)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Extra = Annotated[str, Field(max_length=MAX_EXTRA), AfterValidator(_check_json)]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Answer(BaseModel, Generic[T]):
    """Every answer: ``code`` 0 on success, else an ``ErrorCode``; ``result`` only on success."""

    code: int
    msg: str
    result: T | None = None


class UserInfo(Request):
    """User fields an app server sets. On update, only the fields present in the request change."""

    user_id: Id
    name: Text = ""
    display_name: Text = ""
    portrait: Text = Field("", max_length=MAX_TEXT, description="avatar URL")
    gender: int = Field(0, ge=0, le=65535, description="by convention 0 unknown, 1 male, 2 female")
    mobile: Text = ""
    email: Text = ""
    address: Text = ""
    company: Text = ""
    social: Text = ""
    extra: Extra = Field("", description="JSON text or empty")

    def given_fields(self) -> dict[str, str | int]:
        """The info fields present in the request (user_id excluded)."""
        return {name: getattr(self, name) for name in self.model_fields_set if name != "user_id"}


class UserId(Request):
    user_id: Id


class BlockStatus(Request):
    user_id: Id
    # An int range, not Literal[0, 1, 2]: pydantic matches ``true`` against the literal 1.
    status: int = Field(
        ge=0, le=2, description="0 normal, 1 muted (cannot send), 2 forbidden (cannot connect)"
    )


class TokenRequest(Request):
    user_id: Id
    client_id: Id
    platform: int = Field(ge=0, le=MAX_PLATFORM, description="SPEC §1: 1 iOS, 2 Android, 3 Windows, ...")


class SessionId(Request):
    user_id: Id
    client_id: Id


class UserCreated(BaseModel):
    user_id: str
    created: bool = Field(description="false: the user existed and the given fields were updated")


class UserOut(BaseModel):
    user_id: str
    name: str
    display_name: str
    portrait: str
    gender: int
    mobile: str
    email: str
    address: str
    company: str
    social: str
    extra: str
    status: int = Field(description="0 normal, 1 muted, 2 forbidden")
    created_at: int
    updated_at: int


class TokenOut(BaseModel):
    user_id: str
    token: str


class SessionOut(BaseModel):
    client_id: str
    platform: int
    state: Literal["active", "deleted"]
    deleted_reason: str | None = Field(description="kicked, cleared, destroyed, forbidden or replaced")
    created_at: int
    issued_at: int
    last_seen: int
    online: bool = Field(description="a connection of this session is live on this gateway")


class SessionList(BaseModel):
    user_id: str
    sessions: list[SessionOut]


class Health(BaseModel):
    status: Literal["ok"] = "ok"
