"""Request and answer bodies of the robot endpoints: ``/admin/robot/...`` (the app server manages robots) and
the robot API, ``/robot/...`` (a robot acts). Built from ``models``' field types (``Id``, ``Text``, ``Extra``,
``MessageId``, ``ContentIn``, ``ConversationIn``), so every check those carry applies here too."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from .models import (
    ContentIn,
    ConversationIn,
    Extra,
    Id,
    MessageId,
    Request,
    Text,
)

Callback = Annotated[str, Field(max_length=2048, description="http(s) URL or empty (no callback)")]
Secret = Annotated[str, Field(min_length=16, max_length=256, description="at least 16 characters")]


# --- the admin API: /admin/robot/... ---------------------------------------------------------------


class RobotCreate(Request):
    owner: Id = Field(description="an existing user who answers for the robot")
    robot_id: Id | None = Field(None, description="default: generated; must not be a user already")
    secret: Secret | None = Field(None, description="default: 256 random bits as hex; shown once, in the answer")
    callback: Callback = ""
    robot_extra: Extra = Field("", description="JSON text or empty: the app's own data about the robot")
    name: Text = ""
    display_name: Text = ""
    portrait: Text = Field("", description="avatar URL")


class RobotSecret(BaseModel):
    robot_id: str
    secret: str | None = Field(None, description="the robot's secret: in the answer to create and to a rotation only")


class RobotUpdate(Request):
    """Only the fields present change."""

    robot_id: Id
    owner: Id | None = None
    callback: Callback | None = None
    robot_extra: Extra | None = None
    secret: Secret | None = Field(None, description="a new secret, in force at once")
    rotate_secret: bool = Field(False, description="generate a new secret (in the answer), in force at once")


class RobotId(Request):
    robot_id: Id


class RobotOwner(Request):
    owner: Id


class RobotOut(BaseModel):
    robot_id: str
    owner: str
    callback: str
    robot_extra: str
    created_at: int
    updated_at: int


class RobotList(BaseModel):
    owner: str
    robots: list[RobotOut]


class MessageUpdate(Request):
    message_id: MessageId
    content: ContentIn = Field(description="the new content (its type may differ; 80 and 81 are the server's)")
    distribute: bool = Field(
        True, description="true: an update notice to every holder (pushed as message_updated); false: stored only"
    )


class Updated(BaseModel):
    message_id: str
    notice_id: str = Field(description="id of the update notice (content type 81); \"0\" when not distributed")


# --- the robot API: /robot/... (the robot is the caller) ---------------------------------------------


class RobotSend(Request):
    conv: ConversationIn
    content: ContentIn
    to_users: list[Id] | None = None
    client_msg_id: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        None, description="idempotency id: a retry with the same id returns the first ack"
    )


class RobotReply(Request):
    message_id: MessageId = Field(description="a message the robot holds (253 otherwise)")
    content: ContentIn
    to_sender_only: bool = Field(
        False, description="in a group or channel: only the original's sender (and the robot) get it"
    )
    client_msg_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class RobotMessageId(Request):
    message_id: MessageId


class RobotUpdateMessage(Request):
    message_id: MessageId = Field(description="one of the robot's own messages (248 otherwise)")
    content: ContentIn


class RobotUserInfo(Request):
    user_ids: Annotated[list[Id], Field(min_length=1, max_length=100)]


class RobotProfileUpdate(Request):
    """The robot's own user info; only the fields present change."""

    name: Text | None = None
    display_name: Text | None = None
    portrait: Text | None = None
    gender: int | None = Field(None, ge=0, le=65535)
    mobile: Text | None = None
    email: Text | None = None
    address: Text | None = None
    company: Text | None = None
    social: Text | None = None
    extra: Extra | None = None


class RobotCallback(Request):
    url: Callback


class RobotCallbackOut(BaseModel):
    url: str = Field(description="\"\": none")


class RobotGroupCreate(Request):
    group_id: Id | None = Field(None, description="default: generated")
    name: Text = ""
    portrait: Annotated[str, Field(max_length=2048)] = ""
    extra: Extra = ""
    type: int = Field(0, ge=0, le=3, description="0 normal, 2 restricted (3 organization: the admin's, 248)")
    join_type: int = Field(0, ge=0, le=2)
    members: Annotated[list[Id], Field(max_length=2000)] = Field(default_factory=list)


class RobotGroupMembers(Request):
    group_id: Id
    user_ids: Annotated[list[Id], Field(min_length=1, max_length=2000)]


class RobotGroupId(Request):
    group_id: Id


class RobotGroupMembersQuery(Request):
    group_id: Id
    since_version: int = Field(0, ge=0, le=2**53)
    after_version: int = Field(0, ge=0, le=2**53)
    after_user: Annotated[str, Field(max_length=64)] = ""
    limit: int = Field(200, ge=1, le=500)
