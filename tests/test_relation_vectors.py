"""docs/PROTOCOL.md §12's vectors stay true: the code makes exactly the documented bytes, and the bytes decode
(with bare msgpack) to the maps the doc writes in prose."""

from __future__ import annotations

import msgpack

from tests import vectors_relations as v

T0 = v.T0
M = v.MINUTE
BLOCKS = v.read_blocks(v.DOC.read_text(encoding="utf-8"))

#: What §12.9 says each block holds, written out by hand (not by the code under test).
DOCUMENTED = {
    "send_friend_request_plaintext": {
        "m": "send_friend_request",
        "p": {"user_id": "bob", "reason": "Hi, it's Alice", "extra": ""},
    },
    "handle_friend_request_plaintext": {"m": "handle_friend_request", "p": {"user_id": "alice", "accept": True}},
    "sync_friends_plaintext": {"m": "sync_friends", "p": {"after": 0, "limit": 500}},
    "put_setting_plaintext": {"m": "put_setting", "p": {"scope": 3, "key": "0-bob-0", "value": "1"}},
    "sync_friends_full_plaintext": {"m": "sync_friends", "p": {"after": 2, "limit": 500, "full_sync_head": 4}},
    "head_notify_plaintext": {"t": "head", "d": {"stream": "friend", "head": 4}},
    "sync_friends_response_plaintext": {
        "c": 0,
        "r": {
            "items": [
                {"friend_id": "bob", "alias": "Bobby", "extra": "", "created_at": T0 + M,
                 "updated_at": T0 + 2 * M, "version": 2, "deleted": False},
                {"friend_id": "carol", "version": 4, "deleted": True},
            ],
            "head": 4,
        },
    },
    "sync_friend_requests_response_plaintext": {
        "c": 0,
        "r": {
            "items": [
                {"from": "alice", "to": "bob", "reason": "Hi, it's Alice", "extra": "", "status": 1, "read": True,
                 "created_at": T0, "updated_at": T0 + M, "version": 2, "deleted": False},
            ],
            "head": 2,
        },
    },
    "sync_friends_reset_response_plaintext": {
        "c": 0,
        "r": {
            "items": [
                {"friend_id": "bob", "alias": "Bobby", "extra": "", "created_at": T0 + M,
                 "updated_at": T0 + 2 * M, "version": 2, "deleted": False},
            ],
            "head": 4,
            "reset": True,
        },
    },
    "sync_settings_response_plaintext": {
        "c": 0,
        "r": {
            "items": [
                {"scope": 3, "key": "0-bob-0", "value": "1", "updated_at": T0 + 5 * M, "version": 1,
                 "deleted": False},
                {"scope": 19, "key": "0-bob-0", "version": 3, "deleted": True},
            ],
            "head": 3,
        },
    },
}  # fmt: skip


def test_the_doc_has_exactly_the_relation_vectors() -> None:
    assert set(BLOCKS) == set(v.NAMES) == set(DOCUMENTED)


def test_the_code_makes_the_documented_bytes() -> None:
    computed = v.compute()
    for name in v.NAMES:
        assert BLOCKS[name] == computed[name], f"{name}: run .venv/bin/python tests/vectors_relations.py"


def test_the_bytes_decode_to_what_the_prose_says() -> None:
    for name, value in DOCUMENTED.items():
        assert msgpack.unpackb(BLOCKS[name], raw=False) == value, name
        # Key order is part of "byte-exact": msgpack keeps it, so compare it too.
        assert msgpack.packb(value) == BLOCKS[name], name


def test_a_packed_page_is_the_plain_map_of_the_items_that_fit() -> None:
    from gateway.domain.relations import pack_page
    from storage.relations import Page

    items = [{"friend_id": f"f{n}", "version": n + 1, "deleted": False} for n in range(5)]
    one = len(msgpack.packb(items[0]))
    for budget, kept in ((0, 1), (one, 1), (3 * one, 3), (10**6, 5)):
        packed = pack_page(Page(items, 9), budget)
        assert packed.data == msgpack.packb({"items": items[:kept], "head": 9}), budget
        assert packed.items == kept
    reset = pack_page(Page(items, 9, reset=True), 3 * one)
    assert reset.data == msgpack.packb({"items": items[:3], "head": 9, "reset": True})
