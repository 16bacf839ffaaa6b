"""The SDK's channels (client/channels.py) against a real gateway: typed operations, the info cache by
version and its events, posts through the message sync, and the owned / listened lists from synced settings."""

from __future__ import annotations

import pytest
import trio

from client import RequestFailed
from client.channels import ChannelGone, ChannelSynced
from protocol.codes import ErrorCode
from tests.harness import Gateway, start_gateway
from tests.test_client_sync import sdk, take


@pytest.fixture
async def gw(nursery: trio.Nursery, tmp_path) -> Gateway:
    gw = await start_gateway(nursery, tmp_path, client={"request_rate_limit": 100_000})
    for user in ("alice", "bob"):
        await gw.user(user)
    return gw


def pending(c) -> list:
    found = []
    while True:
        try:
            found.append(c.channels.events().receive_nowait())
        except trio.WouldBlock:
            return found


async def test_operations_cache_by_version_events_and_posts(gw: Gateway) -> None:
    async with sdk(gw, "alice") as alice, sdk(gw, "bob", sync_relations=True) as bob:
        cid = await alice.channels.create(name="News", desc="daily", callback="https://x.invalid/cb")
        await bob.channels.listen(cid)
        info = await bob.channels.info(cid)
        assert (info.name, info.owner, info.listener_count, info.callback) == ("News", "alice", 1, None)
        assert (await alice.channels.info(cid)).callback == "https://x.invalid/cb"
        assert pending(bob) == [ChannelSynced(cid, info)]
        assert await bob.channels.info(cid) is info and pending(bob) == []  # current: nothing came back
        assert await alice.channels.modify(cid, "name", "Daily") == 2
        fresh = await bob.channels.info(cid)
        assert fresh.name == "Daily" and pending(bob) == [ChannelSynced(cid, fresh)]
        ack = await alice.channels.post(cid, {"type": 1, "searchable_content": "hello"})
        (got,) = await take(bob, 1)
        assert got.message_id == ack["message_id"] and got.conv.type == 3 and got.conv.target == cid
        with trio.fail_after(10):
            await bob.relations.wait_until(lambda: bob.channels.listened() == [cid])
        assert await bob.channels.mine() == ({}, {cid: 2})
        assert set(await bob.channels.refresh_mine()) == {cid}
        await alice.channels.destroy(cid)
        with pytest.raises(RequestFailed) as failed:
            await bob.channels.info(cid)
        assert failed.value.code == ErrorCode.NOT_EXIST
        assert pending(bob) == [ChannelGone(cid)] and bob.channels.cached_info(cid) is None
        with trio.fail_after(10):
            await bob.relations.wait_until(lambda: bob.channels.listened() == [])
        with pytest.raises(RequestFailed) as failed:
            await bob.channels.unlisten(cid)
        assert failed.value.code == ErrorCode.NOT_EXIST
