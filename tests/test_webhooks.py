"""Webhooks against a real HTTP receiver on 127.0.0.1 (tests/http_receiver.py): online status, push, forward.

The gateway is the real one (tests/harness.py); the receiver is a raw trio HTTP/1.1 server the test starts.
"""

from __future__ import annotations

import random

import pytest
import trio

from gateway.config import CallbackConfig, Config, ConfigError
from gateway.webhooks import WebhookQueue
from protocol.codes import Platform
from tests.harness import Gateway, RawClient, start_gateway
from tests.http_receiver import Receiver
from tests.test_messaging import Device

SECRET = "hook-secret"


def hooks(receiver_url: str = "", push_url: str = "", forward_url: str = "", **more: object) -> dict:
    return {
        "callback": {
            "secret": SECRET,
            "user_online_status_url": receiver_url,
            "message_forward_url": forward_url,
            "retry_base_ms": 10,
            **more,
        },
        "push": {"url": push_url},
    }


def statuses(receiver: Receiver) -> list[tuple[str, str, list[str]]]:
    return [(b["client_id"], b["status"], [s["client_id"] for s in b["sessions"]]) for b in receiver.bodies()]


async def test_online_status_for_connect_second_device_kick_drop_keepalive_and_logout(
    nursery: trio.Nursery, tmp_path
) -> None:
    receiver = await Receiver().start(nursery)
    gw = await start_gateway(
        nursery, tmp_path, **hooks(receiver.url), server={"min_keepalive_seconds": 1}
    )
    await gw.user("alice")
    phone = await RawClient.connected(gw, await gw.token("alice", "phone", Platform.ANDROID))
    await receiver.wait_for(1)
    pc = await RawClient.connected(gw, await gw.token("alice", "pc", Platform.WINDOWS))
    await receiver.wait_for(2)
    assert await gw.services.sessions.kick("alice", "phone") == 0  # admin kick
    await receiver.wait_for(3)
    await pc.aclose()  # transport lost
    await receiver.wait_for(4)
    # Keepalive: the device announces 1 s and then says nothing; dropped after 1.5 s.
    quiet = await RawClient.connected(
        gw, await gw.token("alice", "tablet", Platform.IPAD), keepalive_seconds=1
    )
    await receiver.wait_for(6)
    again = await RawClient.connected(gw, await gw.token("alice", "pc", Platform.WINDOWS))
    await receiver.wait_for(7)
    await again.send(again.proto.disconnect(clear_session=True))  # logout
    await receiver.wait_for(8)
    assert statuses(receiver) == [
        ("phone", "online", ["phone"]),
        ("pc", "online", ["phone", "pc"]),
        ("phone", "offline", ["pc"]),
        ("pc", "offline", []),
        ("tablet", "online", ["tablet"]),
        ("tablet", "offline", []),
        ("pc", "online", ["pc"]),
        ("pc", "logout", []),
    ]
    first = receiver.requests[0]
    assert first.signed_by(SECRET) and not first.signed_by("other")
    assert first.headers["content-type"] == "application/json"
    body = first.json
    assert list(body) == ["user_id", "client_id", "platform", "status", "timestamp", "sessions"]
    assert (body["user_id"], body["platform"], body["timestamp"]) == ("alice", Platform.ANDROID, gw.clock.now_ms())
    assert body["sessions"] == [{"client_id": "phone", "platform": Platform.ANDROID}]
    for client in (phone, quiet, again):
        await client.aclose()


async def test_a_reconnect_of_the_same_session_reports_no_offline_for_the_replaced_socket(
    nursery: trio.Nursery, tmp_path
) -> None:
    receiver = await Receiver().start(nursery)
    gw = await start_gateway(nursery, tmp_path, **hooks(receiver.url))
    await gw.user("bob")
    token = await gw.token("bob", "phone")
    old = await RawClient.connected(gw, token)
    await receiver.wait_for(1)
    new = await RawClient.connected(gw, token)  # the old socket is closed quietly
    assert await old.closed_by_server()
    await old.aclose()
    await new.aclose()
    await receiver.wait_for(3)
    assert [(c, s) for c, s, _ in statuses(receiver)] == [("phone", "online"), ("phone", "online"), ("phone", "offline")]


async def test_push_goes_only_to_an_offline_recipient_with_a_device_token(nursery: trio.Nursery, tmp_path) -> None:
    receiver = await Receiver().start(nursery)
    gw = await start_gateway(nursery, tmp_path, **hooks(push_url=receiver.url))
    for user in ("alice", "bob"):
        await gw.user(user)
    alice = await Device.connect(gw, "alice")
    bob = await Device.connect(gw, "bob", platform=Platform.IOS)
    assert (await bob.call("set_push_token", push_type=1, token="apns-device-token-1")).code == 0
    assert (await bob.call("set_push_token", push_type=1, token="x" * 5000)).code == 251
    assert (await alice.send_text("bob", "online, so no push")).code == 0
    await bob.push()
    await bob.aclose()
    await wait_offline(gw, "bob")
    secret_body = "the body is never pushed"
    assert (await alice.send_text("bob", secret_body)).code == 0
    assert (await alice.send_text("bob", "with push text", push_content="Alice: hi")).code == 0
    await receiver.wait_for(2)
    first, second = receiver.bodies()
    assert list(first) == [
        "user_id", "client_id", "platform", "push_type", "device_token", "sender", "conversation",
        "message_id", "server_time", "content_type", "push_content", "mentioned", "badge",
    ]  # fmt: skip
    assert first["device_token"] == "apns-device-token-1" and first["push_type"] == 1
    assert (first["user_id"], first["client_id"], first["platform"]) == ("bob", "bob-phone", Platform.IOS)
    assert first["sender"] == "alice" and first["conversation"] == {"type": 0, "target": "alice", "line": 0}
    assert (first["content_type"], first["mentioned"], first["badge"]) == (1, False, 1)
    assert first["push_content"] == gw.config.push.default_content
    assert (second["push_content"], second["badge"]) == ("Alice: hi", 2)
    assert all(secret_body not in r.body.decode() for r in receiver.requests)
    assert receiver.requests[0].signed_by(SECRET)
    # Sending to oneself, or to a user that never uploaded a token, pushes nothing.
    await gw.user("carol")
    assert (await alice.send_text("carol", "no token")).code == 0
    # Bob back online: the badge starts again, and a message to him online is not pushed.
    bob = await Device.connect(gw, "bob", platform=Platform.IOS)
    assert (await alice.send_text("bob", "online again")).code == 0
    await bob.push()
    await bob.aclose()
    await wait_offline(gw, "bob")
    assert (await alice.send_text("bob", "offline again")).code == 0
    await receiver.wait_for(3)
    assert [b["badge"] for b in receiver.bodies()] == [1, 2, 1]
    assert gw.services.webhooks.pushed == 3
    await alice.aclose()


async def test_the_badge_counts_stay_bounded_for_users_who_never_come_back(nursery: trio.Nursery, tmp_path) -> None:
    receiver = await Receiver().start(nursery)
    config = hooks(push_url=receiver.url)
    config["push"]["max_badge_users"] = 2
    gw = await start_gateway(nursery, tmp_path, **config)
    await gw.user("alice")
    away = ["u1", "u2", "u3", "u4"]
    for user in away:  # each leaves a device token, goes offline and never comes back
        await gw.user(user)
        device = await Device.connect(gw, user)
        assert (await device.call("set_push_token", push_type=1, token=f"{user}-token")).code == 0
        await device.aclose()
        await wait_offline(gw, user)
    alice = await Device.connect(gw, "alice")
    webhooks = gw.services.webhooks
    for _ in range(2):
        for user in away:
            assert (await alice.send_text(user, "hello")).code == 0
            await receiver.wait_for(len(receiver.requests) + 1)
    # The two pushed last keep counting; the others were forgotten, and count from 1 each time.
    badges = [(b["user_id"], b["badge"]) for b in receiver.bodies()]
    assert badges == [("u1", 1), ("u2", 1), ("u3", 1), ("u4", 1), ("u1", 1), ("u2", 1), ("u3", 1), ("u4", 1)]
    assert webhooks.badge_users == 2
    assert (await alice.send_text("u4", "again")).code == 0
    assert (await receiver.wait_for(9))[-1].json["badge"] == 2
    await alice.aclose()


async def test_a_logged_out_device_is_not_pushed(nursery: trio.Nursery, tmp_path) -> None:
    receiver = await Receiver().start(nursery)
    gw = await start_gateway(nursery, tmp_path, **hooks(push_url=receiver.url, forward_url=receiver.url))
    for user in ("alice", "bob"):
        await gw.user(user)
    bob = await Device.connect(gw, "bob")
    assert (await bob.call("set_push_token", push_type=2, token="fcm-token")).code == 0
    await bob.client.send(bob.client.proto.disconnect(clear_session=True))
    await bob.aclose()
    await wait_offline(gw, "bob")
    await wait_cleared(gw, "bob", "bob-phone")
    alice = await Device.connect(gw, "alice")
    assert (await alice.send_text("bob", "to nobody")).code == 0
    forwarded = (await receiver.wait_for(1))[0].json  # the forward hook sees every stored message
    assert forwarded["sender"] == "alice" and forwarded["content"]["searchable_content"] == "to nobody"
    assert forwarded["recipients"] == ["alice", "bob"]
    assert gw.services.webhooks.push.depth == 0 and gw.services.webhooks.pushed == 0
    await alice.aclose()


async def wait_offline(gw: Gateway, user_id: str) -> None:
    with trio.fail_after(5):
        while gw.services.delivery.node.connections(user_id):  # noqa: ASYNC110 - the server's end of the socket
            await trio.sleep(0.005)


async def wait_cleared(gw: Gateway, user_id: str, client_id: str) -> None:
    with trio.fail_after(5):
        while (await gw.services.store.get_session(user_id, client_id)).state == "active":  # noqa: ASYNC110
            await trio.sleep(0.005)


@pytest.mark.parametrize("mode", ["fail", "hang"])
async def test_a_failing_or_hanging_endpoint_retries_dead_letters_and_never_slows_messaging(
    nursery: trio.Nursery, tmp_path, mode: str
) -> None:
    receiver = await Receiver(mode).start(nursery)
    # One lane and retries 0.1 s apart (on average): the endpoint takes longer per event than any
    # backend takes per send (a PostgreSQL send is a round trip: with 4 lanes and 10 ms retries a failing
    # endpoint kept up with it, and nothing was dropped), so the queue must overflow on both.
    gw = await start_gateway(
        nursery, tmp_path,
        **hooks(receiver.url, forward_url=receiver.url, queue_size=20, max_attempts=3, timeout_seconds=0.2,
                senders=1, retry_base_ms=100),
        client={"request_rate_limit": 10000},
    )  # fmt: skip
    for user in ("alice", "bob"):
        await gw.user(user)
    alice = await Device.connect(gw, "alice")
    bob = await Device.connect(gw, "bob")
    with trio.fail_after(5):  # 200 sends while every webhook attempt fails or hangs
        for i in range(200):
            assert (await alice.send_text("bob", f"m{i}")).code == 0
    forward = gw.services.webhooks.forward
    # Every event is dropped (the queue keeps its newest 20), dead-lettered, queued or being tried.
    assert forward.dropped + forward.dead_letters + forward.depth + forward.in_flight == 200
    assert forward.dropped > 100 and forward.depth <= 20
    await receiver.wait_for(3)  # each of the first events is tried max_attempts times
    with trio.fail_after(10):
        while forward.dead_letters < 1:  # noqa: ASYNC110
            await trio.sleep(0.01)
    assert forward.retries >= 2 and forward.delivered == 0
    await alice.aclose()
    await bob.aclose()


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    cfg = CallbackConfig(secret="s", retry_base_ms=100, retry_max_ms=1000)
    top = WebhookQueue("t", "http://127.0.0.1:1/", cfg, clock=None, rng=lambda: 1.0)  # type: ignore[arg-type]
    assert [top.backoff_seconds(a) for a in (1, 2, 3, 4, 5, 9)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    rng = random.Random(7)
    jittered = WebhookQueue("t", "http://127.0.0.1:1/", cfg, clock=None, rng=rng.random)  # type: ignore[arg-type]
    samples = {jittered.backoff_seconds(3) for _ in range(50)}
    assert len(samples) > 40 and all(0 <= s <= 0.4 for s in samples)


async def test_a_full_queue_drops_the_oldest_and_keeps_per_user_order(caplog: pytest.LogCaptureFixture) -> None:
    cfg = CallbackConfig(secret="s", queue_size=5, senders=2)
    q = WebhookQueue("t", "http://127.0.0.1:1/", cfg, clock=None)  # type: ignore[arg-type]
    for i in range(8):
        q.put({"n": i}, key="u1" if i % 2 else "u2")
    assert (q.depth, q.dropped) == (5, 3)
    drops = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drops) == 1  # logged once per DROP_LOG_SECONDS, not once per event
    kept = sorted((e.seq, e.payload["n"]) for lane in q._lanes for e in lane)
    assert [n for _, n in kept] == [3, 4, 5, 6, 7]  # the three oldest went
    for key in ("u1", "u2"):  # one user's events all in one lane, in order
        lanes = [[e.seq for e in lane if e.key == key] for lane in q._lanes]
        used = [seqs for seqs in lanes if seqs]
        assert len(used) == 1 and used[0] == sorted(used[0])


def test_a_webhook_url_needs_the_secret_and_an_http_url(tmp_path) -> None:
    with pytest.raises(ConfigError, match="callback.secret is required"):
        Config.default(tmp_path, push={"url": "http://127.0.0.1:9/push"})
    with pytest.raises(ConfigError, match="must be an http"):
        Config.default(tmp_path, callback={"secret": "s", "message_forward_url": "ftp://x"})
    assert Config.default(tmp_path).callback.secret == ""  # optional while no URL is set


async def test_the_sdk_uploads_the_push_token(nursery: trio.Nursery, tmp_path) -> None:
    from client import connect

    receiver = await Receiver().start(nursery)
    gw = await start_gateway(nursery, tmp_path, **hooks(push_url=receiver.url))
    for user in ("alice", "bob"):
        await gw.user(user)
    async with connect(gw.host, gw.port, await gw.token("bob", "bob-phone"), clock=gw.clock.now_ms) as bob:
        await bob.set_push_token(2, "fcm-token-from-the-sdk")
        with pytest.raises(ValueError, match="251"):
            await bob.set_push_token(256, "t")
    await wait_offline(gw, "bob")
    alice = await Device.connect(gw, "alice")
    assert (await alice.send_text("bob", "hi")).code == 0
    (push,) = await receiver.wait_for(1)
    assert (push.json["device_token"], push.json["push_type"]) == ("fcm-token-from-the-sdk", 2)
    await alice.aclose()


def doc_examples() -> dict[str, bytes]:
    """The payloads docs/ADMIN_API.md prints, made by the gateway's own payload functions."""
    from gateway.signing import sign
    from gateway.webhooks import channel_payload, encode, forward_payload, online_payload, push_payload
    from storage.messages import Conversation, Outgoing, SendResult
    from storage.push_tokens import PushDevice

    msg = Outgoing(
        message_id=264905950861721600, server_time=1767225700400, conv=Conversation(0, "bob"), from_user="alice",
        content={"type": 1, "searchable_content": "Hi Bob", "push_content": "Alice: Hi", "persist_flag": 3},
        persist_flag=3,
    )  # fmt: skip
    result = SendResult(0, msg.message_id, msg.server_time, {"alice": 43, "bob": 17})
    bodies = {
        "online": encode(online_payload("alice", "alice-phone", 2, "online", 1767225700000, [("alice-phone", 2), ("alice-pc", 3)])),
        "forward": encode(forward_payload(msg, result)),
        "push": encode(push_payload("bob", PushDevice("bob-phone", 1, 1, "9f3c...e1"), msg, 3, "You have a new message")),
    }
    to_bot = Outgoing(  # content as the gateway validated it: persist_flag is always set (3 by default)
        message_id=264905950861721601, server_time=1767225700500, conv=Conversation(3, "bot"), from_user="ann",
        content={"type": 1, "searchable_content": "to the bot", "persist_flag": 3}, persist_flag=3,
    )  # fmt: skip
    bodies["channel"] = encode(channel_payload("bot", to_bot))
    bodies["sign"] = sign(b"hook-secret", "5d41402abc4b2a76b9719d911017c592", "1767225700000", bodies["online"]).encode()
    return bodies


def test_the_doc_prints_the_payloads_byte_exact() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "ADMIN_API.md").read_text(encoding="utf-8")
    for name, body in doc_examples().items():
        assert body.decode() in text, name


async def test_silent_conversations_and_do_not_disturb_suppress_pushes_but_mentions_go_through(
    nursery: trio.Nursery, tmp_path
) -> None:
    receiver = await Receiver().start(nursery)
    gw = await start_gateway(nursery, tmp_path, **hooks(push_url=receiver.url))
    for user in ("alice", "bob", "carol"):
        await gw.user(user)
    bob = await Device.connect(gw, "bob")
    assert (await bob.call("set_push_token", push_type=2, token="fcm")).code == 0
    assert (await bob.call("put_setting", scope=1, key="0-alice-0", value="1")).code == 0  # alice's chat silent
    minute = gw.clock.now_ms() // 60_000 % 1440
    window = f"{(minute - 1) % 1440}|{(minute + 1) % 1440}"
    await bob.aclose()
    await wait_offline(gw, "bob")
    alice, carol = await Device.connect(gw, "alice"), await Device.connect(gw, "carol")
    assert (await alice.send_text("bob", "silent chat")).code == 0
    assert (await alice.send_text("bob", "but a mention", mentioned_type=1, mentioned_targets=["bob"])).code == 0
    assert (await carol.send_text("bob", "carol is not silenced")).code == 0
    await receiver.wait_for(2)
    assert [(b["sender"], b["mentioned"]) for b in receiver.bodies()] == [("alice", True), ("carol", False)]
    # Do not disturb, for a window around now: nothing but mentions.
    bob = await Device.connect(gw, "bob")
    assert (await bob.call("put_setting", scope=17, key="", value=window)).code == 0
    await bob.aclose()
    await wait_offline(gw, "bob")
    assert (await carol.send_text("bob", "during do not disturb")).code == 0
    assert (await carol.send_text("bob", "@bob", mentioned_type=2)).code == 0
    await receiver.wait_for(3)
    assert receiver.bodies()[2]["mentioned"] is True and len(receiver.requests) == 3
    for device in (alice, carol):
        await device.aclose()
