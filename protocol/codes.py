"""Every number Ember puts on the wire: connection statuses and request error codes.

The values are WildfireChat's, so that an SDK ported from it keeps its tables
(see SPEC §3 and §4). This module is the only place they are defined.
"""

from __future__ import annotations

import enum


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
    RECALL_TIME_EXPIRED = 24
    FUNCTION_DISABLED = 220
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
