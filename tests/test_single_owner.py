"""A second ``ember serve`` on a data folder that a running gateway owns refuses to start.

Two real processes: the writer's in-memory state (inbox heads, the log's heads) is right only for a
database's one writer, so a second one must not get as far as handing out seqs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import trio

from protocol import events
from tests import backends
from tests.test_crash import ADMIN_SECRET, REPO, START_TIMEOUT, Client, admin_call, ember_serve, free_port


async def test_a_second_gateway_on_the_same_data_folder_refuses_and_the_first_serves_on(
    tmp_path: Path,
) -> None:
    data, log = tmp_path / "data", tmp_path / "ember.log"
    with trio.fail_after(3 * START_TIMEOUT):
        async with ember_serve(data, log) as first:
            for user in ("alice", "bob"):
                await admin_call(first, "user/create", {"user_id": user})
            token = (await admin_call(
                first, "user/get_token", {"user_id": "alice", "client_id": "alice-phone", "platform": 2}
            ))["token"]  # fmt: skip

            env = {
                **os.environ,
                "EMBER_SERVER__PORT": str(free_port()),
                "EMBER_ADMIN__PORT": str(free_port()),
                "EMBER_ADMIN__SECRET": ADMIN_SECRET,
                "PYTHONPATH": str(REPO),
            }
            if backends.on_postgres():  # the first one's database: its lock is an advisory lock there
                env["EMBER_STORAGE__URL"] = backends.known_url(data)
            second = await trio.run_process(
                [sys.executable, "-m", "gateway.cli", "serve", "--data", str(data)],
                env=env,
                cwd=str(REPO),
                stdin=subprocess.DEVNULL,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            stderr = second.stderr.decode(errors="replace")
            assert second.returncode == 1, stderr
            assert "is already used by another Ember process" in stderr
            assert f"(pid {first.process.pid})" in stderr
            assert "Traceback" not in stderr

            # The owner was not disturbed: it still accepts a session and stores a message.
            assert first.process.poll() is None
            alice = await Client.connect(first, token)
            answer = await alice.call(
                "send_message",
                conv={"type": 0, "target": "bob"},
                content={"type": 1, "searchable_content": "still here"},
            )
            assert isinstance(answer, events.Response) and answer.code == 0, answer
            assert answer.result["seq"] == 1
            await alice.stream.aclose()
