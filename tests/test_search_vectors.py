"""docs/PROTOCOL.md §9.12's vectors stay true: the code makes exactly the documented bytes, and the bytes decode
(with bare msgpack) to the maps the doc writes in prose."""

from __future__ import annotations

import msgpack

from tests import vectors_search as v

BLOCKS = v.read_blocks(v.DOC.read_text(encoding="utf-8"))

#: What §9.12 says each block holds, written out by hand (not by the code under test).
DOCUMENTED = {
    "search_messages_plaintext": {"m": "search_messages", "p": {"keyword": "明天 meeting", "limit": 1}},
    "search_messages_response_plaintext": {
        "c": 0,
        "r": {
            "results": [
                {
                    "message": {
                        "message_id": v.FIRST,
                        "conv": {"type": 0, "target": "bob", "line": 0},
                        "from": "alice",
                        "content": {"type": 1, "searchable_content": "明天 Meeting 3点", "persist_flag": 3},
                        "server_time": v.T0 + 1000,
                    },
                    "highlights": [[0, 2], [3, 10]],
                }
            ],
            "next_cursor": "7000000000000001",
        },
    },
}


def test_the_doc_has_every_vector_and_the_code_makes_them() -> None:
    assert set(BLOCKS) == set(v.NAMES)
    assert BLOCKS == v.compute()


def test_the_vectors_decode_as_the_doc_says() -> None:
    for name, value in DOCUMENTED.items():
        assert msgpack.unpackb(BLOCKS[name]) == value, name
