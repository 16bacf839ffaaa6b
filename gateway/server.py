"""The gateway process: storage, the client TCP listener and the admin API under one trio nursery.

Shutdown is graceful: on SIGINT/SIGTERM (or cancellation) the listeners stop,
live connections close, and only then does the storage writer stop, after
committing everything already handed to it — an acknowledged write is never
lost, and a write whose ack did not go out is resent by the client (it carries
an idempotency id) after it reconnects.
"""

from __future__ import annotations

import functools
import logging
import signal
from dataclasses import dataclass

import trio

import storage
from gateway.clock import Clock
from gateway.config import Config
from gateway.connection import GatewayConnection
from gateway.messaging import MessageService
from gateway.outbox import cork
from gateway.router import Router
from gateway.services import Services
from gateway.sessions import SessionService

log = logging.getLogger("ember.server")


@dataclass(frozen=True)
class Running:
    """What ``serve`` reports once it listens: where, and the live services (for tests and tools)."""

    host: str
    port: int
    admin_url: str
    services: Services


async def serve(
    config: Config,
    *,
    clock: Clock | None = None,
    handle_signals: bool = False,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the gateway until cancelled (or, with ``handle_signals``, until SIGINT/SIGTERM)."""
    from gateway.admin.app import create_admin_app, serve_admin  # FastAPI is heavy; keep it off other paths

    clock = clock or Clock()
    async with storage.open_store(
        config.storage.path,
        synchronous=config.storage.synchronous,
        callback_context=cork,
        commit_delay_ms=config.storage.commit_delay_ms,
    ) as store:
        router = Router()
        sessions = SessionService(config, store, router, clock)
        messages = MessageService(config, store, router, clock)
        messages.ids.seed(await store.last_message_id())
        services = Services(config, store, clock, router, sessions, messages, config.token.key_bytes())
        try:
            async with trio.open_nursery() as nursery:
                if handle_signals:
                    nursery.start_soon(_stop_on_signal, nursery.cancel_scope)
                nursery.start_soon(_release_idle_keys, router)
                nursery.start_soon(_write_last_seen, sessions)
                handler = functools.partial(_serve_connection, services)
                listeners = await nursery.start(
                    functools.partial(trio.serve_tcp, handler, config.server.port, host=config.server.host)
                )
                host, port = listeners[0].socket.getsockname()[:2]

                app = create_admin_app(
                    config=config,
                    store=store,
                    sessions=sessions,
                    router=router,
                    clock=clock,
                    messages=messages,
                )
                urls = await nursery.start(
                    functools.partial(
                        serve_admin,
                        app,
                        config.admin.host,
                        config.admin.port,
                        shutdown_trigger=trio.sleep_forever,
                    )
                )
                admin_url = urls[0]
                log.info(
                    "listening gateway=%s:%d admin=%s storage=%s", host, port, admin_url, config.storage.path
                )
                task_status.started(Running(host, port, admin_url, services))
        finally:
            # The connections have ended: their disconnect times go to last_seen before the store closes.
            with trio.CancelScope(shield=True):
                await _flush_last_seen(sessions)
    log.info("stopped; storage closed after committing pending writes")


async def _serve_connection(services: Services, stream: trio.SocketStream) -> None:
    try:
        await GatewayConnection(services, stream).serve()
    except Exception:  # noqa: BLE001 - one connection's bug must never stop the listener
        log.exception("connection task failed")


#: A connection that has sent nothing for this long drops its ciphers' key schedules (~5 KiB, about a
#: third of an idle connection's memory); the next frame either way rebuilds them in about a microsecond.
IDLE_KEY_RELEASE_SECONDS = 5.0


async def _release_idle_keys(router: Router) -> None:
    while True:
        await trio.sleep(IDLE_KEY_RELEASE_SECONDS)
        quiet_since = trio.current_time() - IDLE_KEY_RELEASE_SECONDS
        for conn in router.all_connections():
            if conn.last_active < quiet_since:
                conn.release_idle_keys()


#: How often disconnect times are written to last_seen (see SessionService.went_offline).
LAST_SEEN_FLUSH_SECONDS = 1.0


async def _write_last_seen(sessions: SessionService) -> None:
    while True:
        await trio.sleep(LAST_SEEN_FLUSH_SECONDS)
        await _flush_last_seen(sessions)


async def _flush_last_seen(sessions: SessionService) -> None:
    try:
        await sessions.flush_last_seen()
    except Exception as exc:  # noqa: BLE001 - last_seen is informative; a failed write must not stop the server
        log.warning("writing last_seen failed: %s", type(exc).__name__)


async def _stop_on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s: shutting down", signal.Signals(signum).name)
            scope.cancel()
            return
