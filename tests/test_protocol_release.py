"""Idle connections drop their AES key schedules and rebuild them on use, transparently."""

from __future__ import annotations

import os

from protocol import events
from protocol.connection import ClientConnection, ServerConnection
from protocol.crypto import DirectionCipher


def test_a_released_cipher_seals_and_opens_as_before() -> None:
    key = os.urandom(32)
    sender, receiver, reference = DirectionCipher(key), DirectionCipher(key), DirectionCipher(key)
    first = sender.seal(b"h", b"one")
    sender.release()
    receiver.release()
    second = sender.seal(b"h", b"two")
    assert receiver.open(b"h", first) == b"one"
    assert receiver.open(b"h", second) == b"two"
    assert [reference.seal(b"h", b"one"), reference.seal(b"h", b"two")] == [first, second]


def test_release_keys_mid_conversation() -> None:
    secret = os.urandom(32)
    server = ServerConnection(server_nonce=os.urandom(32), server_time_ms=1)
    client = ClientConnection(
        user_id="u", client_id="c", platform=2, secret=secret, credential=b"x" * 40, client_nonce=os.urandom(32)
    )
    client.receive_data(server.hello())
    server.receive_data(client.connect(1))
    assert server.authenticate(secret) is not None
    client.receive_data(server.accept(server_time_ms=1, keepalive_seconds=60, heads={}))
    server.release_keys()
    client.release_keys()
    request_id, frame = client.request("ping_me", {})
    [request] = server.receive_data(frame)
    assert isinstance(request, events.Request) and request.method == "ping_me"
    server.release_keys()
    [response] = client.receive_data(server.response(request_id, 0, {"ok": True}))
    assert response == events.Response(request_id, 0, {"ok": True})
