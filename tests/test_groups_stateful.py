"""A Hypothesis stateful test of the group rules: random operations by random users against a small model.

It drives the real operations (``gateway.domain.groups`` on ``storage.groups``, and ``storage.messages``' group send
with the gateway's send rule) on a migrated in-memory database, on this thread, as the writer thread would run
them. The model below is the rules of SPEC §8 as docs/PROTOCOL.md §13 states them, written plainly per
operation; every answer's code and, after every step, the member list (user → type) and the group's mute,
type and join type must match it.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from gateway.domain import groups as g
from gateway.domain.messaging import group_send_check
from protocol.codes import ErrorCode as E
from storage import UserRecord
from storage import groups as db
from storage.inboxes import InboxState
from storage.messages import Conversation, Outgoing
from storage.schema import migrate
from storage.sends import SendPolicy, send_message
from storage.users import create_user

# SQLite itself (its file, connection or PRAGMAs), not the backend-neutral store: tests/backends.py.
pytestmark = pytest.mark.sqlite_only

USERS = ("u0", "u1", "u2", "u3", "u4")
#: A user, chosen at run time: 0-4 any user, 5-14 one of the current members (so most steps meet a role).
users = st.integers(0, 14)
OWNER, MANAGER, NORMAL, SILENCED, ALLOWED = 2, 1, 0, 3, 5
PRIV = {OWNER, MANAGER}
MAX = 4


class GroupRules(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.conn = sqlite3.connect(":memory:", isolation_level=None)
        migrate(self.conn)
        for user in USERS:
            create_user(self.conn, UserRecord(user))
        self.inboxes = InboxState()
        self.next_id = 1 << 40
        self.now = 1_750_000_000_000
        self.gid = "g"
        # The model.
        self.exists = False
        self.dismissed = False
        self.members: dict[str, int] = {}
        self.info = {"type": 0, "join_type": 0, "mute": 0}

    def _run(self, fn: Any, caller: str, *args: Any) -> int:
        self.next_id += 1
        self.now += 1
        ctx = g._Ctx(caller, False, self.now, self.next_id, None, MAX)
        self.conn.execute("BEGIN")
        outcome = g._run(self.conn, self.inboxes, fn, ctx, *args)
        self.conn.execute("COMMIT")
        return int(outcome.code)

    def who(self, pick: int) -> str:
        if pick < len(USERS) or not self.members:
            return USERS[pick % len(USERS)]
        members = sorted(self.members)
        return members[pick % len(members)]

    def _live(self) -> bool:
        return self.exists and not self.dismissed

    def _check(self, got: int, want: int) -> None:
        assert got == want, (got, want, self.members, self.info)

    @initialize(kind=st.sampled_from([0, 0, 2]), join=st.integers(0, 2), mute=st.integers(0, 1))
    def start(self, kind: int, join: int, mute: int) -> None:
        """Most runs start from a live group, so that the operations meet every role."""
        self.create(0, ["u1", "u2"], kind, join)
        if mute:
            self.modify(0, "mute", 1)

    @rule(caller_pick=users, others=st.lists(users, max_size=4, unique=True), kind=st.sampled_from([0, 2, 3]),
          join=st.integers(0, 2))  # fmt: skip
    def create(self, caller_pick: int, others: list[str], kind: int, join: int) -> None:
        caller = self.who(caller_pick)
        fields = {"type": kind, "join_type": join}
        got = self._run(g.op_create, caller, self.gid, fields, others)
        everyone = list(dict.fromkeys([caller, *others]))
        if kind == 3:
            want = E.NOT_RIGHT
        elif self.exists:
            want = E.GROUP_ALREADY_EXISTS
        elif len(everyone) > MAX:
            want = E.GROUP_EXCEEDS_MAX_MEMBERS
        else:
            want = 0
            self.exists = True
            self.members = {u: NORMAL for u in everyone} | {caller: OWNER}
            self.info = {"type": kind, "join_type": join, "mute": 0}
        self._check(got, want)

    @rule(caller_pick=users, who_pick=users)
    def add(self, caller_pick: int, who_pick: int) -> None:
        caller = self.who(caller_pick)
        who = self.who(who_pick)
        got = self._run(g.op_add, caller, self.gid, [who])
        me = self.members.get(caller)
        t, join = self.info["type"], self.info["join_type"]
        if not self._live():
            want = E.NOT_EXIST
        elif t == 3:
            want = E.NOT_RIGHT
        elif me is None:
            want = 0 if (who == caller and t == 0 and join == 0) else E.NOT_IN_GROUP
        elif (t == 2 or join == 2) and me not in PRIV:
            want = E.NOT_RIGHT
        else:
            want = 0
        if want == 0 and who in self.members:
            want = E.ALREADY_IN_GROUP
        if want == 0 and len(self.members) + 1 > MAX:
            want = E.GROUP_EXCEEDS_MAX_MEMBERS
        if want == 0:
            self.members[who] = NORMAL
        self._check(got, want)

    @rule(caller_pick=users, who_pick=users)
    def kick(self, caller_pick: int, who_pick: int) -> None:
        caller = self.who(caller_pick)
        who = self.who(who_pick)
        got = self._run(g.op_kick, caller, self.gid, [who])
        me, them = self.members.get(caller), self.members.get(who)
        if not self._live():
            want = E.NOT_EXIST
        elif me is None:
            want = E.NOT_IN_GROUP
        elif self.info["type"] == 3 or me not in PRIV:
            want = E.NOT_RIGHT
        elif who == caller:
            want = E.INVALID_PARAMETER
        elif them is None:
            want = E.NOT_IN_GROUP
        elif them == OWNER or (them == MANAGER and me != OWNER):
            want = E.NOT_RIGHT
        else:
            want = 0
            del self.members[who]
        self._check(got, want)

    @rule(caller_pick=users)
    def quit(self, caller_pick: int) -> None:
        caller = self.who(caller_pick)
        got = self._run(g.op_quit, caller, self.gid)
        me = self.members.get(caller)
        if not self._live():
            want = E.NOT_EXIST
        elif me is None:
            want = E.NOT_IN_GROUP
        elif self.info["type"] == 3 or me == OWNER:
            want = E.NOT_RIGHT
        else:
            want = 0
            del self.members[caller]
        self._check(got, want)

    @rule(caller_pick=users, who_pick=users)
    def transfer(self, caller_pick: int, who_pick: int) -> None:
        caller = self.who(caller_pick)
        who = self.who(who_pick)
        got = self._run(g.op_transfer, caller, self.gid, who)
        me = self.members.get(caller)
        if not self._live():
            want = E.NOT_EXIST
        elif me is None:
            want = E.NOT_IN_GROUP
        elif me != OWNER:
            want = E.NOT_RIGHT
        elif who == caller:
            want = E.INVALID_PARAMETER
        elif who not in self.members:
            want = E.NOT_IN_GROUP
        else:
            want = 0
            self.members[caller], self.members[who] = NORMAL, OWNER
        self._check(got, want)

    @rule(caller_pick=users, who_pick=users, kind=st.sampled_from([117, 118, 119]), on=st.booleans())
    def set_type(self, caller_pick: int, who_pick: int, kind: int, on: bool) -> None:
        caller = self.who(caller_pick)
        who = self.who(who_pick)
        got = self._run(g.op_set_types, caller, self.gid, kind, [who], on)
        me, them = self.members.get(caller), self.members.get(who)
        special = {117: MANAGER, 118: SILENCED, 119: ALLOWED}[kind]
        if not self._live():
            want = E.NOT_EXIST
        elif me is None:
            want = E.NOT_IN_GROUP
        elif (kind == 117 and me != OWNER) or (kind != 117 and me not in PRIV):
            want = E.NOT_RIGHT
        elif them is None:
            want = E.NOT_IN_GROUP
        elif kind == 117 and them == OWNER:
            want = E.INVALID_PARAMETER
        elif kind != 117 and them in PRIV:
            want = E.NOT_RIGHT
        else:
            want = 0
            if on:
                self.members[who] = special
            elif them == special:
                self.members[who] = NORMAL
        self._check(got, want)

    @rule(caller_pick=users, name=st.sampled_from(["name", "mute", "join_type", "type"]), value=st.integers(0, 2))
    def modify(self, caller_pick: int, name: str, value: int) -> None:
        caller = self.who(caller_pick)
        if name == "mute":
            value = value % 2
        elif name == "type":
            value = (0, 2, 3)[value]
        real = "x" if name == "name" else value
        got = self._run(g.op_modify, caller, self.gid, name, real)
        me = self.members.get(caller)
        if not self._live():
            want = E.NOT_EXIST
        elif me is None:
            want = E.NOT_IN_GROUP
        elif name == "type":
            want = 0 if me == OWNER and value != 3 else E.NOT_RIGHT
        elif name == "name" and self.info["type"] == 0:
            want = 0
        else:
            want = 0 if me in PRIV else E.NOT_RIGHT
        if want == 0 and name != "name":
            self.info[name] = value
        self._check(got, want)

    @rule(caller_pick=users, chance=st.integers(0, 3))
    def dismiss(self, caller_pick: int, chance: int) -> None:
        if chance:
            return  # a dismiss ends the run's interest: make it rarer than the rest
        caller = self.who(caller_pick)
        got = self._run(g.op_dismiss, caller, self.gid)
        if not self._live():
            want = E.NOT_EXIST
        elif self.info["type"] == 3 or self.members.get(caller) != OWNER:
            want = E.NOT_RIGHT
        else:
            want = 0
            self.dismissed = True
            self.members = {}
        self._check(got, want)

    @rule(caller_pick=users)
    def send(self, caller_pick: int) -> None:
        caller = self.who(caller_pick)
        self.next_id += 1
        msg = Outgoing(self.next_id, self.now, Conversation(1, self.gid), caller, {"type": 1}, 3)
        self.conn.execute("BEGIN")
        result = send_message(self.conn, self.inboxes, msg, SendPolicy(group_check=group_send_check))
        self.conn.execute("COMMIT")
        me = self.members.get(caller)
        if not self._live():
            want = E.NOT_EXIST
        elif me is None:
            want = E.NOT_IN_GROUP
        elif me == SILENCED:
            want = E.NOT_RIGHT
        elif self.info["mute"] and me not in (OWNER, MANAGER, ALLOWED):
            want = E.GROUP_MUTED
        else:
            want = 0
            assert sorted(result.seqs) == sorted(self.members)
        self._check(int(result.code), want)

    @invariant()
    def matches_the_model(self) -> None:
        if not self.exists:
            return
        types = {u: t for u, (t, _) in db.member_types(self.conn, self.gid).items()}
        assert types == self.members
        group = db.get_group(self.conn, self.gid)
        assert group is not None and group.member_count == len(self.members)
        if not self.dismissed:
            assert {k: getattr(group, k) for k in self.info} == self.info
            assert self.members[group.owner] == OWNER


GroupRules.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_group_rules = GroupRules.TestCase
