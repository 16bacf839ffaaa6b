"""This node's ear: LISTEN on its channel on a dedicated connection in a thread, notices handed to trio.

psycopg 3's async API is asyncio-only, so the listener is a plain thread blocked in psycopg's synchronous
``Connection.notifies``. It decodes the payloads there (off the event loop) and hands what one read brought to
trio with ``trio.from_thread.run_sync``: the thread waits for the loop to take them (so notices keep their
order, and a busy loop slows the thread rather than growing a queue), while the loop only ever does
``send_nowait`` into a bounded memory channel, so trio never blocks.

Notices are hints (``notices``), so losing one must cost a pull, never a message. There are two gaps:
- the connection breaks (the server restarted, the backend was terminated, the network): the thread
  reconnects by itself with exponential backoff (50 ms doubling to 2 s) and LISTENs again; notices sent
  meanwhile are gone;
- the channel is full (the node's consumer fell behind ``capacity`` notices): that notice is dropped.
After either, ``on_resync`` is called on the trio loop (once per gap, after the LISTEN is back in place
for a reconnect), and the node tells its clients to pull: whatever was committed before they pull
reaches them, and whatever commits after is notified on the LISTEN that is in place again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
import trio
from psycopg import sql

from gateway.cluster.postgres.database import connect
from gateway.cluster.postgres.notices import Notice, channel_name, decode


class NoticeListener:
    """``async with trio.open_nursery() as n: await n.start(listener.run)``, then read ``listener.notices``.

    Counters (for /metrics): ``received``, ``dropped`` (queue full), ``undecodable``, ``reconnects``,
    ``resyncs``. ``backend_pid`` is the listening connection's server process (tests terminate it).
    """

    def __init__(
        self,
        url: str,
        node_id: int,
        on_resync: Callable[[], None],
        *,
        capacity: int = 4096,
        backoff_first: float = 0.05,
        backoff_max: float = 2.0,
        poll_seconds: float = 0.25,
    ) -> None:
        self._url = url
        self._channel = channel_name(node_id)
        self._on_resync = on_resync
        self._backoff_first = backoff_first
        self._backoff_max = backoff_max
        self._poll_seconds = poll_seconds  # how soon the thread notices it is told to stop
        self._send, self.notices = trio.open_memory_channel[Notice](capacity)
        self._stop = threading.Event()
        self._listening = trio.Event()
        self._resync_wanted = trio.Event()
        self.backend_pid: int | None = None
        self.received = self.dropped = self.undecodable = self.reconnects = self.resyncs = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; ``started`` once the first LISTEN is in place."""
        token = trio.lowlevel.current_trio_token()
        thread = threading.Thread(
            target=self._listen_forever, args=(token,), name=f"{self._channel}-listener", daemon=True
        )
        thread.start()
        try:
            await self._listening.wait()
            task_status.started()
            while True:
                await self._resync_wanted.wait()
                self._resync_wanted = trio.Event()
                self.resyncs += 1
                self._on_resync()
        finally:
            self._stop.set()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(thread.join)
            self._send.close()

    # --- on the trio loop (called from the thread through trio.from_thread) ---------------------------

    def _accept(self, decoded: list[Notice | None]) -> None:
        send = self._send
        for notice in decoded:
            if notice is None:
                self.undecodable += 1
                continue
            try:
                send.send_nowait(notice)
                self.received += 1
            except trio.WouldBlock:
                self.dropped += 1
                self._resync_wanted.set()
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return  # shutting down: nobody reads any more

    def _listening_again(self, pid: int, reconnected: bool) -> None:
        self.backend_pid = pid
        self._listening.set()
        if reconnected:
            self.reconnects += 1
            self._resync_wanted.set()

    # --- the thread ---------------------------------------------------------------------------------

    def _listen_forever(self, token: trio.lowlevel.TrioToken) -> None:
        delay = self._backoff_first
        listened_before = False
        while not self._stop.is_set():
            try:
                conn = connect(self._url, application_name=self._channel)
            except psycopg.Error:
                self._stop.wait(delay)
                delay = min(delay * 2, self._backoff_max)
                continue
            try:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                trio.from_thread.run_sync(
                    self._listening_again, conn.info.backend_pid, listened_before, trio_token=token
                )
                listened_before = True
                delay = self._backoff_first
                while not self._stop.is_set():
                    # Everything that came in one read (stop_after=1 still yields a whole packet's worth):
                    # one hand-off to trio per read, not per notice, is what lets a burst through.
                    arrived = [notify.payload for notify in conn.notifies(timeout=self._poll_seconds, stop_after=1)]
                    if arrived:
                        decoded = [decode(payload) for payload in arrived]
                        trio.from_thread.run_sync(self._accept, decoded, trio_token=token)
            except psycopg.Error:
                pass  # the connection is gone: reconnect below, and resync once listening again
            except trio.RunFinishedError:
                return  # the trio run is over: nobody to hand notices to
            finally:
                conn.close()
            self._stop.wait(delay)
            delay = min(delay * 2, self._backoff_max)
