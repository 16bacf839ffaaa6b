"""Ember's configuration: one typed, frozen object built from a TOML file and the environment.

Each TOML section is a frozen dataclass whose attribute names are exactly the
TOML keys (``config.server.multi_endpoint``). Field metadata carries the
meaning of each key, so the generated config file and the README's table are
rendered from this module and cannot drift from it.

Precedence, lowest first: the defaults below, the TOML file, then environment
variables ``EMBER_<SECTION>__<KEY>`` (double underscore, e.g.
``EMBER_SERVER__PORT=9000``). Variables that start with ``EMBER_`` but have no
double underscore (``EMBER_ADMIN_URL``) belong to other tools and are ignored.

Adding a section: write its dataclass (with ``SECTION``) and add one field to
``Config``; loading, validation, the generated file and the table follow.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import secrets
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from protocol.connection import MAX_KEEPALIVE_SECONDS
from storage.postgres.url import is_postgres_url, mask_password
from storage.records import USER_INFO_FIELDS

#: What another user sees of a user by default: its info without the contact details (mobile, email,
#: address), which an app shows only to the user itself or exposes by setting user.public_fields.
DEFAULT_PUBLIC_USER_FIELDS = tuple(f for f in USER_INFO_FIELDS if f not in ("mobile", "email", "address"))

CONFIG_FILENAME = "ember.toml"
ENV_PREFIX = "EMBER_"
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class ConfigError(ValueError):
    """The configuration is unusable; the message names the key (never a secret's value)."""


def _key(
    default: Any,
    doc: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple[str, ...] | None = None,
    secret: bool = False,
    optional: bool = False,
    mask: Callable[[str], str] | None = None,
) -> Any:
    """Declare one config key: its default, meaning and bounds.

    Secret keys have the empty string as default, meaning "required", and are
    left out of ``repr`` so that logging a config object cannot leak them. An ``optional`` secret may
    stay empty (its section's ``_check`` says when it is needed). A key that holds a secret inside a
    longer value (a database URL's password) has a ``mask``: ``check-config`` shows ``mask(value)``,
    and it is left out of ``repr`` too.
    """
    meta = {
        "doc": doc,
        "lo": lo,
        "hi": hi,
        "choices": choices,
        "secret": secret,
        "optional": optional,
        "mask": mask,
    }
    return field(default=default, repr=not (secret or mask), metadata=meta)


class _Section:
    """Type and range checks shared by every section, run when it is built."""

    SECTION: ClassVar[str]
    # Every section is a dataclass; declared so that type checkers accept ``dataclasses.fields`` of one.
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            name = f"{self.SECTION}.{f.name}"
            value = _check_type(name, hints[f.name], getattr(self, f.name), f.metadata["secret"])
            object.__setattr__(self, f.name, value)  # ints given for floats become floats
            _check_bounds(name, value, f.metadata)
        self._check()

    def _check(self) -> None:
        """Cross-key rules of one section; override where needed."""


def _check_type(name: str, typ: type, value: Any, secret: bool) -> Any:
    shown = "<secret>" if secret else repr(value)
    ok = isinstance(value, typ) and (typ is bool or not isinstance(value, bool))
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(f"{name}: expected {typ.__name__}, got {shown}")
    if typ is float and not math.isfinite(value):
        raise ConfigError(f"{name}: must be a finite number")
    return value


def _check_bounds(name: str, value: Any, meta: Mapping[str, Any]) -> None:
    if meta["secret"] and value == "" and not meta["optional"]:
        env = f"{ENV_PREFIX}{name.replace('.', '__').upper()}"
        raise ConfigError(f"{name} is required (set it in {CONFIG_FILENAME} or {env})")
    if meta["lo"] is not None and value < meta["lo"]:
        raise ConfigError(f"{name}: must be at least {meta['lo']}, got {value!r}")
    if meta["hi"] is not None and value > meta["hi"]:
        raise ConfigError(f"{name}: must be at most {meta['hi']}, got {value!r}")
    if meta["choices"] is not None and value not in meta["choices"]:
        raise ConfigError(f"{name}: must be one of {', '.join(meta['choices'])}, got {value!r}")


@dataclass(frozen=True)
class ServerConfig(_Section):
    SECTION: ClassVar[str] = "server"
    host: str = _key("127.0.0.1", "Address the client TCP listener binds.")
    port: int = _key(7600, "Port of the client TCP listener.", lo=0, hi=65535)
    multi_endpoint: bool = _key(
        False, "Let a user stay logged in on several devices of the same platform class."
    )
    client_support_kickoff_event: bool = _key(
        False, "Answer a kicked device Kickedoff (-7) instead of SecretKeyMismatch (-6)."
    )
    max_clock_skew_seconds: int = _key(
        86400, "Largest client clock error accepted at CONNECT (else -9).", lo=0
    )
    handshake_timeout_seconds: float = _key(
        10.0, "Drop a connection whose handshake has not completed after this long (storage read late: ERROR 4).", lo=0.1
    )
    max_frame_bytes: int = _key(
        262144, "Largest frame accepted; a longer one closes the connection.", lo=1024, hi=2**31 - 1
    )
    # Bounded by the protocol: a client refuses a CONNACK keepalive above MAX_KEEPALIVE_SECONDS.
    keepalive_seconds: int = _key(
        60, "Keepalive used when the client announces 0.", lo=1, hi=MAX_KEEPALIVE_SECONDS
    )
    min_keepalive_seconds: int = _key(
        10, "Smallest keepalive a client may announce.", lo=1, hi=MAX_KEEPALIVE_SECONDS
    )
    max_keepalive_seconds: int = _key(
        900, "Largest keepalive a client may announce.", lo=1, hi=MAX_KEEPALIVE_SECONDS
    )
    node_id: int = _key(
        0,
        "This gateway's id in a cluster, one per node: it goes into message ids, and a second node claiming the "
        "same id on one database refuses to start, naming the first.",
        lo=0,
        hi=1023,
    )
    cluster: bool = _key(
        False,
        "Run as one node of a cluster: several gateways on one PostgreSQL storage.url, each with its own "
        "server.node_id (needs storage.url; see the README, \"Cluster\").",
    )
    shutdown_seconds: float = _key(
        10.0,
        "On SIGTERM, how long answers to the requests already read, commits and webhook deliveries may take "
        "before the process exits.",
        lo=0,
        hi=600,
    )
    shutdown_redirect: str = _key(
        "", "On SIGTERM, the host:port connected clients are told to reconnect to (empty: this address)."
    )
    # Slow readers (gateway/outbox.py): what one connection, and all of them together, may hold unsent.
    outbox_max_bytes: int = _key(
        4 * 1024 * 1024,
        "Bytes one connection may have waiting for its socket (a peer that stopped reading); beyond, it is "
        "closed and its client pulls what it missed on reconnect.",
        lo=65536,
    )
    outbox_budget_bytes: int = _key(
        512 * 1024 * 1024,
        "Bytes all connections together may have waiting for their sockets; beyond, the connections with the "
        "largest backlogs are closed first, until the total is under it again (0: no process-wide bound).",
        lo=0,
    )

    # --- WebSocket listener (issue 25; docs/PROTOCOL.md §2.2) ---
    ws_port: int = _key(
        0, "Port of the WebSocket listener (path /ws; one protocol frame per binary message); 0: off.", lo=0, hi=65535
    )
    ws_host: str = _key("127.0.0.1", "Address the WebSocket listener binds.")
    ws_demo: bool = _key(
        False,
        "Serve the web chat page (a demo of the TypeScript SDK) at / on the WebSocket listener; its own origin "
        "may then open /ws. Off: a production web client is served by its own site, and a gateway that "
        "answers only /ws has no pages to keep patched.",
    )
    ws_allowed_origins: str = _key(
        "",
        "Origins (comma-separated, scheme://host[:port] as browsers send them, or *) whose pages may open a "
        "WebSocket; a request with any other Origin header is refused 403. Empty: every request that carries "
        "an Origin (every browser) is refused, clients that send none (SDKs, tools) are not.",
    )
    trusted_proxies: str = _key(
        "",
        "Addresses or networks (comma-separated, e.g. 127.0.0.1, 10.0.0.0/8) of reverse proxies whose "
        "X-Forwarded-For names a WebSocket client's address (for the logs); from any other peer it is ignored.",
    )

    def _check(self) -> None:
        from gateway.net.websocket import check_origin_list, parse_networks

        problem = check_origin_list(self.ws_allowed_origins)
        if problem is not None:
            raise ConfigError(f"server.ws_allowed_origins: {problem}")
        try:
            parse_networks(self.trusted_proxies)
        except ValueError as exc:
            raise ConfigError(f"server.trusted_proxies: {exc}") from None
        if not self.min_keepalive_seconds <= self.keepalive_seconds <= self.max_keepalive_seconds:
            raise ConfigError(
                "server.keepalive_seconds must lie between server.min_keepalive_seconds "
                "and server.max_keepalive_seconds"
            )


@dataclass(frozen=True)
class AdminConfig(_Section):
    SECTION: ClassVar[str] = "admin"
    host: str = _key("127.0.0.1", "Address the admin HTTP API binds.")
    port: int = _key(7601, "Port of the admin HTTP API.", lo=0, hi=65535)
    secret: str = _key(
        "",
        "Admin request signing key: its UTF-8 bytes, as written (not hex-decoded), are the HMAC key. "
        "Required; generated on first start.",
        secret=True,
    )
    max_clock_skew_seconds: int = _key(
        300, "Window for X-Timestamp of signed admin requests, either side of now.", lo=1, hi=86400
    )

    def key_bytes(self) -> bytes:
        """The HMAC-SHA256 key for request signatures."""
        return self.secret.encode("utf-8")


@dataclass(frozen=True)
class TokenConfig(_Section):
    SECTION: ClassVar[str] = "token"
    key: str = _key(
        "",
        "Server key sealing tokens: 64 hex characters (32 bytes). Changing it invalidates every token, and "
        "every stored session (their secrets are sealed under a key derived from it): devices get -6 until "
        "they get new tokens. Required; generated on first start.",
        secret=True,
    )
    expire_seconds: int = _key(0, "Token lifetime; 0 means tokens never expire.", lo=0)

    def _check(self) -> None:
        try:
            ok = len(bytes.fromhex(self.key)) == 32
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError("token.key: must be 64 hex characters (32 bytes)")

    def key_bytes(self) -> bytes:
        """The 32-byte AES key that seals token credentials."""
        return bytes.fromhex(self.key)


@dataclass(frozen=True)
class ClientConfig(_Section):
    SECTION: ClassVar[str] = "client"
    request_rate_limit: int = _key(
        100, "Requests per 5 s per connection (a pull costs 0.1 + 0.01 per new message, 0.1 per re-read one); beyond it: 250 and a pause.", lo=1
    )


@dataclass(frozen=True)
class StorageConfig(_Section):
    SECTION: ClassVar[str] = "storage"
    path: str = _key("ember.db", "SQLite database file; a relative path is relative to the data folder.")
    # --- PostgreSQL (issue 23) ---
    url: str = _key(
        "",
        "Empty: SQLite at storage.path. A postgresql://user:password@host:port/dbname URL (libpq's form and "
        "parameters, e.g. ?sslmode=verify-full): every table on that PostgreSQL database instead (needs "
        "ember-im[postgresql]). Its password is never logged and shows as *** in check-config.",
        mask=mask_password,
    )
    synchronous: str = _key(
        "NORMAL", "SQLite synchronous mode: NORMAL (fast, WAL-safe) or FULL.", choices=("NORMAL", "FULL")
    )
    commit_delay_ms: float = _key(
        3.0,
        "Under heavy load, how long a group commit waits to gather more requests (0: never).",
        lo=0,
        hi=50,
    )
    # Tombstone retention (gateway/domain/tombstones.py).
    tombstone_retention_seconds: int = _key(
        90 * 86400,
        "How long a deletion's tombstone (friend, blacklist, setting, group member) is kept for devices to sync;"
        " a device away longer syncs the stream again from 0. 0: kept for good.",
        lo=0,
    )
    tombstone_purge_interval_seconds: float = _key(
        3600.0, "How often tombstones older than the retention are removed.", lo=0.01, hi=86400
    )
    max_queued_operations: int = _key(
        20_000,
        "Most storage operations waiting for the writer; past it, sends and other writes are refused (250).",
        lo=1,
    )

    def _check(self) -> None:
        if not self.path.strip():
            raise ConfigError("storage.path: must not be empty")
        if self.url and not is_postgres_url(self.url):
            raise ConfigError(
                f"storage.url: must be empty or a postgresql:// URL, got {mask_password(self.url)!r}"
            )


@dataclass(frozen=True)
class UserConfig(_Section):
    SECTION: ClassVar[str] = "user"
    hosting: bool = _key(
        True, "Host user info: users must be created by the admin API before getting a token."
    )
    public_fields: str = _key(
        ",".join(DEFAULT_PUBLIC_USER_FIELDS),
        "User info fields other users see in get_user_info, comma-separated (a user sees all of its own).",
    )

    def _check(self) -> None:
        unknown = set(self.public_field_names) - set(USER_INFO_FIELDS)
        if unknown:
            raise ConfigError(
                f"user.public_fields: unknown field(s) {', '.join(sorted(unknown))}"
                f" (known: {', '.join(USER_INFO_FIELDS)})"
            )

    @property
    def public_field_names(self) -> tuple[str, ...]:
        return tuple(name.strip() for name in self.public_fields.split(",") if name.strip())


@dataclass(frozen=True)
class MessageConfig(_Section):
    SECTION: ClassVar[str] = "message"
    roaming: bool = _key(
        False, "A new device pulling from sequence 0 gets the whole inbox (else only recent messages)."
    )
    compensate_seconds: int = _key(
        300, "With roaming off, how far back a new device's first pull reaches.", lo=0
    )
    remote_history: bool = _key(False, "Allow load_remote_history (else it answers 220).")
    recall_seconds: int = _key(120, "How long after sending a message may be recalled (else 24).", lo=0)
    disable_stranger_chat: bool = _key(
        False, "Only friends may send private messages to each other (else 248)."
    )
    blacklist_strategy: int = _key(
        0,
        "When the recipient blacklisted the sender: 0 answers 246, 1 reports success and drops it.",
        lo=0,
        hi=1,
    )
    max_text_bytes: int = _key(
        16384, "Largest searchable_content, push_content, content or extra of a message (else 251).", lo=64
    )
    max_data_bytes: int = _key(65536, "Largest binary data of a message (else 251).", lo=0)
    chatroom_history: bool = _key(
        True, "Keep each chatroom's recent messages in memory for load_chatroom_history (else it answers 220)."
    )
    # --- message update (issue 22) ---
    client_update_types: str = _key(
        "",
        "Content types (comma-separated integers) whose messages their sender may update with update_message "
        "(else 248). Empty: none; a robot may always update its own messages, the admin API any.",
    )
    # --- message search (issue 26) ---
    search: bool = _key(
        True,
        "Allow search_messages, a user's search of their own messages on the server (else 220). It reaches the"
        " user's whole history even with `message.roaming` off (roaming limits what a new device's first pull"
        " gets, search is the user's own archive, as on WildfireChat's server search): where roaming off is meant"
        " to keep old history off new devices, set this `false` too.",
    )

    def _check(self) -> None:
        try:
            _ = self.client_update_type_set
        except ValueError:
            raise ConfigError("message.client_update_types: must be comma-separated integers") from None

    @property
    def client_update_type_set(self) -> frozenset[int]:
        return frozenset(int(part) for part in self.client_update_types.split(",") if part.strip())


@dataclass(frozen=True)
class ChatroomConfig(_Section):
    SECTION: ClassVar[str] = "chatroom"
    one_per_user: str = _key(
        "quit",
        "A device (user and client) is in one chatroom at a time: joining another quits the first (quit) "
        "or answers 225 (reject).",
        choices=("quit", "reject"),
    )
    idle_seconds: int = _key(
        900, "A member that made no chatroom request for this long is dropped from its room.", lo=1
    )
    sweep_seconds: float = _key(60.0, "How often idle members are looked for.", lo=0.01, hi=3600)
    member_queue: int = _key(
        100,
        "Chatroom messages held per member while its socket is backed up; beyond, its oldest are dropped.",
        lo=1,
        hi=100000,
    )
    member_queue_bytes: int = _key(
        1048576, "The same bound in bytes of pushes (at least one message is always kept).", lo=1024
    )
    stall_seconds: float = _key(
        30.0, "A member whose socket has not drained for this long is dropped from its room.", lo=0.01
    )
    history_size: int = _key(
        200, "Recent messages kept per chatroom for load_chatroom_history.", lo=1, hi=100000
    )


_DAY = 86400
#: Room a sync page needs besides one setting's key and value (the item's other fields, the answer's map).
SYNC_ITEM_OVERHEAD_BYTES = 256


@dataclass(frozen=True)
class FriendConfig(_Section):
    SECTION: ClassVar[str] = "friend"
    hosting: bool = _key(
        True, "Host friends, friend requests and blacklists; off, every relation call answers 220."
    )
    repeat_request_seconds: int = _key(
        7 * _DAY, "A new request to the same user while the earlier one is pending and younger than this: 16. "
        "Smallest 0: a new request may follow at once.",
        lo=0,
    )
    reject_request_seconds: int = _key(
        30 * _DAY, "A new request to a user who rejected the earlier one less than this ago: 18. "
        "Smallest 0: a rejected request may be sent again at once.",
        lo=0,
    )
    request_expiration_seconds: int = _key(
        7 * _DAY, "Handling a friend request this old or older answers 19. Smallest 1: it cannot be turned off "
        "(a large value keeps requests that long).",
        lo=1,
    )
    max_reason_bytes: int = _key(1024, "Largest reason text of a friend request (else 251).", lo=0, hi=65536)
    max_alias_bytes: int = _key(256, "Largest friend alias (else 251).", lo=1, hi=65536)
    max_extra_bytes: int = _key(
        4096, "Largest extra (JSON text) of a friend request or a friend (else 251).", lo=2, hi=65536
    )


@dataclass(frozen=True)
class SettingConfig(_Section):
    SECTION: ClassVar[str] = "setting"
    max_key_bytes: int = _key(256, "Largest key of a user setting (else 251).", lo=1, hi=4096)
    max_value_bytes: int = _key(16384, "Largest value of a user setting (else 251).", lo=1, hi=65536)


@dataclass(frozen=True)
class GroupConfig(_Section):
    SECTION: ClassVar[str] = "group"
    max_members: int = _key(2000, "Most members a group may have (else 240, on create too).", lo=1)
    max_fanout_backlog: int = _key(
        50_000,
        "Group and channel sends are refused (250) while deliveries to this many owners wait to be pushed.",
        lo=1,
    )


@dataclass(frozen=True)
class LogConfig(_Section):
    SECTION: ClassVar[str] = "log"
    level: str = _key("INFO", "Log level: DEBUG, INFO, WARNING, ERROR or CRITICAL.", choices=_LOG_LEVELS)
    format: str = _key("text", "Log line format: text (one line per event) or json (JSON lines).", choices=("text", "json"))


def _check_url(name: str, url: str) -> None:
    if url and not (url.startswith("http://") or url.startswith("https://")):
        raise ConfigError(f"{name}: must be an http:// or https:// URL, or empty")


@dataclass(frozen=True)
class CallbackConfig(_Section):
    """Webhooks to the app server (gateway/webhooks.py); none by default: no outbound connection at all."""

    SECTION: ClassVar[str] = "callback"
    secret: str = _key(
        "",
        "Webhook signing key (UTF-8 bytes, as admin.secret): X-Sign = HMAC-SHA256(nonce|timestamp|body). "
        "Required once any webhook URL (callback.* or push.url) is set.",
        secret=True,
        optional=True,
    )
    user_online_status_url: str = _key(
        "", "POST {user_id, client_id, platform, status, timestamp, sessions} on every connect and disconnect."
    )
    message_forward_url: str = _key("", "POST every stored message (archive, moderation).")
    channel_hosts: str = _key(
        "",
        "Hosts (comma-separated, host or host:port) a channel's callback URL may name; a callback to any other "
        "host is never contacted (counted as refused). Empty: channel callbacks are not delivered.",
    )
    # --- robots (issue 22) ---
    robot_hosts: str = _key(
        "",
        "Hosts (comma-separated, host or host:port) a robot's callback URL may name; a callback to any other "
        "host is never contacted (counted as refused). Empty: robot callbacks are not delivered.",
    )
    queue_size: int = _key(10000, "Events waiting per webhook URL; when full the oldest are dropped.", lo=1)
    senders: int = _key(4, "Concurrent deliveries per webhook URL.", lo=1, hi=64)
    timeout_seconds: float = _key(5.0, "One delivery attempt's time limit (connect, send, answer).", lo=0.01)
    max_attempts: int = _key(
        5, "Attempts per event (the first included) before it is dead-lettered (counted, logged).", lo=1
    )
    retry_base_ms: float = _key(
        200.0, "First retry waits up to this (full jitter), doubling per attempt up to retry_max_ms.", lo=0
    )
    retry_max_ms: float = _key(30000.0, "Longest wait between two attempts.", lo=0)

    def _check(self) -> None:
        _check_url("callback.user_online_status_url", self.user_online_status_url)
        _check_url("callback.message_forward_url", self.message_forward_url)

    def key_bytes(self) -> bytes:
        return self.secret.encode("utf-8")

    @property
    def channel_host_names(self) -> frozenset[str]:
        return frozenset(name.strip().lower() for name in self.channel_hosts.split(",") if name.strip())

    @property
    def robot_host_names(self) -> frozenset[str]:
        return frozenset(name.strip().lower() for name in self.robot_hosts.split(",") if name.strip())


@dataclass(frozen=True)
class PushConfig(_Section):
    SECTION: ClassVar[str] = "push"
    url: str = _key(
        "", "POST a push request (device token, sender, conversation, ...) for a stored message "
        "whose recipient has no live connection; signed with callback.secret."
    )
    default_content: str = _key(
        "You have a new message", "Push text for a message without push_content (the body is never pushed)."
    )
    max_badge_users: int = _key(
        100000, "Most users whose push badge count is kept in memory; the least recently pushed is "
        "forgotten first (its badge starts again at 1). A cluster node keeps the counts in the database "
        "instead, with no limit.", lo=1
    )

    def _check(self) -> None:
        _check_url("push.url", self.url)


@dataclass(frozen=True)
class Config:
    """The whole configuration. Build it with ``Config.load`` or ``Config.default``."""

    server: ServerConfig
    admin: AdminConfig
    token: TokenConfig
    client: ClientConfig
    storage: StorageConfig
    user: UserConfig
    message: MessageConfig
    friend: FriendConfig
    setting: SettingConfig
    log: LogConfig
    group: GroupConfig
    chatroom: ChatroomConfig
    callback: CallbackConfig
    push: PushConfig
    data_dir: Path = Path(".")

    def __post_init__(self) -> None:
        # A sync page holds at least one item and must fit one RESPONSE frame (docs/PROTOCOL.md §12.1).
        room = self.server.max_frame_bytes * 3 // 4 - SYNC_ITEM_OVERHEAD_BYTES
        if self.setting.max_key_bytes + self.setting.max_value_bytes > room:
            raise ConfigError(
                "setting.max_key_bytes + setting.max_value_bytes must fit one sync page: at most"
                f" {room} with server.max_frame_bytes = {self.server.max_frame_bytes}"
            )

    @classmethod
    def load(
        cls, data_dir: Path, config_path: Path | None = None, env: Mapping[str, str] = os.environ
    ) -> Config:
        """Read ``config_path`` (default ``<data_dir>/ember.toml`` if it exists), then the environment.

        Raises:
            ConfigError: unreadable file, unknown section or key, wrong type or range,
                missing secret.
        """
        return cls.load_with_sources(data_dir, config_path, env)[0]

    @classmethod
    def load_with_sources(
        cls, data_dir: Path, config_path: Path | None = None, env: Mapping[str, str] = os.environ
    ) -> tuple[Config, dict[str, str]]:
        """``load``, and where each key's value came from: ``"section.key"`` → default, file or env."""
        data_dir = Path(data_dir)
        path = Path(config_path) if config_path is not None else data_dir / CONFIG_FILENAME
        values: dict[str, dict[str, Any]] = {name: {} for name in _sections()}
        if config_path is not None or path.exists():
            _read_file(path, values)
        from_file = {f"{name}.{key}" for name, table in values.items() for key in table}
        _read_env(env, values)
        from_env = {
            ".".join(var[len(ENV_PREFIX) :].lower().split("__", 1))
            for var in env
            if var.startswith(ENV_PREFIX) and "__" in var
        }
        config = cls._build(values, data_dir)
        sources = {}
        for name, section_cls in _sections().items():
            for f in dataclasses.fields(section_cls):
                key = f"{name}.{f.name}"
                sources[key] = "env" if key in from_env else "file" if key in from_file else "default"
        return config, sources

    def describe(self, sources: Mapping[str, str]) -> list[tuple[str, str, str]]:
        """(key, value as TOML, source) for every key; a set secret shows as ``<secret>``, never its value."""
        rows = []
        for name, section_cls in _sections().items():
            section = getattr(self, name)
            for f in dataclasses.fields(section_cls):
                value = getattr(section, f.name)
                if f.metadata["secret"]:
                    shown = "<secret>" if value else '""'
                else:
                    shown = _toml_value(f.metadata["mask"](value) if f.metadata["mask"] else value)
                rows.append((f"{name}.{f.name}", shown, sources.get(f"{name}.{f.name}", "default")))
        return rows

    @classmethod
    def default(cls, data_dir: Path = Path("."), **sections: Mapping[str, Any]) -> Config:
        """Build a config from defaults and per-section overrides, with no files; for tests.

        Missing secrets are filled with fresh random ones.
        ``Config.default(server={"multi_endpoint": True})``.
        """
        unknown = set(sections) - set(_sections())
        if unknown:
            raise ConfigError(f"unknown section(s): {', '.join(sorted(unknown))}")
        values = {name: dict(sections.get(name, {})) for name in _sections()}
        values["admin"].setdefault("secret", secrets.token_hex(32))
        values["token"].setdefault("key", secrets.token_hex(32))
        return cls._build(values, Path(data_dir))

    @classmethod
    def _build(cls, values: Mapping[str, Mapping[str, Any]], data_dir: Path) -> Config:
        built: dict[str, Any] = {}
        for name, section_cls in _sections().items():
            known = {f.name for f in dataclasses.fields(section_cls)}
            for key in values[name]:
                if key not in known:
                    raise ConfigError(f"unknown key {name}.{key}")
            built[name] = section_cls(**values[name])
        callback = built["callback"]
        webhooks = callback.user_online_status_url or callback.message_forward_url or callback.channel_hosts
        if (webhooks or built["push"].url) and not callback.secret:
            raise ConfigError(
                "callback.secret is required once a webhook URL (callback.* or push.url) or callback.channel_hosts is set"
            )
        storage = built["storage"]
        if not Path(storage.path).is_absolute():
            built["storage"] = dataclasses.replace(storage, path=str(data_dir / storage.path))
        return cls(data_dir=data_dir, **built)


def _sections() -> dict[str, type[_Section]]:
    """Section name → dataclass, in ``Config``'s declaration order."""
    hints = typing.get_type_hints(Config)
    return {
        f.name: hints[f.name]
        for f in dataclasses.fields(Config)
        if isinstance(hints[f.name], type) and issubclass(hints[f.name], _Section)
    }


def _read_file(path: Path, values: dict[str, dict[str, Any]]) -> None:
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    for name, table in document.items():
        if name not in values:
            raise ConfigError(f"{path}: unknown section [{name}]")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {name} must be a [{name}] table")
        known = {f.name for f in dataclasses.fields(_sections()[name])}
        for key, value in table.items():
            if key not in known:
                raise ConfigError(f"{path}: unknown key {name}.{key}")
            values[name][key] = value


def _read_env(env: Mapping[str, str], values: dict[str, dict[str, Any]]) -> None:
    sections = _sections()
    for var, text in env.items():
        if not var.startswith(ENV_PREFIX) or "__" not in var:
            continue
        name, _, key = var[len(ENV_PREFIX) :].lower().partition("__")
        section_cls = sections.get(name)
        fields = {f.name: f for f in dataclasses.fields(section_cls)} if section_cls else {}
        if key not in fields:
            raise ConfigError(f"environment variable {var}: unknown key {name}.{key}")
        typ = typing.get_type_hints(section_cls)[key]
        values[name][key] = _parse_env(var, text, typ, fields[key].metadata["secret"])


def _parse_env(var: str, text: str, typ: type, secret: bool) -> Any:
    """Parse an environment variable's text to the field's type."""
    text = text if typ is str else text.strip()
    try:
        if typ is bool:
            if text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
            raise ValueError
        if typ is int:
            return int(text, 10)
        if typ is float:
            return float(text)
        return text
    except ValueError:
        shown = "<secret>" if secret else repr(text)
        raise ConfigError(f"environment variable {var}: expected {typ.__name__}, got {shown}") from None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string of printable text is a valid TOML basic string
    return repr(value)


def render_config_file(admin_secret: str, token_key: str) -> str:
    """The self-documenting config file written on first start.

    Secrets are set; every other key is commented out with its default.
    """
    lines = [
        "# Ember configuration, generated on first start.",
        "# Every key is listed with its default: uncomment a line to change it.",
        f"# Environment variables override this file: {ENV_PREFIX}<SECTION>__<KEY>, "
        f"e.g. {ENV_PREFIX}SERVER__PORT=9000.",
        "# This file holds secrets: keep it private (mode 0600), never commit it.",
    ]
    given = {("admin", "secret"): admin_secret, ("token", "key"): token_key}
    for name, section_cls in _sections().items():
        lines += ["", f"[{name}]"]
        for f in dataclasses.fields(section_cls):
            lines.append(f"# {f.metadata['doc']}")
            if (name, f.name) in given:
                lines.append(f"{f.name} = {_toml_value(given[(name, f.name)])}")
            else:
                lines.append(f"# {f.name} = {_toml_value(f.default)}")
    return "\n".join(lines) + "\n"


def ensure_config(data_dir: Path) -> tuple[Path, bool]:
    """Create ``<data_dir>/ember.toml`` with fresh secrets unless it exists.

    Returns:
        The config file's path, and whether this call created it.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / CONFIG_FILENAME
    try:
        # O_EXCL: never overwrite an existing file's secrets, even if two starts race.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path, False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(render_config_file(secrets.token_hex(32), secrets.token_hex(32)))
    return path, True


def config_table_markdown() -> str:
    """The README's table of config keys (key, default, meaning), rendered from the dataclasses."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for name, section_cls in _sections().items():
        for f in dataclasses.fields(section_cls):
            if f.metadata["secret"]:
                default = "*none*" if f.metadata["optional"] else "*generated*"
            else:
                default = f"`{_toml_value(f.default)}`"
            rows.append(f"| `{name}.{f.name}` | {default} | {f.metadata['doc']} |")
    return "\n".join(rows) + "\n"
