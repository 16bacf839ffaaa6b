"""A real HTTP/1.1 receiver on 127.0.0.1 for webhook tests: raw trio sockets, keep-alive, three behaviours.

``mode``: "ok" answers 204, "fail" answers 500, "hang" reads the request and never answers; with
``answer`` given, "ok" answers 200 with the body it returns for the request (a robot's reply). Each
request is recorded (headers lowercased, body bytes, parsed JSON) and wakes ``wait_for``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from gateway.signing import sign


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def signed_by(self, secret: str) -> bool:
        h = self.headers
        return sign(secret.encode(), h["x-nonce"], h["x-timestamp"], self.body) == h["x-sign"]


class Receiver:
    def __init__(self, mode: str = "ok", answer: Callable[[Received], bytes] | None = None) -> None:
        self.mode = mode
        self.answer = answer
        self.requests: list[Received] = []
        self.connections = 0
        self.port = 0
        self._changed = trio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def bodies(self) -> list[Any]:
        return [r.json for r in self.requests]

    async def wait_for(self, count: int) -> list[Received]:
        with trio.fail_after(10):
            while len(self.requests) < count:
                self._changed = trio.Event()
                await self._changed.wait()
        return self.requests

    async def start(self, nursery: trio.Nursery) -> Receiver:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        nursery.start_soon(trio.serve_listeners, self._serve, listeners)
        return self

    async def _serve(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                while len(buffer) < length:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buffer += data
                body, buffer = buffer[:length], buffer[length:]
                self.requests.append(Received(path, headers, body))
                self._changed.set()
                if self.mode == "hang":
                    await trio.sleep_forever()
                if self.mode == "ok" and self.answer is not None:
                    reply = self.answer(self.requests[-1])
                    await stream.send_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                        + str(len(reply)).encode() + b"\r\n\r\n" + reply
                    )
                    continue
                status = b"204 No Content" if self.mode == "ok" else b"500 Internal Server Error"
                await stream.send_all(b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\n\r\n")
        except trio.BrokenResourceError:
            return
        finally:
            await stream.aclose()
