"""The gateway process: storage, the client listeners (TCP; WebSocket when server.ws_port is set) and the
admin API under one trio nursery.

Shutdown is graceful: on SIGINT/SIGTERM (or cancellation) the listeners stop,
live connections answer the requests they have read (sends included: their
acks follow their commits) and close, and only then does the storage writer
stop, after committing everything already handed to it — an acknowledged write
is never lost, and a write whose ack did not go out within
``server.shutdown_seconds`` is resent by the client (it carries an idempotency
id) after it reconnects.
"""

from __future__ import annotations

import errno
import functools
import logging
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

import storage
from gateway.clock import Clock
from gateway.config import Config
from gateway.connection import GatewayConnection, report_unlogged_cuts
from gateway.delivery import Delivery
from gateway.domain.channels import ChannelService
from gateway.domain.chatrooms import ChatroomService
from gateway.domain.groups import GroupService
from gateway.domain.messaging import MessageService
from gateway.domain.robots import RobotService
from gateway.domain.sessions import SessionService
from gateway.net.transport import TcpTransport
from gateway.net.webchat import WebChat
from gateway.net.websocket import (
    UPGRADE_ACCEPTED,
    WsSettings,
    accept_websocket,
    parse_networks,
    parse_origins,
)
from gateway.outbox import cork
from gateway.reads import HAVE_EPOLL, ReadPoller
from gateway.services import Services
from gateway.webhooks import Webhooks
from protocol.codes import ConnectionStatus, platform_class
from storage.postgres.url import mask_password

log = logging.getLogger("ember.server")


@dataclass(frozen=True)
class Running:
    """What ``serve`` reports once it listens: where, and the live services (for tests and tools)."""

    host: str
    port: int
    admin_url: str
    services: Services
    ws_port: int = 0  # the WebSocket listener's port (0: off, server.ws_port)


async def serve(
    config: Config,
    *,
    clock: Clock | None = None,
    handle_signals: bool = False,
    read_poller: bool = HAVE_EPOLL,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the gateway until cancelled (or, with ``handle_signals``, until SIGINT/SIGTERM).

    ``read_poller=False`` (the default where ``select.epoll`` is missing, i.e. off Linux) reads each
    connection in its own task waiting on trio instead of the shared ``ReadPoller``.
    """
    clock = clock or Clock()
    # The web chat page's files, read before anything opens: a broken install fails here, clearly.
    webchat = WebChat.load() if config.server.ws_port and config.server.ws_demo else None
    cluster = config.server.cluster
    before_commit = None
    if cluster:
        from gateway.cluster.postgres.wiring import (  # psycopg: a cluster's only
            NoticesSent,
            before_commit_hook,
        )

        sent = NoticesSent()
        before_commit = before_commit_hook(config.server.node_id, sent)
    async with storage.open_store(
        config.storage.path,
        synchronous=config.storage.synchronous,
        callback_context=cork,
        commit_delay_ms=config.storage.commit_delay_ms,
        max_queued=config.storage.max_queued_operations,
        server_key=config.token.key_bytes(),  # session secrets are sealed under it (storage.sealing)
        url=config.storage.url,  # empty: SQLite at storage.path
        cluster=cluster,
        before_commit=before_commit,
    ) as store:
        if cluster:
            async with _cluster_node(config, store, sent) as delivery:
                await _serve_with(config, store, delivery, clock, handle_signals, read_poller, task_status, webchat)
        else:
            delivery = Delivery.single_node()  # one process: its own connections are all there is
            await _serve_with(config, store, delivery, clock, handle_signals, read_poller, task_status, webchat)
    log.info("stopped; storage closed after committing pending writes")


@asynccontextmanager
async def _cluster_node(config: Config, store: storage.Store, sent: Any) -> AsyncIterator[Delivery]:
    """This gateway as a cluster node (``server.cluster``): the node's lease, presence and notices run
    beside the services; a node id held by a live node ends the start with one line (a StorageError)."""
    from gateway.cluster.local import Router
    from gateway.cluster.postgres.badges import ClusterBadges
    from gateway.cluster.postgres.node import ClusterNode
    from gateway.cluster.postgres.nodes import NodeIdTaken
    from gateway.cluster.postgres.nonces import ClusterNonces
    from gateway.cluster.postgres.rooms import ClusterRooms
    from gateway.cluster.postgres.wiring import ClusterSeams, InboxPusher, cluster_figures

    router = Router()
    pusher = InboxPusher(store, router)
    # A room keeps its history's worth of messages, and no fewer than a member's queue, for late readers.
    rooms = ClusterRooms(
        config.storage.url, config.server.node_id, keep=max(config.chatroom.history_size, config.chatroom.member_queue)
    )

    def resync() -> None:
        pusher.on_resync()
        rooms.resync()

    def lease_lost() -> None:
        # The other nodes count this one dead: its devices go elsewhere, its writes answer 250.
        log.error("cluster: the lease of server.node_id %d is lost; telling clients to go elsewhere", config.server.node_id)
        store.writer.suspended = "this cluster node lost its lease"
        router.go_away(1000, config.server.shutdown_redirect)

    node = ClusterNode(
        config.storage.url,
        config.server.node_id,
        router,
        on_inbox=pusher.on_inbox,
        on_resync=resync,
        on_lease_lost=lease_lost,
        # The one-device rule's class, so a registration re-sends a kick a listener gap lost (presence.register).
        kick_platforms=(lambda platform: None) if config.server.multi_endpoint else platform_class,
        kick_status=(
            ConnectionStatus.KICKED_OFF if config.server.client_support_kickoff_event
            else ConnectionStatus.SECRET_KEY_MISMATCH
        ),
    )  # fmt: skip
    node.on_room_notice = rooms.take
    seams = ClusterSeams(node, router)
    async with trio.open_nursery() as nursery:
        try:
            await nursery.start(node.run)
        except NodeIdTaken as exc:
            raise storage.StorageError(str(exc)) from None
        nursery.start_soon(pusher.run)
        await nursery.start(rooms.run)
        nonces = ClusterNonces(config.storage.url)
        await nursery.start(nonces.run)
        log.info("cluster node %d joined", config.server.node_id)
        delivery = Delivery(router, presence=seams, bus=seams)
        delivery.cluster_figures = functools.partial(cluster_figures, node, pusher, sent, rooms)
        delivery.room_relay = rooms
        delivery.admin_nonces = nonces
        delivery.badges = ClusterBadges(node)
        yield delivery
        nursery.cancel_scope.cancel()


async def _serve_with(
    config: Config,
    store: storage.Store,
    delivery: Delivery,
    clock: Clock,
    handle_signals: bool,
    read_poller: bool,
    task_status: trio.TaskStatus[Running],
    webchat: WebChat | None,
) -> None:
    """The services and listeners over ``store``, with ``delivery`` one node's or a cluster node's."""
    sessions = SessionService(config, store, delivery, clock)
    messages = MessageService(config, store, delivery, clock)
    messages.ids.seed(await store.last_message_id())
    webhooks = Webhooks(config, clock, store, delivery)
    services = Services(
        config, store, clock, delivery, sessions, messages, config.token.key_bytes(), webhooks=webhooks
    )
    services.groups = GroupService(config, store, messages, clock)
    services.chatrooms = ChatroomService(config, store, delivery, clock)
    if delivery.room_relay is not None:
        services.chatrooms.use_relay(delivery.room_relay)
    await services.chatrooms.load()
    services.channels = ChannelService(config, store, messages, services.relations, clock)
    services.channels.callbacks.sink = webhooks.channel_message
    services.robots = RobotService(config, store, messages, sessions, clock)
    services.robots.webhooks = webhooks
    await services.robots.load()
    messages.metrics = services.metrics
    messages.webhooks = webhooks if webhooks.watch_messages else None
    try:
        if read_poller:
            with ReadPoller(around_pass=store.writer.gathering) as reads:
                await _run(config, services, reads, handle_signals, task_status, webchat)
        else:
            log.info("no read poller (select.epoll %s): one task per connection reads", "off" if HAVE_EPOLL else "missing")
            await _run(config, services, None, handle_signals, task_status, webchat)
    finally:
        # The connections have ended: their disconnect times go to last_seen before the store closes.
        with trio.CancelScope(shield=True):
            await _flush_last_seen(sessions)


async def _run(
    config: Config,
    services: Services,
    reads: ReadPoller | None,
    handle_signals: bool,
    task_status: trio.TaskStatus[Running],
    webchat: WebChat | None = None,
) -> None:
    """The listeners, the admin API and the background tasks, until cancelled."""
    from gateway.admin.app import create_admin_app, serve_admin  # FastAPI is heavy; keep it off other paths

    accepting: list[trio.CancelScope] = []  # one per listener: cancelled to stop accepting
    async with trio.open_nursery() as nursery:
        if handle_signals:
            nursery.start_soon(_stop_on_signal, services, nursery.cancel_scope, accepting)
        nursery.start_soon(_release_idle_keys, services.delivery)
        nursery.start_soon(_write_last_seen, services.sessions)
        nursery.start_soon(report_unlogged_cuts, services.outbox_budget)
        nursery.start_soon(services.messages.fanout.run)
        nursery.start_soon(services.tombstones.run)
        await nursery.start(services.webhooks.run)
        if reads is not None:
            nursery.start_soon(reads.run)
        if services.chatrooms is not None:
            await nursery.start(services.chatrooms.run)
        listeners = await trio.open_tcp_listeners(config.server.port, host=config.server.host)
        host, port = listeners[0].socket.getsockname()[:2]
        serve_tcp = functools.partial(_serve_tcp_connection, services, reads)
        for listener in listeners:
            scope = trio.CancelScope()
            accepting.append(scope)
            nursery.start_soon(_serve_clients, listener, scope, serve_tcp)
        ws_port = 0
        if config.server.ws_port:
            ws_listeners = await trio.open_tcp_listeners(config.server.ws_port, host=config.server.ws_host)
            ws_port = ws_listeners[0].socket.getsockname()[1]
            serve_ws = functools.partial(_serve_ws_connection, services, reads, _ws_settings(config, webchat))
            for listener in ws_listeners:
                scope = trio.CancelScope()
                accepting.append(scope)
                nursery.start_soon(_serve_clients, listener, scope, serve_ws)

        app = create_admin_app(
            config=config,
            store=services.store,
            sessions=services.sessions,
            delivery=services.delivery,
            clock=services.clock,
            messages=services.messages,
            relations=services.relations,
            conversations=services.conversations,
            groups=services.groups,
            chatrooms=services.chatrooms,
            channels=services.channels,
            services=services,
            robots=services.robots,
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
        # The database a PostgreSQL URL names, its password masked (storage.url); else the SQLite file.
        where = mask_password(config.storage.url) if config.storage.url else config.storage.path
        log.info(
            "listening gateway=%s:%d admin=%s websocket=%s storage=%s", host, port, admin_url,
            f"{config.server.ws_host}:{ws_port}/ws" + (" page=/" if webchat else "") if ws_port else "off", where,
        )  # fmt: skip
        task_status.started(Running(host, port, admin_url, services, ws_port))


#: accept() errors that only mean the system is short of descriptors or memory: wait, then accept again.
_ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
#: accept() errors that belong to the one pending connection (see accept(2)): skip it.
_ACCEPT_SKIP_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNABORTED", "EPROTO", "EPERM", "ETIMEDOUT", "ECONNRESET", "ENETDOWN", "ENETUNREACH",
        "ENOPROTOOPT", "EHOSTDOWN", "EHOSTUNREACH", "ENONET", "EOPNOTSUPP",
    )
    if hasattr(errno, name)
)  # fmt: skip
#: Most connections accepted per wake-up of the listening socket, so a flood cannot starve the others.
ACCEPT_BATCH = 128


#: Serves one accepted socket (a connection task): TCP's, or WebSocket's upgrade and then the same connection.
ServeOne = Callable[[trio.SocketStream], Awaitable[None]]


async def _serve_clients(listener: trio.SocketListener, accepting: trio.CancelScope, serve_one: ServeOne) -> None:
    """Accept client connections until cancelled, each served by its own task.

    Not ``trio.serve_tcp``: it accepts one connection per pass of trio's scheduler (a checkpoint after
    each accept) and wraps each handler in a task frame that closes the stream a second time. Here one
    wake-up accepts every connection waiting, so their handshakes also share the passes that follow (and
    their storage reads share a batch). Measured with ``bench connect --concurrency 50``: about 30 % less
    server CPU per handshake.
    """
    # The listener's socket as a plain non-blocking socket, for accept() without an await per connection.
    trio_sock = listener.socket
    sock = socket.socket(trio_sock.family, trio_sock.type, trio_sock.proto, fileno=trio_sock.detach())
    sock.setblocking(False)
    async with trio.open_nursery() as connections:
        try:
            with accepting:  # cancelled at shutdown: accept no more, let the connections end
                await _accept_loop(sock, connections, serve_one)
        finally:
            # Stop accepting at once; the connections then end by themselves or as the nursery is cancelled.
            trio.lowlevel.notify_closing(sock)
            sock.close()


async def _accept_loop(sock: socket.socket, connections: trio.Nursery, serve_one: ServeOne) -> None:
    """Each wake-up of the listening socket accepts every connection waiting, up to ACCEPT_BATCH."""
    while True:
        await trio.lowlevel.wait_readable(sock)
        for _ in range(ACCEPT_BATCH):
            try:
                client, _ = sock.accept()
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in _ACCEPT_SKIP_ERRNOS:
                    continue
                if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                    raise
                log.error("accept failed: %s; retrying in 0.1 s", errno.errorcode[exc.errno])
                await trio.sleep(0.1)
                break
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(client))
            connections.start_soon(serve_one, stream)


async def _serve_tcp_connection(services: Services, reads: ReadPoller | None, stream: trio.SocketStream) -> None:
    try:
        await GatewayConnection(services, TcpTransport(stream), reads).serve()  # closes the stream when it ends
    except Exception:  # noqa: BLE001 - one connection's bug must never stop the listener
        log.exception("connection task failed")
        await trio.aclose_forcefully(stream)


def _ws_settings(config: Config, webchat: WebChat | None = None) -> WsSettings:
    from protocol.frames import HEADER_SIZE

    server = config.server
    return WsSettings(
        allowed_origins=parse_origins(server.ws_allowed_origins),
        trusted_proxies=parse_networks(server.trusted_proxies),
        max_message_bytes=HEADER_SIZE + server.max_frame_bytes,  # one frame, header included
        webchat=webchat,
    )


async def _serve_ws_connection(
    services: Services, reads: ReadPoller | None, settings: WsSettings, stream: trio.SocketStream
) -> None:
    """The HTTP upgrade (path, Origin, WebSocket headers), then the same connection as over TCP: its HELLO
    is the first binary message. One deadline from the accept covers the upgrade and the handshake."""
    accepted_at = trio.current_time()
    metrics = services.metrics
    try:
        deadline = accepted_at + services.config.server.handshake_timeout_seconds
        upgrade = await accept_websocket(stream, settings, deadline)
        metrics.ws_upgrades[upgrade.result] = metrics.ws_upgrades.get(upgrade.result, 0) + 1
        if upgrade.transport is None:
            if upgrade.result == "timeout":
                metrics.handshake_timeouts += 1
            await stream.aclose()
            return
        assert upgrade.result == UPGRADE_ACCEPTED
        metrics.ws_open += 1
        try:
            await GatewayConnection(services, upgrade.transport, reads, accepted_at).serve()
        finally:
            metrics.ws_open -= 1
    except Exception:  # noqa: BLE001 - one connection's bug must never stop the listener
        log.exception("websocket connection task failed")
        await trio.aclose_forcefully(stream)


#: A connection that has sent nothing for this long drops its ciphers' key schedules (~5 KiB, about a
#: third of an idle connection's memory); the next frame either way rebuilds them in about a microsecond.
IDLE_KEY_RELEASE_SECONDS = 5.0


async def _release_idle_keys(delivery: Delivery) -> None:
    while True:
        await trio.sleep(IDLE_KEY_RELEASE_SECONDS)
        delivery.release_idle_keys(quiet_since=trio.current_time() - IDLE_KEY_RELEASE_SECONDS)


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


#: How long after a shutdown's DISCONNECT (docs/PROTOCOL.md §8.7) a client should wait before reconnecting.
SHUTDOWN_RETRY_MS = 1000


async def _stop_on_signal(services: Services, scope: trio.CancelScope, accepting: list[trio.CancelScope]) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s: shutting down", signal.Signals(signum).name)
            with trio.move_on_after(services.config.server.shutdown_seconds):
                await shutdown_gracefully(services, accepting)
            scope.cancel()
            return


async def shutdown_gracefully(services: Services, accepting: list[trio.CancelScope]) -> None:
    """Stop accepting, send every live connection a DISCONNECT once its requests are answered, wait
    for them to close, then for the webhooks to deliver what is queued (their offline events too).

    The caller bounds it by ``server.shutdown_seconds`` and then cancels everything; the storage writer
    commits every operation already handed to it after that, before the process exits (``serve``).
    """
    for scope in accepting:
        scope.cancel()
    server = services.config.server
    delivery = services.delivery
    told = delivery.go_away(SHUTDOWN_RETRY_MS, server.shutdown_redirect)
    while delivery.connected_here():  # noqa: ASYNC110 - a handful of passes, once
        await trio.sleep(0.01)
    log.info("shutdown: %d connection(s) told to reconnect and closed", told)
    await services.webhooks.drain()
    pending = sum(q.depth + q.in_flight for q in services.webhooks.queues)
    log.info("shutdown: webhooks drained (%d left)", pending)
