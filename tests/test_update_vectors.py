"""docs/PROTOCOL.md §9.11's vectors stay true: the code makes exactly the documented bytes, and the bytes decode
(with bare msgpack) to the maps the doc writes in prose."""

from __future__ import annotations

import msgpack

from tests import vectors_updates as v

BLOCKS = v.read_blocks(v.DOC.read_text(encoding="utf-8"))

#: What §9.11 says each block holds, written out by hand (not by the code under test).
DOCUMENTED = {
    "update_message_plaintext": {
        "m": "update_message",
        "p": {"message_id": v.ORIGINAL, "content": {"type": 1, "searchable_content": "fixed"}},
    },
    "message_updated_plaintext": {
        "t": "message_updated",
        "d": {
            "seq": 2,
            "message": {
                "message_id": v.NOTICE,
                "conv": {"type": 0, "target": "bob", "line": 0},
                "from": "alice",
                "content": {
                    "type": 81,
                    "content": '{"operator": "alice", "message_id": "7000000000000001"}',
                    "data": bytes.fromhex("83a474797065") + b"\x01\xb2searchable_content\xa5fixed\xacpersist_flag\x03",
                    "persist_flag": 1,
                },
                "server_time": v.T0 + 2000,
            },
        },
    },
}


def test_the_doc_has_every_vector_and_the_code_makes_them() -> None:
    assert set(BLOCKS) == set(v.NAMES)
    assert BLOCKS == v.compute()


def test_the_vectors_decode_as_the_doc_says() -> None:
    for name, value in DOCUMENTED.items():
        assert msgpack.unpackb(BLOCKS[name]) == value, name
    notice = msgpack.unpackb(BLOCKS["message_updated_plaintext"])["d"]["message"]["content"]
    assert msgpack.unpackb(notice["data"]) == {"type": 1, "searchable_content": "fixed", "persist_flag": 3}
