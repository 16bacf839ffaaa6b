"""The SDK over the gateway's WebSocket listener: ``connect(..., transport="websocket")`` (client/websocket.py,
docs/PROTOCOL.md §2.2), against a real gateway with ``server.ws_port`` set and an SDK client over TCP."""

from __future__ import annotations

import logging

import pytest
import trio

import client
from client import Conversation, ConversationType
from protocol import events
from protocol.codes import ConnectionStatus
from tests.harness import FAST_BACKOFF, Gateway, sdk, start_gateway
from tests.ports import free_port

LIMIT = 15  # seconds for any one test




async def start_ws(nursery: trio.Nursery, tmp_path) -> Gateway:
    gw = await start_gateway(nursery, tmp_path, server={"ws_port": free_port()})
    for user in ("alice", "bob"):
        await gw.user(user)
    return gw


def text(body: str) -> dict[str, object]:
    return {"type": 1, "searchable_content": body}


async def test_a_websocket_client_and_a_tcp_client_talk_both_ways(
    nursery: trio.Nursery, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ember.client")
    gw = await start_ws(nursery, tmp_path)
    token = await gw.token("alice", "alice-web", 5)
    with trio.fail_after(LIMIT):
        async with (
            client.connect(gw.host, gw.running.ws_port, token, transport="websocket", clock=gw.clock.now_ms,
                           backoff=FAST_BACKOFF, sync_messages=True) as alice,  # fmt: skip
            sdk(gw, "bob", sync_messages=True) as bob,
        ):
            assert alice.status == ConnectionStatus.CONNECTED
            assert await alice.ping() >= 0  # the protocol's PING, as one message, keeps the link alive
            # Sent at once: frames queued together share one write, each still its own message (the server
            # refuses a message holding more than one frame: ERROR 2).
            async with trio.open_nursery() as sending:
                for n in range(5):
                    sending.start_soon(alice.messages.send, Conversation(ConversationType.PRIVATE, "bob"), text(f"hi {n}"))
            got = []
            async for message in bob.messages.received():
                got.append(message.content["searchable_content"])
                if len(got) == 5:
                    break
            assert sorted(got) == [f"hi {n}" for n in range(5)]
            await bob.messages.send(Conversation(ConversationType.PRIVATE, "alice"), text("hello, browser"))
            async for message in alice.messages.received():
                assert (message.from_user, message.content["searchable_content"]) == ("bob", "hello, browser")
                break
        assert alice.status == ConnectionStatus.LOGOUT
    # DISCONNECT then Close (1000): the gateway closed at once, the grace period never ran out.
    assert not [r for r in caplog.records if "did not close after DISCONNECT" in r.getMessage()]
    # The session was kept: the same token connects again.
    with trio.fail_after(LIMIT):
        async with client.connect(gw.host, gw.running.ws_port, token, transport="websocket",
                                  clock=gw.clock.now_ms) as again:  # fmt: skip
            assert again.status == ConnectionStatus.CONNECTED


async def test_websocket_to_a_port_that_does_not_speak_it_is_server_down(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_ws(nursery, tmp_path)
    token = await gw.token("alice", "alice-web", 5)
    with trio.fail_after(LIMIT), pytest.raises(client.ConnectError) as failed:
        # The TCP port speaks first (HELLO), which is no answer to an HTTP upgrade.
        async with client.connect(gw.host, gw.port, token, transport="websocket", clock=gw.clock.now_ms):
            pytest.fail("connected")
    assert failed.value.status == ConnectionStatus.SERVER_DOWN



async def test_after_going_away_a_websocket_client_comes_back_to_its_own_address(nursery: trio.Nursery, tmp_path) -> None:
    """A GOAWAY's redirect names a TCP address (docs/PROTOCOL.md §2.2, point 8): followed, it would take the
    WebSocket client to a port that answers no upgrade, attempt after attempt."""
    gw = await start_ws(nursery, tmp_path)
    token = await gw.token("alice", "alice-web", 5)
    with trio.fail_after(LIMIT):
        async with client.connect(gw.host, gw.running.ws_port, token, transport="websocket", clock=gw.clock.now_ms,
                                  backoff=FAST_BACKOFF) as alice:  # fmt: skip
            stream = alice.events()
            assert gw.services.delivery.go_away(10, f"{gw.host}:{gw.port}") == 1
            async for event in stream:
                if isinstance(event, events.GoAway):
                    assert event.redirect == f"{gw.host}:{gw.port}"
                    break
            await alice.wait_status(ConnectionStatus.SERVER_DOWN)
            await alice.wait_status(ConnectionStatus.CONNECTED)
            assert (await alice.request("get_blacklist")).code == 0
            assert repr(alice).endswith(f"{gw.host}:{gw.running.ws_port} status=CONNECTED>")
