"""The gateway's own CPU at the edge of a private send, without sockets or storage (issue 27):

    python -m bench.sendedge [--sends 20000] [--rounds 3]

Feeds ``--sends`` sealed ``send_message`` REQUESTs, as ``bench pairs`` sends them (a 100-byte text), to a real
``ServerConnection`` after a real handshake, and times with ``process_time`` each step the trio thread takes
for one send apart from storage: ``receive_data`` (frame split, AES-GCM open, MessagePack decode, the edge
checks: the request), ``MessageService.outgoing`` on the decoded params (every send rule's reading of the
fields: the message), sealing the ack RESPONSE, and packing + sealing one ``msg`` push (the push). Prints one
JSON line with µs per send for each step, the median of ``--rounds`` rounds. The steps run over chunks
of 200 sends with the gateway's collector settings (``gateway.cli._tune_gc``), so that garbage dies young. Run it alternately in two
worktrees to compare them: it measures the code, warm, in a busy loop (at light load each step costs two to
four times this: bench/RESULTS.md "The floor"). The whole path is ``bench pairs`` / ``bench light``.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from typing import Any

from gateway.cli import GC_YOUNG_THRESHOLD
from gateway.clock import Clock
from gateway.config import Config
from gateway.domain.messaging import MessageService
from protocol import codec, events
from protocol.codes import ErrorCode
from protocol.connection import ClientConnection, ServerConnection, encode_msg_push

_SECRET = bytes(range(32))
_TEXT = "x" * 100


def _pair() -> tuple[ServerConnection, ClientConnection]:
    server = ServerConnection(server_nonce=b"S" * 32, server_time_ms=1_000)
    client = ClientConnection(
        user_id="s0",
        client_id="s0-dev",
        platform=2,
        secret=_SECRET,
        credential=b"c" * 32,
        client_nonce=b"C" * 32,
    )
    client.receive_data(server.hello())
    server.receive_data(client.connect(2_000))
    if server.authenticate(_SECRET) is None:
        raise SystemExit("bench.sendedge: the handshake failed")
    client.receive_data(server.accept(server_time_ms=3_000, keepalive_seconds=60, heads={}))
    return server, client


#: Sends per chunk: each step runs over a chunk, then the chunk is dropped, so that what a step allocates dies
#: young as in the gateway (holding 20,000 decoded requests made the collector's passes a third of the figure).
_CHUNK = 200


def _round(sends: int) -> dict[str, float]:
    server, client = _pair()
    frames = [
        client.request(
            "send_message",
            {
                "conv": {"type": 0, "target": f"r{i % 50}", "line": 0},
                "content": {"type": 1, "searchable_content": _TEXT},
            },
        )[1]
        for i in range(sends)
    ]
    service = MessageService(Config.default(), None, None, Clock())  # type: ignore[arg-type]  # no store: never sends
    # As the gateway runs (gateway.cli._tune_gc): what exists at the start frozen, young collections rarer.
    gc.collect()
    gc.freeze()
    threshold = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *threshold[1:])
    took = dict.fromkeys(("request_us", "message_us", "ack_us", "push_us"), 0.0)
    clock = time.process_time
    decoded = seq = 0
    try:
        for first in range(0, sends, _CHUNK):
            chunk = frames[first : first + _CHUNK]
            started = clock()
            received = [server.receive_data(frame) for frame in chunk]
            took["request_us"] += clock() - started
            requests = [event for batch in received for event in batch if isinstance(event, events.Request)]
            decoded += len(requests)
            started = clock()
            messages = [service.outgoing("s0", request.params) for request in requests]
            took["message_us"] += clock() - started
            ack = {"message_id": messages[0].message_id, "server_time": messages[0].server_time, "seq": 1}
            started = clock()
            for request in requests:
                server.response(request.request_id, ErrorCode.SUCCESS, ack)
            took["ack_us"] += clock() - started
            started = clock()
            for msg in messages:
                seq += 1
                server.notify_body(encode_msg_push(seq, codec.pack(msg.to_wire())))
            took["push_us"] += clock() - started
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
    if decoded != sends:
        raise SystemExit(f"bench.sendedge: {decoded} of {sends} requests decoded")
    return {key: seconds * 1e6 / sends for key, seconds in took.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sendedge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=20_000, help="sends per round (default 20000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is printed (default 3)")
    args = parser.parse_args(argv)
    if args.sends < 1 or args.rounds < 1:
        parser.error("--sends and --rounds are at least 1")
    rounds = [_round(args.sends) for _ in range(args.rounds)]
    line: dict[str, Any] = {"scenario": "sendedge", "sends": args.sends, "rounds": args.rounds}
    for key in rounds[0]:
        line[key] = round(statistics.median(r[key] for r in rounds), 2)
    line["total_us"] = round(sum(line[key] for key in rounds[0]), 2)
    print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
