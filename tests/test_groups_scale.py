"""A 2,000-member group (SPEC §8): one send lands in every member's inbox exactly once, pushed to the online
devices, pulled by the offline ones; ``to_users`` reaches exactly those. Users and the group are made in bulk
through storage; a few dozen real connections (two devices per online user) stand for the online half."""

from __future__ import annotations

import trio

from storage import groups as db
from tests.harness import start_gateway
from tests.storage_helpers import peek
from tests.test_messaging import Device

MEMBERS = 2000
ONLINE_USERS = 20  # two devices each


def inbox_counts(db_path, message_id: int) -> dict[str, int]:
    rows = peek(
        db_path,
        "SELECT user_id, COUNT(*) FROM (SELECT user_id FROM inbox WHERE message_id = ?"
        " UNION ALL SELECT user_id FROM inbox_recent WHERE message_id = ?) AS found GROUP BY user_id",
        (message_id, message_id),
    )
    return dict(rows)


async def test_a_send_to_2000_members_lands_once_in_every_inbox(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path)
    users = [f"u{i:04d}" for i in range(MEMBERS)]
    await gw.services.store.run(db.bulk_create_for_tests_and_bench, "big", users[0], users, gw.clock.now_ms())
    online = users[1 : 1 + ONLINE_USERS]
    devices = {u: [await Device.connect(gw, u, "phone", 2), await Device.connect(gw, u, "pc", 3)] for u in online}
    sender = await Device.connect(gw, users[0])
    chunks_before = gw.services.messages.fanout.deferred_chunks
    ack = await sender.call(
        "send_message", conv={"type": 1, "target": "big"}, content={"type": 1, "searchable_content": "to all"}
    )
    assert ack.code == 0
    message_id = ack.result["message_id"]
    for pair in devices.values():
        for device in pair:
            push = await device.push()
            assert push.data["message"]["message_id"] == message_id
    assert gw.services.messages.fanout.deferred_chunks > chunks_before  # it went out in chunks, yielding between
    assert inbox_counts(gw.config.storage.path, message_id) == dict.fromkeys(users, 1)
    # Offline members pull it.
    for user in (users[-1], users[1000]):
        late = await Device.connect(gw, user)
        assert [m["message"]["message_id"] for m in await late.pull_all()] == [message_id]
        await late.aclose()
    # to_users: exactly those (and the sender's own inbox).
    chosen = [online[0], online[5], users[1500]]
    ack = await sender.call(
        "send_message", conv={"type": 1, "target": "big"}, content={"type": 1, "searchable_content": "few"},
        to_users=chosen,
    )  # fmt: skip
    assert ack.code == 0
    assert inbox_counts(gw.config.storage.path, ack.result["message_id"]) == dict.fromkeys([*chosen, users[0]], 1)
    for user in (online[0], online[5]):
        for device in devices[user]:
            assert (await device.push()).data["message"]["message_id"] == ack.result["message_id"]
    # Nobody else was pushed it: a third send arrives next everywhere else.
    ack3 = await sender.call(
        "send_message", conv={"type": 1, "target": "big"}, content={"type": 1, "searchable_content": "again"}
    )
    for user, pair in devices.items():
        for device in pair:
            if user not in chosen:
                assert (await device.push()).data["message"]["message_id"] == ack3.result["message_id"]
    for pair in devices.values():
        for device in pair:
            await device.aclose()
    await sender.aclose()
