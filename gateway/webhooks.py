"""Webhooks to the app server: online status (FAQ §14), push requests, message forwarding (SPEC §9).

Each configured URL gets one ``WebhookQueue``: a bounded queue (``callback.queue_size`` events), split
into ``callback.senders`` lanes that each deliver one event at a time. An event with an order key (the
user id, for online status) always goes to the same lane, so one user's events arrive in the order they
happened; a lane retries its head event (exponential backoff with full jitter, at most
``callback.max_attempts`` attempts of ``callback.timeout_seconds`` each) before it moves on, and an event
that used every attempt is dead-lettered (counted, logged). ``put`` never blocks and never awaits:
messaging only appends to a deque. When the queue is full the oldest event is dropped, counted and
logged at most once per ``DROP_LOG_SECONDS``. A slow, failing or hanging endpoint therefore only fills
its own queue.

Every POST is JSON, signed like the admin API: headers ``X-Nonce``, ``X-Timestamp`` and ``X-Sign`` =
lowercase hex HMAC-SHA256(``callback.secret``, nonce|timestamp|body) (``gateway.signing``), so the
app server verifies it with the same code. docs/ADMIN_API.md ("Webhooks") has the payloads.

With no URL configured there are no queues, no HTTP client and no task: the gateway opens no outbound
connection at all (FAQ §11; tests/test_webhooks.py counts connect attempts).

HTTP client: httpx (already the admin CLI's client; its async client runs on trio through anyio), one
client per gateway with a connection pool, ``trust_env=False`` so no proxy variable redirects events.

Nothing here logs a payload: they carry message text and device tokens.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import trio

from gateway.cluster import BadgeCounter
from gateway.cluster.local import LocalBadges
from gateway.signing import signed_headers
from protocol.codes import ConversationType, PersistFlag
from storage import push_tokens

if TYPE_CHECKING:
    from gateway.clock import Clock
    from gateway.config import CallbackConfig, Config
    from gateway.delivery import Delivery
    from storage import Store
    from storage.messages import Outgoing, SendResult

log = logging.getLogger("ember.webhooks")

#: A full queue's drops are logged at most once per this many seconds (with the count since the last line).
DROP_LOG_SECONDS = 10.0
#: Online-status values (FAQ §14).
ONLINE, OFFLINE, LOGOUT = "online", "offline", "logout"
_TRANSPARENT = int(PersistFlag.TRANSPARENT)  # delivered live only, never stored: never forwarded or pushed
_PRIVATE = int(ConversationType.PRIVATE)

#: Turns one queued event into the bodies to POST (the push queue looks up device tokens this way, off the
#: hot path); None means the event is posted as it is.
Prepare = Callable[[dict[str, Any]], Awaitable[list[dict[str, Any]]]]
#: Takes the body of an event's 2xx answer (at most ``MAX_ANSWER_BYTES``), awaited in the event's lane.
Answered = Callable[[bytes], Awaitable[None]]
#: The longest answer body read for ``on_answer``; a longer one is not read (and not acted on).
MAX_ANSWER_BYTES = 256 * 1024


@dataclass(slots=True)
class _Event:
    seq: int
    payload: dict[str, Any]
    key: str | None = None
    bodies: list[bytes] | None = field(default=None)
    url: str | None = None  # its own URL (a channel's callback), else the queue's
    sign_key: bytes | None = None  # its own signing key (a robot's secret), else callback.secret
    on_answer: Answered | None = None  # called with a 2xx answer's body (a robot's reply), else it is ignored


def encode(payload: dict[str, Any]) -> bytes:
    """The exact body bytes of a webhook: compact JSON, UTF-8, keys in the payload's order."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class _Body(httpx.AsyncByteStream):
    """A request body httpx sends as it is. Not ``content=bytes``: httpx wraps bytes in a stream whose
    ``__aiter__`` is an async generator, and an attempt cancelled by its timeout mid-send leaves that
    generator to the garbage collector (a ResourceWarning under trio). This iterator has nothing to close."""

    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data

    def __aiter__(self) -> _Body:  # an iterator, not an async generator
        return self

    async def __anext__(self) -> bytes:
        if self._data is None:
            raise StopAsyncIteration
        data, self._data = self._data, None
        return data

    async def aclose(self) -> None:
        self._data = None


class WebhookQueue:
    """One URL's bounded queue and its senders. ``run`` until cancelled; ``put`` from anywhere on trio."""

    def __init__(
        self,
        name: str,
        url: str,
        config: CallbackConfig,
        clock: Clock,
        *,
        prepare: Prepare | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.name = name
        self.url = url
        self._config = config
        self._key = config.key_bytes()
        self._clock = clock
        self._prepare = prepare
        self._rng = rng
        self._lanes: list[deque[_Event]] = [deque() for _ in range(config.senders)]
        self._wakeups = [trio.Event() for _ in range(config.senders)]
        self._changed = trio.Event()  # set whenever an event leaves the queue or finishes (for drain)
        self._next_lane = 0
        self._seq = 0
        self._last_drop_log = self._last_dead_log = -DROP_LOG_SECONDS
        self._drops_unlogged = self._dead_unlogged = 0
        # Read by /metrics.
        self.depth = 0
        self.in_flight = 0
        self.delivered = 0
        self.retries = 0
        self.dropped = 0
        self.dead_letters = 0

    # --- the producer side (never blocks) -------------------------------------------------------

    def put(
        self, payload: dict[str, Any], key: str | None = None, url: str | None = None,
        sign_key: bytes | None = None, on_answer: Answered | None = None,
    ) -> None:  # fmt: skip
        """Queue an event (to ``url``, else the queue's; signed with ``sign_key``, else ``callback.secret``);
        events with the same ``key`` are delivered in order. ``on_answer`` gets a 2xx answer's body."""
        if self.depth >= self._config.queue_size:
            self._drop_oldest()
        if key is None:
            lane = self._next_lane
            self._next_lane = (lane + 1) % len(self._lanes)
        else:
            lane = hash(key) % len(self._lanes)
        self._seq += 1
        self._lanes[lane].append(_Event(self._seq, payload, key, url=url, sign_key=sign_key, on_answer=on_answer))
        self.depth += 1
        self._wakeups[lane].set()

    def _drop_oldest(self) -> None:
        oldest = min((lane for lane in self._lanes if lane), key=lambda lane: lane[0].seq)
        oldest.popleft()
        self.depth -= 1
        self.dropped += 1
        self._drops_unlogged += 1
        now = trio.current_time()
        if now - self._last_drop_log >= DROP_LOG_SECONDS:
            log.warning(
                "webhook %s: queue full (%d events), dropped the %d oldest since the last report",
                self.name, self._config.queue_size, self._drops_unlogged,
            )  # fmt: skip
            self._last_drop_log, self._drops_unlogged = now, 0

    # --- the senders ----------------------------------------------------------------------------

    async def run(self, client: httpx.AsyncClient) -> None:
        async with trio.open_nursery() as nursery:
            for lane in range(len(self._lanes)):
                nursery.start_soon(self._sender, lane, client)

    async def drain(self) -> None:
        """Return once nothing is queued or being delivered (the caller bounds the wait)."""
        while self.depth or self.in_flight:
            self._changed = changed = trio.Event() if self._changed.is_set() else self._changed
            await changed.wait()

    def _notify_changed(self) -> None:
        self._changed.set()

    async def _sender(self, lane_no: int, client: httpx.AsyncClient) -> None:
        lane = self._lanes[lane_no]
        while True:
            while not lane:
                self._wakeups[lane_no] = wakeup = trio.Event()
                await wakeup.wait()
            event = lane.popleft()
            self.depth -= 1
            self.in_flight += 1
            try:
                await self._deliver(client, event)
            finally:
                self.in_flight -= 1
                self._notify_changed()

    async def _deliver(self, client: httpx.AsyncClient, event: _Event) -> None:
        if self._prepare is None:
            payloads = [event.payload]
        else:
            try:
                payloads = await self._prepare(event.payload)
            except Exception as exc:  # noqa: BLE001 - e.g. storage closing: this one event is lost, counted
                log.warning("webhook %s: preparing an event failed: %s", self.name, type(exc).__name__)
                self._dead_letter()
                return
        for payload in payloads:
            await self._deliver_one(client, encode(payload), event)

    async def _deliver_one(self, client: httpx.AsyncClient, body: bytes, event: _Event) -> None:
        config = self._config
        url = event.url or self.url
        answer: list[bytes] = []
        for attempt in range(config.max_attempts):
            if attempt:
                self.retries += 1
                await trio.sleep(self.backoff_seconds(attempt))
            verdict = await self._attempt(client, body, url, event.sign_key, answer if event.on_answer else None)
            if verdict == "ok":
                self.delivered += 1
                if event.on_answer is not None and answer and answer[0]:
                    try:
                        await event.on_answer(answer[0])
                    except Exception:  # noqa: BLE001 - a bug acting on one answer must not stop the lane
                        log.exception("webhook %s: acting on an answer failed", self.name)
                return
            if verdict == "refused":  # 4xx other than 408/429: sending it again cannot help
                break
        self._dead_letter()

    def _dead_letter(self) -> None:
        """Count an event given up; logged, like drops, at most once per DROP_LOG_SECONDS (an endpoint down
        for an hour makes a line every 10 s, not one per event)."""
        self.dead_letters += 1
        self._dead_unlogged += 1
        now = trio.current_time()
        if now - self._last_dead_log >= DROP_LOG_SECONDS:
            log.warning(
                "webhook %s: %d event(s) dead-lettered since the last report (%d attempts each at most)",
                self.name, self._dead_unlogged, self._config.max_attempts,
            )  # fmt: skip
            self._last_dead_log, self._dead_unlogged = now, 0

    def backoff_seconds(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**(attempt-1))]."""
        config = self._config
        ceiling = min(config.retry_max_ms, config.retry_base_ms * 2 ** (attempt - 1)) / 1000
        return ceiling * self._rng()

    async def _attempt(
        self, client: httpx.AsyncClient, body: bytes, url: str, sign_key: bytes | None = None,
        answer: list[bytes] | None = None,
    ) -> str:  # fmt: skip
        """One POST; with ``answer`` given, a 2xx answer's body (at most MAX_ANSWER_BYTES) is appended to it."""
        headers = {
            **signed_headers(sign_key or self._key, secrets.token_hex(16), self._clock.now_ms(), body),
            "content-type": "application/json",
        }
        request = client.build_request("POST", url, headers=headers, content=body)
        request.stream = _Body(body)  # see _Body
        with trio.move_on_after(self._config.timeout_seconds):
            try:
                response = await client.send(request, stream=answer is not None)
                if answer is not None:
                    try:
                        if 200 <= response.status_code < 300:
                            answer.append(await _read_bounded(response))
                    finally:
                        await response.aclose()
            except httpx.HTTPError as exc:
                log.debug("webhook %s: attempt failed: %s", self.name, type(exc).__name__)
                return "retry"
            status = response.status_code
            if 200 <= status < 300:
                return "ok"
            log.debug("webhook %s: answered HTTP %d", self.name, status)
            return "retry" if status >= 500 or status in (408, 429) else "refused"
        log.debug("webhook %s: attempt timed out", self.name)
        return "retry"


async def _read_bounded(response: httpx.Response) -> bytes:
    """The answer's body, or b"" when it is longer than MAX_ANSWER_BYTES (not read further)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            return b""
        chunks.append(chunk)
    return b"".join(chunks)


def host_allowed(url: str, hosts: frozenset[str]) -> bool:
    """Whether ``url`` names one of ``hosts`` (a host, or host:port), as ``callback.channel_hosts`` lists them."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()  # lowercased, without userinfo, port or IPv6 brackets
    try:
        named = {host, f"{host}:{parts.port}"} if parts.port is not None else {host}
    except ValueError:  # a port out of range: not a URL we call
        return False
    return bool(named & hosts)


class Webhooks:
    """The gateway's webhooks; every method is a no-op for a URL that is not configured."""

    def __init__(self, config: Config, clock: Clock, store: Store, delivery: Delivery) -> None:
        self._config = config
        self._clock = clock
        self._store = store
        self._delivery = delivery
        cb = config.callback
        # A cluster node's device list of an online-status event is the cluster's, read when it is sent.
        online_prepare = self._online_bodies if delivery.clustered else None
        self.online = (
            WebhookQueue("online_status", cb.user_online_status_url, cb, clock, prepare=online_prepare)
            if cb.user_online_status_url
            else None
        )
        self.forward = (
            WebhookQueue("message_forward", cb.message_forward_url, cb, clock, prepare=self._forward_bodies)
            if cb.message_forward_url
            else None
        )
        self.push = (
            WebhookQueue("push", config.push.url, cb, clock, prepare=self._push_bodies) if config.push.url else None
        )
        # Channel callbacks: each event carries its channel's URL, and only hosts the operator listed are
        # ever contacted (a channel owner is a user, and must not make the gateway call internal addresses).
        self.channel_hosts = cb.channel_host_names
        self.channel = WebhookQueue("channel_callback", "", cb, clock) if self.channel_hosts else None
        self.channel_refused = 0  # callbacks to a host not in callback.channel_hosts (or none configured)
        # Robot callbacks (issue 22): the same rule, with callback.robot_hosts; each event is signed with its
        # robot's own secret, so the robot's server verifies it with what it already holds.
        self.robot_hosts = cb.robot_host_names
        self.robot = WebhookQueue("robot_callback", "", cb, clock) if self.robot_hosts else None
        self.robot_refused = 0  # robot callbacks to a host not in callback.robot_hosts (or none configured)
        self.queues = [q for q in (self.online, self.forward, self.push, self.channel, self.robot) if q is not None]
        #: Whether connects and disconnects need reporting here (online status, or the push badge).
        self.watch_presence = self.online is not None or self.push is not None
        #: Whether stored messages need reporting (forward or push).
        self.watch_messages = self.forward is not None or self.push is not None
        # Push badge: pushes sent to a user since it was last online. In memory on one process (for at most
        # push.max_badge_users users: gateway.cluster.local.LocalBadges), in the shared database on a cluster.
        self._badges: BadgeCounter = delivery.badges or LocalBadges(config.push.max_badge_users)
        self.pushed = 0
        #: ``muted(user_id, msg) -> bool`` (True: no push): the user's do-not-disturb and conversation-silent
        #: settings (``settings_mute``); replaceable, e.g. by an app that keeps its own rules.
        self.muted: Callable[[str, Outgoing], Awaitable[bool]] | None = self.settings_mute

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver until cancelled. With no URL configured it returns at once, having opened nothing."""
        if not self.queues:
            task_status.started()
            return
        timeout = self._config.callback.timeout_seconds
        async with httpx.AsyncClient(trust_env=False, timeout=timeout, follow_redirects=False) as client:
            async with trio.open_nursery() as nursery:
                for queue in self.queues:
                    nursery.start_soon(queue.run, client)
                task_status.started()

    async def drain(self) -> None:
        for queue in self.queues:
            await queue.drain()

    # --- online status --------------------------------------------------------------------------

    def presence(self, user_id: str, client_id: str, platform: int, status: str) -> None:
        """A device came online, went offline or logged out (``ONLINE``/``OFFLINE``/``LOGOUT``)."""
        if status == ONLINE:
            self._badges.clear(user_id)
        if self.online is None:
            return
        payload = online_payload(
            user_id, client_id, platform, status, self._clock.now_ms(), self._delivery.online_clients(user_id)
        )
        self.online.put(payload, key=user_id)

    # --- channel callbacks ----------------------------------------------------------------------

    def channel_message(self, url: str, channel_id: str, msg: Outgoing) -> None:
        """A listener's message to a callback-only channel: POSTed to ``url`` if its host is allowed."""
        if self.channel is None or not host_allowed(url, self.channel_hosts):
            self.channel_refused += 1
            return
        self.channel.put(channel_payload(channel_id, msg), key=channel_id, url=url)

    # --- robot callbacks ------------------------------------------------------------------------

    def robot_message(
        self, url: str, secret: bytes, payload: dict[str, Any], on_answer: Answered | None
    ) -> None:
        """A message stored for a robot's inbox: POSTed to its callback ``url`` if the host is allowed,
        signed with the robot's ``secret``; ``on_answer`` gets the 2xx answer's body (a reply)."""
        if self.robot is None or not host_allowed(url, self.robot_hosts):
            self.robot_refused += 1
            return
        self.robot.put(payload, key=payload["robot_id"], url=url, sign_key=secret, on_answer=on_answer)

    # --- messages -------------------------------------------------------------------------------

    def message_stored(self, msg: Outgoing, result: SendResult, offline: list[str]) -> None:
        """A message committed; ``offline`` are its recipients with no live connection (push candidates)."""
        if msg.persist_flag == _TRANSPARENT:
            return
        if self.forward is not None:
            # The payload is built when it is sent: here only a reference to what exists anyway.
            self.forward.put({"msg": msg, "result": result})
        if self.push is not None and offline:
            for user_id in offline:
                self.push.put({"user_id": user_id, "msg": msg}, key=user_id)

    @property
    def badge_users(self) -> int:
        """How many users' push badge counts this process keeps (at most ``push.max_badge_users``; 0 on a
        cluster node, whose counts are in the database)."""
        return self._badges.users()

    async def settings_mute(self, user_id: str, msg: Outgoing) -> bool:
        """Whether the recipient's settings (docs/PROTOCOL.md §12.6) silence this push: the conversation is
        silent (scope 1, key ``"<type>-<target>-<line>"`` as the recipient names it, value "1"), or now is
        inside its do-not-disturb window (scope 17, key "", value ``"<start>|<end>"``, minutes of the day,
        UTC; the window may wrap midnight). A message that mentions the user is pushed anyway."""
        from protocol.codes import SettingScope, conversation_setting_key
        from storage import relations as settings

        content = msg.content
        if content.get("mentioned_type") == 2 or user_id in content.get("mentioned_targets", ()):
            return False
        target = msg.from_user if msg.conv.type == _PRIVATE else msg.conv.target
        key = conversation_setting_key(msg.conv.type, target, msg.conv.line)
        silent = await self._store.read(settings.get_setting, user_id, int(SettingScope.CONVERSATION_SILENT), key)
        if silent is not None and silent["value"] == "1":
            return True
        dnd = await self._store.read(settings.get_setting, user_id, int(SettingScope.DO_NOT_DISTURB), "")
        if dnd is None:
            return False
        start, _, end = dnd["value"].partition("|")
        if not (start.isdigit() and end.isdigit()):
            return False
        minute = self._clock.now_ms() // 60_000 % 1440
        lo, hi = int(start) % 1440, int(end) % 1440
        return lo <= minute < hi if lo <= hi else minute >= lo or minute < hi

    async def _online_bodies(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        """A cluster node's online-status event: ``sessions`` is every node's live devices of the user
        after the change (the event's own device as the event says, whether or not its row is written
        yet). The database away: the list this node saw when the event happened."""
        user_id, client_id = payload["user_id"], payload["client_id"]
        try:
            live = await self._delivery.online_clients_everywhere(user_id)
        except Exception:  # noqa: BLE001 - psycopg's errors, or the node stopping: keep the local list
            return [payload]
        sessions = [(c, p) for c, p in live if c != client_id]
        if payload["status"] == ONLINE:
            sessions.append((client_id, payload["platform"]))
        payload["sessions"] = [{"client_id": c, "platform": p} for c, p in sorted(sessions)]
        return [payload]

    @staticmethod
    async def _forward_bodies(event: dict[str, Any]) -> list[dict[str, Any]]:
        return [forward_payload(event["msg"], event["result"])]

    async def _push_bodies(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """One push request per device token of the recipient's active sessions (none: nothing to send)."""
        user_id: str = event["user_id"]
        msg: Outgoing = event["msg"]
        if self.muted is not None and await self.muted(user_id, msg):
            return []
        devices = await self._store.read(push_tokens.push_devices, user_id)
        # No device to push to, or online meanwhile (on any node: it will pull): no badge to keep counting.
        if not devices or not await self._delivery.offline_everywhere((user_id,)):
            self._badges.clear(user_id)
            return []
        badge = await self._badges.bump(user_id)
        self.pushed += len(devices)
        return [push_payload(user_id, d, msg, badge, self._config.push.default_content) for d in devices]



# --- the payloads (docs/ADMIN_API.md "Webhooks" prints them; tests check the doc against these) --------


def online_payload(
    user_id: str, client_id: str, platform: int, status: str, timestamp: int, sessions: list[tuple[str, int]]
) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "client_id": client_id,
        "platform": platform,
        "status": status,
        "timestamp": timestamp,
        "sessions": [{"client_id": c, "platform": p} for c, p in sessions],
    }


def forward_payload(msg: Outgoing, result: SendResult) -> dict[str, Any]:
    content = dict(msg.content)
    if "data" in content:
        content["data"] = base64.b64encode(content["data"]).decode("ascii")
    return {
        "message_id": str(msg.message_id),
        "sender": msg.from_user,
        "conversation": {"type": msg.conv.type, "target": msg.conv.target, "line": msg.conv.line},
        "content": content,
        "server_time": msg.server_time,
        "to_users": msg.to_users or [],
        "recipients": sorted(result.seqs),
    }


def channel_payload(channel_id: str, msg: Outgoing) -> dict[str, Any]:
    """A listener's message to a callback-only channel, for the channel's callback URL."""
    content = dict(msg.content)
    if "data" in content:
        content["data"] = base64.b64encode(content["data"]).decode("ascii")
    return {
        "channel_id": channel_id,
        "message_id": str(msg.message_id),
        "sender": msg.from_user,
        "content": content,
        "server_time": msg.server_time,
    }


def push_payload(
    user_id: str, device: push_tokens.PushDevice, msg: Outgoing, badge: int, default_content: str
) -> dict[str, Any]:
    """One push request: never the message body, only push_content (or the configured default)."""
    content = msg.content
    # The recipient's view of the conversation: a private chat is named by the other party.
    target = msg.from_user if msg.conv.type == _PRIVATE else msg.conv.target
    mentioned = content.get("mentioned_type") == 2 or user_id in content.get("mentioned_targets", ())
    return {
        "user_id": user_id,
        "client_id": device.client_id,
        "platform": device.platform,
        "push_type": device.push_type,
        "device_token": device.token,
        "sender": msg.from_user,
        "conversation": {"type": msg.conv.type, "target": target, "line": msg.conv.line},
        "message_id": str(msg.message_id),
        "server_time": msg.server_time,
        "content_type": content["type"],
        "push_content": content.get("push_content") or default_content,
        "mentioned": bool(mentioned),
        "badge": badge,
    }
