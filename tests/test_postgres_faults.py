"""PostgreSQL restarted under load: every send in flight gets a retryable answer, never a false ack; the
store reconnects by itself; no acknowledged message is lost and none is stored twice.

The SIGKILL probe's shape (tests/test_crash.py), with the database as the thing that dies: senders
resend on 250 (``StorageRetryLater``) with the same message and client_msg_id, as clients do; the
private server of ``tests.pg`` is stopped with ``pg_ctl -m immediate`` (its processes killed, as by a
crash: recovery replays the WAL at the next start) and started again while they send; afterwards the
recipient's inbox is pulled and compared with what was acknowledged.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from protocol.codes import ErrorCode
from storage import StorageRetryLater, UserRecord, open_store
from storage.messages import Conversation, Outgoing
from storage.sends import SendPolicy
from tests import pg

#: The PostgreSQL pass would repeat this module unchanged: it runs on the private PostgreSQL server it names.
pytestmark = pytest.mark.own_backend

SENDERS = 4
PER_SENDER = 60
#: The server is restarted once this many sends have been acknowledged: load before and after.
RESTART_AFTER_ACKS = 60


def _restart(server: pg.Server) -> None:
    """Kill the server's processes (``immediate``: no checkpoint, as a crash) and start it again."""
    assert server.base_dir is not None and server.bin_dir is not None
    pg_ctl = str(server.bin_dir / "pg_ctl")
    data = str(server.base_dir / "data")
    pg._run(server, [pg_ctl, "-D", data, "-m", "immediate", "-w", "-t", "60", "stop"])
    pg._run(server, [pg_ctl, "-D", data, "-l", str(server.base_dir / "server.log"), "-o", f"-p {server.port}",
                     "-w", "-t", "60", "start"])  # fmt: skip


def _message(sender: int, number: int) -> Outgoing:
    message_id = sender * 100_000 + number + 1
    return Outgoing(
        message_id=message_id,
        server_time=1_000_000 + message_id,
        conv=Conversation(0, "bob"),
        from_user=f"alice{sender}",
        content={"type": 1, "text": f"{sender}:{number}"},
        persist_flag=0,
        client_msg_id=f"c{sender}-{number}",
    )


@pytest.fixture
def restartable(postgres: pg.Server) -> pg.Server:
    """The test's own server, or a skip (a fixture: a skip raised inside the trio run loses its reason)."""
    if postgres.base_dir is None:
        pytest.skip("EMBER_TEST_POSTGRES_URL names an existing server: the tests do not restart it")
    return postgres


async def test_a_postgresql_restart_under_load_loses_no_acked_message_and_doubles_none(
    restartable: pg.Server, pg_url: str
) -> None:
    postgres = restartable
    acked: dict[str, Any] = {}
    refused = 0
    restarted = trio.Event()
    enough = trio.Event()

    async with open_store("unused", url=pg_url) as store:
        for user in ["bob", *(f"alice{k}" for k in range(SENDERS))]:
            await store.create_user(UserRecord(user))

        async def sender(k: int) -> None:
            nonlocal refused
            for number in range(PER_SENDER):
                msg = _message(k, number)
                while True:  # a client's loop: on 250, the same message again after a pause
                    try:
                        result = await store.send_private(msg, SendPolicy())
                        break
                    except StorageRetryLater:
                        refused += 1
                        await trio.sleep(0.02)
                assert result.code == ErrorCode.SUCCESS
                acked[msg.client_msg_id or ""] = result
                if len(acked) >= RESTART_AFTER_ACKS:
                    enough.set()

        async def restarter() -> None:
            await enough.wait()
            await trio.to_thread.run_sync(_restart, postgres)
            restarted.set()

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(restarter)
                for k in range(SENDERS):
                    nursery.start_soon(sender, k)

        assert restarted.is_set()
        assert refused > 0  # the sends in flight met the restart: told to retry, not acked
        page = None
        for _ in range(50):  # a reader connection that met the restart is replaced at its next use
            try:
                page = await store.pull("bob", 0, SENDERS * PER_SENDER + 10)
                break
            except StorageRetryLater:
                await trio.sleep(0.05)
        assert page is not None

    stored = [m.message_id for _, m in page.messages]
    sent = {_message(k, n).message_id for k in range(SENDERS) for n in range(PER_SENDER)}
    assert len(acked) == SENDERS * PER_SENDER
    assert len(stored) == len(set(stored)), "a message was stored twice"
    assert set(stored) == sent, "an acknowledged message is missing"
    seqs = [seq for seq, _ in page.messages]
    assert seqs == list(range(1, len(seqs) + 1))  # no seq given twice, none skipped
    # Each ack names the seq its message really has in bob's inbox (a resend got the original's).
    where = {m.message_id: seq for seq, m in page.messages}
    assert all(where[result.message_id] == result.seqs["bob"] for result in acked.values() if "bob" in result.seqs)
    print(f"restart under load: {len(acked)} acked, {refused} answers 250 during the restart, 0 lost, 0 doubled")
