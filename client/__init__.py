"""Ember's reference Python SDK: a trio driver over ``protocol.ClientConnection``.

Usage::

    async with client.connect(host, port, token, sync_messages=True, last_seq=saved) as c:
        await c.messages.send(Conversation(ConversationType.PRIVATE, "bob"), {"type": 1, "searchable_content": "hi"})
        async for message in c.messages.received():
            ...  # each message once, in inbox order; then persist c.messages.last_seq

See ``client.client`` for statuses, reconnecting and the event-stream policy,
``client.messages`` for sending and the inbox sync, ``client.relations`` for friends, friend
requests, the blacklist and settings (``sync_relations=True`` keeps a synced copy of each), and
``client.users`` for the user-info cache, ``client.groups`` and ``client.channels`` for groups and channels
(operations and caches by version).
"""

from protocol.codes import ConnectionStatus, ConversationType, ErrorCode, PersistFlag
from protocol.events import ConnAck, Notify

from .channels import ChannelChange, ChannelGone, ChannelInfo, Channels, ChannelSynced
from .chatrooms import (
    CHATROOM_QUIT_TOPIC,
    ChatroomEvent,
    ChatroomInfo,
    ChatroomLeft,
    Chatrooms,
    Joined,
    MembersPage,
)
from .client import KICKED_TOPIC, Client, Event, Response, StatusChanged, connect
from .conversations import ConversationInfo, Conversations, ConversationsChanged
from .errors import ClientClosed, ClientError, ConnectError, RequestFailed, RequestTimeout
from .groups import GroupChange, GroupEvent, GroupInfo, GroupMember, Groups, GroupSynced
from .messages import (
    MESSAGE_DELETED_TOPIC,
    MSG_TOPIC,
    Conversation,
    Message,
    Messages,
    RecallAck,
    SearchHit,
    SearchPage,
    SendAck,
)
from .relations import HEAD_TOPIC, Friend, FriendRequest, Relations, RelationsChanged, Setting, Snapshot
from .users import UserInfo, UserInfoUpdated, Users

__all__ = [
    "ConversationInfo",
    "Conversations",
    "ConversationsChanged",
    "HEAD_TOPIC",
    "CHATROOM_QUIT_TOPIC",
    "ChannelChange",
    "ChannelGone",
    "ChannelInfo",
    "Channels",
    "ChannelSynced",
    "ChatroomEvent",
    "ChatroomInfo",
    "ChatroomLeft",
    "Chatrooms",
    "Joined",
    "MembersPage",
    "KICKED_TOPIC",
    "MESSAGE_DELETED_TOPIC",
    "MSG_TOPIC",
    "SearchHit",
    "SearchPage",
    "Client",
    "ClientClosed",
    "ClientError",
    "ConnAck",
    "ConnectError",
    "ConnectionStatus",
    "Conversation",
    "ConversationType",
    "GroupChange",
    "GroupEvent",
    "GroupInfo",
    "GroupMember",
    "GroupSynced",
    "Groups",
    "PersistFlag",
    "ErrorCode",
    "Event",
    "Friend",
    "FriendRequest",
    "Message",
    "Messages",
    "Notify",
    "RecallAck",
    "Relations",
    "RelationsChanged",
    "RequestFailed",
    "RequestTimeout",
    "Response",
    "SendAck",
    "Setting",
    "Snapshot",
    "StatusChanged",
    "UserInfo",
    "UserInfoUpdated",
    "Users",
    "connect",
]
