"""What the WebSocket layer costs per message, next to the protocol's own cryptography.

``python -m bench.wsframing``: wsproto's server ``Connection`` receiving one masked binary message of a
frame's size as ``bench pairs`` sends it (200 bytes), and sending one (unmasked), against an AES-GCM seal of
the same size; interleaved, best of 7 runs of 5,000 each, in microseconds. No gateway, no sockets: the figure
the WebSocket transport adds per frame (gateway/net/websocket.py) on top of TCP's.
"""

from __future__ import annotations

import json
import os
import timeit

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage

FRAME_BYTES = 200
RUNS, NUMBER = 7, 5000


def measure() -> dict[str, float]:
    frame = b"EM" + os.urandom(FRAME_BYTES - 2)  # the layer reads no content
    server = Connection(ConnectionType.SERVER)
    masked = Connection(ConnectionType.CLIENT).send(BytesMessage(data=frame))
    aead, nonce, plaintext = AESGCM(os.urandom(32)), os.urandom(12), os.urandom(FRAME_BYTES - 30)

    def receive() -> None:
        server.receive_data(masked)
        for _ in server.events():
            pass

    def send() -> None:
        server.send(BytesMessage(data=frame))

    def seal() -> None:
        aead.encrypt(nonce, plaintext, frame[:14])

    best = {"ws_receive_us": float("inf"), "ws_send_us": float("inf"), "aesgcm_seal_us": float("inf")}
    for _ in range(RUNS):
        for name, fn in (("ws_receive_us", receive), ("ws_send_us", send), ("aesgcm_seal_us", seal)):
            best[name] = min(best[name], timeit.timeit(fn, number=NUMBER) / NUMBER * 1e6)
    return {name: round(value, 2) for name, value in best.items()}


if __name__ == "__main__":
    print(json.dumps({"frame_bytes": FRAME_BYTES, **measure()}))
