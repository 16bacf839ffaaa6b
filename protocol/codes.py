"""Every number Ember puts on the wire: statuses, error codes, id limits, conversation and content types.

The values are WildfireChat's, so that an SDK ported from it keeps its tables
(see SPEC §3, §4 and §5). This module is the only place they are defined:
``protocol``, ``storage``, ``gateway`` and ``client`` all import them from here.
"""

from __future__ import annotations

import enum
from typing import Final

#: Longest user id, client id, group id, … in characters (SPEC §1).
MAX_ID_LEN: Final = 64


#: The largest message id (ids are signed 64-bit: gateway.ids), and so of any seq or id bound a request names.
MESSAGE_ID_MAX: Final = 2**63 - 1


def decimal_message_id(text: str) -> int | None:
    """A message id written in decimal (the admin API's ids, a read mark's setting value), or None.

    ASCII digits only (``str.isdigit`` also passes superscripts, which ``int`` refuses, and other scripts'
    digits, which it takes), no leading zero, 1..``MESSAGE_ID_MAX``.
    """
    if not (text.isascii() and text.isdigit()) or text[0] == "0" or len(text) > 19:
        return None
    value = int(text)
    return value if value <= MESSAGE_ID_MAX else None


def valid_id(value: object) -> bool:
    """Whether ``value`` is a well-formed id (user, client, group, conversation target; SPEC §1).

    1–64 printable characters with no leading or trailing whitespace: ids are
    shown to people and compared byte for byte, so " bob" must not pass for "bob".
    ``protocol.codec.Fields.identifier`` applies the same rule to request fields.
    """
    return (
        isinstance(value, str)
        and 1 <= len(value) <= MAX_ID_LEN
        and value.isprintable()
        and value == value.strip()
    )


class ConnectionStatus(enum.IntEnum):
    """Connection status as the SDK reports it.

    The server only ever sends CONNECTED, REJECTED, TOKEN_INCORRECT,
    SECRET_KEY_MISMATCH, KICKED_OFF and TIME_INCONSISTENT (in CONNACK, or in a
    ``kicked`` push that precedes a close). The others are SDK-side states.
    """

    NOT_LICENSED = -8  # reserved, never sent
    TIME_INCONSISTENT = -9
    KICKED_OFF = -7
    SECRET_KEY_MISMATCH = -6
    TOKEN_INCORRECT = -5
    SERVER_DOWN = -4  # SDK: transport lost
    REJECTED = -3
    LOGOUT = -2  # SDK: after disconnect()
    UNCONNECTED = -1  # SDK: before connect()
    CONNECTING = 0  # SDK
    CONNECTED = 1
    RECEIVING = 2  # SDK: catching up after connect


#: Statuses after which the SDK must not reconnect by itself: retrying with the
#: same token cannot succeed.
TERMINAL_STATUSES = frozenset(
    {
        ConnectionStatus.REJECTED,
        ConnectionStatus.TOKEN_INCORRECT,
        ConnectionStatus.SECRET_KEY_MISMATCH,
        ConnectionStatus.KICKED_OFF,
        ConnectionStatus.NOT_LICENSED,
    }
)


class ErrorCode(enum.IntEnum):
    """Result code of a request (RESPONSE frames and the admin API's ``code``)."""

    SUCCESS = 0
    INVALID_DATA = 2
    SERVER_ERROR = 4
    NOT_IN_GROUP = 9
    INVALID_MESSAGE = 10
    GROUP_ALREADY_EXISTS = 11
    ALREADY_IN_GROUP = 12
    FRIEND_ALREADY_REQUESTED = 16
    FRIEND_REQUEST_BLOCKED = 18
    FRIEND_REQUEST_EXPIRED = 19
    ALREADY_FRIENDS = 23
    NOT_IN_CHATROOM = 20  # WildfireChat's ERROR_CODE_NOT_IN_CHATROOM
    NOT_IN_CHANNEL = 21  # WildfireChat's ERROR_CODE_NOT_IN_CHANNEL: not listening to the channel
    RECALL_TIME_EXPIRED = 24
    FUNCTION_DISABLED = 220
    IN_OTHER_CHATROOM = 225  # Ember's own (WildfireChat has none): chatroom.one_per_user = "reject"
    GROUP_EXCEEDS_MAX_MEMBERS = 240
    GROUP_MUTED = 241
    USER_BLOCKED = 245
    IN_BLACKLIST = 246
    FORBIDDEN_TO_SEND = 247
    NOT_RIGHT = 248
    OVER_FREQUENCY = 250
    INVALID_PARAMETER = 251
    NOT_EXIST = 253
    NOT_IMPLEMENTED = 254


class UserStatus(enum.IntEnum):
    """A user's standing, set by the app server (SPEC §6)."""

    NORMAL = 0
    MUTED = 1  # may connect, may not send (247)
    FORBIDDEN = 2  # may not connect (-3); live connections are closed


class UserType(enum.IntEnum):
    """What kind of account a user is (WildfireChat's numbers); shown in user info so clients can badge robots."""

    NORMAL = 0
    ROBOT = 1  # made by the admin API's robot/create; it acts through the robot API (docs/ADMIN_API.md "Robots")


class Platform(enum.IntEnum):
    """Device platform a session is bound to (SPEC §1)."""

    UNSET = 0
    IOS = 1
    ANDROID = 2
    WINDOWS = 3
    MACOS = 4
    WEB = 5
    WX_MINI_PROGRAM = 6
    LINUX = 7
    IPAD = 8
    ANDROID_PAD = 9
    HARMONY = 10
    HARMONY_PAD = 11
    HARMONY_PC = 12


_MOBILE = frozenset({1, 2, 10})
_PAD = frozenset({8, 9, 11})
_PC = frozenset({3, 4, 7, 12})


def platform_class(platform: int) -> frozenset[int]:
    """The platforms that count as "the same kind of device" as ``platform``.

    A new token kicks the user's other sessions whose platform is in this set
    (unless multi-endpoint mode is on). Any platform outside the mobile, pad
    and PC groups is a class of its own.
    """
    for group in (_MOBILE, _PAD, _PC):
        if platform in group:
            return group
    return frozenset({platform})


MAX_PLATFORM = max(Platform)


class ConversationType(enum.IntEnum):
    """``conv.type`` of a message (SPEC §5)."""

    PRIVATE = 0
    GROUP = 1
    CHATROOM = 2
    CHANNEL = 3


class PersistFlag(enum.IntEnum):
    """``content.persist_flag`` of a message (SPEC §5): whether and how clients keep it."""

    NOT_PERSIST = 0  # delivered and pullable; clients do not store it
    PERSIST = 1
    PERSIST_AND_COUNT = 3  # stored and counted toward unread: the default
    TRANSPARENT = 4  # delivered only to connections online now; never stored, no inbox seq


#: The persist flag of a message that does not say.
DEFAULT_PERSIST_FLAG: Final = int(PersistFlag.PERSIST_AND_COUNT)  # a plain int: it goes into every content map


class ContentType(enum.IntEnum):
    """Content types the server itself gives meaning to (SPEC §5, §8)."""

    RECALL = 80  # a recall notice; only the server makes them
    UPDATE = 81  # a message-update notice (docs/PROTOCOL.md §9.11); only the server makes them


#: Content types reserved for server-made notifications (groups: 104…123); clients may not send them.
NOTIFICATION_CONTENT_TYPES: Final = range(100, 200)


class FriendRequestStatus(enum.IntEnum):
    """``status`` of a friend request (SPEC §7, WildfireChat's numbers)."""

    SENT = 0
    ACCEPTED = 1
    REJECTED = 2


class SettingScope(enum.IntEnum):
    """``scope`` of a user setting (SPEC §9), WildfireChat's numbers; ``CUSTOM_MIN`` and above are the customer's."""

    CONVERSATION_SILENT = 1
    CONVERSATION_TOP = 3
    FAVORITE_GROUP = 6  # "save to contacts" (FAQ 6)
    MY_CHANNEL = 8  # the channels the user owns; key: channel id, value "1" (written by the server only)
    LISTENED_CHANNEL = 9  # the channels the user listens to; the same shape (written by the server only)
    CONVERSATION_READ = 11
    FAVORITE_USER = 14
    DO_NOT_DISTURB = 17
    CONVERSATION_CLEAR = 18  # WildfireChat's ConversationClearMessage: a conversation cleared up to a message id
    CONVERSATION_DRAFT = 19
    CUSTOM_MIN = 1000


#: Scopes only the server writes (a client's put_setting on them answers 251): they mirror facts kept elsewhere.
SERVER_SETTING_SCOPES: Final = frozenset({int(SettingScope.MY_CHANNEL), int(SettingScope.LISTENED_CHANNEL)})


def valid_setting_scope(scope: int) -> bool:
    """A scope a client may use: one of ``SettingScope``'s, or ``SettingScope.CUSTOM_MIN`` up to 2**31-1."""
    return scope in SettingScope._value2member_map_ or SettingScope.CUSTOM_MIN <= scope < 2**31


class GroupType(enum.IntEnum):
    """``type`` of a group (SPEC §8). WildfireChat's type 1 ("free") is not offered."""

    NORMAL = 0  # members may invite and rename
    RESTRICTED = 2  # only the owner and managers change anything
    ORGANIZATION = 3  # only the admin API changes membership


class GroupJoinType(enum.IntEnum):
    """``join_type`` of a group: who may bring people in."""

    OPEN = 0  # anyone may join by adding themselves; members may invite
    MEMBERS_INVITE = 1  # members may invite
    MANAGERS_INVITE = 2  # only the owner and managers may invite


class GroupMemberType(enum.IntEnum):
    """``type`` of a group member row."""

    NORMAL = 0
    MANAGER = 1
    OWNER = 2
    SILENCED = 3  # may not send (248)
    REMOVED = 4  # a tombstone, kept so that member-list sync can tell devices who left
    ALLOWED = 5  # may send while the group is muted


class GroupNotification(enum.IntEnum):
    """Content types of the group notification messages the server emits (FAQ §15); data JSON {g,o,n,m,ms}."""

    CREATE = 104
    ADD_MEMBERS = 105
    KICK_MEMBERS = 106
    QUIT = 107
    DISMISS = 108
    TRANSFER = 109
    NAME = 110
    MEMBER_ALIAS = 111
    PORTRAIT = 112
    MUTE = 113
    JOIN_TYPE = 114
    MANAGERS = 117
    SILENCE_MEMBERS = 118
    ALLOW_MEMBERS = 119
    EXTRA = 122
    MEMBER_EXTRA = 123


def conversation_setting_key(conv_type: int, target: str, line: int) -> str:
    """A conversation's key in the user settings of scopes 1, 3, 11, 18, 19: ``"type-target-line"``.

    ``target`` is the user's own view (the other user, for a private chat). Type and line are
    decimal ints, so the key parses back at the first and last ``-`` whatever the target holds.
    """
    return f"{conv_type}-{target}-{line}"


def parse_conversation_setting_key(key: str) -> tuple[int, str, int] | None:
    """(type, target, line) from ``conversation_setting_key``'s form; None for any other key."""
    kind, sep, rest = key.partition("-")
    target, sep2, line = rest.rpartition("-")
    if not (sep and sep2 and kind.isdigit() and line.isdigit() and target):
        return None
    return int(kind), target, int(line)


class ChannelState(enum.IntEnum):
    """``state`` of a channel (docs/PROTOCOL.md §15)."""

    NORMAL = 0
    DESTROYED = 1  # kept so that its id stays taken; every request about it answers 253
