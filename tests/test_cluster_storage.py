"""Storage for several writers (issue 24): two stores on one PostgreSQL database, as two cluster nodes.

Each store is a whole writer (its own connection, thread and group commit) opened with ``cluster=True``:
seqs are reserved in the database (``storage.postgres.seqs``), so writers sending to one recipient at
once never give a seq twice and skip none. Always on the private PostgreSQL server (``pg_url``): CI
(``CI=true``) fails rather than skips when it is missing.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import trio

from protocol.codes import ErrorCode
from storage import StorageError, StorageRetryLater, UserRecord, open_store
from storage.messages import Conversation, Outgoing
from storage.sends import SendPolicy

#: The PostgreSQL pass would repeat this module unchanged: it runs on the private PostgreSQL server it names.
pytestmark = pytest.mark.own_backend

SENDERS = 4  # per store
PER_SENDER = 60


def _message(node: int, sender: int, number: int, to: str = "bob") -> Outgoing:
    message_id = (node * 100 + sender) * 10_000 + number + 1
    return Outgoing(
        message_id=message_id,
        server_time=1_000_000 + message_id,
        conv=Conversation(0, to),
        from_user=f"alice{sender}",
        content={"type": 1, "text": f"{node}:{sender}:{number}"},
        persist_flag=0,
        client_msg_id=f"c{node}-{sender}-{number}",
    )


def _deadlocks_once_idle(url: str) -> int:
    """The database's deadlock count, read once no other session is connected to it (a backend's counts reach
    the statistics by the time it has left ``pg_stat_activity``, at the latest when it exits)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(1000):  # up to ~10 s: the stores' connections are closing
            others = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
            if others is not None and others[0] == 0:
                break
            conn.execute("SELECT pg_sleep(0.01)")
        else:
            raise AssertionError("the stores' sessions did not end")
        row = conn.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").fetchone()
        return int(row[0]) if row is not None else 0


async def test_two_writers_sending_to_one_user_give_every_seq_once_with_no_gap(pg_url: str) -> None:
    deadlocks_before = _deadlocks_once_idle(pg_url)
    acked: dict[str, Any] = {}
    heads_seen: list[dict[str, int]] = []

    def hook(_tx: object, heads: dict[str, int], _results: list[object]) -> None:
        heads_seen.append(heads)

    async with (
        open_store("unused", url=pg_url, cluster=True, before_commit=hook) as one,
        open_store("unused", url=pg_url, cluster=True) as two,
    ):
        for user in ["bob", *(f"alice{k}" for k in range(SENDERS))]:
            await one.create_user(UserRecord(user))

        async def sender(store: Any, node: int, k: int) -> None:
            for number in range(PER_SENDER):
                msg = _message(node, k, number)
                while True:  # a client's loop: 250 (a deadlock or a lock wait) means the same send again
                    try:
                        result = await store.send_private(msg, SendPolicy())
                        break
                    except StorageRetryLater:
                        await trio.sleep(0.01)
                assert result.code == ErrorCode.SUCCESS
                acked[msg.client_msg_id or ""] = result

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for node, store in ((1, one), (2, two)):
                    for k in range(SENDERS):
                        nursery.start_soon(sender, store, node, k)

        total = 2 * SENDERS * PER_SENDER
        page = await two.pull("bob", 0, total + 10)
        # A resend on the other node gets the original's ack (the idempotency id is in the database).
        again = await two.send_private(_message(1, 0, 0), SendPolicy())
        assert again.duplicate and again.message_id == _message(1, 0, 0).message_id
        assert again.seqs["alice0"] == acked["c1-0-0"].seqs["alice0"]  # a resend's ack names the sender's seq
        assert await one.inbox_head("bob") == total == await two.inbox_head("bob")

    assert len(acked) == total
    seqs = [seq for seq, _ in page.messages]
    assert seqs == list(range(1, total + 1)), "a seq was skipped or given twice"
    stored = [m.message_id for _, m in page.messages]
    assert len(set(stored)) == total
    assert sorted(r.seqs["bob"] for r in acked.values()) == seqs  # each ack names the seq stored
    # Each sender's own inbox: its seqs too, 1..2*PER_SENDER across both nodes.
    assert sorted(r.seqs[f"alice{k}"] for r in acked.values() for k in [int(r.message_id // 10_000 % 100)]) == sorted(
        seq for _ in range(SENDERS) for seq in range(1, 2 * PER_SENDER + 1)
    )
    sending = [heads for heads in heads_seen if heads]  # batches of create_user wrote no inbox
    assert sending and all(heads.get("bob") for heads in sending)  # node one's hook named bob's head each time
    # Retries hid them (a deadlock is answered 250), but each cost PostgreSQL's deadlock_timeout: none at all.
    assert _deadlocks_once_idle(pg_url) == deadlocks_before, "the two writers deadlocked"


async def test_a_single_owner_and_a_cluster_node_exclude_each_other(pg_url: str) -> None:
    async with open_store("unused", url=pg_url, cluster=True):
        with pytest.raises(StorageError, match="already used by another Ember process"):
            async with open_store("unused", url=pg_url):
                pass
    async with open_store("unused", url=pg_url):
        with pytest.raises(StorageError, match="not a cluster node"):
            async with open_store("unused", url=pg_url, cluster=True):
                pass


async def test_a_cluster_node_continues_the_seqs_a_single_owner_left(pg_url: str) -> None:
    async with open_store("unused", url=pg_url) as single:
        for user in ("bob", "alice0"):
            await single.create_user(UserRecord(user))
        for number in range(3):
            await single.send_private(_message(0, 0, number), SendPolicy())
    async with open_store("unused", url=pg_url, cluster=True) as node:
        result = await node.send_private(_message(1, 0, 0), SendPolicy())
        assert result.seqs == {"bob": 4, "alice0": 4}
    async with open_store("unused", url=pg_url) as single:  # and back: the single owner reads the tables
        result = await single.send_private(_message(2, 0, 0), SendPolicy())
        assert result.seqs == {"bob": 5, "alice0": 5}
        page = await single.pull("bob", 0, 10)
        assert [seq for seq, _ in page.messages] == [1, 2, 3, 4, 5]
