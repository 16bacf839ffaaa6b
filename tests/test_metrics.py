"""/metrics (Prometheus text format) and /health on the admin port, scraped after a real scenario."""

from __future__ import annotations

import re

import httpx
import trio

from protocol import events
from protocol.codes import ConnectionStatus, Platform
from tests import backends
from tests.harness import RawClient, client_for, start_gateway
from tests.test_messaging import Device

_SAMPLE = re.compile(r'^([a-z_]+)(\{[^}]*\})? (\S+)$')


def parse(text: str) -> dict[str, float]:
    """``name{labels}`` -> value, every sample line; checks each family has HELP and TYPE."""
    samples: dict[str, float] = {}
    typed = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, line
        name, labels, value = match.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in typed else name
        assert family in typed, line
        samples[name + (labels or "")] = float(value)
    return samples


async def test_metrics_count_what_a_scenario_did(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path, client={"request_rate_limit": 1000})
    for user in ("alice", "bob"):
        await gw.user(user)
    alice = await Device.connect(gw, "alice")
    bob = await Device.connect(gw, "bob", platform=Platform.IOS)
    sends = 25
    for i in range(sends):
        assert (await alice.send_text("bob", f"m{i}")).code == 0
    for _ in range(sends):
        await bob.push()
    assert (await bob.call("pull", after_seq=0, limit=100)).code == 0
    assert (await bob.call("no_such_method")).code == 254
    # A refused handshake: a forged secret.
    forged = RawClient(await trio.open_tcp_stream(gw.host, gw.port), client_for(await gw.token("alice", "c2", Platform.WINDOWS), secret=b"\0" * 32))
    ack = await forged.handshake(gw.clock.now_ms())
    assert isinstance(ack, events.ConnAck) and ack.code == ConnectionStatus.SECRET_KEY_MISMATCH
    await forged.aclose()

    async with httpx.AsyncClient() as http:
        response = await http.get(gw.running.admin_url + "/metrics")
        health = (await http.get(gw.running.admin_url + "/health")).json()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    m = parse(response.text)
    assert m['ember_connections{platform="2"}'] == 1 and m['ember_connections{platform="1"}'] == 1
    assert m[f'ember_handshakes_total{{status="{int(ConnectionStatus.CONNECTED)}"}}'] == 2
    assert m[f'ember_handshakes_total{{status="{int(ConnectionStatus.SECRET_KEY_MISMATCH)}"}}'] == 1
    assert m['ember_requests_total{method="send_message",code="0"}'] == sends
    assert m['ember_requests_total{method="pull",code="0"}'] == 1
    assert m['ember_requests_total{method="unknown",code="254"}'] == 1
    assert m["ember_messages_stored_total"] == sends
    assert m["ember_messages_delivered_total"] == sends  # to bob; alice's only device sent them
    # Frames: alice sent 25 requests and got 25 answers; bob got 25 pushes and 2 answers, sent 2 requests.
    # CONNACKs count as sealed frames out.
    assert m["ember_frames_in_total"] == sends + 2
    assert m["ember_frames_out_total"] == 2 + sends + sends + 2
    assert m["ember_messages_pushed_total"] == 0
    assert m['ember_commit_batch_size_bucket{le="+Inf"}'] == m["ember_commit_batch_size_count"] >= 1
    assert m["ember_commit_batch_size_sum"] >= sends  # every send is one operation of some batch
    assert m["ember_commit_seconds_count"] == m["ember_commit_batch_size_count"]
    assert m["ember_writer_queue_depth"] == 0 and m["ember_outbox_queued_bytes"] == 0
    if backends.on_postgres():
        # A PostgreSQL commit is a round trip to the server: never on the trio thread (Engine.inline_commit).
        assert m["ember_commits_inline_total"] == 0 and m["ember_commit_inline_max_cpu_seconds"] == 0
    else:
        # alice's sends, one at a time, were small batches: committed on the trio thread (storage.writer)
        assert 1 <= m["ember_commits_inline_total"] <= m["ember_commit_batch_size_count"]
        assert 0 < m["ember_commit_inline_max_cpu_seconds"] < 1
    assert m["process_cpu_seconds_total"] > 0 and m["process_resident_memory_bytes"] > 10_000_000
    assert health == {"code": 0, "msg": "success", "result": {"status": "ok", "storage_writable": True, "disk_full": False}}
    await alice.aclose()
    await bob.aclose()


async def test_frames_of_ended_connections_stay_counted(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path)
    await gw.user("alice")
    alice = await Device.connect(gw, "alice")
    assert (await alice.call("get_blacklist")).code == 0
    await alice.aclose()
    with trio.fail_after(5):
        while gw.services.delivery.node.connections("alice"):  # noqa: ASYNC110
            await trio.sleep(0.005)
    async with httpx.AsyncClient() as http:
        m = parse((await http.get(gw.running.admin_url + "/metrics")).text)
    assert (m["ember_frames_in_total"], m["ember_frames_out_total"]) == (1, 2)
    assert not any(k.startswith("ember_connections{") for k in m)


async def test_health_says_storage_is_not_writable_once_the_writer_is_closing(nursery: trio.Nursery, tmp_path) -> None:
    gw = await start_gateway(nursery, tmp_path)
    gw.services.store.writer._closing = True  # what aclose sets first; the real close would end the test's gateway
    async with httpx.AsyncClient() as http:
        health = (await http.get(gw.running.admin_url + "/admin/health")).json()
    gw.services.store.writer._closing = False
    assert health["result"] == {"status": "degraded", "storage_writable": False, "disk_full": False}
