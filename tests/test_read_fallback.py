"""Without epoll (off Linux), each connection's own task reads it, waiting in trio: forced here by
``serve(read_poller=False)``, the default where ``select.epoll`` is missing."""

from __future__ import annotations

from pathlib import Path

import trio

from protocol import events
from tests.harness import RawClient, start_gateway


async def test_messages_flow_with_no_read_poller(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            gw = await start_gateway(nursery, tmp_path, read_poller=False)
            await gw.user("alice")
            await gw.user("bob")
            alice = await RawClient.connected(gw, await gw.token("alice", "alice-phone"))
            bob = await RawClient.connected(gw, await gw.token("bob", "bob-phone"))
            for n in range(1, 6):  # past the task's first read, which is the same with or without a poller
                _, frame = alice.proto.request(
                    "send_message",
                    {"conv": {"type": 0, "target": "bob"}, "content": {"type": 1, "searchable_content": f"m{n}"}},
                )
                await alice.send(frame)
                answer = await alice.next_event()
                assert isinstance(answer, events.Response) and answer.code == 0, answer
                assert answer.result["seq"] == n
                push = await bob.next_event()
                assert isinstance(push, events.Notify) and push.data["seq"] == n, push
            connections = list(gw.services.delivery.node.all_connections())
            assert len(connections) == 2 and all(conn._reads is None for conn in connections)
            await alice.aclose()
            await bob.aclose()
            nursery.cancel_scope.cancel()
