"""The relation test vectors of docs/PROTOCOL.md §12: where they live in the doc and how our code makes them.

They are fenced blocks labelled ``relvector`` (the ``vector`` blocks of §10 belong to ``tests/vectors.py``)::

    ```relvector name=head_notify_plaintext
    82a174a468656164...
    ```

Each is the MessagePack plaintext of one REQUEST, RESPONSE or NOTIFY body (sealing is §10's business). The
answers are made by the real code: a fresh SQLite database migrated by ``storage.schema``, the relation
operations of ``storage.relations`` run on it at fixed times, the sync pages it returns packed by
``protocol.connection.encode_response_body``. ``tests/test_relation_vectors.py`` checks the doc against
this; to rewrite the doc after a deliberate change::

    .venv/bin/python tests/vectors_relations.py          # rewrites docs/PROTOCOL.md in place
    .venv/bin/python tests/vectors_relations.py --check  # exit 1 if the doc is stale
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.domain.relations import HEAD_TOPIC, pack_page  # noqa: E402
from protocol import codec  # noqa: E402
from protocol.connection import encode_notify_body, encode_response_body  # noqa: E402
from storage import relations  # noqa: E402
from storage.schema import migrate  # noqa: E402
from tests.vector_blocks import DOC as DOC  # noqa: E402 - re-exported: the tests read v.DOC
from tests.vector_blocks import Fence  # noqa: E402

FENCE = Fence("relvector", "relation vectors")

T0 = 1767225600000  # 2026-01-01T00:00:00Z
MINUTE = 60_000
POLICY = relations.RequestPolicy(7 * 86_400_000, 30 * 86_400_000, 7 * 86_400_000)

#: The requests, as the client sends them: name → (method, params).
REQUESTS: dict[str, tuple[str, dict[str, Any]]] = {
    "send_friend_request_plaintext": (
        "send_friend_request",
        {"user_id": "bob", "reason": "Hi, it's Alice", "extra": ""},
    ),
    "handle_friend_request_plaintext": ("handle_friend_request", {"user_id": "alice", "accept": True}),
    "sync_friends_plaintext": ("sync_friends", {"after": 0, "limit": 500}),
    "put_setting_plaintext": ("put_setting", {"scope": 3, "key": "0-bob-0", "value": "1"}),
    "sync_friends_full_plaintext": ("sync_friends", {"after": 2, "limit": 500, "full_sync_head": 4}),
}
NAMES = (
    *REQUESTS,
    "head_notify_plaintext",
    "sync_friends_response_plaintext",
    "sync_friend_requests_response_plaintext",
    "sync_settings_response_plaintext",
    "sync_friends_reset_response_plaintext",
)
#: The retention cutoff of the reset vector: carol's deletion (T0+4 min) is older, the setting's (T0+6) not.
PURGE_CUTOFF = T0 + 4 * MINUTE + 30_000


def _story() -> sqlite3.Connection:
    """alice asks bob, bob accepts; alice names him "Bobby"; alice and carol were friends, then not;
    alice puts a setting and removes another. All at fixed times, in a fresh in-memory database."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn)
    for user in ("alice", "bob", "carol"):
        conn.execute("INSERT INTO users (user_id, created_at, updated_at) VALUES (?, ?, ?)", (user, T0, T0))
    ok = relations.Outcome.OK
    assert relations.send_friend_request(conn, "alice", "bob", "Hi, it's Alice", "", T0, POLICY).outcome is ok
    assert relations.handle_friend_request(conn, "bob", "alice", True, T0 + MINUTE, POLICY).outcome is ok
    assert relations.set_friend_fields(conn, "alice", "bob", T0 + 2 * MINUTE, "Bobby", None).outcome is ok
    assert relations.add_friends(conn, "alice", ["carol"], T0 + 3 * MINUTE).outcome is ok
    assert relations.delete_friend(conn, "carol", "alice", T0 + 4 * MINUTE).outcome is ok
    assert relations.put_setting(conn, "alice", 3, "0-bob-0", "1", T0 + 5 * MINUTE).outcome is ok
    assert relations.put_setting(conn, "alice", 19, "0-bob-0", "see you", T0 + 5 * MINUTE).outcome is ok
    assert relations.put_setting(conn, "alice", 19, "0-bob-0", "", T0 + 6 * MINUTE).outcome is ok
    return conn


def _page(page: relations.Page) -> bytes:
    """The RESPONSE body as the gateway makes it (``pack_page``), which must equal packing the plain map."""
    body = encode_response_body(0, pack_page(page, 2**20))
    plain: dict[str, Any] = {"items": page.items, "head": page.head}
    if page.reset:
        plain["reset"] = True
    assert body == encode_response_body(0, plain)
    return body


def compute() -> dict[str, bytes]:
    out = {name: codec.pack({"m": method, "p": params}) for name, (method, params) in REQUESTS.items()}
    conn = _story()
    friends = relations.sync_friends(conn, "alice", 0, 500)
    out["head_notify_plaintext"] = encode_notify_body(HEAD_TOPIC, {"stream": "friend", "head": friends.head})
    out["sync_friends_response_plaintext"] = _page(friends)
    out["sync_friend_requests_response_plaintext"] = _page(
        relations.sync_friend_requests(conn, "bob", 0, 500)
    )
    out["sync_settings_response_plaintext"] = _page(relations.sync_settings(conn, "alice", 0, 500))
    # The retention passes carol's deletion: alice's friend horizon becomes 4, and a device holding 1 is reset.
    assert relations.purge_tombstones(conn, PURGE_CUTOFF, 500) == 2  # alice's tombstone of carol, and carol's
    reset = relations.sync_page(conn, relations.FRIEND, "alice", 1, 0, 500)
    assert reset.reset
    out["sync_friends_reset_response_plaintext"] = _page(reset)
    return out


def read_blocks(text: str) -> dict[str, bytes]:
    return FENCE.hex_blocks(text)


def rewrite(text: str, values: dict[str, bytes]) -> str:
    return FENCE.rewrite(text, values)


if __name__ == "__main__":
    sys.exit(FENCE.main(sys.argv[1:], lambda text: compute()))
