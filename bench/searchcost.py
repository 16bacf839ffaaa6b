"""What the search index costs per message on the writer, by kind of text, and what a query costs (issue 26).

    python -m bench.searchcost [--messages 20000] [--users 200] [--seed 1]

Stores ``--messages`` private messages through the real send group (``storage.sends.send_message_group``,
batches of 20, one transaction each, the log merged as the writer does) into a fresh SQLite file, once with
the search index and once without it (its rows, ``message_search``, and ``inbox_by_message`` dropped before
the run), for three kinds of text of ~100 bytes: the ``bench pairs`` filler (digits and one long word),
English words, and Chinese with some English. Prints one JSON line per kind: writer CPU µs per message with
and without the index, and the ratio; then search latency p50/p99 over the indexed database for one- and
two-character Chinese queries and English words, by a user holding about messages/users·2 messages.
A measurement of the storage layer alone (no sockets, no trio): the whole send path is ``bench pairs``.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from storage import inboxes as inboxes_module
from storage import messages as stored
from storage import sends
from storage.inboxes import InboxState
from storage.messages import Conversation, Outgoing
from storage.schema import migrate
from storage.search import SearchQuery, parse_keyword
from storage.sends import SendPolicy, send_message_group

_HAN = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严"
_ZIPF = [1 / rank for rank in range(1, len(_HAN) + 1)]
_WORDS = "meeting tomorrow report budget lunch project review release plan team call notes update draft launch".split()


def _text(kind: str, rng: random.Random, n: int) -> str:
    if kind == "filler":  # what bench pairs sends: "<ns> <pair> <n> " and x up to 100 bytes
        head = f"{time.time_ns()} {n % 50} {n} "
        return head + "x" * (100 - len(head))
    if kind == "english":
        return " ".join(rng.choice(_WORDS) for _ in range(14))[:100]
    # Chinese, ~30 characters (~90 bytes), an English word or a number in some; characters drawn by a Zipf
    # law over the ~700 commonest (rank r with weight 1/r), closer to real text than a uniform draw
    parts = ["".join(rng.choices(_HAN, _ZIPF, k=rng.randint(2, 8))) for _ in range(5)]
    if rng.random() < 0.5:
        parts.insert(rng.randrange(len(parts)), rng.choice(_WORDS))
    if rng.random() < 0.3:
        parts.insert(rng.randrange(len(parts)), f"{rng.randint(1, 12)}点")
    return "，".join(parts)


def chinese_text(rng: random.Random) -> str:
    """One message of ``_text``'s Chinese kind (for ``bench pairs --text zh``)."""
    return _text("zh", rng, 0)


def _fill(path: Path, kind: str, count: int, users: int, seed: int, indexed: bool, inbox_index: bool = True) -> float:
    """Writer CPU µs per message to store ``count`` messages; without ``indexed``, as before search existed:
    no tokens made (``index_row`` answers None), no FTS5 tables and no merge into them, no second inbox
    index; without
    ``inbox_index``, only the second inbox index is left out (what it costs at the log's merges)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    migrate(conn)
    real_index_row, real_merge = sends.index_row, inboxes_module.merge_recent
    if not inbox_index:
        conn.execute("DROP INDEX inbox_by_message")
    if not indexed:
        conn.execute("DROP TABLE message_search")
        conn.execute("DROP TABLE search_recent")
        inboxes_module.merge_recent = lambda tx: None
        if inbox_index:
            conn.execute("DROP INDEX inbox_by_message")
        sends.index_row = lambda message_id, content: None
    try:
        for u in range(users):
            conn.execute("INSERT INTO users (user_id, created_at, updated_at) VALUES (?, 0, 0)", (f"u{u}",))
        rng = random.Random(seed)
        inboxes, policy, cpu = InboxState(), SendPolicy(), 0.0
        for start in range(0, count, 20):
            ops = []
            for n in range(start, min(count, start + 20)):
                sender, recipient = rng.sample(range(users), 2)
                content = {"type": 1, "searchable_content": _text(kind, rng, n), "persist_flag": 3}
                msg = Outgoing(n + 1, 1_700_000_000_000 + n, Conversation(0, f"u{recipient}"), f"u{sender}",
                               content, 3)  # fmt: skip
                ops.append((inboxes, msg, policy))
            began = time.process_time()
            conn.execute("BEGIN")
            send_message_group(conn, ops)
            conn.execute("COMMIT")
            cpu += time.process_time() - began
        return cpu * 1e6 / count
    finally:
        sends.index_row, inboxes_module.merge_recent = real_index_row, real_merge
        conn.close()


def query_latency(conn: Any, user: str | None, keywords: list[str]) -> dict[str, float]:
    times = []
    for keyword in keywords:
        query = SearchQuery(parse_keyword(keyword), 20, user_id=user)
        began = time.perf_counter()
        stored.search(conn, query)
        times.append((time.perf_counter() - began) * 1000)
    times.sort()
    return {"p50_ms": round(times[len(times) // 2], 2), "p99_ms": round(times[max(0, int(len(times) * 0.99) - 1)], 2)}


def _latencies(path: Path, user: str, keywords: list[str]) -> dict[str, float]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return query_latency(conn, user, keywords)
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.searchcost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("filler", "english", "chinese"):
            without = _fill(Path(tmp) / f"{kind}-plain.db", kind, args.messages, args.users, args.seed, False)
            fts_only = _fill(Path(tmp) / f"{kind}-fts.db", kind, args.messages, args.users, args.seed, True, False)
            with_index = _fill(Path(tmp) / f"{kind}.db", kind, args.messages, args.users, args.seed, True)
            print(json.dumps({
                "kind": kind, "messages": args.messages, "writer_cpu_us_per_msg_without": round(without, 1),
                "writer_cpu_us_per_msg_fts_only": round(fts_only, 1),
                "writer_cpu_us_per_msg_with": round(with_index, 1), "ratio": round(with_index / without, 2),
            }), flush=True)  # fmt: skip
        rng = random.Random(args.seed + 1)
        db = Path(tmp) / "chinese.db"
        queries = {
            "chinese_1": [rng.choice(_HAN[:200]) for _ in range(200)],
            "chinese_2": [rng.choice(_HAN[:60]) + rng.choice(_HAN[:60]) for _ in range(200)],
            "english_word": [rng.choice(_WORDS) for _ in range(200)],
        }
        result = {name: _latencies(db, "u7", keys) for name, keys in queries.items()}
        print(json.dumps({"search_latency": result, "messages": args.messages, "users": args.users}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
