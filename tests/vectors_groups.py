"""The group test vectors of docs/PROTOCOL.md §13.7: how our code makes them, and where they live in the doc.

Each vector is a fenced block labelled ``group-vector`` (a label of its own, so ``tests/vectors.py`` and
its checks see none of these)::

    ```group-vector name=add_notify_plaintext
    82a174a36d7367...
    ```

The ``group_inputs`` block is the JSON of ``INPUTS``; every other block is lowercase hex wrapped at 64
digits, made by the gateway's own code from those inputs (``gateway.domain.groups.notification_content``,
``storage.messages.Outgoing``, ``storage.groups`` records, ``protocol.connection``'s encoders).
``tests/test_vectors_groups.py`` checks that the doc matches; after an intended wire change refresh it with::

    .venv/bin/python tests/vectors_groups.py          # rewrites docs/PROTOCOL.md in place
    .venv/bin/python tests/vectors_groups.py --check  # exit 1 if the doc is stale
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

from gateway.domain.groups import _members_page, notification_content  # noqa: E402
from protocol import codec  # noqa: E402
from protocol.codes import GroupNotification  # noqa: E402
from protocol.connection import encode_msg_push, encode_response_body  # noqa: E402
from storage import groups as groups_db  # noqa: E402
from storage.groups import GroupRecord, MemberRecord  # noqa: E402
from storage.messages import Conversation, Outgoing  # noqa: E402
from storage.schema import migrate  # noqa: E402
from tests.vector_blocks import DOC as DOC  # noqa: E402 - re-exported: the tests read v.DOC
from tests.vector_blocks import Fence  # noqa: E402

FENCE = Fence("group-vector", "group vectors")

INPUTS: dict[str, Any] = {
    "group_id": "g1",
    "owner": "alice",
    "members": ["bob", "carol"],
    "added": ["dan"],
    "message_id": 264905950861721601,
    "server_time": 1765000000000,
    "seq": 7,
    "info_version": 3,
    "member_version": 4,
}

OUTPUTS = (
    "create_request_plaintext",
    "add_notify_plaintext",
    "quiet_quit_content",
    "info_response_plaintext",
    "members_response_plaintext",
    "members_reset_response_plaintext",
)


def compute(inputs: dict[str, Any] = INPUTS) -> dict[str, bytes]:
    gid, owner = inputs["group_id"], inputs["owner"]
    out: dict[str, bytes] = {}
    out["create_request_plaintext"] = codec.pack(
        {"m": "create_group", "p": {"group_id": gid, "name": "club", "members": inputs["members"]}}
    )
    content = notification_content(gid, owner, GroupNotification.ADD_MEMBERS, ms=inputs["added"])
    msg = Outgoing(
        inputs["message_id"], inputs["server_time"], Conversation(1, gid), owner, content, content["persist_flag"]
    )
    out["add_notify_plaintext"] = encode_msg_push(inputs["seq"], codec.pack(msg.to_wire()))
    quiet = notification_content(gid, "carol", GroupNotification.QUIT, {"type": 0, "persist_flag": 0})
    out["quiet_quit_content"] = codec.pack(quiet)
    t = inputs["server_time"]
    group = GroupRecord(
        gid, "club", "", owner, "", 0, 0, 0, False, inputs["info_version"], inputs["member_version"], 4, t, t
    )
    out["info_response_plaintext"] = encode_response_body(
        0, {"info_version": group.info_version, "member_version": group.member_version, "group": group.to_wire()}
    )
    quit_version, add_version = inputs["member_version"] + 1, inputs["member_version"] + 2
    rows = [
        MemberRecord(gid, "carol", 4, "", "", t, quit_version, t),
        MemberRecord(gid, "dan", 0, "", "", t + 1000, add_version, t + 1000),
    ]
    out["members_response_plaintext"] = encode_response_body(
        0, {"member_version": add_version, "members": [r.to_wire() for r in rows]}
    )
    out["members_reset_response_plaintext"] = encode_response_body(*_reset_page(inputs))
    return out


def _reset_page(inputs: dict[str, Any]) -> tuple[int, Any]:
    """The real storage and gateway code on a fresh database: the group is created (member version 1),
    carol quits a second later (2), dan is added a second after (3); then the retention passes carol's
    tombstone (horizon 2) and a device holding version 1 asks for the page after (1, "zz")."""
    gid, owner, t = inputs["group_id"], inputs["owner"], inputs["server_time"]
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn)
    members = [(owner, 2)] + [(user, 0) for user in inputs["members"]]
    assert groups_db.create_group(conn, gid, owner, {"name": "club"}, members, t)
    groups_db.remove_members(conn, gid, ["carol"], t + 1000)
    groups_db.add_members(conn, gid, inputs["added"], t + 2000)
    assert groups_db.purge_tombstones(conn, t + 1500, 500) == 1
    return _members_page(conn, None, gid, 1, (1, "zz"), 200)


def read_blocks(text: str) -> dict[str, str]:
    return FENCE.bodies(text)


def rewrite(text: str, computed: dict[str, bytes] | None = None) -> str:
    values: dict[str, bytes | str] = dict(compute() if computed is None else computed)
    values["group_inputs"] = json.dumps(INPUTS, indent=1)
    return FENCE.rewrite(text, values)


if __name__ == "__main__":
    sys.exit(FENCE.main(sys.argv[1:], lambda text: {**compute(), "group_inputs": json.dumps(INPUTS, indent=1)}))
