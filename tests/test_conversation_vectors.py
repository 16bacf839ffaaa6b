"""docs/PROTOCOL.md §16's vectors stay true: the code makes exactly the documented bytes, and the bytes decode
(with bare msgpack) to the maps the doc writes in prose."""

from __future__ import annotations

import msgpack

from tests import vectors_conversations as v

BLOCKS = v.read_blocks(v.DOC.read_text(encoding="utf-8"))
ALICE = {"type": 0, "target": "alice", "line": 0}

#: What §16.4 says each block holds, written out by hand (not by the code under test).
DOCUMENTED = {
    "mark_read_plaintext": {"m": "mark_read", "p": {"conv": ALICE, "message_id": v.FIRST}},
    "clear_conversation_plaintext": {"m": "clear_conversation", "p": {"conv": ALICE, "message_id": v.SECOND}},
    "get_conversations_plaintext": {"m": "get_conversations", "p": {"before": 0, "limit": 50}},
    "get_conversations_response_plaintext": {
        "c": 0,
        "r": {
            "conversations": [
                {
                    "conv": ALICE,
                    "last_message": {
                        "message_id": v.SECOND,
                        "conv": {"type": 0, "target": "bob", "line": 0},
                        "from": "alice",
                        "content": {"type": 1, "searchable_content": "there"},
                        "server_time": v.T0 + 2000,
                    },
                    "read_to": v.FIRST,
                    "unread": 1,
                    "unread_mentions": 0,
                }
            ],
            "more": False,
        },
    },
}


def test_the_doc_has_every_vector_and_the_code_makes_them() -> None:
    assert set(BLOCKS) == set(v.NAMES)
    assert BLOCKS == v.compute()


def test_the_vectors_decode_as_the_doc_says() -> None:
    for name, value in DOCUMENTED.items():
        assert msgpack.unpackb(BLOCKS[name]) == value, name
    entry = msgpack.unpackb(BLOCKS["get_conversations_response_plaintext"])["r"]["conversations"][0]
    assert list(entry) == ["conv", "last_message", "read_to", "unread", "unread_mentions"]
