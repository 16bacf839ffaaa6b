"""``python -m bench.worker``: one load-generating process, driven by the coordinator over pipes.

stdin carries JSON lines from the coordinator: first the job (scenario,
target, tokens — on a pipe, never on the command line), then the phase
commands ``start``, ``load``, ``go``, ``stop``, ``exit``. stdout carries JSON
lines back: ``hello``, ``ready``, ``progress`` (once a second), ``final``, or
``fatal`` with a message. EOF on stdin ends the worker at any point, so it
never outlives its coordinator.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import trio

from bench.load import SCENARIOS, MessagingUnavailable
from bench.procfs import raise_open_file_limit

PROGRESS_SECONDS = 1.0


def report(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class Control:
    """JSON lines from the coordinator on stdin."""

    def __init__(self) -> None:
        self._stream = trio.lowlevel.FdStream(os.dup(0))
        self._buffer = b""

    async def next(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            data = await self._stream.receive_some(1 << 20)
            if not data:
                raise EOFError("coordinator went away")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    async def expect(self, command: str) -> dict[str, Any]:
        message = await self.next()
        if message.get("cmd") == "exit":
            raise EOFError("told to exit")
        if message.get("cmd") != command:
            raise RuntimeError(f"expected {command!r}, got {message!r}")
        return message


async def run() -> None:
    control = Control()
    job = await control.next()
    report({"t": "hello", "pid": os.getpid()})
    async with trio.open_nursery() as nursery:
        scenario = SCENARIOS[job["scenario"]](job, nursery)
        try:
            await control.expect("start")
            info = await scenario.setup()
            report({"t": "ready", **info, **scenario.progress()})
            await control.expect("load")
            scenario.start_load()
            progress = trio.CancelScope()

            async def tick() -> None:
                with progress:
                    while True:
                        await trio.sleep(PROGRESS_SECONDS / 2)
                        report({"t": "progress", **scenario.progress()})

            nursery.start_soon(tick)
            await control.expect("go")
            scenario.go()
            await control.expect("stop")
            scenario.stop()
            progress.cancel()
            await scenario.drain()
            report({"t": "final", **scenario.final(), **scenario.progress()})
            await control.expect("exit")
        except EOFError:
            pass
        finally:
            await scenario.close_all()
            nursery.cancel_scope.cancel()


def main() -> int:
    raise_open_file_limit()
    try:
        trio.run(run)
    except MessagingUnavailable as exc:
        report({"t": "fatal", "msg": str(exc)})
        return 1
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:  # noqa: BLE001 - tell the coordinator what broke, then fail
        # Exception groups from the nursery: name the first leaf.
        leaf = exc
        while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
            leaf = leaf.exceptions[0]
        if isinstance(leaf, MessagingUnavailable):
            report({"t": "fatal", "msg": str(leaf)})
            return 1
        report({"t": "fatal", "msg": f"{type(leaf).__name__}: {leaf}"})
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
