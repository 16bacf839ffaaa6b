"""docs/PROTOCOL.md §13.7 stays true: the group vectors match what the code makes, and decode as documented."""

from __future__ import annotations

import json

import msgpack

from tests import vectors_groups as v

TEXT = v.DOC.read_text(encoding="utf-8")
BLOCKS = v.read_blocks(TEXT)


def doc(name: str) -> bytes:
    return bytes.fromhex("".join(BLOCKS[name].split()))


def test_the_doc_has_every_group_vector_and_they_are_fresh() -> None:
    assert set(BLOCKS) == {"group_inputs", *v.OUTPUTS}
    assert json.loads(BLOCKS["group_inputs"]) == v.INPUTS
    assert v.rewrite(TEXT) == TEXT  # what `tests/vectors_groups.py --check` checks


def test_the_vectors_decode_as_section_13_says() -> None:
    assert msgpack.unpackb(doc("create_request_plaintext")) == {
        "m": "create_group", "p": {"group_id": "g1", "name": "club", "members": ["bob", "carol"]},
    }  # fmt: skip
    notify = msgpack.unpackb(doc("add_notify_plaintext"))
    assert notify["t"] == "msg" and notify["d"]["seq"] == 7
    message = notify["d"]["message"]
    assert list(message) == ["message_id", "conv", "from", "content", "server_time"]
    assert message["conv"] == {"type": 1, "target": "g1", "line": 0} and message["from"] == "alice"
    assert message["content"]["type"] == 105 and message["content"]["persist_flag"] == 1
    assert message["content"]["data"] == b'{"g":"g1","o":"alice","ms":["dan"]}'  # bin, compact JSON, key order
    quiet = msgpack.unpackb(doc("quiet_quit_content"))
    assert quiet == {"type": 107, "persist_flag": 0, "data": b'{"g":"g1","o":"carol"}'}
    info = msgpack.unpackb(doc("info_response_plaintext"))
    assert info["c"] == 0 and list(info["r"]) == ["info_version", "member_version", "group"]
    assert list(info["r"]["group"]) == [
        "group_id", "name", "portrait", "owner", "extra", "type", "join_type", "mute", "member_count",
        "info_version", "member_version", "created_at", "updated_at",
    ]  # fmt: skip
    members = msgpack.unpackb(doc("members_response_plaintext"))["r"]
    assert members["member_version"] == 6
    assert [(m["user_id"], m["type"], m["version"]) for m in members["members"]] == [("carol", 4, 5), ("dan", 0, 6)]


def test_the_reset_vector_decodes_as_section_13_4_says() -> None:
    t = v.INPUTS["server_time"]
    row = {"alias": "", "extra": "", "join_time": t, "version": 1}
    assert msgpack.unpackb(doc("members_reset_response_plaintext")) == {
        "c": 0,
        "r": {
            "member_version": 3,
            "members": [
                {"user_id": "alice", "type": 2, **row},
                {"user_id": "bob", "type": 0, **row},
                {"user_id": "dan", "type": 0, **row, "join_time": t + 2000, "version": 3},
            ],
            "reset": True,
        },
    }
