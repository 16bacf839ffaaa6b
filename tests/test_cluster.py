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
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import trio
from psycopg import sql

import client
from client import Conversation
from gateway.clock import Clock
from gateway.cluster.postgres.nodes import LEASE_SECONDS
from gateway.signing import signed_json
from protocol import events
from protocol.codes import ConnectionStatus, ConversationType, ErrorCode
from tests.test_crash import ADMIN_SECRET, KILL_AFTER_ACKS, WINDOW, Server, ember_serve, send_params
from tests.test_crash import Client as RawClient

#: The PostgreSQL pass would repeat this module unchanged: every node stores on the private PostgreSQL server it names.
pytestmark = pytest.mark.own_backend

PRIVATE, GROUP = ConversationType.PRIVATE, ConversationType.GROUP
_nonce = iter(range(10**9))


@asynccontextmanager
async def node(tmp: Path, url: str, node_id: int, token_key: str, **settings: str) -> AsyncIterator[Server]:
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
        **settings,
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
async def cluster(tmp: Path, url: str, **settings: str) -> AsyncIterator[tuple[Server, Server]]:
    key = secrets.token_hex(32)
    async with node(tmp, url, 1, key, **settings) as one, node(tmp, url, 2, key, **settings) as two:
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
            killed_at = trio.current_time()
            await alice.stream.aclose()
            unacked = [cmid for cmid in sent if cmid not in acked]
            assert len(acked) >= KILL_AFTER_ACKS and unacked
            # The dead node's presence rows stop counting once its lease runs out: the other node's answer
            # (the admin API's, the cluster's) says alice is offline without anyone deleting her row.
            await wait_online(two, "alice", False)
            print(
                f"SIGKILL: {len(acked)} acked before the kill, {len(unacked)} unacked and resent; alice counted "
                f"offline {trio.current_time() - killed_at:.2f} s after the kill (lease {LEASE_SECONDS} s)"
            )

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


async def test_an_sdk_given_the_clusters_endpoints_moves_to_the_live_node_when_its_own_is_killed(
    tmp_path: Path, pg_url: str
) -> None:
    """ann's SDK is connected to node 1 with node 2 among its ``endpoints``; node 1 is SIGKILLed; the SDK's
    reconnect finds node 1 refusing and opens node 2 at once (one CONNECTING, no failed attempt reported),
    with the same token, and gets what bob sent her meanwhile: nothing lost, nothing twice, and the link
    carries her sends again. Without ``endpoints`` the SDK would retry node 1 forever."""
    async with cluster(tmp_path, pg_url) as (one, two):
        for user in ("ann", "bob"):
            await admin(one, "user/create", {"user_id": user})
        ann_token = await token(one, "ann", "ann-phone")
        async with client.connect(
            "127.0.0.1",
            one.port,
            ann_token,
            backoff=(0.01, 0.05),
            sync_messages=True,
            endpoints=[("127.0.0.1", two.port)],
        ) as ann, sdk(two, await token(one, "bob", "bob-phone")) as bob:
            with trio.fail_after(30):
                statuses = ann.events()  # sync_messages keeps messages off it: status changes only here
                assert await statuses_until(statuses, ConnectionStatus.CONNECTED) == [
                    ConnectionStatus.CONNECTING,
                    ConnectionStatus.RECEIVING,  # the sync's pull of what the CONNACK's heads say is missing
                    ConnectionStatus.CONNECTED,
                ]
                to_ann = Conversation(PRIVATE, "ann")
                await bob.messages.send(to_ann, {"type": 1, "searchable_content": "before"})
                assert (await next_message(ann)).content["searchable_content"] == "before"
                os.kill(one.process.pid, signal.SIGKILL)
                assert await one.process.wait() == -signal.SIGKILL
                await bob.messages.send(to_ann, {"type": 1, "searchable_content": "meanwhile"})
                assert await statuses_until(statuses, ConnectionStatus.CONNECTED) == [
                    ConnectionStatus.SERVER_DOWN,
                    ConnectionStatus.CONNECTING,
                    ConnectionStatus.RECEIVING,
                    ConnectionStatus.CONNECTED,
                ]
                await bob.messages.send(to_ann, {"type": 1, "searchable_content": "after"})
                got = [await next_message(ann) for _ in range(2)]
                assert [m.content["searchable_content"] for m in got] == ["meanwhile", "after"]
                assert [m.seq for m in got] == [2, 3]  # ann's inbox: one message each, none twice
                await ann.messages.send(Conversation(PRIVATE, "bob"), {"type": 1, "searchable_content": "back"})
                reply = await next_message(bob)
                assert (reply.from_user, reply.content["searchable_content"]) == ("ann", "back")


async def statuses_until(events: Any, last: ConnectionStatus) -> list[ConnectionStatus]:
    """The statuses on a client's event stream up to and including ``last``."""
    seen = []
    async for event in events:
        if isinstance(event, client.StatusChanged):
            seen.append(event.status)
            if event.status == last:
                return seen
    raise AssertionError(f"event stream ended before {last.name}: {seen}")


async def join_when_known(c: client.Client, room: str) -> Any:
    """Join ``room`` once this client's node has heard of it (created on the other node: a "roomrec"
    notice, then a read of the record; until then the join answers 253)."""
    while True:
        try:
            return await c.chatrooms.join(room)
        except client.RequestFailed as exc:
            if exc.code != ErrorCode.NOT_EXIST:
                raise
            await trio.sleep(0.01)


async def room_texts(c: client.Client, count: int) -> list[tuple[str, str]]:
    got: list[tuple[str, str]] = []
    while len(got) < count:
        event = await c.chatrooms.events().receive()
        assert isinstance(event, client.Message), event
        got.append((event.from_user, event.content["searchable_content"]))
    return got


async def test_a_chatroom_spans_nodes_in_one_order_with_the_rooms_counts_history_and_admin_changes(
    tmp_path: Path, pg_url: str
) -> None:
    """ann and cat on node 1, bob and dan on node 2, one room created by node 1's admin API: every message
    reaches every other member once, both nodes' listeners see the one same order of two senders on two
    nodes, counts, pages and history are the room's, and a mute and a destroy made on node 1 hold on node 2."""
    async with cluster(tmp_path, pg_url) as (one, two):
        users = ("ann", "bob", "cat", "dan")
        for user in users:
            await admin(one, "user/create", {"user_id": user})
        tokens = {user: await token(one, user, f"{user}-phone") for user in users}
        async with (
            sdk(one, tokens["ann"]) as ann,
            sdk(two, tokens["bob"]) as bob,
            sdk(one, tokens["cat"]) as cat,
            sdk(two, tokens["dan"]) as dan,
        ):
            with trio.fail_after(20):
                await admin(one, "chatroom/create", {"chatroom_id": "lobby", "title": "Lobby"})
                assert (await ann.chatrooms.join("lobby")).member_count == 1
                assert (await join_when_known(bob, "lobby")).member_count == 2  # ann, on node 1, counts
                await cat.chatrooms.join("lobby")
                assert (await dan.chatrooms.join("lobby")).member_count == 4

                # Two senders on two nodes at once: each listener gets all 40, once, in one shared order.
                async def say(c: client.Client, who: str) -> None:
                    for i in range(20):
                        await c.chatrooms.send({"type": 1, "searchable_content": f"{who}{i}"})

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(say, ann, "a")
                    nursery.start_soon(say, bob, "b")
                    heard: dict[str, list[tuple[str, str]]] = {}

                    async def listen(c: client.Client, name: str) -> None:
                        heard[name] = await room_texts(c, 40)

                    nursery.start_soon(listen, cat, "cat")
                    nursery.start_soon(listen, dan, "dan")
                assert heard["cat"] == heard["dan"], "the nodes delivered the room's messages in different orders"
                assert sorted(heard["cat"]) == sorted(
                    [("ann", f"a{i}") for i in range(20)] + [("bob", f"b{i}") for i in range(20)]
                )
                for who, prefix in (("ann", "a"), ("bob", "b")):  # each sender's own order kept
                    assert [t for u, t in heard["cat"] if u == who] == [f"{prefix}{i}" for i in range(20)]
                # The senders got the other's 20 and none of their own (bob's came to ann across nodes).
                assert [u for u, _ in await room_texts(ann, 20)] == ["bob"] * 20
                assert [u for u, _ in await room_texts(bob, 20)] == ["ann"] * 20

                info = await dan.chatrooms.info("lobby")
                assert (info.title, info.member_count) == ("Lobby", 4)
                page = await dan.chatrooms.members("lobby")
                assert (page.member_count, page.members) == (4, ("ann", "bob", "cat", "dan"))
                history = await dan.chatrooms.history(count=40)  # the room's: both nodes' messages, newest first
                assert [(m.from_user, m.content["searchable_content"]) for m in reversed(history)] == heard["dan"]
                assert (await admin(two, "chatroom/info", {"chatroom_id": "lobby"}))["member_count"] == 4

                # A mute made on node 1 reaches node 2 before anything sent on node 1 after it.
                await admin(one, "user/update_block_status", {"user_id": "bob", "status": 1})
                await ann.chatrooms.send({"type": 1, "searchable_content": "after the mute"})
                assert await room_texts(bob, 1) == [("ann", "after the mute")]
                with pytest.raises(client.RequestFailed) as refused:
                    await bob.chatrooms.send({"type": 1, "searchable_content": "muted"})
                assert refused.value.code == ErrorCode.FORBIDDEN_TO_SEND

                await cat.chatrooms.quit()  # a leave on node 1 counts on node 2
                assert (await dan.chatrooms.info("lobby")).member_count == 3

                await admin(one, "chatroom/destroy", {"chatroom_id": "lobby"})
                left = await dan.chatrooms.events().receive()
                while isinstance(left, client.Message):
                    left = await dan.chatrooms.events().receive()
                assert (left.chatroom_id, left.reason) == ("lobby", "destroyed")


@contextlib.contextmanager
def own_role(url: str) -> Iterator[tuple[str, Callable[..., None]]]:
    """``url`` as a login role of its own, and ``cut(True)``: that role may not log in and its backends are
    terminated (as if the database went away for that node only); ``cut(False)``: it may log in again."""
    import psycopg

    role = f"ember_node_{secrets.token_hex(4)}"
    password = secrets.token_hex(12)
    parts = urlsplit(url)
    with psycopg.connect(url, autocommit=True) as su:
        su.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
    try:

        def cut(off: bool, only_application: str | None = None) -> None:
            with psycopg.connect(url, autocommit=True) as su:
                su.execute(sql.SQL("ALTER ROLE {} {}").format(sql.Identifier(role), sql.SQL("NOLOGIN" if off else "LOGIN")))
                if off:
                    su.execute(
                        """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                           WHERE usename = %s AND (%s::text IS NULL OR application_name = %s)""",
                        (role, only_application, only_application),
                    )

        netloc = f"{role}:{password}@{parts.hostname}:{parts.port}"
        yield urlunsplit(parts._replace(netloc=netloc)), cut
    finally:
        with psycopg.connect(url, autocommit=True) as su, contextlib.suppress(psycopg.Error):
            su.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
            )
            su.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(role)))
            su.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


async def test_the_listener_cut_and_restored_loses_neither_a_message_nor_a_kick_sent_meanwhile(
    tmp_path: Path, pg_url: str
) -> None:
    """Node 2's LISTEN connection is terminated and may not come back for a while; meanwhile node 1 stores
    a message for bob (on node 2) and issues ann a new phone token (a kick for her phone on node 2): both
    notices are lost. Once node 2 listens again it pushes bob the message (its resync), and ann's new
    phone connecting on node 1 kicks the old one on node 2 (the registration re-sends the lost kick)."""
    key = secrets.token_hex(32)
    with own_role(pg_url) as (url2, cut):
        async with node(tmp_path, pg_url, 1, key) as one, node(tmp_path, url2, 2, key) as two:
            for user in ("ann", "bob"):
                await admin(one, "user/create", {"user_id": user})
            async with sdk(two, await token(one, "bob", "bob-phone")) as bob, sdk(
                two, await token(one, "ann", "ann-phone-1")
            ) as old_phone:
                with trio.fail_after(30):
                    reconnects = (await metric_values(two))["ember_cluster_listener_reconnects_total"]
                    await trio.to_thread.run_sync(cut, True, "ember_node_2")  # the listener only
                    ack = await admin(one, "message/send", {
                        "sender": "ann", "conv": {"type": 0, "target": "bob"},
                        "content": {"type": 1, "searchable_content": "in the gap"},
                    })  # fmt: skip
                    fresh = await token(one, "ann", "ann-phone-2")  # its kick notice to node 2 is lost too
                    assert old_phone.status == ConnectionStatus.CONNECTED
                    await trio.to_thread.run_sync(cut, False)
                    got = await next_message(bob)  # pushed by node 2's resync once it listens again
                    assert got.message_id == int(ack["message_id"])
                    assert (got.from_user, got.content["searchable_content"]) == ("ann", "in the gap")
                    assert (await metric_values(two))["ember_cluster_listener_reconnects_total"] == reconnects + 1
                    async with sdk(one, fresh) as new_phone:
                        assert new_phone.status == ConnectionStatus.CONNECTED
                        status = await old_phone.wait_status(
                            ConnectionStatus.SECRET_KEY_MISMATCH, ConnectionStatus.KICKED_OFF
                        )
                        assert status == ConnectionStatus.SECRET_KEY_MISMATCH


async def test_a_node_that_loses_the_database_answers_250_and_sends_its_clients_elsewhere(
    tmp_path: Path, pg_url: str
) -> None:
    """Node 2 can no longer reach PostgreSQL (its role may not log in, its connections are gone): a send
    there is answered 250 (retryable) rather than served from stale state; within its lease it gives up
    its clients with DISCONNECT naming node 1 (``server.shutdown_redirect``), where they carry on."""
    key = secrets.token_hex(32)
    with own_role(pg_url) as (url2, cut), trio.fail_after(40):
        async with node(tmp_path, pg_url, 1, key) as one:
            here = f"127.0.0.1:{one.port}"
            async with node(tmp_path, url2, 2, key, EMBER_SERVER__SHUTDOWN_REDIRECT=here) as two:
                for user in ("ann", "bob"):
                    await admin(one, "user/create", {"user_id": user})
                tokens = {user: await token(one, user, f"{user}-phone") for user in ("ann", "bob")}
                ann = await RawClient.connect(two, tokens["ann"])
                assert (await ann.call("send_message", **send_params("before"))).code == 0
                await trio.to_thread.run_sync(cut, True)
                refused = await ann.call("send_message", **send_params("cut off"))
                assert refused.code == ErrorCode.OVER_FREQUENCY, refused  # 250: send it again, elsewhere
                while not any(isinstance(e, events.GoAway) for e in ann.events):
                    assert await ann.read(), "closed without DISCONNECT"
                goaway = next(e for e in ann.events if isinstance(e, events.GoAway))
                assert goaway.redirect == here
                await ann.stream.aclose()
                # Where DISCONNECT pointed: the same session, the refused message sent again, stored once.
                ann = await RawClient.connect(one, tokens["ann"])
                assert (await ann.call("send_message", **send_params("cut off"))).code == 0
                bob = await RawClient.connect(one, tokens["bob"])
                assert [m["content"]["searchable_content"] for m in await bob.pull_all()] == ["before", "cut off"]
                for c in (ann, bob):
                    await c.stream.aclose()


async def test_a_signed_admin_request_replayed_to_the_other_node_is_refused(tmp_path: Path, pg_url: str) -> None:
    """Behind one admin address a recorded request may reach any node: its nonce, spent on node 1, is
    spent on node 2 too (the shared store), so the replay creates nothing."""
    async with cluster(tmp_path, pg_url) as (one, two):
        body, headers = signed_json(ADMIN_SECRET.encode(), {"user_id": "eve"}, Clock().now_ms(), "replayed-once")
        async with httpx.AsyncClient(timeout=5) as http:
            first = await http.post(f"{one.admin_url}/admin/user/create", content=body, headers=headers)
            assert (first.status_code, first.json()["code"]) == (200, 0)
            for server in (two, one):
                again = await http.post(f"{server.admin_url}/admin/user/create", content=body, headers=headers)
                assert again.status_code == 401 and "X-Nonce already used" in again.text


async def next_notify(c: client.Client, topic: str) -> events.Notify:
    async for event in c.events():
        if isinstance(event, events.Notify) and event.topic == topic:
            return event
    raise AssertionError("the client closed")


async def test_live_only_pushes_reach_devices_on_the_other_node(tmp_path: Path, pg_url: str) -> None:
    """What has no inbox row behind it — a transparent message, a relation head, a deletion — reaches the
    other node through the push relay; the admin session list says online for a device on the other node."""
    async with cluster(tmp_path, pg_url) as (one, two):
        for user in ("ann", "bob"):
            await admin(one, "user/create", {"user_id": user})
        async with (
            sdk(one, await token(one, "ann", "ann-phone")) as ann,
            sdk(two, await token(one, "ann", "ann-pc", platform=3)) as ann_pc,
            sdk(two, await token(one, "bob", "bob-phone")) as bob,
        ):
            with trio.fail_after(15):
                typing = {"type": 1, "searchable_content": "typing", "persist_flag": 4}
                await ann.messages.send(Conversation(PRIVATE, "bob"), typing)
                got = await next_message(bob)
                assert (got.transparent, got.seq, got.content["searchable_content"]) == (True, 0, "typing")
                await ann.relations.send_request("bob", reason="hello")
                head = await next_notify(bob, client.HEAD_TOPIC)
                assert head.data["stream"] == "friend_request" and head.data["head"] >= 1
                ack = await ann.messages.send(Conversation(PRIVATE, "bob"), {"type": 1, "searchable_content": "oops"})
                await ann.messages.delete(ack.message_id)
                deleted = await next_notify(ann_pc, client.MESSAGE_DELETED_TOPIC)
                assert deleted.data["message_id"] == ack.message_id
                listed = await admin(one, "session/list", {"user_id": "bob"})
                assert [(x["client_id"], x["online"]) for x in listed["sessions"]] == [("bob-phone", True)]
                relayed = (await metric_values(one))["ember_cluster_pushes_relayed_total"]
                received = (await metric_values(two))["ember_cluster_relayed_pushes_received_total"]
                assert relayed >= 3 and received >= 3


async def wait_online(server: Server, user: str, online: bool) -> None:
    """Until the admin API (the cluster's presence) says the user's one session is (or is not) online."""
    with trio.fail_after(10):
        while True:
            sessions = (await admin(server, "session/list", {"user_id": user}))["sessions"]
            if any(x["online"] for x in sessions) == online:
                return
            await trio.sleep(0.02)


async def test_push_badges_and_online_status_device_lists_are_the_clusters(
    tmp_path: Path, pg_url: str, nursery: trio.Nursery
) -> None:
    from tests.http_receiver import Receiver

    pushes, statuses = await Receiver().start(nursery), await Receiver().start(nursery)
    hooks = {
        "EMBER_CALLBACK__SECRET": "hook-secret",
        "EMBER_CALLBACK__RETRY_BASE_MS": "10",
        "EMBER_PUSH__URL": pushes.url,
        "EMBER_CALLBACK__USER_ONLINE_STATUS_URL": statuses.url,
    }
    async with cluster(tmp_path, pg_url, **hooks) as (one, two):
        for user in ("ann", "bob", "cat"):
            await admin(one, "user/create", {"user_id": user})
        with trio.fail_after(30):
            # ann's phone on node 1, then her pc on node 2: the pc's event lists both devices.
            async with sdk(one, await token(one, "ann", "ann-phone")) as ann:
                await statuses.wait_for(1)
                async with sdk(two, await token(one, "ann", "ann-pc", platform=3)):
                    await statuses.wait_for(2)
                    pc_online = statuses.bodies()[1]
                    assert (pc_online["client_id"], pc_online["status"]) == ("ann-pc", "online")
                    assert [x["client_id"] for x in pc_online["sessions"]] == ["ann-pc", "ann-phone"]
                # bob uploads a push token on node 2 and goes away.
                async with sdk(two, await token(one, "bob", "bob-phone", platform=1)) as bob:
                    await bob.set_push_token(1, "apns-bob")
                await wait_online(one, "bob", False)
                async with sdk(two, await token(one, "cat", "cat-phone")) as cat:
                    # Stored by node 1, then by node 2: one count, not one per node.
                    await ann.messages.send(Conversation(PRIVATE, "bob"), {"type": 1, "searchable_content": "1"})
                    await pushes.wait_for(1)
                    await cat.messages.send(Conversation(PRIVATE, "bob"), {"type": 1, "searchable_content": "2"})
                    await pushes.wait_for(2)
                    # bob back online on node 1 resets the count node 2 pushes from.
                    async with sdk(one, await token(one, "bob", "bob-phone", platform=1)):
                        await wait_online(two, "bob", True)
                    await wait_online(two, "bob", False)
                    await cat.messages.send(Conversation(PRIVATE, "bob"), {"type": 1, "searchable_content": "3"})
                    await pushes.wait_for(3)
        assert [(b["sender"], b["badge"]) for b in pushes.bodies()] == [("ann", 1), ("cat", 2), ("cat", 1)]


async def test_a_chatroom_resend_through_the_other_node_is_answered_not_sent_twice(
    tmp_path: Path, pg_url: str
) -> None:
    """ann sends to the room through node 1, moves to node 2 and sends the same client_msg_id again (her
    SDK's resend after a reconnect): the first send's ack comes back, and bob hears the message once."""
    async with cluster(tmp_path, pg_url) as (one, two):
        for user in ("ann", "bob"):
            await admin(one, "user/create", {"user_id": user})
        await admin(one, "chatroom/create", {"chatroom_id": "lobby", "title": "Lobby"})
        async with sdk(two, await token(one, "bob", "bob-phone")) as bob:
            with trio.fail_after(20):
                await join_when_known(bob, "lobby")
                async with sdk(one, await token(one, "ann", "ann-phone")) as ann:
                    await ann.chatrooms.join("lobby")
                    first = await ann.chatrooms.send({"type": 1, "searchable_content": "once"}, client_msg_id="c-1")
                async with sdk(two, await token(one, "ann", "ann-phone")) as ann:
                    await ann.chatrooms.join("lobby")
                    again = await ann.chatrooms.send({"type": 1, "searchable_content": "once"}, client_msg_id="c-1")
                    assert (again.message_id, again.server_time) == (first.message_id, first.server_time)
                    await ann.chatrooms.send({"type": 1, "searchable_content": "next"}, client_msg_id="c-2")
                assert await room_texts(bob, 2) == [("ann", "once"), ("ann", "next")]
                assert (await metric_values(two))["ember_cluster_room_resends_total"] == 1


async def test_an_admin_kick_and_destroy_on_one_node_end_the_connection_on_the_other(
    tmp_path: Path, pg_url: str
) -> None:
    async with cluster(tmp_path, pg_url) as (one, two):
        await admin(one, "user/create", {"user_id": "ann"})
        async with (
            sdk(two, await token(one, "ann", "ann-phone")) as phone,
            sdk(two, await token(one, "ann", "ann-pc", platform=3)) as pc,
        ):
            with trio.fail_after(10):
                await admin(one, "session/kick", {"user_id": "ann", "client_id": "ann-phone"})
                assert await phone.wait_status(ConnectionStatus.SECRET_KEY_MISMATCH) == ConnectionStatus.SECRET_KEY_MISMATCH
                await admin(one, "session/destroy", {"user_id": "ann", "client_id": "ann-pc"})
                assert await pc.wait_status(ConnectionStatus.SECRET_KEY_MISMATCH) == ConnectionStatus.SECRET_KEY_MISMATCH
                await wait_online(one, "ann", False)
                states = {x["client_id"]: x["deleted_reason"] for x in (await admin(two, "session/list", {"user_id": "ann"}))["sessions"]}
                assert states == {"ann-phone": "kicked", "ann-pc": "destroyed"}
