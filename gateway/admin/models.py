"""Request and answer bodies of the admin API, as pydantic models.

Requests are strict (no "5" for 5, no ``true`` for 1) and refuse unknown
fields, so a typo in an app server's call is a clear 251 rather than a field
silently ignored. The models also make FastAPI's OpenAPI document exact.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt

from protocol.codes import MAX_PLATFORM, decimal_message_id, valid_id
from protocol.limits import json_text_problem

T = TypeVar("T")

MAX_TEXT = 1024
MAX_EXTRA = 8192


def _check_id(value: str) -> str:
    if not valid_id(value):
        raise ValueError("must be 1-64 printable characters without leading or trailing whitespace")
    return value


def _check_json(value: str) -> str:
    # ``extra`` is the customer's extension point (SPEC §5): JSON text, so it can grow. The client
    # protocol's check (protocol.limits): depth-bounded before it is parsed, so it never recurses deep.
    if value:
        problem = json_text_problem(value)
        if problem is not None:
            raise ValueError(f"{problem} or empty" if problem == "must be JSON text" else problem)
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
    type: int = Field(0, description="0 a normal user, 1 a robot (robot/create)")


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
    online: bool = Field(description="a connection of this session is live (on any node of a cluster)")


class SessionList(BaseModel):
    user_id: str
    sessions: list[SessionOut]


class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(description="degraded: storage is not writable")
    storage_writable: bool = Field(description="a storage write (one page, really written) committed within 2 s")
    disk_full: bool = Field(
        description="the last write met a full disk (SQLITE_FULL); writes are answered 250 until one commits again"
    )


# ---------------------------------------------------------------------- messages
#
# Message ids are 64-bit and already past 2**53, the largest integer a JavaScript number
# (and jq before 1.7) holds exactly, so the admin API writes and reads them as decimal strings.

def _check_message_id(value: str) -> str:
    if decimal_message_id(value) is None:
        raise ValueError("must be a message id as a string of decimal digits")
    return value


def _refuse_number(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError("must be a string of decimal digits, not a JSON number (ids exceed 2**53)")
    return value


def _check_base64(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except ValueError:
        raise ValueError("must be standard base64 text") from None
    return value


MessageId = Annotated[
    str,
    BeforeValidator(_refuse_number),
    Field(min_length=1, max_length=19, description="64-bit message id as a decimal string"),
    AfterValidator(_check_message_id),
]


class ConversationIn(Request):
    type: int = Field(description="0 private, 1 group, 2 chatroom, 3 channel")
    target: str = Field(
        description="for a private chat, the recipient's user id; for a group, chatroom or channel, its id"
    )
    line: int = 0


class ContentIn(Request):
    """A message's content (SPEC §5). Limits are the client protocol's (251 names the field)."""

    type: int = Field(description="content type, e.g. 1 text")
    searchable_content: str | None = None
    push_content: str | None = None
    content: str | None = None
    data: Annotated[str, AfterValidator(_check_base64)] | None = Field(
        None, description="binary payload, standard base64"
    )
    media_type: int | None = None
    remote_media_url: str | None = None
    persist_flag: int | None = Field(
        None, description="0 not persist, 1 persist, 3 persist and count (default), 4 transparent"
    )
    expire_duration: int | None = None
    mentioned_type: int | None = Field(None, description="0 none, 1 users, 2 everyone")
    mentioned_targets: list[str] | None = None
    extra: Annotated[str, AfterValidator(_check_json)] | None = Field(None, description="JSON text")


class NotifyContentIn(ContentIn):
    """A group operation's ``notify_content``: a content whose ``type`` is ignored (the operation's own
    replaces it), so it may be missing; ``persist_flag`` defaults to 1. 251 names ``notify_content.<field>``."""

    type: int | None = Field(None, description="ignored: the notification keeps the operation's type")  # type: ignore[assignment]


class MessageSend(Request):
    sender: Id = Field(description="any user id, also one with no user row (a system account)")
    conv: ConversationIn
    content: ContentIn
    to_users: list[str] | None = None
    client_msg_id: str | None = Field(
        None,
        description="idempotency id: a retry with the same (sender, client_msg_id) returns the first ack",
    )

    def params(self) -> dict[str, Any]:
        """The request as the client protocol's ``send_message`` params (``data`` as bytes)."""
        params = self.model_dump(exclude_none=True)
        if "data" in params["content"]:
            params["content"]["data"] = base64.b64decode(params["content"]["data"], validate=True)
        del params["sender"]
        return params


class MessageAck(BaseModel):
    message_id: str = Field(description="64-bit id as a decimal string")
    server_time: int
    seq: int = Field(description="the sender's inbox sequence of the message (0 if not stored)")


class MessageRecall(Request):
    message_id: MessageId
    operator: Id | None = Field(None, description="who recalls; default the original sender")


class Recalled(BaseModel):
    message_id: str
    notice_id: str = Field(description="id of the recall notice (content type 80)")


class MessageDelete(Request):
    message_id: MessageId
    user_id: Id | None = Field(
        None, description="delete from this user's inbox only; absent: from everyone's"
    )


class Deleted(BaseModel):
    message_id: str
    user_ids: list[str] = Field(description="whose inboxes the message left")


class BlacklistSet(Request):
    user_id: Id = Field(description="the user whose blacklist changes")
    target: Id = Field(description="the user blocked or unblocked")
    blocked: bool


class Blacklist(BaseModel):
    user_id: str
    user_ids: list[str]


# --- relations (SPEC §7, §9) -----------------------------------------------------------------------

Version = Annotated[int, Field(ge=0, le=2**63 - 1)]


class FriendRequestSend(Request):
    user_id: Id = Field(description="who asks")
    target: Id = Field(description="whom it asks to be friends")
    reason: Text = ""
    extra: Extra = ""


class FriendRequestHandle(Request):
    user_id: Id = Field(description="who received the request and handles it")
    requester: Id = Field(description="who sent it")
    accept: bool


class FriendPair(Request):
    user_id: Id
    friend_id: Id


class FriendsAdd(Request):
    user_id: Id
    friend_ids: list[Id] = Field(max_length=10000, description="made friends of user_id, both sides, no request")


class FriendSet(Request):
    user_id: Id = Field(description="whose view of the friend changes")
    friend_id: Id
    alias: Text | None = Field(None, description="absent: unchanged; \"\": cleared")
    extra: Extra | None = Field(None, description="JSON text; absent: unchanged")


class FriendOut(BaseModel):
    friend_id: str
    alias: str
    extra: str
    created_at: int
    updated_at: int
    version: int = Field(description="its version in the owner's friend stream")


class FriendList(BaseModel):
    user_id: str
    friends: list[FriendOut]


class FriendStatus(BaseModel):
    user_id: str
    friend_id: str
    friends: bool = Field(description="true when each is in the other's friend list")


class SettingPut(Request):
    user_id: Id
    scope: int = Field(description="1, 3, 6, 11, 14, 17, 19, or 1000 and above (protocol.codes.SettingScope)")
    key: Annotated[str, Field(max_length=4096)]
    value: Annotated[str, Field(max_length=65536)] = Field(description="\"\" removes the setting")


class SettingGet(Request):
    user_id: Id
    # Bounded: an int past SQLite's 64 bits made the read raise (HTTP 500; found by the contract test).
    scope: int = Field(ge=0, le=2**31 - 1, description="a setting scope (protocol.codes.SettingScope)")
    key: Annotated[str, Field(max_length=4096)] | None = Field(None, description="absent: every key of the scope")


class SettingOut(BaseModel):
    scope: int
    key: str
    value: str
    updated_at: int
    version: int


class SettingVersion(BaseModel):
    user_id: str
    version: int = Field(description="the user's setting stream head after the put")


class SettingList(BaseModel):
    user_id: str
    settings: list[SettingOut]


# --- groups (SPEC §8) ------------------------------------------------------------------------------


class GroupOp(Request):
    """Fields every group operation takes besides its own."""

    group_id: Id
    operator: Id | None = Field(
        None, description="who the notification names as operator (its `o`); default the group's owner"
    )
    notify_content: NotifyContentIn | None = Field(
        None, description="replaces the notification's default content; its type is the operation's"
    )


class GroupCreate(Request):
    owner: Id = Field(description="the creator and owner; a member")
    group_id: Id | None = Field(None, description="default: generated")
    name: Text = ""
    portrait: Annotated[str, Field(max_length=2048)] = ""
    extra: Extra = ""
    type: Literal[0, 2, 3] = Field(0, description="0 normal, 2 restricted, 3 organization")
    join_type: Literal[0, 1, 2] = Field(0, description="0 open, 1 members invite, 2 managers invite")
    members: Annotated[list[Id], Field(max_length=2000)] = Field(
        default_factory=list, description="initial members besides the owner"
    )
    notify_content: NotifyContentIn | None = None


class GroupCreated(BaseModel):
    group_id: str


class GroupMembersChange(GroupOp):
    user_ids: Annotated[list[Id], Field(min_length=1, max_length=2000)]


class GroupQuit(GroupOp):
    user_id: Id = Field(description="the member who leaves")


class GroupTransfer(GroupOp):
    new_owner: Id


class GroupModify(GroupOp):
    field: Literal["name", "portrait", "extra", "mute", "join_type", "type"]
    value: str | int = Field(description="text for name, portrait and extra; an integer for the others")


class GroupManagers(GroupMembersChange):
    is_manager: bool


class GroupSilence(GroupMembersChange):
    silenced: bool


class GroupAllow(GroupMembersChange):
    allowed: bool


class GroupMemberAlias(GroupOp):
    member: Id
    alias: Annotated[str, Field(max_length=256)]


class GroupMemberExtra(GroupOp):
    member: Id
    extra: Extra


class GroupId(Request):
    group_id: Id


class GroupOut(BaseModel):
    group_id: str
    name: str
    portrait: str
    owner: str
    extra: str
    type: int
    join_type: int
    mute: int
    member_count: int
    info_version: int
    member_version: int
    created_at: int
    updated_at: int


class GroupMembersQuery(Request):
    group_id: Id
    since_version: int = Field(0, ge=0, description="the member_version held; 0 for all (no tombstones)")
    after_version: int = Field(0, ge=0, description="paging: the last row's version")
    after_user: str = Field("", max_length=64, description="paging: the last row's user_id")
    limit: int = Field(200, ge=1, le=500)


class GroupMemberOut(BaseModel):
    user_id: str
    type: int = Field(description="0 normal, 1 manager, 2 owner, 3 silenced, 4 removed, 5 allowed")
    alias: str
    extra: str
    join_time: int
    version: int


class GroupMembersOut(BaseModel):
    member_version: int
    members: list[GroupMemberOut]
    reset: bool = Field(
        False, description="since_version was below the purge horizon: this is the list from 0, drop the copy"
    )


class UserGroupOut(BaseModel):
    group_id: str
    info_version: int
    member_version: int


class UserGroups(BaseModel):
    user_id: str
    groups: list[UserGroupOut]


class CommonGroupsQuery(Request):
    user_id: Id
    other: Id


class CommonGroups(BaseModel):
    group_ids: list[str]


# --------------------------------------------------------------------- chatrooms


class ChatroomId(Request):
    chatroom_id: Id


class ChatroomIn(Request):
    """A chatroom's record. On an existing room, every field is set as given (absent ones to their default)."""

    chatroom_id: Id
    title: Text = ""
    portrait: Text = Field("", max_length=MAX_TEXT, description="picture URL")
    extra: Extra = Field("", description="JSON text or empty")
    state: int = Field(0, ge=0, le=2**31 - 1, description="the app's own value, carried as given")


class ChatroomCreated(BaseModel):
    chatroom_id: str
    created: bool = Field(description="false: the room existed and its fields were updated")


class ChatroomStatsOut(BaseModel):
    """Counters since the gateway started."""

    sent: int = Field(description="messages sent to the room")
    delivered: int = Field(description="pushes handed to members' connections")
    dropped: int = Field(description="queued messages slow members lost, oldest first")
    swept: int = Field(description="members dropped as idle")
    cut_off: int = Field(description="members dropped because their socket stopped draining")


class ChatroomOut(BaseModel):
    chatroom_id: str
    title: str
    portrait: str
    extra: str
    state: int
    member_count: int = Field(description="users present now (on this gateway)")
    created_at: int
    updated_at: int
    stats: ChatroomStatsOut


# --- conversations (issue 12: read marks, clearing, the list) ----------------------------------------


class ConversationMark(Request):
    user_id: Id = Field(description="whose mark moves")
    conv: ConversationIn = Field(description="the user's view: a private chat is named after the other user")
    message_id: MessageId = Field(description="up to this message (a mark only moves forward)")


class ReadMark(BaseModel):
    read_to: str = Field(description="the read mark now in force, a message id as a decimal string")


class ConversationCleared(BaseModel):
    deleted: int = Field(description="how many of the user's messages this call deleted")


class ConversationListQuery(Request):
    user_id: Id
    before: MessageId | None = Field(None, description="only conversations whose last message is older; absent: newest")
    limit: int = Field(50, ge=1, le=200)
    types: list[StrictInt] | None = Field(
        None, description="only these conversation types (0 private, 1 group, 3 channel), 1-16 items; absent: all"
    )
    lines: list[StrictInt] | None = Field(None, description="only these lines (0..2^31-1), 1-64 items; absent: all")


class ConversationOut(BaseModel):
    conv: dict[str, Any] = Field(description="{type, target, line}, the user's view")
    last_message_id: str
    last_from: str
    last_server_time: int
    last_content_type: int
    read_to: str = Field(description="the read mark, a message id as a decimal string (\"0\": none)")
    unread: int
    unread_mentions: int


class ConversationList(BaseModel):
    user_id: str
    conversations: list[ConversationOut]
    more: bool


# --------------------------------------------------------------------- channels


class ChannelId(Request):
    channel_id: Id


class ChannelCreate(Request):
    owner: Id = Field(description="an existing user; its scope 8 setting names the channel")
    channel_id: Id | None = Field(None, description="default: generated")
    name: Annotated[str, Field(max_length=256)] = ""
    portrait: Annotated[str, Field(max_length=2048)] = Field("", description="picture URL")
    desc: Annotated[str, Field(max_length=4096)] = ""
    extra: Extra = Field("", description="JSON text or empty")
    private: bool = Field(False, description="listeners only by the owner's invitation; others get 253")
    callback: Annotated[str, Field(max_length=2048)] = Field("", description="http(s) URL or empty")
    callback_only: bool = Field(
        False, description="a listener's message goes only to the callback URL, not to the owner's inbox"
    )


class ChannelCreated(BaseModel):
    channel_id: str
    info_version: int


class ChannelOut(BaseModel):
    channel_id: str
    name: str
    portrait: str
    desc: str
    extra: str
    owner: str
    private: bool
    callback_only: bool
    callback: str
    state: int = Field(description="0 normal (a destroyed channel answers 253)")
    info_version: int
    listener_count: int
    created_at: int
    updated_at: int


class ChannelPost(Request):
    """A post as the channel's owner: to every listener's inbox."""

    channel_id: Id
    content: ContentIn
    to_users: list[Id] | None = Field(None, description="only these listeners (and the owner's own inbox)")
    client_msg_id: str | None = Field(None, description="idempotency id, as in /admin/message/send")


class ChannelListenersQuery(Request):
    channel_id: Id
    after_user: str = Field("", max_length=64, description="paging: the last user_id of the previous page")
    limit: int = Field(200, ge=1, le=1000)


class ChannelListenerOut(BaseModel):
    user_id: str
    manager: bool
    listened_at: int


class ChannelListenersOut(BaseModel):
    count: int = Field(description="listeners in all")
    listeners: list[ChannelListenerOut]


# --- message search (issue 26, docs/ADMIN_API.md "Search") ---


class MessageSearch(Request):
    """A search of every user's messages (moderation). The checks are the client method's (251 names the field)."""

    keyword: str = Field(description="every word (by prefix) and CJK run must be in the searchable_content")
    conv: ConversationIn | None = Field(None, description="only this group or channel (a private chat needs user_id)")
    from_user: str | None = Field(None, description="only messages from this user")
    content_types: list[int] | None = Field(None, description="only these content types (at most 32)")
    before: int | None = Field(None, description="only messages with server_time < before (ms)")
    after: int | None = Field(None, description="only messages with server_time >= after (ms)")
    limit: int = Field(20, description="results per page, 1..100")
    cursor: str | None = Field(None, description="next_cursor of the previous page")


class MessageSearchUser(MessageSearch):
    """The same search over one user's messages, as that user's search_messages finds them."""

    user_id: Id = Field(description="whose messages: their inbox, less what they deleted")


class FoundMessage(BaseModel):
    message_id: str = Field(description="64-bit id as a decimal string")
    conv: dict[str, Any] = Field(description="{type, target, line}, as stored")
    from_user: str
    server_time: int
    content_type: int
    searchable_content: str
    highlights: list[list[int]] = Field(description="[start, end) code point offsets into searchable_content")


class SearchResult(BaseModel):
    results: list[FoundMessage]
    next_cursor: str | None = Field(None, description="pass as cursor for older results; absent: no more")


class SearchRebuild(Request):
    """Re-index every stored message (after a segmentation change, or to repair the index)."""


class SearchRebuilt(BaseModel):
    indexed: int = Field(description="how many messages the index holds now")
