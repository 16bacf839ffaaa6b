"""The PostgreSQL send path (issue 23): a send group's statements go out in a few round trips, however many
sends it holds, and a single owner's inbox log is merged at every append (no stall of a big merge).

Round trips are counted on the wire: the writer's connection goes through a loopback TCP relay that counts
the client's turns (the client writing after the server answered), which is what a round trip is.
"""

from __future__ import annotations

import socket
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from protocol.codes import ErrorCode
from storage import UserRecord, open_store
from storage.messages import Conversation, Outgoing
from storage.sends import SendPolicy, send_message_group

psycopg = pytest.importorskip("psycopg", reason="PostgreSQL tests need psycopg (pip install 'ember-im[postgresql]')")

from storage.postgres.engine import POSTGRES, wrap  # noqa: E402
from storage.postgres.seqs import OwnedInboxState  # noqa: E402

#: The PostgreSQL pass would repeat this module unchanged: it runs on the private PostgreSQL server it names.
pytestmark = pytest.mark.own_backend

USERS = [f"u{i:02d}" for i in range(8)]


class TurnCounter:
    """A loopback relay to ``(host, port)`` for one connection, counting the client's turns."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.turns = 0
        self._last = "server"
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        client, _ = self.listener.accept()
        with client, socket.create_connection(self.upstream) as server:
            upward = threading.Thread(target=self._pump, args=(client, server, "client"), daemon=True)
            upward.start()
            self._pump(server, client, "server")
            upward.join(timeout=10)

    def _pump(self, source: socket.socket, sink: socket.socket, side: str) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    if side == "client" and self._last == "server":
                        self.turns += 1
                    self._last = side
                sink.sendall(data)
        except OSError:
            pass  # the other side closed first
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()
        self._thread.join(timeout=10)


def _message(message_id: int, sender: str, recipient: str) -> Outgoing:
    return Outgoing(
        message_id=message_id,
        server_time=1_000 + message_id,
        conv=Conversation(0, recipient),
        from_user=sender,
        content={"type": 1, "text": "hello"},
        persist_flag=0,
        client_msg_id=f"c{message_id}",
    )


async def _schema_and_users(pg_url: str) -> None:
    async with open_store("unused", url=pg_url) as store:
        for user in USERS:
            await store.create_user(UserRecord(user))


def _turns_of_one_batch(pg_url: str, first_id: int, count: int, inboxes: OwnedInboxState) -> tuple[int, list[Any]]:
    """Client turns of one writer batch (BEGIN, one group of ``count`` private sends, COMMIT)."""
    parts = urlsplit(pg_url)
    relay = TurnCounter(parts.hostname or "127.0.0.1", parts.port or 5432)
    netloc = parts.netloc.rsplit("@", 1)
    via = f"{netloc[0]}@127.0.0.1:{relay.port}" if len(netloc) == 2 else f"127.0.0.1:{relay.port}"
    conn = wrap(psycopg.connect(urlunsplit(parts._replace(netloc=via)), autocommit=True))
    try:
        ops = [
            (inboxes, _message(first_id + i, USERS[i % 4], USERS[4 + i % 4]), SendPolicy()) for i in range(count)
        ]
        inboxes.current(conn, USERS[0])  # the heads' first load is not the batch's
        for user in USERS:
            inboxes.current(conn, user)
        before = relay.turns
        POSTGRES.begin(conn)
        results = send_message_group(conn, ops)  # type: ignore[arg-type]
        POSTGRES.commit(conn)
        return relay.turns - before, results
    finally:
        conn.close()
        relay.close()


async def test_a_send_group_costs_the_same_few_round_trips_for_one_send_or_forty(pg_url: str) -> None:
    await _schema_and_users(pg_url)
    inboxes = OwnedInboxState()
    # The first batch of a process with a bulk insert reads the tables' column types (the unnest casts), once.
    warm, _ = _turns_of_one_batch(pg_url, 1000, 8, inboxes)
    assert warm <= 4, warm
    inboxes.forget()
    alone, results = _turns_of_one_batch(pg_url, 1, 1, inboxes)
    assert [r.code for r in results] == [ErrorCode.SUCCESS]
    inboxes.forget()
    many, results = _turns_of_one_batch(pg_url, 100, 40, inboxes)
    assert [r.code for r in results] == [ErrorCode.SUCCESS] * 40
    # BEGIN with the reads, the writes with the merge, the COMMIT (once one each per statement: 10 and more).
    assert alone <= 3, alone
    assert many <= 3, many
    with psycopg.connect(pg_url, autocommit=True) as check:
        stored = check.execute("SELECT count(*) FROM messages").fetchone()[0]
        inbox = check.execute("SELECT count(*) FROM inbox").fetchone()[0]
        ids = check.execute("SELECT count(*) FROM client_message_ids").fetchone()[0]
    assert (stored, inbox, ids) == (49, 98, 49)


async def test_a_single_owner_merges_its_inbox_log_at_every_send_batch(pg_url: str) -> None:
    async with open_store("unused", url=pg_url) as store:
        for user in ("alice", "bob"):
            await store.create_user(UserRecord(user))
        msg = _message(1, "alice", "bob")
        result = await store.send_private(msg, SendPolicy())
        assert result.code == ErrorCode.SUCCESS and result.seqs == {"bob": 1, "alice": 1}
        resent = await store.send_private(_message(1, "alice", "bob"), SendPolicy())
        assert resent.duplicate and resent.seqs == {"alice": 1}  # the original's ack
        page = await store.pull("bob", 0, 10)
        assert [(seq, m.message_id) for seq, m in page.messages] == [(1, 1)]
    with psycopg.connect(pg_url, autocommit=True) as check:
        assert check.execute("SELECT count(*) FROM inbox_recent").fetchone() == (0,)
        assert check.execute("SELECT user_id, seq FROM inbox ORDER BY user_id").fetchall() == [("alice", 1), ("bob", 1)]
