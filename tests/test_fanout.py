"""``gateway.domain.messaging.FanOut``: deliveries sealed a chunk per pass, in order, one broken delivery
stops neither the others nor the task, and the backlog of owners it counts goes back to zero."""

from __future__ import annotations

from collections.abc import Iterator

import trio
import trio.testing

from gateway.domain.messaging import FanOut


async def test_chunks_interleave_with_other_tasks_keep_order_and_survive_a_broken_delivery() -> None:
    fanout = FanOut()
    log: list[str] = []

    def delivery(name: str, chunks: int, broken: bool = False) -> Iterator[None]:
        for i in range(chunks):
            log.append(f"{name}{i}")
            if broken:
                raise RuntimeError("a bug")
            if i < chunks - 1:
                yield

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fanout.run)
        await trio.testing.wait_all_tasks_blocked()
        fanout.add(delivery("a", 3), 300)
        fanout.add(delivery("x", 1, broken=True), 20)
        fanout.add(delivery("b", 2), 1)
        assert log == [] and fanout.pending == 3  # the caller (a commit callback) seals nothing itself
        assert fanout.queued_owners == 321  # the backlog MessageService.fanout_backlogged bounds

        async def other() -> None:
            for _ in range(3):
                log.append("other")
                await trio.lowlevel.checkpoint()

        nursery.start_soon(other)
        while fanout.pending:  # noqa: ASYNC110 - the fan-out advances a chunk per pass
            await trio.lowlevel.checkpoint()
        nursery.cancel_scope.cancel()
    chunks = [entry for entry in log if entry != "other"]
    assert chunks == ["a0", "a1", "a2", "x0", "b0", "b1"]  # commit order, the broken one skipped past
    assert fanout.queued_owners == 0  # each delivery's owners left the backlog as it finished (or broke)
    assert log.index("other") < log.index("a2")  # another task ran between two chunks of one delivery
