"""Smoke runs of ``python -m bench`` against a gateway it spawns: the tool works end to end.

Each run lasts a few seconds and checks the JSON record's shape and its
accounting (what was acked was delivered), never how fast anything was.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

#: The PostgreSQL pass would repeat this module unchanged: every gateway it spawns is on SQLite (or on the private PostgreSQL server it names).
pytestmark = pytest.mark.own_backend

pytest.importorskip("hdrh", reason="bench needs hdrhistogram (pip install 'ember-im[bench]')")

ROOT = Path(__file__).resolve().parent.parent
COMMON_FIELDS = {
    "scenario",
    "params",
    "duration_s",
    "sent",
    "acked",
    "delivered",
    "errors",
    "delivered_per_s",
    "server_cpu_s",
    "server_cpu_main_thread_s",
    "server_cpu_us_per_msg",
    "server_rss_kib",
    "rss_kib_per_conn",
    "latency",
}
SHORT = ["--spawn", "--duration", "1", "--warmup", "0.5", "--procs", "2", "--quiet"]


def bench(tmp_path: Path, *argv: str) -> dict[str, Any]:
    out = tmp_path / "record.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", *argv, *SHORT, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    record = json.loads(last)
    assert json.loads(out.read_text()) == record  # --json writes the same record
    assert COMMON_FIELDS <= set(record), COMMON_FIELDS - set(record)
    assert set(record["latency"]) >= {"p50_ms", "p99_ms", "p999_ms", "max_ms"}
    assert record["server_cpu_s"] is not None and record["server_rss_kib"] > 0
    assert record["duration_s"] > 0
    return record


def test_connect_smoke(tmp_path: Path) -> None:
    record = bench(tmp_path, "connect", "--concurrency", "4")
    assert record["scenario"] == "connect"
    assert record["params"]["concurrency"] == 4
    assert record["delivered"] > 0 and record["errors"] == 0
    assert record["server_cpu_us_per_msg"] is not None
    assert record["latency"]["count"] == record["acked"] > 0


def test_idle_smoke(tmp_path: Path) -> None:
    # The shortest keepalive the gateway accepts, so PINGs flow inside a short window.
    record = bench(tmp_path, "idle", "--connections", "40", "--keepalive", "10")
    assert record["scenario"] == "idle"
    assert record["connections"] == 40 and record["errors"] == 0
    assert record["rss_kib_per_conn"] is not None
    assert record["acked"] == record["delivered"]


def test_pairs_smoke(tmp_path: Path) -> None:
    record = bench(tmp_path, "pairs", "--pairs", "4", "--window", "2")
    assert record["scenario"] == "pairs"
    assert record["delivered"] > 0 and record["errors"] == 0
    assert record["delivered"] == record["acked"] == record["sent"]
    assert record["undelivered"] == 0
    assert record["latency_ack"]["count"] == record["acked"]


def test_pairs_over_websocket_smoke(tmp_path: Path) -> None:
    """``--transport ws``: the same load through the WebSocket listener (docs/PROTOCOL.md §2.2)."""
    record = bench(tmp_path, "pairs", "--pairs", "4", "--window", "2", "--transport", "ws")
    assert record["gateway"]["transport"] == "ws"
    assert record["delivered"] > 0 and record["errors"] == 0
    assert record["delivered"] == record["acked"] == record["sent"]


def test_pairs_on_postgresql_stores_there(tmp_path: Path, pg_url: str) -> None:
    """``--postgres URL``: the spawned gateway stores on that database (storage.url), not in its data folder."""
    import psycopg

    record = bench(tmp_path, "pairs", "--pairs", "4", "--window", "2", "--postgres", pg_url)
    assert record["gateway"]["storage"] == "postgresql"
    assert record["delivered"] == record["acked"] == record["sent"] > 0 and record["errors"] == 0
    with psycopg.connect(pg_url) as conn:
        stored = conn.execute("SELECT count(*) FROM messages").fetchone()
    assert stored is not None and stored[0] >= record["acked"]  # warm-up sends are stored too


def test_pairs_on_two_cluster_nodes_crosses_nodes_for_every_delivery(tmp_path: Path, pg_url: str) -> None:
    """``--nodes 2``: two gateways with server.cluster on the one database; each pair's sender is on one node
    and its receiver on the other, so every delivery is a push made on the other node's notice."""
    import psycopg

    record = bench(tmp_path, "pairs", "--pairs", "4", "--window", "2", "--postgres", pg_url, "--nodes", "2")
    assert record["nodes"] == 2 and len(record["node_cpu_s"]) == 2
    assert all(cpu > 0 for cpu in record["node_cpu_s"])
    assert record["server_cpu_s"] >= max(record["node_cpu_s"])  # summed over the nodes
    assert record["delivered"] == record["acked"] == record["sent"] > 0 and record["errors"] == 0
    # The window's deliveries, counted by the receivers, against the pushes the nodes made on notices.
    assert record["cross_node_deliveries"] > 0
    # The edges of the window: the nodes' counters are read over HTTP a moment apart from the workers' window,
    # with the load running, so a busy machine shifts a few messages per edge (10 seen with 8 allowed). Were
    # deliveries not crossing nodes, the count would be near 0 (or half), far outside this bound.
    edge = max(8, record["delivered_in_window"] // 20)
    assert abs(record["cross_node_deliveries"] - record["delivered_in_window"]) <= edge
    with psycopg.connect(pg_url) as conn:
        nodes = conn.execute("SELECT count(*) FROM ember_cluster_nodes").fetchone()
    assert nodes == (0,)  # both stopped cleanly and gave their ids back


def test_the_private_postgresql_server_of_the_bench_serves_and_reports_its_cpu(postgres: Any) -> None:
    """``bench.pgserver``: what ``--postgres`` alone starts (initdb on a temp folder, as an unprivileged user)."""
    import psycopg

    from bench.pgserver import private_server

    with private_server(fsync=False) as server:
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("ember_bench",)
            before = server.cpu_seconds()
            # Work the connection's backend is sure to take several of the kernel's 10 ms CPU ticks for, and read
            # the CPU while it lives: a just-started server alone may not have used one tick yet (read 0.0 once).
            conn.execute("SELECT count(*) FROM generate_series(1, 3000000)").fetchone()
            assert server.cpu_seconds() > before
        data = server.data_dir
    assert not data.exists()  # removed with the server


def test_group_smoke(tmp_path: Path) -> None:
    record = bench(tmp_path, "group", "--members", "12", "--groups", "2", "--senders", "2", "--window", "2")
    assert record["scenario"] == "group"
    assert record["params"]["members"] == 12 and record["params"]["groups"] == 2
    assert record["errors"] == 0 and record["acked"] > 0
    # Every acked message reached the 11 other members of its group, exactly once, across both workers.
    assert record["undelivered"] == 0 and record["duplicated"] == 0
    # ``delivered`` counts a delivery when its message was sent inside the receiving worker's window, and the
    # workers' windows open and close a moment apart: the messages at the edges may count on one side only.
    assert abs(record["delivered"] - 11 * record["acked"]) <= 0.05 * 11 * record["acked"]
    assert record["server_cpu_us_per_delivery"] is not None


def test_pairs_open_loop_smoke(tmp_path: Path) -> None:
    record = bench(tmp_path, "pairs", "--pairs", "2", "--rate", "200")
    assert record["params"]["rate"] == 200
    assert record["delivered"] == record["acked"] > 0
    assert record["undelivered"] == 0


def test_chatroom_smoke(tmp_path: Path) -> None:
    record = bench(tmp_path, "chatroom", "--members", "6", "--rate", "50")
    assert record["scenario"] == "chatroom" and record["params"]["members"] == 6
    assert record["acked"] > 0 and record["errors"] == 0
    # Exactly once per member, by message number (each worker's window opens a moment apart from the others').
    assert record["delivered"] > 0 and record["undelivered"] == 0 and record["duplicated"] == 0
    assert record["room"]["dropped"] == 0 and record["room"]["delivered"] >= record["delivered"]
    assert "deliveries_per_server_cpu_s" in record


def test_plot_without_matplotlib_fails_clearly(tmp_path: Path) -> None:
    # A stub that makes "import matplotlib" fail, put first on the path of the child.
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "matplotlib.py").write_text("raise ImportError('no matplotlib here')\n")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); from bench.cli import main; "
            "sys.exit(main(sys.argv[2:]))",
            str(stub),
            "connect",
            "--spawn",
            "--plot",
            str(tmp_path / "p.png"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "matplotlib" in done.stderr and "pip install" in done.stderr


@pytest.mark.parametrize("kind", ["echo-raw", "commit"])
def test_floor_servers_answer_every_message(kind: str) -> None:
    """bench.floor's servers ack and push every message they are sent (the floor is a real round trip)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.floor", kind, "--rate", "200", "--pairs", "4", "--duration", "0.5",
         "--warmup", "0.2"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["sent"] > 0
    assert record["acks"] == record["pushes"] == record["sent"]
    assert record["server_cpu_us_per_msg"] >= 0


def test_convlist_reads_the_whole_inbox_it_filled() -> None:
    """bench.convlist fills the user's inbox through storage and times pages on the table and by the scan."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.convlist", "--messages", "300", "--convs", "30", "--repeat", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "filled 300 messages over 30 conversations" in done.stdout
    assert "table: first page of 50:" in done.stdout
    assert "scan: first page of 50:" in done.stdout and "(300 rows read)" in done.stdout  # the scan reads them all


def test_conv_upsert_measures_all_three_kinds() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.conv_upsert", "--rounds", "1", "--messages", "1000"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["base", "table", "table-noindex"]


def test_light_runs_floor_and_ember_interleaved_and_reports_their_ratio() -> None:
    """``python -m bench light`` runs bench.floor commit and bench pairs --rate in turn and compares them."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "light", "--spawn", "--runs", "1", "--rate", "400", "--pairs", "4",
         "--duration", "2", "--warmup", "0.3"],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["scenario"] == "light" and record["runs"] == 1
    assert record["acked"] > 0 and record["undelivered"] == 0
    assert record["floor_cpu_us_per_msg"] > 0 and record["ember_cpu_us_per_msg"] > 0
    # One run: the ratio of the medians is that run's own ratio.
    assert record["ratio"] == record["pair_ratios"][0] > 0
    assert isinstance(record["met"], bool)


def test_paired_alternates_checkouts_and_reports_each_ones_runs_and_median() -> None:
    """``python -m bench.paired``: two checkouts (here the same one twice, under two spellings), two rounds."""
    same = str(ROOT / "tests" / "..")
    done = subprocess.run(
        [sys.executable, "-m", "bench.paired", "--rounds", "2", "--python", sys.executable, str(ROOT), same,
         "--", "--pairs", "4", "--duration", "1", "--warmup", "0.3"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    runs = [line for line in lines[:-1] if "us/msg" in line]
    assert [line.split()[1].rstrip(":") for line in runs] == [str(ROOT), same, same, str(ROOT)]  # ABBA
    summary = json.loads(lines[-1])
    assert summary["bench_args"] == ["--pairs", "4", "--duration", "1", "--warmup", "0.3"]
    for checkout in (str(ROOT), same):
        figures = summary["checkouts"][checkout]
        assert len(figures["runs"]) == 2 and figures["median_us_per_msg"] == sum(figures["runs"]) / 2


def test_storage_send_prints_the_merges_share_for_both_kinds() -> None:
    for kind in ("private", "group"):
        done = subprocess.run(
            [sys.executable, "-m", "bench.storage_send", "--kind", kind, "--sends", "300", "--members", "5"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.startswith(f"{kind}: 300 sends, 64 per commit:") and "merges" in done.stdout


def test_sendedge_decodes_every_request_and_times_each_step() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.sendedge", "--sends", "200", "--rounds", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["scenario"] == "sendedge" and record["sends"] == 200
    steps = ("request_us", "message_us", "ack_us", "push_us")
    assert all(record[step] >= 0 for step in steps)
    assert record["total_us"] == pytest.approx(sum(record[step] for step in steps), abs=0.05)


def test_writer_rate_stores_every_send_and_says_how_many_ran_inline() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.writer_rate", "--rate", "500", "--pairs", "4", "--duration", "0.5",
         "--warmup", "0.2"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["scenario"] == "writer_rate" and record["sends"] > 0 and record["failed"] == 0
    assert 0 <= record["inline_share"] <= 1 and record["cpu_us_per_send"] > 0


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_search_fills_a_store_and_reports_latency_and_indexing_cpu(backend: str, tmp_path: Path) -> None:
    """``python -m bench search`` on a small store: the record's shape, every search answered, u0's share."""
    extra = []
    if backend == "postgresql":
        from tests import pg

        try:
            url = pg.server().create_database(empty=True)
        except pg.Unavailable as exc:
            if pg.required():
                raise
            pytest.skip(str(exc))
        extra = ["--postgres-url", url]
    done = subprocess.run(
        [sys.executable, "-m", "bench", "search", "--messages", "600", "--users", "10", "--paired", "600",
         "--queries", "5", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["scenario"] == "search" and record["backend"] == backend and record["messages"] == 600
    assert 0 < record["u0_messages"] < 600  # u0 is in about a tenth of them, never all
    cpu = record["index_cpu_us_per_msg"]
    assert cpu["with_us"] > 0 and cpu["without_us"] > 0 and cpu["ratio"] > 0
    for caller in ("latency_u0", "latency_admin"):
        assert set(record[caller]) == {"cjk_1", "cjk_2", "latin_word", "mixed"}
        assert all(0 <= kind["p50_ms"] <= kind["p99_ms"] for kind in record[caller].values())


def test_search_spawn_runs_both_backends_in_one_record(postgres: Any) -> None:
    """``python -m bench search --spawn`` (issue 26's command): one JSON line holding a SQLite record and one
    from a private PostgreSQL server it started (with the server's CPU in the paired figure), each with which
    targets it met."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "search", "--spawn", "--messages", "2000", "--users", "10", "--paired", "2000",
         "--queries", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["scenario"] == "search" and record["spawn"] is True and record["messages"] == 2000
    assert set(record["backends"]) == {"sqlite", "postgresql"}
    for name, one in record["backends"].items():
        assert one["backend"] == name and one["messages"] == 2000 and 0 < one["u0_messages"] < 2000
        assert set(one["latency_u0"]) == set(one["latency_admin"]) == {"cjk_1", "cjk_2", "latin_word", "mixed"}
        assert set(one["targets_met"]) >= {"u0_p99_le_50ms", "admin_p99_le_50ms", "index_cpu_ratio_le_1.15"}
    # The server's CPU is added to this process's: 1,000 messages a half, so that the server's share is
    # more than /proc's clock ticks of 10 ms (400 messages once gave the same figure with and without it).
    server_side = record["backends"]["postgresql"]["index_cpu_us_per_msg"]
    assert server_side["with_server_us"] > server_side["with_us"] > 0
    assert "with_server_us" not in record["backends"]["sqlite"]["index_cpu_us_per_msg"]


@pytest.mark.parametrize("unindexed", [False, True])
def test_pairs_chinese_text_is_indexed_unless_carried_unindexed(tmp_path: Path, unindexed: bool) -> None:
    """``--text zh`` sends Chinese text in ``searchable_content``, so every message gets a search index row;
    ``--unindexed`` carries the same text in ``content``, so none does (what ``bench search --send-path`` pairs)."""
    import msgpack

    extra = ["--unindexed"] if unindexed else []
    done = subprocess.run(
        [sys.executable, "-m", "bench", "pairs", "--pairs", "4", "--window", "2", "--text", "zh", *extra, *SHORT,
         "--keep-data"],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["params"]["text"] == "zh" and record["params"]["unindexed"] is unindexed
    assert record["delivered"] == record["acked"] > 0 and record["errors"] == 0
    kept = Path(re.search(r"kept in (\S+)", done.stderr).group(1))  # type: ignore[union-attr]
    try:
        with closing(sqlite3.connect(kept / "ember.db")) as db:
            messages = db.execute("SELECT count(*) FROM messages").fetchone()[0]
            indexed = sum(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("message_search", "search_recent"))
            content = msgpack.unpackb(db.execute("SELECT content FROM messages ORDER BY message_id DESC").fetchone()[0])
    finally:
        shutil.rmtree(kept)
    assert messages >= record["acked"]
    assert indexed == (0 if unindexed else messages)
    text = content["content" if unindexed else "searchable_content"]
    assert "searchable_content" not in content if unindexed else "content" not in content
    assert any("\u4e00" <= char <= "\u9fff" for char in text) and len(text.encode()) <= 100


def test_search_send_path_pairs_indexed_and_unindexed_runs() -> None:
    """``python -m bench search --send-path`` runs bench pairs --text zh with and without the index in turn."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "search", "--send-path", "--runs", "1", "--load", "rate_2000", "--pairs",
         "4", "--duration", "1", "--warmup", "0.3"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["scenario"] == "search-send-path" and record["backend"] == "sqlite"
    load = record["loads"]["rate_2000"]
    assert set(record["loads"]) == {"rate_2000"} and load["acked"] > 0 and load["undelivered"] == 0
    assert load["indexed_cpu_us_per_msg"] > 0 and load["unindexed_cpu_us_per_msg"] > 0
    assert load["ratio"] == load["pair_ratios"][0] > 0
    assert record["met"] == {"rate_2000": load["ratio"] <= record["target_ratio"]}
