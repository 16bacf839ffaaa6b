"""The in-process presence and notice bus (gateway/cluster/local.py) through ``Delivery``.

The connections are stand-ins that record what reached them: the thing under test is the registry and the
bus; real sockets are exercised by every gateway test (test_messaging, test_goaway, test_webhooks...).
"""

from __future__ import annotations

from gateway.delivery import Delivery
from protocol import codec
from protocol.codes import ConnectionStatus
from protocol.connection import encode_msg_push, encode_notify_body, encode_update_push


class Device:
    def __init__(self, user_id: str, client_id: str, platform: int = 1) -> None:
        self.user_id, self.client_id, self.platform = user_id, client_id, platform
        self.bodies: list[bytes] = []
        self.kicked: list[ConnectionStatus] = []
        self.replaced = False
        self.last_active = 0.0

    def push_frame_body(self, body: bytes) -> None:
        self.bodies.append(body)

    def kick(self, status: ConnectionStatus) -> None:
        self.kicked.append(status)

    def replace(self) -> None:
        self.replaced = True

    def go_away(self, retry_ms: int, redirect: str) -> None:
        pass

    def release_idle_keys(self) -> None:
        pass


def test_pushes_skip_the_excepted_device_and_count_what_was_handed_over() -> None:
    delivery = Delivery.single_node()
    phone, mac, bob = Device("alice", "phone"), Device("alice", "mac", 4), Device("bob", "b")
    for device in (phone, mac, bob):
        delivery.register(device)
    packed = codec.pack({"message_id": 7})
    assert delivery.push_message("alice", 3, packed, "phone") == 1
    assert delivery.push_update("alice", 4, packed) == 2
    assert delivery.push("bob", encode_notify_body("t", 1)) == 1
    assert delivery.push_message("carol", 1, packed) == 0
    assert phone.bodies == [encode_update_push(4, packed)]
    assert mac.bodies == [encode_msg_push(3, packed), encode_update_push(4, packed)]
    assert delivery.offline(["carol", "alice", "bob", "carol"]) == ["carol", "carol"]
    assert sorted(delivery.online_clients("alice")) == [("mac", 4), ("phone", 1)]


def test_a_newer_connection_replaces_the_session_and_the_older_one_leaving_keeps_it_online() -> None:
    delivery = Delivery.single_node()
    old, new = Device("alice", "phone"), Device("alice", "phone")
    delivery.register(old)
    delivery.register(new)
    assert old.replaced and not new.replaced
    delivery.unregister(old)
    assert delivery.session_online("alice", "phone") and delivery.connection_here("alice", "phone") is new
    delivery.kick("alice", "phone", ConnectionStatus.KICKED_OFF)
    delivery.close_user("alice", ConnectionStatus.REJECTED)
    assert new.kicked == [ConnectionStatus.KICKED_OFF, ConnectionStatus.REJECTED] and old.kicked == []
    delivery.unregister(new)
    assert delivery.offline(["alice"]) == ["alice"] and delivery.connected_here() == 0
