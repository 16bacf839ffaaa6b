"""The ``ember`` command: run a gateway, or call its admin API.

    ember serve [--data DIR] [--config FILE]
    ember admin [--url URL] [--secret S] [--data DIR] COMMAND ...
        (create-user, update-user, get-user, block, get-token, sessions, kick, destroy,
         create-chatroom, destroy-chatroom, chatroom, group ..., channel ..., search ...)

``serve`` creates ``<DIR>/ember.toml`` with fresh secrets on first start.
``admin`` finds the API's URL and secret in, by priority: ``--url``/``--secret``,
``EMBER_ADMIN_URL``/``EMBER_ADMIN_SECRET``, then the data folder's config.
Answers are printed as JSON (failures on stderr); the exit status is 0 on
code 0, 1 on any other code (and when ``serve`` cannot open its database:
another gateway owns it, or SQLite is too old), 2 on usage, config or connection errors.
Secrets are never printed; ``get-token`` prints the token because asking for
it is the point.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib
import json
import logging
import os
import sys
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import trio

from gateway.clock import Clock
from gateway.config import CONFIG_FILENAME, Config, ConfigError, ensure_config
from gateway.signing import signed_json

DEFAULT_DATA = "ember-data"
CHATROOM_FIELDS = ("title", "portrait", "extra")
USER_FIELDS = ("name", "display_name", "portrait", "mobile", "email", "address", "company", "social", "extra")


class CliError(Exception):
    """A problem to report in one line and exit with status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ember`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (CliError, ConfigError) as exc:
        print(f"ember: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `ember admin metrics | head`: the reader left; not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot raise again
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ember", description="Ember instant-messaging gateway.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--data", help="data folder (default: $EMBER_DATA or ./ember-data)")
    serve.add_argument(
        "--config", type=Path, help="config file (default: DATA/ember.toml, created if missing)"
    )
    serve.set_defaults(run=_serve)

    check = commands.add_parser(
        "check-config", help="validate a config file; print every key, its value and its source"
    )
    check.add_argument("file", type=Path, help="the TOML file (environment variables apply on top)")
    check.set_defaults(run=_check_config)

    admin = commands.add_parser("admin", help="call the admin API")
    admin.add_argument(
        "--url", help="admin API base URL (default: $EMBER_ADMIN_URL, else from DATA's config)"
    )
    admin.add_argument(
        "--secret", help="admin secret; visible to other local users, prefer $EMBER_ADMIN_SECRET"
    )
    admin.add_argument("--data", help="data folder whose config gives URL and secret (default: as serve)")
    calls = admin.add_subparsers(required=True, metavar="COMMAND")

    for name, path, help_text in (
        ("create-user", "/admin/user/create", "create a user, or update given fields"),
        ("update-user", "/admin/user/update", "update the given fields of a user"),
    ):
        cmd = calls.add_parser(name, help=help_text)
        cmd.add_argument("user_id")
        for field in USER_FIELDS:
            cmd.add_argument(f"--{field.replace('_', '-')}", dest=field)
        cmd.add_argument("--gender", type=int)
        cmd.set_defaults(run=_call, path=path, payload=_user_payload)

    def simple(name: str, path: str, help_text: str, *positional: str) -> argparse.ArgumentParser:
        cmd = calls.add_parser(name, help=help_text)
        for arg in positional:
            cmd.add_argument(arg)
        cmd.set_defaults(run=_call, path=path, payload=lambda a: {p: getattr(a, p) for p in positional})
        return cmd

    simple("get-user", "/admin/user/get", "show a user", "user_id")
    block = simple(
        "block", "/admin/user/update_block_status", "set 0 normal, 1 muted, 2 forbidden", "user_id"
    )
    block.add_argument("--status", type=int, choices=(0, 1, 2), required=True)
    block.set_defaults(payload=lambda a: {"user_id": a.user_id, "status": a.status})
    token = simple(
        "get-token", "/admin/user/get_token", "issue a token (printed alone)", "user_id", "client_id"
    )
    token.add_argument("--platform", type=int, default=0, help="SPEC §1 platform number (default 0)")
    token.set_defaults(
        payload=lambda a: {"user_id": a.user_id, "client_id": a.client_id, "platform": a.platform},
        show=lambda result: result["token"],
    )
    simple("sessions", "/admin/session/list", "list a user's sessions", "user_id")
    simple("kick", "/admin/session/kick", "kick a session", "user_id", "client_id")
    simple("destroy", "/admin/session/destroy", "destroy a session", "user_id", "client_id")

    request = simple("friend-request", "/admin/friend/send_request", "send a friend request", "user_id", "target")
    request.add_argument("--reason", default="")
    request.set_defaults(payload=lambda a: {"user_id": a.user_id, "target": a.target, "reason": a.reason})
    handle = simple(
        "handle-request", "/admin/friend/handle_request", "accept (or --reject) a friend request", "user_id", "requester"
    )
    handle.add_argument("--reject", action="store_true")
    handle.set_defaults(payload=lambda a: {"user_id": a.user_id, "requester": a.requester, "accept": not a.reject})
    simple("friends", "/admin/friend/list", "list a user's friends", "user_id")
    simple("unfriend", "/admin/friend/delete", "end a friendship (both sides)", "user_id", "friend_id")
    simple("friend-status", "/admin/friend/status", "are two users friends?", "user_id", "friend_id")
    simple("blacklist", "/admin/blacklist/list", "list whom a user blocked", "user_id")
    blacklist = simple(
        "blacklist-set", "/admin/blacklist/set", "block (or --unblock) a user for another", "user_id", "target"
    )
    blacklist.add_argument("--unblock", action="store_true")
    blacklist.set_defaults(payload=lambda a: {"user_id": a.user_id, "target": a.target, "blocked": not a.unblock})
    put = calls.add_parser("put-setting", help='set a user setting ("" removes it)')
    for arg in ("user_id", "scope", "key", "value"):
        put.add_argument(arg, type=int if arg == "scope" else str)
    put.set_defaults(
        run=_call,
        path="/admin/user/put_setting",
        payload=lambda a: {"user_id": a.user_id, "scope": a.scope, "key": a.key, "value": a.value},
    )
    get = calls.add_parser("get-setting", help="show a user's settings of a scope (or one key)")
    get.add_argument("user_id")
    get.add_argument("scope", type=int)
    get.add_argument("key", nargs="?")
    get.set_defaults(
        run=_call,
        path="/admin/user/get_setting",
        payload=lambda a: {"user_id": a.user_id, "scope": a.scope, **({"key": a.key} if a.key is not None else {})},
    )
    _group_commands(calls.add_parser("group", help="hosted groups: ember admin group COMMAND ..."))
    _channel_commands(calls.add_parser("channel", help="channels: ember admin channel COMMAND ..."))
    _robot_commands(calls.add_parser("robot", help="robots: ember admin robot COMMAND ..."))
    _search_command(calls.add_parser("search", help="search messages: everyone's, one user's, or --rebuild the index"))
    room = simple("create-chatroom", "/admin/chatroom/create", "create or update a chatroom", "chatroom_id")
    for name in CHATROOM_FIELDS:
        room.add_argument(f"--{name}", default="", help=f"the room's {name}")
    room.add_argument("--state", type=int, default=0, help="the app's own state value (default 0)")
    room.set_defaults(
        payload=lambda a: {
            "chatroom_id": a.chatroom_id,
            "state": a.state,
            **{n: getattr(a, n) for n in CHATROOM_FIELDS},
        }
    )
    simple(
        "destroy-chatroom", "/admin/chatroom/destroy", "destroy a chatroom (its members leave)", "chatroom_id"
    )
    simple(
        "chatroom", "/admin/chatroom/info", "show a chatroom, its member count and counters", "chatroom_id"
    )
    _admin_commands(calls)  # every endpoint the commands above do not cover, generated from its model
    return parser


def _group_commands(group: argparse.ArgumentParser) -> None:
    """``ember admin group ...``: the common group operations (docs/ADMIN_API.md "Groups")."""
    calls = group.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, path: str, help_text: str, payload: Any, *positional: str, many: str = "") -> argparse.ArgumentParser:
        cmd = calls.add_parser(name, help=help_text)
        for arg in positional:
            cmd.add_argument(arg)
        if many:
            cmd.add_argument(many, nargs="+")
        cmd.set_defaults(run=_call, path=f"/admin/group/{path}", payload=payload)
        return cmd

    create = command(
        "create", "create", "create a group owned by OWNER",
        lambda a: {
            "owner": a.owner, "members": a.members, "name": a.name, "type": a.type, "join_type": a.join_type,
            **({"group_id": a.id} if a.id else {}),
        },
        "owner",
    )  # fmt: skip
    create.add_argument("--id", help="group id (default: generated)")
    create.add_argument("--name", default="")
    create.add_argument("--type", type=int, choices=(0, 2, 3), default=0, help="0 normal, 2 restricted, 3 organization")
    create.add_argument("--join-type", dest="join_type", type=int, choices=(0, 1, 2), default=0)
    create.add_argument("--members", nargs="*", default=[], help="initial members besides the owner")
    command("add", "add", "add members", lambda a: {"group_id": a.group_id, "user_ids": a.user_ids}, "group_id",
            many="user_ids")  # fmt: skip
    command("kick", "kick", "remove members", lambda a: {"group_id": a.group_id, "user_ids": a.user_ids},
            "group_id", many="user_ids")  # fmt: skip
    command("quit", "quit", "make a member leave", lambda a: {"group_id": a.group_id, "user_id": a.user_id},
            "group_id", "user_id")  # fmt: skip
    command("dismiss", "dismiss", "dismiss a group", lambda a: {"group_id": a.group_id}, "group_id")
    command("transfer", "transfer", "make a member the owner",
            lambda a: {"group_id": a.group_id, "new_owner": a.new_owner}, "group_id", "new_owner")  # fmt: skip
    modify = command(
        "modify", "modify", "set name, portrait, extra, mute, join_type or type",
        lambda a: {"group_id": a.group_id, "field": a.field,
                   "value": int(a.value) if a.field in ("mute", "join_type", "type") else a.value},
        "group_id",
    )  # fmt: skip
    modify.add_argument("field", choices=("name", "portrait", "extra", "mute", "join_type", "type"))
    modify.add_argument("value")
    managers = command(
        "managers", "set_managers", "make members managers (--unset: normal again)",
        lambda a: {"group_id": a.group_id, "user_ids": a.user_ids, "is_manager": not a.unset}, "group_id",
        many="user_ids",
    )  # fmt: skip
    managers.add_argument("--unset", action="store_true")
    command("get", "get", "show a group's info", lambda a: {"group_id": a.group_id}, "group_id")
    members = command(
        "members", "members", "list a group's members (first page)",
        lambda a: {"group_id": a.group_id, "limit": a.limit}, "group_id",
    )  # fmt: skip
    members.add_argument("--limit", type=int, default=500)
    command("user-groups", "user_groups", "the groups a user is in", lambda a: {"user_id": a.user_id}, "user_id")
    command("common", "common", "the groups two users are both in",
            lambda a: {"user_id": a.user_id, "other": a.other}, "user_id", "other")  # fmt: skip


def _robot_commands(robot: argparse.ArgumentParser) -> None:
    """``ember admin robot ...``: create, update, destroy, info, list (docs/ADMIN_API.md "Robots")."""
    calls = robot.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, help_text: str, payload: Any, positional: str) -> argparse.ArgumentParser:
        cmd = calls.add_parser(name, help=help_text)
        cmd.add_argument(positional)
        cmd.set_defaults(run=_call, path=f"/admin/robot/{name}", payload=payload)
        return cmd

    def given(a: argparse.Namespace, **fields: str) -> dict[str, Any]:
        return {key: getattr(a, attr) for key, attr in fields.items() if getattr(a, attr) is not None}

    create = command(
        "create", "create a robot owned by OWNER (the answer shows its secret, once)",
        lambda a: {"owner": a.owner, **given(a, robot_id="id", name="name", callback="callback", robot_extra="extra")},
        "owner",
    )  # fmt: skip
    create.add_argument("--id", help="robot id (default: generated)")
    for name in ("name", "callback", "extra"):
        create.add_argument(f"--{name}")
    update = command(
        "update", "change a robot's owner, callback or robot_extra, or rotate its secret (shown once)",
        lambda a: {
            "robot_id": a.robot_id, "rotate_secret": a.rotate_secret,
            **given(a, owner="owner", callback="callback", robot_extra="extra"),
        },
        "robot_id",
    )  # fmt: skip
    for name in ("owner", "callback", "extra"):
        update.add_argument(f"--{name}")
    update.add_argument("--rotate-secret", action="store_true")
    command("destroy", "end a robot's API access at once and forbid its user", lambda a: {"robot_id": a.robot_id}, "robot_id")
    command("info", "show a robot (never its secret)", lambda a: {"robot_id": a.robot_id}, "robot_id")
    command("list", "the robots a user owns", lambda a: {"owner": a.owner}, "owner")


def _search_command(cmd: argparse.ArgumentParser) -> None:
    """``ember admin search KEYWORD [--user U] ...`` and ``ember admin search --rebuild`` (docs/ADMIN_API.md "Search")."""
    cmd.add_argument("keyword", nargs="?", help="every word (by prefix) and CJK run must be in the message")
    cmd.add_argument("--user", help="only this user's messages, as their own search finds them")
    cmd.add_argument("--from-user", dest="from_user", help="only messages this user sent")
    cmd.add_argument("--limit", type=int, default=20)
    cmd.add_argument("--cursor", help="next_cursor of the previous page")
    cmd.add_argument("--rebuild", action="store_true", help="re-index every stored message (waits until done)")
    cmd.set_defaults(run=_search)


def _search(args: argparse.Namespace) -> int:
    if args.rebuild:
        if args.keyword is not None:
            raise CliError("search: --rebuild takes no keyword")
        args.path, args.payload, args.timeout = "/admin/message/search_rebuild", lambda a: {}, None
        return _call(args)
    if args.keyword is None:
        raise CliError("search: give a KEYWORD, or --rebuild")
    payload = {"keyword": args.keyword, "limit": args.limit}
    payload.update({k: v for k, v in (("cursor", args.cursor), ("from_user", args.from_user)) if v is not None})
    if args.user is not None:
        payload["user_id"] = args.user
    args.path = "/admin/message/search_user" if args.user is not None else "/admin/message/search"
    args.payload = lambda a: payload
    return _call(args)


def _channel_commands(channel: argparse.ArgumentParser) -> None:
    """``ember admin channel ...``: create, destroy, info, post, listeners (docs/ADMIN_API.md "Channels")."""
    calls = channel.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, path: str, help_text: str, payload: Any, *positional: str) -> argparse.ArgumentParser:
        cmd = calls.add_parser(name, help=help_text)
        for arg in positional:
            cmd.add_argument(arg)
        cmd.set_defaults(run=_call, path=f"/admin/channel/{path}", payload=payload)
        return cmd

    create = command(
        "create", "create", "create a channel owned by OWNER",
        lambda a: {
            "owner": a.owner, "name": a.name, "portrait": a.portrait, "desc": a.desc, "private": a.private,
            "callback": a.callback, "callback_only": a.callback_only, **({"channel_id": a.id} if a.id else {}),
        },
        "owner",
    )  # fmt: skip
    create.add_argument("--id", help="channel id (default: generated)")
    for name in ("name", "portrait", "desc", "callback"):
        create.add_argument(f"--{name}", default="")
    create.add_argument("--private", action="store_true", help="listeners only by the owner's invitation")
    create.add_argument("--callback-only", dest="callback_only", action="store_true",
                        help="listeners' messages go only to the callback URL")  # fmt: skip
    command("destroy", "destroy", "destroy a channel", lambda a: {"channel_id": a.channel_id}, "channel_id")
    command("info", "info", "show a channel's info", lambda a: {"channel_id": a.channel_id}, "channel_id")
    command(
        "post", "post", "post a text to every listener, as the owner",
        lambda a: {"channel_id": a.channel_id, "content": {"type": 1, "searchable_content": a.text}},
        "channel_id", "text",
    )  # fmt: skip
    listeners = command(
        "listeners", "listeners", "list a channel's listeners (first page)",
        lambda a: {"channel_id": a.channel_id, "limit": a.limit}, "channel_id",
    )  # fmt: skip
    listeners.add_argument("--limit", type=int, default=1000)


def _check_config(args: argparse.Namespace) -> int:
    """Print ``key = value  # source`` for every key (secrets as <secret>); a ConfigError exits 2."""
    config, sources = Config.load_with_sources(args.file.parent, args.file, os.environ)
    rows = config.describe(sources)
    width = max(len(f"{key} = {value}") for key, value, _ in rows)
    for key, value, source in rows:
        print(f"{f'{key} = {value}':<{width}}  # {source}")
    print(f"ember: {args.file} is valid", file=sys.stderr)
    return 0


#: Endpoints without a command of their own: /admin/health is /health's answer.
NO_COMMAND = frozenset({"/admin/health"})


def _covered(calls: Any) -> set[str]:
    """The endpoint paths the hand-written commands (and their sub-commands) already call."""
    paths = set()
    for cmd in calls.choices.values():
        if cmd.get_default("path"):
            paths.add(cmd.get_default("path"))
        for action in cmd._subparsers._group_actions if cmd._subparsers else ():
            paths |= _covered(action)
    return paths


def _admin_commands(calls: Any) -> None:
    """A subcommand for every admin endpoint that has no hand-written one, built from the served OpenAPI
    document and its pydantic models: named by its path after /admin/ (``message-send``); a required text
    field is a positional argument (in the model's order), every other field an option (nested objects and
    lists as JSON text); GET endpoints (health, metrics) take none."""
    from gateway.admin.app import endpoints  # FastAPI and the models: only the admin command needs them

    covered = _covered(calls) | NO_COMMAND
    for ep in endpoints():
        if ep.path in covered:
            continue
        name = ep.path.removeprefix("/admin/").strip("/").replace("/", "-").replace("_", "-")
        cmd = calls.add_parser(name, help=ep.summary.rstrip(".").replace("``", "").replace("%", "%%"))
        fields: list[tuple[str, bool]] = []  # (field, positional)
        if ep.body is not None:
            for field, info in ep.body.model_fields.items():
                kind, is_json = _cli_type(info.annotation)
                positional = info.is_required() and kind is str and not is_json
                fields.append((field, positional))
                if positional:
                    cmd.add_argument(field, help=info.description)
                    continue
                cmd.add_argument(
                    f"--{field.replace('_', '-')}", dest=field, required=info.is_required(),
                    type=_json if is_json else _parse_bool if kind is bool else kind,
                    metavar="JSON" if is_json else None,
                    help=info.description,
                )  # fmt: skip
        cmd.set_defaults(
            run=_call, path=ep.path, method=ep.method,
            payload=lambda a, fields=fields: {f: getattr(a, f) for f, _ in fields if getattr(a, f) is not None},
        )  # fmt: skip


def _cli_type(annotation: Any) -> tuple[type, bool]:
    """(argparse type, given as JSON) for a model field's annotation."""
    import typing

    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if annotation in (str, int, bool):
        return annotation, False
    return str, True


def _json(text: str) -> Any:
    return json.loads(text)


_json.__name__ = "JSON"  # argparse names the type in its message: "invalid JSON value"


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _serve(args: argparse.Namespace) -> int:
    data = _data_dir(args)
    if args.config is None:
        path, created = ensure_config(data)
        print(
            f"ember: {'created' if created else 'using'} config {path}"
            + (" with fresh secrets (keep it private)" if created else ""),
            file=sys.stderr,
        )
    config = Config.load(data, args.config)
    from gateway import logs

    logs.configure(config.log)
    warn_if_open_to_others(data, args.config or data / CONFIG_FILENAME)
    server = importlib.import_module("gateway.server")  # lazily: heavy, and only this command needs it
    from gateway.net.webchat import WebChatMissing
    from storage import StorageError

    _tune_gc()
    try:
        trio.run(functools.partial(server.serve, config, handle_signals=True))
    except (StorageError, WebChatMissing) as exc:  # e.g. another gateway owns the database, or SQLite is too old
        print(f"ember: {exc}", file=sys.stderr)
        return 1
    return 0


def warn_if_open_to_others(data: Path, config_file: Path) -> None:
    """Log one warning per path that the group or other local users may open: the data folder (the
    database's files are kept 0600 whatever it is, but their names and anything else put there show) and
    the config file (it holds admin.secret and token.key). Only the path and its mode are logged."""
    log = logging.getLogger("ember.serve")
    for path, kind, private in ((data, "data folder", "700"), (config_file, "config file", "600")):
        try:
            mode = path.stat().st_mode & 0o777
        except OSError:
            continue  # no config file: everything comes from the environment
        if mode & 0o077 and sys.platform != "win32":
            log.warning("%s %s is open to other users (mode %04o): chmod %s %s", kind, path, mode, private, path)


#: Allocations between two young-generation collections (Python's default is 700). Bench, window 10,
#: trio-thread CPU per message with the freeze: 700 -> 37-43 us, 5000 -> 28-33 us, 20000 -> 26-31 us.
GC_YOUNG_THRESHOLD = 20000


def _tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a long-running server.

    Under message load it took about 13 % of the gateway's CPU (perf, window 10):
    every 700 allocations a young collection promoted the objects of messages
    still in flight, the old generation grew, and full collections then walked
    every object the process ever built, the web framework's included. Freezing
    what exists at startup takes it out of every collection for good; a higher
    young threshold lets in-flight objects die (by reference counting, as almost
    all of ours do) before a collection promotes them. Cycles are still collected.
    """
    importlib.import_module("gateway.admin.app")  # the biggest share of startup objects: freeze it too
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data or os.environ.get("EMBER_DATA") or DEFAULT_DATA)


def _user_payload(args: argparse.Namespace) -> dict[str, Any]:
    payload: dict[str, Any] = {"user_id": args.user_id}
    payload.update({f: getattr(args, f) for f in (*USER_FIELDS, "gender") if getattr(args, f) is not None})
    return payload


def admin_target(url: str | None, secret: str | None, data: Path, env: Mapping[str, str]) -> tuple[str, str]:
    """The admin API's base URL and secret, from flags, then environment, then the data folder's config."""
    url = url or env.get("EMBER_ADMIN_URL")
    secret = secret or env.get("EMBER_ADMIN_SECRET")
    if url is None or secret is None:
        try:
            config = Config.load(data, env=env)
        except ConfigError as exc:
            raise CliError(
                f"no admin URL/secret: use --url/--secret, EMBER_ADMIN_URL/EMBER_ADMIN_SECRET, "
                f"or --data with a config ({exc})"
            ) from None
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(
            config.admin.host, config.admin.host
        )
        url = url or f"http://{f'[{host}]' if ':' in host else host}:{config.admin.port}"
        secret = secret or config.admin.secret
    return url.rstrip("/"), secret


def _call(args: argparse.Namespace) -> int:
    url, secret = admin_target(args.url, args.secret, _data_dir(args), os.environ)
    try:
        if getattr(args, "method", "POST") == "GET":
            response = httpx.get(url + args.path, timeout=10)
        else:
            payload = args.payload(args)
            body, headers = signed_json(secret.encode("utf-8"), payload, Clock().now_ms())
            timeout = getattr(args, "timeout", 10)  # None: a rebuild, which takes as long as the database is big
            response = httpx.post(url + args.path, content=body, headers=headers, timeout=timeout)
        if not response.headers.get("content-type", "").startswith("application/json"):
            print(response.text, end="")  # /metrics: Prometheus text
            return 0 if response.status_code == 200 else 1
        answer = response.json()
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach {url}: {exc}") from None
    except ValueError:
        raise CliError(f"{url} answered HTTP {response.status_code} without JSON") from None
    if answer.get("code") != 0:
        print(json.dumps(answer, ensure_ascii=False, indent=2), file=sys.stderr)
        return 1
    show = getattr(args, "show", None)
    print(show(answer["result"]) if show else json.dumps(answer, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
