"""Ember's reference Python SDK: a trio driver over ``protocol.ClientConnection``.

Usage::

    async with client.connect(host, port, token) as c:
        answer = await c.request("pull", after_seq=0, limit=100)
        async for event in c.events():
            ...

See ``client.client`` for statuses, reconnecting and the event-stream policy.
"""

from protocol.codes import ConnectionStatus, ErrorCode
from protocol.events import ConnAck, Notify

from .client import KICKED_TOPIC, Client, Event, Response, StatusChanged, connect
from .errors import ClientClosed, ClientError, ConnectError, RequestTimeout

__all__ = [
    "KICKED_TOPIC",
    "Client",
    "ClientClosed",
    "ClientError",
    "ConnAck",
    "ConnectError",
    "ConnectionStatus",
    "ErrorCode",
    "Event",
    "Notify",
    "RequestTimeout",
    "Response",
    "StatusChanged",
    "connect",
]
