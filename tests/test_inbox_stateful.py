"""A Hypothesis stateful test of the inbox (issue 3): random sends, deletes, recalls, pulls, reconnects and
restarts over real sockets; what every user pulls, and what every live device is pushed, always equals a model.

Each Hypothesis example is a *program*, a list of operations, run in its own ``trio.run`` against a fresh
gateway (``tests.harness.start_gateway``: real sockets, a real SQLite file, a ``ManualClock``) with roaming on.
Operations name a user and one of their two devices (Android and Windows, different platform classes, so their
tokens don't kick each other) and carry a ``pick`` that chooses among what exists at run time (which message
to delete or recall, which client_msg_id to resend, where to pull from), so any list is a valid program and
shrinking keeps it valid. A device that is offline when an operation needs it connects first with its token.

The model keeps, per user, the ordered inbox entries (message id, seq) and, per message, what it should look
like (text, or a recall notice of type 80). After every operation each user pulls their whole inbox through an
always-connected observer device (platform web, a class of its own) and it must equal the model: same messages
in the same order, seqs strictly increasing, every new seq above any seq the user was ever given (a reused seq
is a message a synced device never pulls), deleted ones absent, recalled ones type 80, transparent ones never
there. Every live device then flushes with a ping and must have been pushed exactly what the model says. Every
CONNACK's msg head, and every pull's head, must be at least the highest seq the user was ever given.

A failure prints the shrunk program, and a trace of what each step did (ids, codes) through ``note``.
"""

from __future__ import annotations

import itertools
import json
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from gateway.clock import ManualClock
from protocol import events
from protocol.codes import ConnectionStatus, ErrorCode
from storage import inboxes
from tests import backends
from tests.harness import Gateway, RawClient, start_gateway
from tests.test_messaging import Device

USERS = ("alice", "bob", "carol")
# Android (mobile class) and Windows (PC class): a new token for one never kicks the other.
SLOT_PLATFORMS = (2, 3)
OBSERVER_PLATFORM = 5  # web: a platform class of its own
NO_SUCH_ID = 4242  # real ids are ~2**57 (ms since 2024 shifted left by 22)
RECALL = 80  # content type of a recall notice
START_MS = 1_750_000_000_000  # after gateway.ids.EPOCH_MS, so message ids carry the time
CHECK_PAGE = 4  # the observer pulls in small pages, to exercise paging
MAX_OPS = 40
EXAMPLE_TIMEOUT = 60  # seconds; a hang becomes a failure with the program printed


# --- the program ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    user: str
    slot: int
    to: str
    text: str
    mode: str  # plain | cmid (a fresh client_msg_id) | resend (an earlier one) | transparent (persist_flag 4)
    flag: int  # persist_flag for stored sends: 0, 1 or 3
    pick: int


@dataclass(frozen=True)
class Delete:
    user: str
    slot: int
    held: bool  # one the user holds (→ 0), or one they don't (→ 253)
    pick: int


@dataclass(frozen=True)
class Recall:
    user: str
    slot: int
    own: bool  # one of the user's own messages, or someone else's (→ 248, or 253)
    pick: int


@dataclass(frozen=True)
class Pull:
    user: str
    slot: int
    pick: int  # chooses after_seq for the second pull
    limit: int


@dataclass(frozen=True)
class Disconnect:
    user: str
    slot: int


@dataclass(frozen=True)
class Reconnect:
    user: str
    slot: int
    reinstall: bool  # a fresh token with a new client id, instead of the same token


@dataclass(frozen=True)
class Advance:
    seconds: float


@dataclass(frozen=True)
class Restart:
    """Stop the gateway gracefully and start a new one on the same database."""


_users = st.sampled_from(USERS)
_slots = st.integers(0, 1)
_picks = st.integers(0, 1000)


def _sends() -> st.SearchStrategy[Send]:
    return st.builds(
        Send,
        _users,
        _slots,
        _users,
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=8),
        st.sampled_from(["plain", "cmid", "resend", "transparent"]),
        st.sampled_from([3, 1, 0]),
        _picks,
    )


def _deletes() -> st.SearchStrategy[Delete]:
    return st.builds(Delete, _users, _slots, st.booleans(), _picks)


# one_of picks a branch uniformly; separate (equal) branches weight sends 4, deletes and restarts 2, the rest 1.
_operations = st.one_of(
    *(_sends() for _ in range(4)),
    *(_deletes() for _ in range(2)),
    st.builds(Pull, _users, _slots, _picks, st.sampled_from([100, 1, 3])),
    st.builds(Recall, _users, _slots, st.booleans(), _picks),
    st.builds(Disconnect, _users, _slots),
    st.builds(Reconnect, _users, _slots, st.booleans()),
    # Around the 120 s recall window: 119.999 + 0.001 is exactly on it (still allowed), one ms more is not.
    st.builds(Advance, st.sampled_from([0.001, 1, 60, 119.999, 120, 121, 600])),
    st.just(Restart()),
    st.builds(Restart),
)
# A list of short runs, flattened: Hypothesis' lists average ~5 items, too few to build up an inbox, and a
# large min_size would keep shrunk programs long. Chunks shrink away whole or item by item.
programs = st.lists(st.lists(_operations, min_size=1, max_size=10), min_size=1, max_size=8).map(
    lambda chunks: [op for chunk in chunks for op in chunk][:MAX_OPS]
)


# --- the model ------------------------------------------------------------------------------------


@dataclass
class Message:
    message_id: int
    sender: str
    recipient: str
    server_time: int
    text: str
    flag: int
    stored: bool = True
    recalled: bool = False
    recalls: int | None = None  # set on a recall notice: the message it replaced

    def content_type(self) -> int:
        return RECALL if self.recalled or self.recalls is not None else 1


@dataclass
class Entry:
    message_id: int
    seq: int | None = None  # learned at the first check after it appeared (the sender's is in the ack)


@dataclass
class Slot:
    """One device of a user: a session (client id + token) and maybe a live connection."""

    user: str
    name: str
    platform: int
    generation: int = 0
    token: str | None = None
    device: Device | None = None
    expected: list[tuple] = field(default_factory=list)  # pushes due since the last check

    @property
    def client_id(self) -> str:
        return f"{self.user}-{self.name}-{self.generation}"


def _pick(items: list, pick: int) -> Any:
    """Counting back from the newest: small picks (what Hypothesis shrinks to) choose recent items."""
    return items[-1 - pick % len(items)]


def _notice_text(operator: str, message_id: int) -> dict:
    return {"operator": operator, "message_id": str(message_id)}


class World:
    """The gateway, the devices, and the model of what they should see."""

    def __init__(self, nursery: trio.Nursery, data_dir: Path) -> None:
        self.nursery = nursery
        self.data_dir = data_dir
        self.clock = ManualClock(START_MS)
        self.sections: dict[str, dict[str, Any]] = {
            # Fixed secrets, so tokens stay valid across a restart.
            "token": {"key": secrets.token_hex(32)},
            "admin": {"secret": secrets.token_hex(32)},
            "message": {"roaming": True},
            # The test sends faster than a person; the rate limit is not what it is about.
            "client": {"request_rate_limit": 1_000_000},
        }
        self.gw: Gateway
        self._stop: trio.CancelScope | None = None
        self._stopped = trio.Event()
        self.inbox: dict[str, list[Entry]] = {u: [] for u in USERS}
        self.max_seq = dict.fromkeys(USERS, 0)  # the highest seq each user was ever given (deleted ones too)
        self.messages: dict[int, Message] = {}
        self.last_id = 0
        self.acks: dict[tuple[str, str], dict] = {}  # (sender, client_msg_id) → the original ack
        self.client_msg_ids: dict[str, list[str]] = {u: [] for u in USERS}
        self._cmid = itertools.count(1)
        self.slots = {u: [Slot(u, f"dev{i}", p) for i, p in enumerate(SLOT_PLATFORMS)] for u in USERS}
        self.observers = {u: Slot(u, "observer", OBSERVER_PLATFORM) for u in USERS}

    # --- gateway lifecycle ----------------------------------------------------------------------

    async def _serve(self, task_status: trio.TaskStatus) -> None:
        stopped = trio.Event()
        try:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    gw = await start_gateway(nursery, self.data_dir, clock=self.clock, **self.sections)
                    task_status.started((gw, scope, stopped))
        finally:
            stopped.set()

    async def start(self, *, first: bool = False) -> None:
        self.gw, self._stop, self._stopped = await self.nursery.start(self._serve)
        if first:
            for user in USERS:
                await self.gw.user(user)
        for observer in self.observers.values():
            await self.connect(observer)

    async def stop(self) -> None:
        if self._stop is not None:
            self._stop.cancel()
            await self._stopped.wait()
            self._stop = None
        for slot in self.all_slots():
            await self.disconnect(slot)

    def all_slots(self) -> list[Slot]:
        return [s for u in USERS for s in (*self.slots[u], self.observers[u])]

    def live(self, user: str) -> list[Slot]:
        return [s for s in (*self.slots[user], self.observers[user]) if s.device is not None]

    # --- devices --------------------------------------------------------------------------------

    async def connect(self, slot: Slot, *, reinstall: bool = False) -> None:
        if slot.token is None or reinstall:
            if reinstall:
                slot.generation += 1
            slot.token = await self.gw.token(slot.user, slot.client_id, slot.platform)
        client = await RawClient.open(self.gw, slot.token)
        ack = await client.handshake(self.clock.now_ms())
        assert isinstance(ack, events.ConnAck) and ack.code == ConnectionStatus.CONNECTED, ack
        assert ack.heads["msg"] >= self.max_seq[slot.user], (
            f"CONNACK msg head {ack.heads['msg']} < {self.max_seq[slot.user]}, a seq {slot.user} already had"
        )
        slot.device = Device(client)
        slot.expected = []

    async def disconnect(self, slot: Slot) -> None:
        if slot.device is not None:
            await slot.device.aclose()
            slot.device = None
            slot.expected = []

    async def device(self, user: str, index: int) -> tuple[Slot, Device]:
        slot = self.slots[user][index]
        if slot.device is None:
            await self.connect(slot)
        assert slot.device is not None
        return slot, slot.device

    def expect_push(self, owner: str, origin: Slot, push: tuple) -> None:
        """Every live device of ``owner`` but the one that acted is pushed ``push``."""
        for slot in self.live(owner):
            if slot is not origin:
                slot.expected.append(push)

    def new_id(self, message_id: int) -> None:
        assert message_id > self.last_id, f"message id {message_id} not above the last one {self.last_id}"
        self.last_id = message_id

    # --- operations -----------------------------------------------------------------------------

    async def apply(self, op: Any) -> None:
        handler = getattr(self, f"op_{type(op).__name__.lower()}")
        await handler(op)

    async def op_send(self, op: Send) -> None:
        slot, device = await self.device(op.user, op.slot)
        to, text, flag, cmid = op.to, op.text, op.flag, None
        original = None
        if op.mode == "resend" and self.client_msg_ids[op.user]:
            cmid = _pick(self.client_msg_ids[op.user], op.pick)
            original = self.acks[(op.user, cmid)]
            first = self.messages[original["message_id"]]
            to, text, flag = first.recipient, first.text, first.flag  # a resend repeats the send
        elif op.mode in ("cmid", "resend"):
            cmid = f"cm-{next(self._cmid)}"
        if op.mode == "transparent":
            flag = 4
        params: dict[str, Any] = {
            "conv": {"type": 0, "target": to},
            "content": {"type": 1, "searchable_content": text, "persist_flag": flag},
        }
        if cmid is not None:
            params["client_msg_id"] = cmid
        reply = await device.call("send_message", **params)
        note(f"{slot.client_id} send {to} {text!r} flag={flag} cmid={cmid} -> {reply.code} {reply.result}")
        assert reply.code == ErrorCode.SUCCESS, reply
        ack = reply.result
        if original is not None:
            assert ack == original, f"a resend of {cmid} answered {ack}, not the original ack {original}"
            return  # and no second message: the checks see to that
        self.new_id(ack["message_id"])
        assert ack["server_time"] == self.clock.now_ms()
        message = Message(ack["message_id"], op.user, to, ack["server_time"], text, flag, stored=flag != 4)
        self.messages[message.message_id] = message
        owners = list(dict.fromkeys((to, op.user)))
        if not message.stored:
            assert ack["seq"] == 0, ack
            for owner in owners:
                self.expect_push(owner, slot, ("msg", 0, message.message_id, 1))
            return
        for owner in owners:
            self.inbox[owner].append(Entry(message.message_id, ack["seq"] if owner == op.user else None))
            self.expect_push(owner, slot, ("msg", owner, message.message_id, 1))
        if cmid is not None:
            self.acks[(op.user, cmid)] = ack
            self.client_msg_ids[op.user].append(cmid)

    async def op_delete(self, op: Delete) -> None:
        slot, device = await self.device(op.user, op.slot)
        held = [e.message_id for e in self.inbox[op.user]]
        if op.held and held:
            message_id, expected = _pick(held, op.pick), ErrorCode.SUCCESS
        else:
            # Never stored (transparent), someone else's, already deleted, or no such message.
            others = [i for i in self.messages if i not in held] + [NO_SUCH_ID]
            message_id, expected = _pick(others, op.pick), ErrorCode.NOT_EXIST
        reply = await device.call("delete_message", message_id=message_id)
        note(f"{slot.client_id} delete {message_id} -> {reply.code}")
        assert reply.code == expected, (reply, expected)
        if expected == ErrorCode.SUCCESS:
            self.inbox[op.user] = [e for e in self.inbox[op.user] if e.message_id != message_id]
            self.expect_push(op.user, slot, ("message_deleted", message_id))

    async def op_recall(self, op: Recall) -> None:
        slot, device = await self.device(op.user, op.slot)
        candidates = [i for i, m in self.messages.items() if (m.sender == op.user) == op.own]
        message_id = _pick(candidates or [NO_SUCH_ID], op.pick)
        message = self.messages.get(message_id)
        now = self.clock.now_ms()
        if message is None or not message.stored or message.content_type() == RECALL:
            expected = ErrorCode.NOT_EXIST
        elif message.sender != op.user:
            expected = ErrorCode.NOT_RIGHT
        elif now - message.server_time > self.gw.config.message.recall_seconds * 1000:
            expected = ErrorCode.RECALL_TIME_EXPIRED
        else:
            expected = ErrorCode.SUCCESS
        reply = await device.call("recall_message", message_id=message_id)
        note(f"{slot.client_id} recall {message_id} -> {reply.code} {reply.result}")
        assert reply.code == expected, (reply, expected)
        if expected != ErrorCode.SUCCESS:
            return
        assert message is not None
        ack = reply.result
        self.new_id(ack["message_id"])
        message.recalled = True
        notice = Message(ack["message_id"], message.sender, message.recipient, now, "", 1, recalls=message_id)
        self.messages[notice.message_id] = notice
        # The notice goes to whoever still holds the message (a user who deleted it gets nothing).
        holders = [
            u
            for u in dict.fromkeys((message.recipient, message.sender))
            if any(e.message_id == message_id for e in self.inbox[u])
        ]
        if op.user not in holders:
            assert ack["seq"] == 0, ack
        for owner in holders:
            self.inbox[owner].append(Entry(notice.message_id, ack["seq"] if owner == op.user else None))
            self.expect_push(owner, slot, ("msg", owner, notice.message_id, RECALL))

    async def op_pull(self, op: Pull) -> None:
        slot, device = await self.device(op.user, op.slot)
        after = op.pick % (self.max_seq[op.user] + 2)
        note(f"{slot.client_id} pull from 0 and from {after}, limit {op.limit}")
        for after_seq in (0, after):
            self.compare(op.user, await self.pull(device, op.user, after_seq, op.limit), after_seq)

    async def op_disconnect(self, op: Disconnect) -> None:
        await self.disconnect(self.slots[op.user][op.slot])

    async def op_reconnect(self, op: Reconnect) -> None:
        slot = self.slots[op.user][op.slot]
        await self.disconnect(slot)
        await self.connect(slot, reinstall=op.reinstall)
        note(f"{slot.client_id} connected")

    async def op_advance(self, op: Advance) -> None:
        self.clock.advance(op.seconds)

    async def op_restart(self, op: Restart) -> None:
        await self.stop()
        # A restart takes time; message ids restart from the clock (gateway.ids), so the clock must move.
        self.clock.advance(1)
        await self.start()

    # --- checks ---------------------------------------------------------------------------------

    async def pull(self, device: Device, user: str, after_seq: int, limit: int) -> list[dict]:
        items: list[dict] = []
        while True:
            reply = await device.call("pull", after_seq=after_seq, limit=limit)
            assert reply.code == ErrorCode.SUCCESS, reply
            page = reply.result
            assert page["head"] >= self.max_seq[user], f"pull head {page['head']} < {self.max_seq[user]}"
            items += page["messages"]
            if len(page["messages"]) < limit:
                return items
            after_seq = page["messages"][-1]["seq"]

    def compare(self, user: str, items: list[dict], after: int, *, learn: bool = False) -> None:
        """``items`` (a pull after ``after``) must equal the model; with ``learn``, new entries take their seqs."""
        expected = [e for e in self.inbox[user] if e.seq is None or e.seq > after]
        got_ids = [item["message"]["message_id"] for item in items]
        assert got_ids == [e.message_id for e in expected], (
            f"{user} pulled after {after}: {[(i['seq'], i['message']['message_id']) for i in items]},"
            f" model {[(e.seq, e.message_id) for e in expected]}"
        )
        seqs = [item["seq"] for item in items]
        assert all(a < b for a, b in zip(seqs, seqs[1:], strict=False)), f"{user} seqs not increasing: {seqs}"
        assert all(s > after for s in seqs), seqs
        for entry, item in zip(expected, items, strict=True):
            if entry.seq is None:
                assert learn, f"{user} has an entry with no seq: {entry}"
                assert item["seq"] > self.max_seq[user], (
                    f"{user} got seq {item['seq']} again for message {entry.message_id}"
                    f" (seq {self.max_seq[user]} was given before)"
                )
                entry.seq = item["seq"]
            assert item["seq"] == entry.seq, (user, item["seq"], entry)
            self.check_message(item["message"], self.messages[entry.message_id])
        if learn and seqs:
            self.max_seq[user] = max(self.max_seq[user], seqs[-1])

    @staticmethod
    def check_message(wire: dict, message: Message) -> None:
        assert wire["from"] == message.sender, wire
        assert wire["conv"] == {"type": 0, "target": message.recipient, "line": 0}, wire
        assert wire["server_time"] == message.server_time, wire
        content = wire["content"]
        if message.content_type() == RECALL:
            assert content["type"] == RECALL and "searchable_content" not in content, wire
            replaced = message.recalls if message.recalls is not None else message.message_id
            assert json.loads(content["content"]) == _notice_text(message.sender, replaced), wire
        else:
            sent = {"type": 1, "searchable_content": message.text, "persist_flag": message.flag}
            assert content == sent, wire

    async def check(self) -> None:
        for user in USERS:
            observer = self.observers[user].device
            assert observer is not None
            self.compare(user, await self.pull(observer, user, 0, CHECK_PAGE), 0, learn=True)
        for slot in self.all_slots():
            if slot.device is not None:
                await self.check_pushes(slot)

    async def check_pushes(self, slot: Slot) -> None:
        """A ping's pong comes after every push queued before it: then the pushes must be the expected ones."""
        assert slot.device is not None
        client = slot.device.client
        await client.send(client.proto.ping())
        while True:
            event = await client.next_event()
            assert event is not None, f"{slot.client_id}: server closed"
            if isinstance(event, events.Pong):
                break
            assert isinstance(event, events.Notify), event
            slot.device.pushes.append(event)
        got = [self.describe(n) for n in slot.device.pushes]
        want = [self.resolve(p) for p in slot.expected]
        slot.device.pushes.clear()
        slot.expected = []
        assert got == want, f"{slot.client_id} was pushed {got}, model {want}"

    @staticmethod
    def describe(notify: events.Notify) -> tuple:
        if notify.topic == "msg":
            message = notify.data["message"]
            return ("msg", notify.data["seq"], message["message_id"], message["content"]["type"])
        if notify.topic == "message_deleted":
            return ("message_deleted", notify.data["message_id"])
        return (notify.topic, notify.data)

    def resolve(self, push: tuple) -> tuple:
        """("msg", owner, id, type) → ("msg", the seq in owner's inbox, id, type); others as they are."""
        if push[0] == "msg" and isinstance(push[1], str):
            _, owner, message_id, content_type = push
            seq = next(e.seq for e in self.inbox[owner] if e.message_id == message_id)
            return ("msg", seq, message_id, content_type)
        return push


async def execute(program: list) -> None:
    with tempfile.TemporaryDirectory(prefix="ember-inbox-") as data_dir, trio.fail_after(EXAMPLE_TIMEOUT):
        async with trio.open_nursery() as nursery:
            world = World(nursery, Path(data_dir))
            try:
                await world.start(first=True)
                await world.check()
                for step, op in enumerate(program):
                    note(f"step {step}: {op}")
                    await world.apply(op)
                    await world.check()
            finally:
                # Shielded from a failure's cancellation, but not forever: a stuck shutdown is a failure too.
                with trio.CancelScope(shield=True, deadline=trio.current_time() + 10):
                    await world.stop()


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out


@settings(
    # On PostgreSQL every example's restarts open a store on the server (~5 s an example here): the SQLite
    # pass explores the model with 50 programs, the PostgreSQL pass checks that engine with 15 of them.
    max_examples=15 if backends.on_postgres() else 50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
@given(programs, st.sampled_from([4, inboxes.MERGE_ROWS]))
def test_pulled_history_always_equals_the_model(program: list, merge_rows: int) -> None:
    """``merge_rows``: 4 merges the inbox log every two messages or so, the default never in a program."""
    default_merge_rows, inboxes.MERGE_ROWS = inboxes.MERGE_ROWS, merge_rows
    try:
        trio.run(execute, program)
    except BaseExceptionGroup as group:
        # Nurseries wrap the failure; give Hypothesis (and the reader) the assertion itself.
        leaves = _leaves(group)
        if len(leaves) == 1:
            raise leaves[0] from None
        raise
    finally:
        inboxes.MERGE_ROWS = default_merge_rows
