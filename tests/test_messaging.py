"""Messaging over real sockets (SPEC §5): no friendship needed, durable acks, push and pull, delete, recall."""

from __future__ import annotations

import copy
import itertools
import json

import pytest
import trio
import trio.testing
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.config import Config
from gateway.domain import messaging
from protocol import events
from protocol.codec import Fields
from protocol.codes import DEFAULT_PERSIST_FLAG, ErrorCode, UserStatus
from protocol.codes import ConnectionStatus as S
from protocol.errors import FieldError
from storage.messages import Conversation, Outgoing
from tests.harness import Gateway, RawClient, start_gateway
from tests.storage_helpers import held_writer, wait_until


class Device:
    """A raw connected client with request/response helpers and a queue of pushes."""

    def __init__(self, client: RawClient) -> None:
        self.client = client
        self.pushes: list[events.Notify] = []

    @classmethod
    async def connect(cls, gw: Gateway, user_id: str, device: str = "phone", platform: int = 2) -> Device:
        # A client id belongs to one user at a time (SPEC §2), so each user's devices get their own.
        client = await RawClient.connected(gw, await gw.token(user_id, f"{user_id}-{device}", platform))
        return cls(client)

    async def call(self, method: str, **params) -> events.Response:
        request_id, frame = self.client.proto.request(method, params)
        await self.client.send(frame)
        while True:
            event = await self.client.next_event()
            assert event is not None, "server closed"
            if isinstance(event, events.Notify):
                self.pushes.append(event)
            elif isinstance(event, events.Response) and event.request_id == request_id:
                return event

    async def push(self, topic: str = "msg") -> events.Notify:
        for i, notify in enumerate(self.pushes):
            if notify.topic == topic:
                return self.pushes.pop(i)
        while True:
            event = await self.client.next_event()
            assert event is not None, "server closed"
            if isinstance(event, events.Notify) and event.topic == topic:
                return event
            if isinstance(event, events.Notify):
                self.pushes.append(event)

    async def send_text(self, to: str, text: str, **content) -> events.Response:
        return await self.call(
            "send_message",
            conv={"type": 0, "target": to},
            content={"type": 1, "searchable_content": text, **content},
        )

    async def pull_all(self, after_seq: int = 0) -> list[dict]:
        out = []
        while True:
            page = (await self.call("pull", after_seq=after_seq, limit=2)).result
            out += page["messages"]
            if len(page["messages"]) < 2:
                return out
            after_seq = page["messages"][-1]["seq"]

    async def aclose(self) -> None:
        await self.client.aclose()


def texts(items: list[dict]) -> list[str]:
    return [m["message"]["content"].get("searchable_content") for m in items]


@pytest.fixture(params=["tcp", "ws"])
async def gw(nursery: trio.Nursery, tmp_path, request: pytest.FixtureRequest) -> Gateway:
    """Each test that uses it runs over both transports (docs/PROTOCOL.md §2.2), so they cannot drift."""
    gw = await start_gateway(nursery, tmp_path, transport=request.param)
    for user in ("alice", "bob", "carol"):
        await gw.user(user)
    return gw


async def test_a_stranger_can_message_a_user_and_it_is_pushed(gw: Gateway) -> None:
    alice = await Device.connect(gw, "alice")
    bob = await Device.connect(gw, "bob")
    ack = await alice.send_text("bob", "hi bob")
    assert ack.code == 0
    assert set(ack.result) == {"message_id", "server_time", "seq"}
    push = await bob.push()
    assert push.data["seq"] == 1
    message = push.data["message"]
    assert message["message_id"] == ack.result["message_id"]
    assert (message["from"], message["conv"]) == ("alice", {"type": 0, "target": "bob", "line": 0})
    assert message["content"]["searchable_content"] == "hi bob"
    # Both inboxes hold it: bob's as a message from alice, alice's for her other devices.
    assert texts(await bob.pull_all()) == ["hi bob"]
    assert texts(await alice.pull_all()) == ["hi bob"]
    await alice.aclose()
    await bob.aclose()


async def test_the_senders_other_devices_get_it_but_not_the_sending_one(gw: Gateway) -> None:
    phone = await Device.connect(gw, "alice", "phone", 2)
    desktop = await Device.connect(gw, "alice", "desktop", 3)
    ack = await phone.send_text("bob", "from my phone")
    push = await desktop.push()
    assert push.data["seq"] == ack.result["seq"]
    # The sending phone has its ack; a ping round trip shows no push was queued before the pong.
    await phone.client.send(phone.client.proto.ping())
    assert isinstance(await phone.client.next_event(), events.Pong)
    for d in (phone, desktop):
        await d.aclose()


@pytest.mark.parametrize("strategy", [0, 1])
async def test_blacklist_strategies(nursery: trio.Nursery, tmp_path, strategy: int) -> None:
    gw = await start_gateway(nursery, tmp_path, message={"blacklist_strategy": strategy})
    await gw.user("alice")
    await gw.user("bob")
    bob = await Device.connect(gw, "bob")
    assert (await bob.call("set_blacklist", user_id="alice", blocked=True)).code == 0
    assert (await bob.call("get_blacklist")).result == {"user_ids": ["alice"]}
    alice = await Device.connect(gw, "alice")
    ack = await alice.send_text("bob", "let me in")
    if strategy == 0:
        assert ack.code == ErrorCode.IN_BLACKLIST
    else:
        assert ack.code == 0 and ack.result["message_id"] > 0
    assert await bob.pull_all() == []  # dropped either way
    assert (await bob.call("set_blacklist", user_id="alice", blocked=False)).code == 0
    assert (await alice.send_text("bob", "thanks")).code == 0
    assert texts(await bob.pull_all()) == ["thanks"]
    await alice.aclose()
    await bob.aclose()


async def test_muted_user_cannot_send(gw: Gateway) -> None:
    alice = await Device.connect(gw, "alice")
    assert await gw.services.sessions.set_block_status("alice", UserStatus.MUTED) == 0
    assert (await alice.send_text("bob", "shh")).code == ErrorCode.FORBIDDEN_TO_SEND
    await alice.aclose()


async def test_strangers_refused_when_stranger_chat_is_disabled(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path, message={"disable_stranger_chat": True})
    for user in ("alice", "bob"):
        await gw.user(user)
    alice = await Device.connect(gw, "alice")
    assert (await alice.send_text("bob", "hello?")).code == ErrorCode.NOT_RIGHT
    await gw.services.store.add_friendship("alice", "bob", gw.clock.now_ms())
    assert (await alice.send_text("bob", "hello friend")).code == 0
    await alice.aclose()


async def test_unknown_recipient_and_invalid_content(gw: Gateway) -> None:
    alice = await Device.connect(gw, "alice")
    assert (await alice.send_text("nobody", "hi")).code == ErrorCode.NOT_EXIST
    bad_extra = await alice.send_text("bob", "hi", extra="{not json")
    assert bad_extra.code == ErrorCode.INVALID_PARAMETER and bad_extra.result["field"] == "content.extra"
    assert (await alice.send_text("bob", "hi", extra='{"k": 1}')).code == 0
    assert (await alice.send_text("bob", "hi", persist_flag=2)).code == ErrorCode.INVALID_PARAMETER
    assert (await alice.send_text("bob", "x" * 20000)).code == ErrorCode.INVALID_PARAMETER
    too_many_bytes = await alice.send_text("bob", "é" * 9000)  # 9000 characters, 18000 UTF-8 bytes
    assert too_many_bytes.code == ErrorCode.INVALID_PARAMETER
    assert too_many_bytes.result["field"] == "content.searchable_content"
    unknown_type = await alice.call("send_message", conv={"type": 9, "target": "bob"}, content={"type": 1})
    assert unknown_type.code == ErrorCode.INVALID_PARAMETER
    # The conversation target follows valid_id, as the admin API does: " bob" is not bob.
    padded = await alice.call("send_message", conv={"type": 0, "target": " bob"}, content={"type": 1})
    assert padded.code == ErrorCode.INVALID_PARAMETER and padded.result["field"] == "conv.target"
    for reserved in (80, 104, 199):  # recall notices and group notifications are the server's to make
        forged = await alice.call("send_message", conv={"type": 0, "target": "bob"}, content={"type": reserved})
        assert forged.code == ErrorCode.INVALID_PARAMETER and forged.result["field"] == "content.type"
    assert (await alice.call("send_message", conv={"type": 0, "target": "bob"}, content={"type": 200})).code == 0
    for kind, code in ((2, 253), (3, 253)):  # no chatroom "r" (tests/test_chatrooms.py), no channel "r"
        assert (
            await alice.call("send_message", conv={"type": kind, "target": "r"}, content={"type": 1})
        ).code == code
    await alice.aclose()


async def test_duplicate_client_msg_id_yields_one_message(gw: Gateway) -> None:
    alice = await Device.connect(gw, "alice")
    params = {"conv": {"type": 0, "target": "bob"}, "content": {"type": 1, "searchable_content": "once"}}
    first = await alice.call("send_message", client_msg_id="m-1", **params)
    await alice.aclose()
    alice = await Device.connect(gw, "alice")  # the resend happens after a reconnect
    again = await alice.call("send_message", client_msg_id="m-1", **params)
    assert again.code == 0 and again.result == first.result
    assert texts(await alice.pull_all()) == ["once"]
    bob = await Device.connect(gw, "bob")
    assert texts(await bob.pull_all()) == ["once"]
    await alice.aclose()
    await bob.aclose()


async def test_transparent_messages_reach_live_devices_only_and_are_never_stored(gw: Gateway) -> None:
    alice = await Device.connect(gw, "alice")
    assert (await alice.send_text("bob", "typing... (bob offline)", persist_flag=4)).code == 0
    bob = await Device.connect(gw, "bob")
    assert (await alice.send_text("bob", "typing...", persist_flag=4)).code == 0
    push = await bob.push()
    assert push.data["seq"] == 0 and push.data["message"]["content"]["searchable_content"] == "typing..."
    assert await bob.pull_all() == []
    assert await alice.pull_all() == []
    await alice.aclose()
    await bob.aclose()


async def test_messages_racing_a_connect_are_in_its_heads_or_pushed(gw: Gateway) -> None:
    """Sends queued just before and just after a CONNECT's storage read, all in one storage batch."""
    alice = await Device.connect(gw, "alice")
    bob = await RawClient.open(gw, await gw.token("bob", "bob-phone"))
    assert isinstance(await bob.next_event(), events.Hello)
    writer = gw.services.store.writer

    async def queued_behind(n: int) -> None:
        """The gateway has read what was sent and queued it: n operations wait for the writer."""
        await wait_until(lambda: writer.queued == n)

    async def send(text: str) -> None:
        _, frame = alice.client.proto.request(
            "send_message",
            {"conv": {"type": 0, "target": "bob"}, "content": {"type": 1, "searchable_content": text}},
        )
        await alice.client.send(frame)

    # Hold the storage writer, so that what follows is queued in this order and runs as one batch.
    async with held_writer(writer):
        await send("before")
        await queued_behind(1)
        await bob.send(bob.proto.connect(gw.clock.now_ms()))
        await queued_behind(2)  # bob's session read, behind the first send
        await send("after")
        await queued_behind(3)

    ack = await bob.next_event()
    assert isinstance(ack, events.ConnAck) and ack.code == S.CONNECTED
    bob = Device(bob)
    stored = await bob.pull_all()  # pushes sent before this answer are collected on the way
    assert texts(stored) == ["before", "after"]
    pushed = {push.data["seq"] for push in bob.pushes}
    assert all(m["seq"] <= ack.heads["msg"] or m["seq"] in pushed for m in stored)
    # As built: the send queued before the read is counted, the one after it is pushed.
    assert (ack.heads["msg"], pushed) == (1, {2})
    await alice.aclose()
    await bob.aclose()


async def test_offline_recipient_pulls_everything_in_order(gw: Gateway) -> None:
    alice = await Device.connect(gw, "alice")
    for i in range(7):
        assert (await alice.send_text("bob", f"m{i}")).code == 0
    bob = await RawClient.open(gw, await gw.token("bob", "bob-phone"))
    ack = await bob.handshake(gw.clock.now_ms())
    assert ack.heads["msg"] == 7
    bob = Device(bob)
    pulled = await bob.pull_all()
    assert texts(pulled) == [f"m{i}" for i in range(7)]
    assert [m["seq"] for m in pulled] == list(range(1, 8))
    await alice.aclose()
    await bob.aclose()


async def test_roaming_off_gives_a_new_device_only_recent_messages(gw: Gateway) -> None:
    alice = await Device.connect(gw, "alice")
    await alice.send_text("bob", "old")
    gw.clock.advance(301)  # past message.compensate_seconds (300)
    await alice.send_text("bob", "recent")
    bob = await Device.connect(gw, "bob", "new-install")
    assert texts(await bob.pull_all()) == ["recent"]
    # A device that already synced past seq 0 still gets everything after its seq.
    assert texts(await bob.pull_all(after_seq=0 + 1)) == ["recent"]
    await alice.aclose()
    await bob.aclose()


async def test_roaming_on_gives_a_new_device_the_whole_inbox(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path, message={"roaming": True})
    for user in ("alice", "bob"):
        await gw.user(user)
    alice = await Device.connect(gw, "alice")
    await alice.send_text("bob", "old")
    gw.clock.advance(86400)
    await alice.send_text("bob", "recent")
    bob = await Device.connect(gw, "bob", "new-install")
    assert texts(await bob.pull_all()) == ["old", "recent"]
    await alice.aclose()
    await bob.aclose()


async def test_remote_history_switch(nursery: trio.Nursery, tmp_path) -> None:
    for enabled in (False, True):
        gw = await start_gateway(nursery, tmp_path / str(enabled), message={"remote_history": enabled})
        for user in ("alice", "bob"):
            await gw.user(user)
        alice = await Device.connect(gw, "alice")
        for i in range(5):
            await alice.send_text("bob", f"h{i}")
        bob = await Device.connect(gw, "bob")
        answer = await bob.call("load_remote_history", conv={"type": 0, "target": "alice"}, count=3)
        if not enabled:
            assert answer.code == ErrorCode.FUNCTION_DISABLED
        else:
            assert answer.code == 0
            newest = answer.result["messages"]
            assert [m["content"]["searchable_content"] for m in newest] == ["h4", "h3", "h2"]
            older = await bob.call(
                "load_remote_history", conv={"type": 0, "target": "alice"}, before_id=newest[-1]["message_id"]
            )
            assert [m["content"]["searchable_content"] for m in older.result["messages"]] == ["h1", "h0"]
        await alice.aclose()
        await bob.aclose()


async def test_deleted_message_never_comes_back(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path, message={"roaming": True, "remote_history": True})
    for user in ("alice", "bob"):
        await gw.user(user)
    alice = await Device.connect(gw, "alice")
    keep = (await alice.send_text("bob", "keep")).result["message_id"]
    gone = (await alice.send_text("bob", "delete me")).result["message_id"]
    bob = await Device.connect(gw, "bob", "phone", 2)
    other = await Device.connect(gw, "bob", "desktop", 3)
    assert (await bob.call("delete_message", message_id=gone)).code == 0
    assert (await other.push("message_deleted")).data == {"message_id": gone}
    assert (await bob.call("delete_message", message_id=gone)).code == ErrorCode.NOT_EXIST
    await bob.aclose()
    await other.aclose()
    # Reconnect, and reinstall (a new client id) with roaming and remote history on.
    for device in ("phone", "reinstalled"):
        again = await Device.connect(gw, "bob", device)
        assert texts(await again.pull_all()) == ["keep"]
        history = await again.call("load_remote_history", conv={"type": 0, "target": "alice"})
        assert [m["message_id"] for m in history.result["messages"]] == [keep]
        await again.aclose()
    # Only bob deleted it: alice still has both.
    assert texts(await alice.pull_all()) == ["keep", "delete me"]
    await alice.aclose()


async def test_recall_within_the_window_replaces_it_for_everyone(gw: Gateway) -> None:
    alice = await Device.connect(gw, "alice", "phone", 2)
    alice_desktop = await Device.connect(gw, "alice", "desktop", 3)
    bob = await Device.connect(gw, "bob")
    sent = (await alice.send_text("bob", "oops")).result["message_id"]
    await bob.push()
    await alice_desktop.push()
    assert (await bob.call("recall_message", message_id=sent)).code == ErrorCode.NOT_RIGHT
    recalled = await alice.call("recall_message", message_id=sent)
    assert recalled.code == 0
    for device in (bob, alice_desktop):
        notice = (await device.push()).data["message"]
        assert notice["content"]["type"] == 80
        assert json.loads(notice["content"]["content"]) == {"operator": "alice", "message_id": str(sent)}
    # Pulled history shows the notice in place of the message, then the notice itself.
    pulled = await bob.pull_all()
    assert [m["message"]["content"]["type"] for m in pulled] == [80, 80]
    assert pulled[0]["message"]["message_id"] == sent
    assert "oops" not in json.dumps([m["message"]["content"] for m in pulled])
    assert (await alice.call("recall_message", message_id=sent)).code == ErrorCode.NOT_EXIST
    for d in (alice, alice_desktop, bob):
        await d.aclose()


async def test_recall_stores_a_copy_of_the_notice_and_leaves_the_callers_alone(gw: Gateway) -> None:
    """Store.recall_message runs on the writer thread: it must not write to the object its caller holds."""
    alice = await Device.connect(gw, "alice")
    sent = (await alice.send_text("bob", "oops")).result["message_id"]
    notice = Outgoing(
        gw.services.messages.ids.next_id(), gw.clock.now_ms(), Conversation(0, ""), "alice",
        {"type": 80, "content": "{}", "persist_flag": 1}, 1,
    )  # fmt: skip
    before = copy.deepcopy(notice)
    result, stored = await gw.services.store.recall_message("alice", sent, 120_000, notice)
    assert result.code == 0 and notice == before
    assert stored is not None and (stored.conv, stored.from_user) == (Conversation(0, "bob"), "alice")
    assert (stored.message_id, stored.content) == (notice.message_id, notice.content)
    await alice.aclose()


async def test_recall_after_the_window_is_refused(gw: Gateway) -> None:
    alice = await Device.connect(gw, "alice")
    sent = (await alice.send_text("bob", "too late")).result["message_id"]
    gw.clock.advance(121)
    assert (await alice.call("recall_message", message_id=sent)).code == ErrorCode.RECALL_TIME_EXPIRED
    await alice.aclose()


# --- reading a send's params: the direct reads of the common case agree with the checked getters ------------

#: Values of every wire type, and the edges of the rules they meet (ids, lines, types, text lengths).
_WIRE_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**33), max_value=2**33),
    st.sampled_from([0, 1, 2, 3, 4, 5, -1, 2**31 - 1, 2**31, -(2**31)]),
    st.text(max_size=70),
    st.sampled_from(["bob", " bob", "bob ", "b\x00b", "x" * 64, "x" * 65, ""]),
    st.binary(max_size=3),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _outcome(read, *args):
    try:
        return "ok", read(*args)
    except FieldError as exc:
        return "251", exc.field, exc.problem


_CONV_TYPES = [0, 1, 2, 3, 4, 5, -1, True, 1.0, "1", None, _ABSENT := object()]
_CONV_TARGETS = ["bob", " bob", "bob ", "b\x00b", "x" * 64, "x" * 65, "", 7, None, _ABSENT]
_CONV_LINES = [0, 1, -1, 2**31 - 1, 2**31, False, 0.0, "0", None, _ABSENT]


def _same_conversation_reading(conv) -> None:
    fields = Fields({"conv": conv})
    assert _outcome(messaging.read_conversation, fields) == _outcome(messaging._read_conversation, fields), conv


def test_read_conversation_reads_directly_what_the_checked_getters_accept() -> None:
    """``read_conversation`` reads a plain conversation map straight from the dict and hands anything else to
    the getters: both must give the same Conversation, or the same 251 naming the same field (every
    combination of the edges of each field)."""
    for kind, target, line in itertools.product(_CONV_TYPES, _CONV_TARGETS, _CONV_LINES):
        conv = {k: v for k, v in (("type", kind), ("target", target), ("line", line)) if v is not _ABSENT}
        _same_conversation_reading(conv)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        _WIRE_VALUES,
        st.dictionaries(st.sampled_from(["type", "target", "line", "other"]), _WIRE_VALUES, max_size=4),
    )
)
def test_read_conversation_agrees_with_the_getters_on_any_value(conv) -> None:
    _same_conversation_reading(conv)


_LIMIT = 64  # the smallest message.max_text_bytes the config takes


@settings(max_examples=400, deadline=None)
@given(
    key=st.sampled_from(["searchable_content", "push_content", "content", "extra"]),
    value=st.one_of(
        _WIRE_VALUES,
        st.integers(min_value=0, max_value=_LIMIT + 2).map(lambda n: "a" * n),
        st.integers(min_value=0, max_value=_LIMIT // 2 + 2).map(lambda n: "é" * n),  # 2 UTF-8 bytes each
        st.integers(min_value=0, max_value=_LIMIT // 4 + 2).map(lambda n: "😀" * n),  # 4 each
    ),
    kind=st.one_of(_WIRE_VALUES, st.sampled_from([1, 100, 199, 200])),
)
def test_read_content_takes_exactly_the_texts_and_types_the_rules_allow(key, value, kind) -> None:
    """The content's type and text fields, read straight from the dict when plainly right: accepted exactly
    when the checked getter and the UTF-8 byte limit accept them, and refused with the getter's 251."""
    config = Config.default(message={"max_text_bytes": _LIMIT})
    content = {"type": kind, key: value}
    got = _outcome(messaging.read_content, Fields({"content": content}), config)
    # The rules, by the getters themselves.
    checked = Fields(content, "content.")
    expected: tuple
    try:
        checked.integer("type", lo=0, hi=2**31 - 1)
        if kind in (80, 81) or 100 <= kind < 200:  # recall / update notices, notifications: the server's
            raise AssertionError("reserved types are under test elsewhere")
        text = checked.text(key, max_len=_LIMIT, default=None)
        if text is not None and len(text.encode()) > _LIMIT:
            raise FieldError("content." + key, f"at most {_LIMIT} bytes")
        if key == "extra" and text:
            messaging.check_json("content.extra", text)
        expected = ("ok", {"type": kind, **({key: text} if text else {}), "persist_flag": DEFAULT_PERSIST_FLAG})
    except FieldError as exc:
        expected = ("251", exc.field, exc.problem)
    except AssertionError:
        assume(False)
    assert got == expected
