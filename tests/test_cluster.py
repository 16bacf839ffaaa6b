"""Two real ``ember serve`` processes on one PostgreSQL behave as one gateway (issue 24).

Each node has its own data folder and ports and a distinct ``server.node_id``; both have the same
``storage.url`` (a database of the private server, ``tests.pg``), ``server.cluster = true``, and the same
``token.key`` and admin secret (a token issued by one node opens a session on the other). Clients are the
real Python SDK. Always on the private PostgreSQL server: CI (``CI=true``) fails rather than skips when
PostgreSQL is missing (the ``pg_url`` fixture).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

import client
from client import Conversation
from gateway.clock import Clock
from gateway.signing import signed_json
from protocol import events
from protocol.codes import ConnectionStatus, ConversationType
from tests.test_crash import ADMIN_SECRET, KILL_AFTER_ACKS, WINDOW, Server, ember_serve, send_params
from tests.test_crash import Client as RawClient

PRIVATE, GROUP = ConversationType.PRIVATE, ConversationType.GROUP
_nonce = iter(range(10**9))


@asynccontextmanager
async def node(tmp: Path, url: str, node_id: int, token_key: str) -> AsyncIterator[Server]:
    """One node of the cluster (tests/test_crash.py's ``ember serve``, on the shared database with its own id)."""
    data = tmp / f"node{node_id}"
    data.mkdir(exist_ok=True)
    async with ember_serve(
        data,
        tmp / f"node{node_id}.log",
        EMBER_SERVER__NODE_ID=str(node_id),
        EMBER_SERVER__CLUSTER="true",
        EMBER_STORAGE__URL=url,
        EMBER_TOKEN__KEY=token_key,
    ) as server:
        yield server


async def admin(server: Server, action: str, payload: dict[str, Any]) -> Any:
    body, headers = signed_json(ADMIN_SECRET.encode(), payload, Clock().now_ms(), f"cluster-{next(_nonce)}")
    async with httpx.AsyncClient(timeout=5) as http:
        answer = (await http.post(f"{server.admin_url}/admin/{action}", content=body, headers=headers)).json()
    assert answer["code"] == 0, answer
    return answer["result"]


async def token(server: Server, user: str, device: str, platform: int = 2) -> str:
    return (await admin(server, "user/get_token", {"user_id": user, "client_id": device, "platform": platform}))[
        "token"
    ]


@asynccontextmanager
async def cluster(tmp: Path, url: str) -> AsyncIterator[tuple[Server, Server]]:
    key = secrets.token_hex(32)
    async with node(tmp, url, 1, key) as one, node(tmp, url, 2, key) as two:
        yield one, two


@asynccontextmanager
async def sdk(server: Server, tok: str) -> AsyncIterator[client.Client]:
    async with client.connect("127.0.0.1", server.port, tok, backoff=(0.01, 0.05), sync_messages=True) as c:
        yield c


async def next_message(c: client.Client) -> Any:
    async for message in c.messages.received():
        return message
    raise AssertionError("the client closed")


async def test_a_private_message_crosses_nodes_live_both_ways(tmp_path: Path, pg_url: str) -> None:
    async with cluster(tmp_path, pg_url) as (one, two):
        for user in ("ann", "bob"):
            await admin(one, "user/create", {"user_id": user})
        async with sdk(one, await token(one, "ann", "ann-phone")) as ann, sdk(
            two, await token(one, "bob", "bob-phone")
        ) as bob:
            with trio.fail_after(10):
                ack = await ann.messages.send(Conversation(PRIVATE, "bob"), {"type": 1, "searchable_content": "hi"})
                got = await next_message(bob)  # pushed by node 2 on node 1's notice: no pull, no sleep
                assert (got.from_user, got.content["searchable_content"]) == ("ann", "hi")
                assert got.message_id == ack.message_id and got.seq == 1
                await bob.messages.send(Conversation(PRIVATE, "ann"), {"type": 1, "searchable_content": "back"})
                back = await next_message(ann)
                assert (back.from_user, back.seq) == ("bob", 2)  # ann's inbox: her own message, then bob's
                # Each node's /metrics counts its share: node 1 notified node 2 for ann's message, and back.
                for server in (one, two):
                    figures = await metric_values(server)
                    assert figures["ember_cluster_notices_sent_total"] >= 1
                    assert figures["ember_cluster_notices_received_total"] >= 1
                    assert figures["ember_cluster_pushes_total"] >= 1
                    assert figures["ember_cluster_presence_rows"] == 1


async def metric_values(server: Server) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(server.admin_url + "/metrics")).text
    return {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("ember_cluster_")
    }


async def test_a_group_message_reaches_members_on_both_nodes(tmp_path: Path, pg_url: str) -> None:
    async with cluster(tmp_path, pg_url) as (one, two):
        for user in ("ann", "bob", "cat"):
            await admin(one, "user/create", {"user_id": user})
        await admin(two, "group/create", {"owner": "ann", "group_id": "g", "members": ["bob", "cat"]})
        async with (
            sdk(one, await token(one, "ann", "ann-phone")) as ann,
            sdk(two, await token(one, "bob", "bob-phone")) as bob,
            sdk(one, await token(two, "cat", "cat-phone")) as cat,
        ):
            with trio.fail_after(10):
                # The group's creation notice is everyone's first message; skip to what ann sends.
                sent = await ann.messages.send(Conversation(GROUP, "g"), {"type": 1, "searchable_content": "all"})
                for member in (bob, cat):
                    while (got := await next_message(member)).message_id != sent.message_id:
                        pass
                    assert got.from_user == "ann"


async def test_logging_in_on_node_two_kicks_the_same_class_on_node_one(tmp_path: Path, pg_url: str) -> None:
    async with cluster(tmp_path, pg_url) as (one, two):
        await admin(one, "user/create", {"user_id": "ann"})
        async with sdk(one, await token(one, "ann", "ann-phone-1")) as first:
            with trio.fail_after(10):
                fresh = await token(two, "ann", "ann-phone-2")  # the same platform class, issued on node 2
                status = await first.wait_status(ConnectionStatus.SECRET_KEY_MISMATCH, ConnectionStatus.KICKED_OFF)
                assert status == ConnectionStatus.SECRET_KEY_MISMATCH  # -6: kickoff events are off
                async with sdk(two, fresh) as second:
                    assert second.status == ConnectionStatus.CONNECTED


async def test_a_forbidden_user_is_closed_on_the_other_node(tmp_path: Path, pg_url: str) -> None:
    async with cluster(tmp_path, pg_url) as (one, two):
        await admin(one, "user/create", {"user_id": "ann"})
        async with sdk(two, await token(one, "ann", "ann-phone")) as ann:
            with trio.fail_after(10):
                await admin(one, "user/update_block_status", {"user_id": "ann", "status": 2})
                assert await ann.wait_status(ConnectionStatus.REJECTED) == ConnectionStatus.REJECTED


async def test_a_second_node_with_a_taken_id_refuses_to_start_naming_it(tmp_path: Path, pg_url: str) -> None:
    key = secrets.token_hex(32)
    async with node(tmp_path, pg_url, 1, key) as one:
        with pytest.raises(AssertionError, match=r"exited 1:[\s\S]*server.node_id 1 is held by a running gateway"):
            async with AsyncExitStack() as stack:
                (tmp_path / "again").mkdir()
                await stack.enter_async_context(node(tmp_path / "again", pg_url, 1, key))
        assert one.process.poll() is None


async def test_a_node_sigkilled_mid_stream_loses_no_acked_message_after_its_clients_move(
    tmp_path: Path, pg_url: str
) -> None:
    """alice sends a window at a time through node 1; node 1 is SIGKILLed mid-window; alice reconnects to
    node 2 and resends what was not acked (with its client_msg_ids): every acked message is stored once."""
    sent: list[str] = []
    acked: dict[str, int] = {}
    with trio.fail_after(60):
        async with cluster(tmp_path, pg_url) as (one, two):
            for user in ("alice", "bob"):
                await admin(one, "user/create", {"user_id": user})
            tokens = {user: await token(one, user, f"{user}-phone") for user in ("alice", "bob")}
            alice = await RawClient.connect(one, tokens["alice"])
            in_flight: dict[int, str] = {}

            async def send_more(count: int) -> None:
                frames = []
                for _ in range(count):
                    cmid = f"m{len(sent):05d}-{secrets.token_hex(4)}"
                    request_id, frame = alice.proto.request("send_message", send_params(cmid))
                    in_flight[request_id] = cmid
                    sent.append(cmid)
                    frames.append(frame)
                await alice.stream.send_all(b"".join(frames))

            killed = False
            while True:
                if not killed and len(in_flight) < WINDOW:
                    await send_more(WINDOW - len(in_flight))
                if not await alice.read():
                    break
                for event in alice.events:
                    if isinstance(event, events.Response):
                        cmid = in_flight.pop(event.request_id)
                        assert event.code == 0, event
                        acked[cmid] = event.result["message_id"]
                alice.events.clear()
                if not killed and len(acked) >= KILL_AFTER_ACKS:
                    os.kill(one.process.pid, signal.SIGKILL)
                    killed = True
                    with contextlib.suppress(trio.BrokenResourceError):
                        await send_more(5)  # written to a dead node: never acked
            assert await one.process.wait() == -signal.SIGKILL
            await alice.stream.aclose()
            unacked = [cmid for cmid in sent if cmid not in acked]
            assert len(acked) >= KILL_AFTER_ACKS and unacked

            # The client goes to the other node with the same token (the sessions are the database's).
            alice = await RawClient.connect(two, tokens["alice"])
            bob = await RawClient.connect(two, tokens["bob"])
            for cmid in unacked:
                response = await alice.call("send_message", **send_params(cmid))
                assert response.code == 0, response
                acked[cmid] = response.result["message_id"]
            for inbox in (await alice.pull_all(), await bob.pull_all()):
                assert [m["content"]["searchable_content"] for m in inbox] == sent, "lost or doubled"
                assert [m["message_id"] for m in inbox] == [acked[cmid] for cmid in sent]
            await alice.stream.aclose()
            await bob.stream.aclose()
