"""SIGKILL the gateway process mid-stream: every acknowledged message survives, resends make no duplicates.

A real ``ember serve`` subprocess (``python -m gateway.cli``) on free loopback
ports and its own data folder, with the default durability (WAL,
synchronous=NORMAL, which survives a process crash; only a power loss may take
the last commits). A sender pipelines messages, each with a client_msg_id, and
records every ack it reads; after enough acks the test SIGKILLs the server by
its pid while requests are in flight, restarts it on the same folder, and
checks both inboxes against what was acknowledged.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from gateway.clock import Clock
from gateway.signing import signed_json
from protocol import events
from protocol.codes import ConnectionStatus
from protocol.connection import ClientConnection
from protocol.token import parse_token
from tests import backends
from tests.ports import free_port

REPO = Path(__file__).resolve().parent.parent
ADMIN_SECRET = "crash-test-admin-secret"
WINDOW = 20  # requests in flight
KILL_AFTER_ACKS = 200
#: A deadline, not a measure: a cold `ember serve` imports FastAPI and builds its tables in a few seconds
#: alone, but took over 15 s on this 2-core machine while other suites ran (a failure that meant nothing).
START_TIMEOUT = 45




@dataclass
class Server:
    process: trio.Process
    port: int
    admin_url: str


@asynccontextmanager
async def ember_serve(data: Path, log: Path, **settings: str) -> AsyncIterator[Server]:
    """``ember serve`` on ``data``; killed (by its own pid) on exit if still running.

    ``settings`` are more environment settings, e.g. ``EMBER_STORAGE__SYNCHRONOUS="FULL"``.
    """
    port, admin_port = free_port(), free_port()
    env = {
        **os.environ,
        "EMBER_SERVER__PORT": str(port),
        "EMBER_ADMIN__PORT": str(admin_port),
        "EMBER_ADMIN__SECRET": ADMIN_SECRET,
        "EMBER_MESSAGE__ROAMING": "true",  # a pull from 0 returns the whole inbox
        "EMBER_CLIENT__REQUEST_RATE_LIMIT": "1000000",
        "EMBER_LOG__LEVEL": "WARNING",
        "PYTHONPATH": str(REPO),
        **settings,
    }
    if backends.on_postgres() and "EMBER_STORAGE__URL" not in settings:  # one database per data folder
        env["EMBER_STORAGE__URL"] = await trio.to_thread.run_sync(backends.storage_url, data)
    with log.open("ab") as out:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "gateway.cli", "serve", "--data", str(data)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            cwd=str(REPO),
        )
    try:
        admin_url = f"http://127.0.0.1:{admin_port}"
        with trio.fail_after(START_TIMEOUT):
            async with httpx.AsyncClient(timeout=1) as http:
                while True:
                    if process.poll() is not None:
                        output = await trio.Path(log).read_text(errors="replace")
                        raise AssertionError(f"ember serve exited {process.returncode}:\n{output}")
                    try:
                        if (await http.get(admin_url + "/admin/health")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await trio.sleep(0.05)
        yield Server(process, port, admin_url)
    finally:
        if process.returncode is None:
            os.kill(process.pid, signal.SIGKILL)
            with trio.move_on_after(5):
                await process.wait()


_nonces = (f"crash-{i}" for i in itertools.count())


async def admin_call(server: Server, action: str, payload: dict[str, Any]) -> Any:
    body, headers = signed_json(ADMIN_SECRET.encode(), payload, Clock().now_ms(), next(_nonces))
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.post(f"{server.admin_url}/admin/{action}", content=body, headers=headers)
    answer = response.json()
    assert answer["code"] == 0, answer
    return answer["result"]


class Client:
    """One protocol connection: a socket and the client state machine."""

    def __init__(self, stream: trio.SocketStream, proto: ClientConnection) -> None:
        self.stream = stream
        self.proto = proto
        self.events: list[Any] = []

    @classmethod
    async def connect(cls, server: Server, token: str) -> Client:
        proto = ClientConnection.from_token(parse_token(token), client_nonce=os.urandom(32))
        client = cls(await trio.open_tcp_stream("127.0.0.1", server.port), proto)
        assert isinstance(await client.next_event(), events.Hello)
        await client.stream.send_all(proto.connect(Clock().now_ms()))
        ack = await client.next_event()
        assert isinstance(ack, events.ConnAck) and ack.code == ConnectionStatus.CONNECTED, ack
        return client

    async def read(self) -> bool:
        """Read once into ``events``; False when the server closed or reset the socket."""
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:
            return False
        if not data:
            return False
        self.events.extend(self.proto.receive_data(data))
        return True

    async def next_event(self) -> Any:
        while not self.events:
            assert await self.read(), "server closed"
        return self.events.pop(0)

    async def call(self, method: str, **params: Any) -> events.Response:
        request_id, frame = self.proto.request(method, params)
        await self.stream.send_all(frame)
        while True:
            event = await self.next_event()
            if isinstance(event, events.Response) and event.request_id == request_id:
                return event

    async def pull_all(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after = 0
        while True:
            page = await self.call("pull", after_seq=after, limit=500)
            assert page.code == 0, page
            out += [m["message"] for m in page.result["messages"]]
            if not page.result["messages"]:  # pages are cut by bytes too: only an empty one means done
                return out
            after = page.result["messages"][-1]["seq"]


def send_params(cmid: str) -> dict[str, Any]:
    return {
        "conv": {"type": 0, "target": "bob"},
        "content": {"type": 1, "searchable_content": cmid},
        "client_msg_id": cmid,
    }


async def test_sigkill_mid_stream_loses_no_acknowledged_message(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "ember.log"
    sent: list[str] = []  # client_msg_ids in the order sent
    acked: dict[str, int] = {}  # client_msg_id -> message_id, from acks the client read
    with trio.fail_after(30):
        async with ember_serve(data, log) as server:
            for user in ("alice", "bob"):
                await admin_call(server, "user/create", {"user_id": user})
            tokens = {
                user: (await admin_call(
                    server, "user/get_token", {"user_id": user, "client_id": f"{user}-phone", "platform": 2}
                ))["token"]
                for user in ("alice", "bob")
            }  # fmt: skip
            alice = await Client.connect(server, tokens["alice"])
            in_flight: dict[int, str] = {}  # request id -> client_msg_id

            async def send_more(count: int) -> None:
                frames = []
                for _ in range(count):
                    cmid = f"m{len(sent):05d}-{secrets.token_hex(4)}"
                    request_id, frame = alice.proto.request("send_message", send_params(cmid))
                    in_flight[request_id] = cmid
                    sent.append(cmid)
                    frames.append(frame)
                await alice.stream.send_all(b"".join(frames))  # one write

            async def kill() -> None:
                os.kill(server.process.pid, signal.SIGKILL)
                # A client does not know the server died: it may well have written more. Those requests
                # can never be acked, so the resend below always has work, even when the server managed
                # to answer the whole window before the signal landed.
                with contextlib.suppress(trio.BrokenResourceError):
                    await send_more(5)

            killed = False
            while True:
                if not killed and len(in_flight) < WINDOW:
                    await send_more(WINDOW - len(in_flight))
                if not await alice.read():  # after the kill: drain what the server sent before dying
                    break
                for event in alice.events:
                    if isinstance(event, events.Response):
                        cmid = in_flight.pop(event.request_id)
                        assert event.code == 0, event
                        acked[cmid] = event.result["message_id"]
                alice.events.clear()
                # Kill while acks are arriving with requests queued behind them: the server is mid-window.
                # (Past twice the target it kills anyway, should the server answer whole windows at once.)
                if (
                    not killed
                    and len(acked) >= KILL_AFTER_ACKS
                    and (in_flight or len(acked) >= 2 * KILL_AFTER_ACKS)
                ):
                    await kill()
                    killed = True
            assert await server.process.wait() == -signal.SIGKILL
            await alice.stream.aclose()

        unacked = [cmid for cmid in sent if cmid not in acked]
        assert len(acked) >= KILL_AFTER_ACKS and unacked, (len(acked), len(unacked))

        async with ember_serve(data, log) as server:
            # Tokens and sessions survived: the same tokens connect.
            alice = await Client.connect(server, tokens["alice"])
            bob = await Client.connect(server, tokens["bob"])
            acked_ids = [acked[cmid] for cmid in sent if cmid in acked]
            for inbox in (await alice.pull_all(), await bob.pull_all()):
                ids = [m["message_id"] for m in inbox]
                assert len(ids) == len(set(ids)), "a message is in an inbox twice"
                assert [i for i in ids if i in set(acked_ids)] == acked_ids, "an acked message is missing"
                for m in inbox:  # each stored message is the one its client_msg_id was acked with
                    cmid = m["content"]["searchable_content"]
                    assert acked.get(cmid, m["message_id"]) == m["message_id"]

            # Resend every unacknowledged message with its own client_msg_id: the ones committed before the
            # kill answer with their original ack, the others are stored now; none is stored twice.
            for cmid in unacked:
                response = await alice.call("send_message", **send_params(cmid))
                assert response.code == 0, response
                acked[cmid] = response.result["message_id"]
            for cmid in sent:  # and a second resend of everything changes nothing
                response = await alice.call("send_message", **send_params(cmid))
                assert response.code == 0 and response.result["message_id"] == acked[cmid]
            for inbox in (await alice.pull_all(), await bob.pull_all()):
                assert [m["content"]["searchable_content"] for m in inbox] == sent
                assert [m["message_id"] for m in inbox] == [acked[cmid] for cmid in sent]
            await alice.stream.aclose()
            await bob.stream.aclose()


async def test_sigterm_shuts_down_gracefully_and_keeps_every_ack(tmp_path: Path) -> None:
    """SIGTERM: the process exits 0, closes its clients, and what it acknowledged is stored."""
    data, log = tmp_path / "data", tmp_path / "ember.log"
    acked: list[int] = []
    with trio.fail_after(30):
        async with ember_serve(data, log) as server:
            for user in ("alice", "bob"):
                await admin_call(server, "user/create", {"user_id": user})
            tokens = {
                user: (
                    await admin_call(
                        server, "user/get_token", {"user_id": user, "client_id": f"{user}-1", "platform": 2}
                    )
                )["token"]
                for user in ("alice", "bob")
            }
            alice = await Client.connect(server, tokens["alice"])
            frames = [alice.proto.request("send_message", send_params(f"t-{i}"))[1] for i in range(50)]
            await alice.stream.send_all(b"".join(frames))
            while len(acked) < 10:  # some acks are in, others may be in flight
                event = await alice.next_event()
                if isinstance(event, events.Response) and event.code == 0:
                    acked.append(event.result["message_id"])
            os.kill(server.process.pid, signal.SIGTERM)
            assert await server.process.wait() == 0
            while await alice.read():  # the rest of what was answered, then the close
                pass
            acked += [
                e.result["message_id"] for e in alice.events if isinstance(e, events.Response) and e.code == 0
            ]
            await alice.stream.aclose()
        assert b"Traceback" not in await trio.Path(log).read_bytes()
        async with ember_serve(data, log) as server:
            bob = await Client.connect(server, tokens["bob"])
            stored = [m["message_id"] for m in await bob.pull_all()]
            assert set(acked) <= set(stored)
            assert stored == sorted(stored)
            await bob.stream.aclose()


PIPELINED_SENDS = 40


async def test_sigterm_answers_every_send_read_before_it(tmp_path: Path) -> None:
    """docs/PROTOCOL.md §8.7: the requests the server has read are answered before its DISCONNECT.

    The PONG behind the sends proves the server read them all before the signal; with synchronous = FULL
    their commits are still pending at the writer when it arrives. Each must be acknowledged before the
    DISCONNECT (a client without client_msg_ids would otherwise send them again), and each is stored.
    """
    data, log = tmp_path / "data", tmp_path / "ember.log"
    with trio.fail_after(30):
        async with ember_serve(data, log, EMBER_STORAGE__SYNCHRONOUS="FULL") as server:
            for user in ("alice", "bob"):
                await admin_call(server, "user/create", {"user_id": user})
            tokens = {
                user: (await admin_call(
                    server, "user/get_token", {"user_id": user, "client_id": f"{user}-1", "platform": 2}
                ))["token"]
                for user in ("alice", "bob")
            }  # fmt: skip
            alice = await Client.connect(server, tokens["alice"])
            sent = [alice.proto.request("send_message", send_params(f"s-{i}")) for i in range(PIPELINED_SENDS)]
            await alice.stream.send_all(b"".join(frame for _, frame in sent) + alice.proto.ping())
            before_pong = []
            while not isinstance(event := await alice.next_event(), events.Pong):
                before_pong.append(event)
            os.kill(server.process.pid, signal.SIGTERM)
            while await alice.read():  # everything up to the close
                pass
            got = before_pong + alice.events
            assert await server.process.wait() == 0
            await alice.stream.aclose()
        assert isinstance(got[-1], events.GoAway), got[-1:]
        answers = {e.request_id: e for e in got[:-1] if isinstance(e, events.Response)}
        assert sorted(answers) == sorted(request_id for request_id, _ in sent), f"{len(answers)} answers"
        assert all(e.code == 0 for e in answers.values())
        async with ember_serve(data, log) as server:
            bob = await Client.connect(server, tokens["bob"])
            stored = [m["message_id"] for m in await bob.pull_all()]
            assert stored == sorted(e.result["message_id"] for e in answers.values())
            await bob.stream.aclose()
