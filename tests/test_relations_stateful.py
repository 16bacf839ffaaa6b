"""A Hypothesis stateful test of friend requests, friends and blacklists (SPEC §7) against a small model.

Each example is a program of operations over three users — request, accept/reject, delete friend,
block/unblock, and moving the injected clock by amounts that straddle the windows (6 d 23 h 59 m,
7 d, 29 d, 30 d) — run in its own ``trio.run`` against a fresh gateway over real sockets. Every
answer's code must be the model's, and after each step both users involved bring their copies of three
streams up to date the way a device does — pulling only what changed since the version they hold, in small
pages, applying tombstones — and those copies must equal the model: friends (``sync_friends``), blacklist
(``sync_blacklist``) and the status of every request sent or received (``sync_friend_requests``), with each
page's head equal to the last version handed out.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import trio
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from gateway.clock import ManualClock
from protocol.codes import ErrorCode
from tests.harness import start_gateway
from tests.test_messaging import Device

USERS = ("alice", "bob", "carol")
DAY_MS = 86_400_000
REPEAT_MS, REJECT_MS, EXPIRE_MS = 7 * DAY_MS, 30 * DAY_MS, 7 * DAY_MS
STEPS_MS = (0, 60_000, DAY_MS, 7 * DAY_MS - 60_000, 7 * DAY_MS, 29 * DAY_MS, 30 * DAY_MS)
PAGE = 2

user = st.sampled_from(USERS)
# Two users, either way round, from three pairs: operations meet each other's requests often enough.
pair = st.tuples(
    st.sampled_from([("alice", "bob"), ("alice", "carol"), ("bob", "carol")]), st.booleans()
).map(lambda p: p[0][::-1] if p[1] else p[0])
# handle and delete carry a ``pick`` among what exists when they run (a pending request, a friendship;
# with none, any pair): random pairs would almost never meet a request, so programs would never accept.
pick = st.integers(0, 5)
op = st.one_of(
    st.builds(lambda ab: ("request", *ab), pair),
    st.builds(lambda ab: ("request", *ab), pair),
    st.builds(lambda ab, n, yes: ("handle", *ab, yes, n), pair, pick, st.booleans()),
    st.builds(lambda ab, n: ("delete", *ab, n), pair, pick),
    st.builds(lambda ab, yes: ("block", *ab, yes), pair, st.booleans()),
    st.tuples(st.just("wait"), st.sampled_from(STEPS_MS)),
    st.builds(lambda u: ("request", u, u), user),  # to oneself
)
programs = st.lists(op, min_size=3, max_size=25)


@dataclass
class Model:
    """SPEC §7: one request row per (from, to): (status, created, updated)."""

    now: int
    requests: dict[tuple[str, str], tuple[int, int, int]] = field(default_factory=dict)
    friends: set[frozenset[str]] = field(default_factory=set)
    blocked: set[tuple[str, str]] = field(default_factory=set)  # (owner, target)

    def request(self, a: str, b: str) -> int:
        if a == b:
            return ErrorCode.INVALID_PARAMETER
        if frozenset((a, b)) in self.friends:
            return ErrorCode.ALREADY_FRIENDS
        if (b, a) in self.blocked:
            return ErrorCode.IN_BLACKLIST
        row = self.requests.get((a, b))
        if row is not None:
            status, created, updated = row
            if status == 0 and self.now - created < REPEAT_MS:
                return ErrorCode.FRIEND_ALREADY_REQUESTED
            if status == 2 and self.now - updated < REJECT_MS:
                return ErrorCode.FRIEND_REQUEST_BLOCKED
        self.requests[(a, b)] = (0, self.now, self.now)
        return ErrorCode.SUCCESS

    def handle(self, b: str, a: str, accept: bool) -> int:
        row = self.requests.get((a, b))
        if row is None or row[0] != 0:
            return ErrorCode.NOT_EXIST
        if self.now - row[1] >= EXPIRE_MS:
            return ErrorCode.FRIEND_REQUEST_EXPIRED
        self.requests[(a, b)] = (1 if accept else 2, row[1], self.now)
        if accept:
            self.friends.add(frozenset((a, b)))
        return ErrorCode.SUCCESS

    def delete(self, a: str, b: str) -> int:
        if frozenset((a, b)) not in self.friends or a == b:
            return ErrorCode.NOT_EXIST
        self.friends.discard(frozenset((a, b)))
        return ErrorCode.SUCCESS

    def block(self, a: str, b: str, blocked: bool) -> int:
        if a == b:
            return ErrorCode.INVALID_PARAMETER
        (self.blocked.add if blocked else self.blocked.discard)((a, b))
        return ErrorCode.SUCCESS

    def friends_of(self, u: str) -> set[str]:
        return {next(iter(pair - {u})) for pair in self.friends if u in pair}


class Copy:
    """A device's copy of one stream, kept as an SDK keeps it: pulled from the version it holds."""

    def __init__(self, device: Device, method: str, key: tuple[str, ...]) -> None:
        self.device, self.method, self.key = device, method, key
        self.version = 0
        self.items: dict[tuple, dict] = {}

    async def sync(self) -> dict[tuple, dict]:
        """Pull what changed since ``version``, in pages of ``PAGE``; the live items by key."""
        while True:
            page = (await self.device.call(self.method, after=self.version, limit=PAGE)).result
            versions = [i["version"] for i in page["items"]]
            assert versions == sorted(versions) and all(v > self.version for v in versions)
            for item in page["items"]:
                key = tuple(item[k] for k in self.key)
                if item["deleted"]:
                    self.items.pop(key, None)
                else:
                    self.items[key] = item
            if versions:
                self.version = versions[-1]
            if len(versions) < PAGE:
                assert page["head"] == self.version  # every change was handed out
                return self.items


async def execute(program: list) -> None:
    with tempfile.TemporaryDirectory(prefix="ember-relations-") as data_dir, trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            clock = ManualClock()
            gw = await start_gateway(nursery, Path(data_dir), clock, client={"request_rate_limit": 100_000})
            devices = {}
            for u in USERS:
                await gw.user(u)
                devices[u] = await Device.connect(gw, u)
            model = Model(clock.now_ms())
            copies = {
                u: (
                    Copy(devices[u], "sync_friends", ("friend_id",)),
                    Copy(devices[u], "sync_blacklist", ("user_id",)),
                    Copy(devices[u], "sync_friend_requests", ("from", "to")),
                )
                for u in USERS
            }
            try:
                for step, operation in enumerate(program):
                    note(f"step {step}: {operation}")
                    kind, *args = operation
                    if kind == "wait":
                        clock.advance(args[0] / 1000)
                        model.now = clock.now_ms()
                        continue
                    a, b = args[0], args[1]
                    if kind == "handle":
                        pending = sorted((t, f) for (f, t), row in model.requests.items() if row[0] == 0)
                        a, b = pending[args[3] % len(pending)] if pending else (a, b)
                    elif kind == "delete" and len(args) > 2 and model.friends:
                        a, b = sorted(sorted(p) for p in model.friends)[args[2] % len(model.friends)]
                    note(f"  as {a}, {b}")
                    if kind == "request":
                        got = (await devices[a].call("send_friend_request", user_id=b)).code
                        want = model.request(a, b)
                    elif kind == "handle":
                        got = (await devices[a].call("handle_friend_request", user_id=b, accept=args[2])).code
                        want = model.handle(a, b, args[2])
                    elif kind == "delete":
                        got = (await devices[a].call("delete_friend", user_id=b)).code
                        want = model.delete(a, b)
                    else:
                        got = (await devices[a].call("set_blacklist", user_id=b, blocked=args[2])).code
                        want = model.block(a, b, args[2])
                    print("OP", operation, got, want)
                    assert got == want, (operation, got, want)
                    for u in {a, b}:
                        friends, blocked, requests = [await copy.sync() for copy in copies[u]]
                        assert {k[0] for k in friends} == model.friends_of(u)
                        assert {k[0] for k in blocked} == {t for o, t in model.blocked if o == u}
                        got_requests = {k: r["status"] for k, r in requests.items()}
                        assert got_requests == {k: row[0] for k, row in model.requests.items() if u in k}
            finally:
                for device in devices.values():
                    await device.aclose()
                nursery.cancel_scope.cancel()


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
@given(programs)
def test_relation_answers_and_pulls_always_equal_the_model(program: list) -> None:
    try:
        trio.run(execute, program)
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) == 1:
            raise leaves[0] from None
        raise
