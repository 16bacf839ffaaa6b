"""The ``ember`` command: ``serve`` bootstraps a data folder; ``admin`` talks real HTTP to a real admin server.

The admin server runs in the test's trio loop; the CLI (a blocking httpx
client) runs in a worker thread, as it would in its own process.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
import types
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from gateway.admin.app import create_admin_app, serve_admin
from gateway.cli import CliError, admin_target, main
from gateway.clock import Clock
from gateway.cluster.local import Router
from gateway.config import Config, ensure_config
from gateway.delivery import Delivery
from gateway.domain.messaging import MessageService
from gateway.domain.sessions import SessionService
from protocol.codes import ConnectionStatus
from protocol.token import parse_token
from storage import open_store
from tests import backends


class RecordingNode(Router):
    """Test double for gateway.cluster.local.Router: nobody is online (relation changes push to no one);
    close requests are recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.closed: list[tuple[str, str, ConnectionStatus]] = []

    def kick(self, user_id: str, client_id: str, status: ConnectionStatus) -> None:
        self.closed.append((user_id, client_id, status))


@dataclass
class Server:
    url: str
    data: Path
    config: Config
    node: RecordingNode


@pytest.fixture
async def server(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Server]:
    """An admin server whose config lives in a data folder, as `ember serve` would make it."""
    data = tmp_path / "data"
    ensure_config(data)
    config = Config.load(data, env={})
    clock, node = Clock(), RecordingNode()  # real wall clock: the CLI signs with it
    delivery = Delivery(node)
    url = await trio.to_thread.run_sync(backends.storage_url, data)  # "" on SQLite
    async with open_store(config.storage.path, server_key=config.token.key_bytes(), url=url) as store:
        sessions = SessionService(config, store, delivery, clock)
        messages = MessageService(config, store, delivery, clock)
        app = create_admin_app(
            config=config, store=store, sessions=sessions, delivery=delivery, clock=clock, messages=messages
        )
        shutdown = trio.Event()
        urls = await nursery.start(functools.partial(serve_admin, app, "127.0.0.1", 0, shutdown_trigger=shutdown.wait))
        yield Server(urls[0], data, config, node)
        shutdown.set()


async def ember(*argv: str) -> int:
    return await trio.to_thread.run_sync(main, list(argv))


async def test_admin_commands_over_http(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["admin", "--url", server.url, "--data", str(server.data)]  # secret from the data folder

    assert await ember(*base, "create-user", "alice", "--name", "Alice", "--gender", "2", "--extra", "{}") == 0
    assert json.loads(capsys.readouterr().out)["result"] == {"user_id": "alice", "created": True}

    assert await ember(*base, "update-user", "alice", "--display-name", "Al") == 0
    capsys.readouterr()
    assert await ember(*base, "get-user", "alice") == 0
    user = json.loads(capsys.readouterr().out)["result"]
    assert (user["name"], user["display_name"], user["gender"], user["extra"]) == ("Alice", "Al", 2, "{}")

    assert await ember(*base, "get-token", "alice", "phone", "--platform", "1") == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and parse_token(out.strip()).client_id == "phone"  # the token alone

    assert await ember(*base, "get-token", "alice", "phone2", "--platform", "2") == 0  # kicks "phone"
    capsys.readouterr()
    assert server.node.closed == [("alice", "phone", ConnectionStatus.SECRET_KEY_MISMATCH)]

    assert await ember(*base, "sessions", "alice") == 0
    listed = json.loads(capsys.readouterr().out)["result"]["sessions"]
    assert {s["client_id"]: s["state"] for s in listed} == {"phone": "deleted", "phone2": "active"}

    assert await ember(*base, "kick", "alice", "phone2") == 0
    assert await ember(*base, "block", "alice", "--status", "1") == 0
    capsys.readouterr()
    assert await ember(*base, "get-token", "alice", "pc", "--platform", "3") == 0
    capsys.readouterr()
    assert await ember(*base, "destroy", "alice", "pc") == 0
    out = capsys.readouterr()
    assert server.config.admin.secret not in out.out + out.err


async def test_relation_commands_over_http(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["admin", "--url", server.url, "--data", str(server.data)]
    for user in ("alice", "bob"):
        assert await ember(*base, "create-user", user) == 0
    assert await ember(*base, "friend-request", "alice", "bob", "--reason", "hi") == 0
    assert await ember(*base, "handle-request", "bob", "alice") == 0
    capsys.readouterr()
    assert await ember(*base, "friend-status", "alice", "bob") == 0
    assert json.loads(capsys.readouterr().out)["result"]["friends"] is True
    assert await ember(*base, "friends", "bob") == 0
    assert [f["friend_id"] for f in json.loads(capsys.readouterr().out)["result"]["friends"]] == ["alice"]
    assert await ember(*base, "unfriend", "bob", "alice") == 0
    assert await ember(*base, "blacklist-set", "bob", "alice") == 0
    capsys.readouterr()
    assert await ember(*base, "blacklist", "bob") == 0
    assert json.loads(capsys.readouterr().out)["result"]["user_ids"] == ["alice"]
    assert await ember(*base, "put-setting", "bob", "3", "0-alice-0", "1") == 0
    capsys.readouterr()
    assert await ember(*base, "get-setting", "bob", "3") == 0
    settings = json.loads(capsys.readouterr().out)["result"]["settings"]
    assert [(s["key"], s["value"]) for s in settings] == [("0-alice-0", "1")]
    assert await ember(*base, "friend-request", "alice", "bob") == 1  # blacklisted: 246 on stderr
    assert json.loads(capsys.readouterr().err)["code"] == 246


async def test_failures_exit_non_zero_with_the_answer_on_stderr(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["admin", "--url", server.url, "--data", str(server.data)]
    assert await ember(*base, "get-user", "nobody") == 1
    out = capsys.readouterr()
    assert out.out == "" and json.loads(out.err)["code"] == 253

    assert await ember(*base, "get-token", "nobody", "c") == 1  # hosting on: unknown user
    assert json.loads(capsys.readouterr().err)["code"] == 253

    assert await ember("admin", "--url", server.url, "--secret", "wrong", "get-user", "x") == 1
    assert json.loads(capsys.readouterr().err)["code"] == 248

    assert await ember(*base, "create-user", "bob", "--extra", "not json") == 1
    assert json.loads(capsys.readouterr().err)["code"] == 251


async def test_env_gives_url_and_secret(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EMBER_ADMIN_URL", server.url)
    monkeypatch.setenv("EMBER_ADMIN_SECRET", server.config.admin.secret)
    assert await ember("admin", "--data", str(tmp_path / "empty"), "create-user", "carol") == 0
    assert json.loads(capsys.readouterr().out)["code"] == 0


async def test_unreachable_server_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert await ember("admin", "--url", "http://127.0.0.1:9", "--secret", "s", "get-user", "x") == 2
    assert "cannot reach" in capsys.readouterr().err


def test_admin_target_resolution(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="no admin URL/secret"):
        admin_target(None, None, tmp_path, {})
    ensure_config(tmp_path)
    secret = Config.load(tmp_path, env={}).admin.secret
    assert admin_target(None, None, tmp_path, {}) == ("http://127.0.0.1:7601", secret)
    env = {"EMBER_ADMIN_URL": "http://h:1/", "EMBER_ADMIN_SECRET": "e"}
    assert admin_target(None, None, tmp_path, env) == ("http://h:1", "e")
    assert admin_target("http://f:2", "f", tmp_path, env) == ("http://f:2", "f")
    # A wildcard bind address is reached through loopback.
    wild = {"EMBER_ADMIN__HOST": "0.0.0.0", "EMBER_ADMIN__PORT": "9"}
    assert admin_target(None, None, tmp_path, wild)[0] == "http://127.0.0.1:9"
    assert admin_target(None, None, tmp_path, {"EMBER_ADMIN__HOST": "::"})[0] == "http://[::1]:7601"


def fake_server(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Config, dict[str, Any]]]:
    """Stand in for gateway.server (the lead's module): record what serve() is called with."""
    calls: list[tuple[Config, dict[str, Any]]] = []

    async def serve(config: Config, **kwargs: Any) -> None:
        calls.append((config, kwargs))

    monkeypatch.setitem(sys.modules, "gateway.server", types.SimpleNamespace(serve=serve))
    return calls


def test_serve_creates_config_once_and_never_prints_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = fake_server(monkeypatch)
    data = tmp_path / "data"
    assert main(["serve", "--data", str(data)]) == 0
    out = capsys.readouterr()
    assert f"created config {data / 'ember.toml'}" in out.err
    config, kwargs = calls[0]
    assert kwargs == {"handle_signals": True}
    assert config.storage.path == str(data / "ember.db")
    assert config.admin.secret not in out.out + out.err and config.token.key not in out.out + out.err

    assert main(["serve", "--data", str(data)]) == 0
    assert "using config" in capsys.readouterr().err
    assert calls[1][0].admin.secret == config.admin.secret  # same file, same secrets


def test_serve_reports_config_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = fake_server(monkeypatch)
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nprot = 1\n")
    assert main(["serve", "--data", str(tmp_path), "--config", str(bad)]) == 2
    assert "unknown key server.prot" in capsys.readouterr().err and calls == []


def test_real_server_accepts_what_serve_passes() -> None:
    try:
        from gateway.server import serve
    except ImportError:
        pytest.skip("gateway.server not importable yet")
    assert "handle_signals" in inspect.signature(serve).parameters


def test_check_config_prints_every_key_with_its_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "my.toml"
    path.write_text(
        '[admin]\nsecret = "file-secret-value"\n[token]\nkey = "' + "ab" * 32 + '"\n[server]\nport = 9100\n'
    )
    monkeypatch.setenv("EMBER_SERVER__PORT", "9200")
    monkeypatch.setenv("EMBER_LOG__FORMAT", "json")
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr()
    lines = {line.split(" = ")[0]: line for line in out.out.splitlines()}
    assert lines["server.port"].split() == ["server.port", "=", "9200", "#", "env"]
    assert lines["log.format"].split() == ["log.format", "=", '"json"', "#", "env"]
    assert lines["admin.secret"].split()[-3:] == ["<secret>", "#", "file"]
    assert lines["server.host"].split()[-1] == "default" and lines["callback.secret"].split()[2] == '""'
    assert "file-secret-value" not in out.out + out.err and "ab" * 32 not in out.out
    from gateway.config import config_table_markdown

    assert len(lines) == config_table_markdown().count("\n| `")  # every key, once
    monkeypatch.delenv("EMBER_SERVER__PORT")
    path.write_text('[server]\nport = "x"\n')
    assert main(["check-config", str(path)]) == 2
    assert "server.port: expected int" in capsys.readouterr().err


def test_every_admin_endpoint_has_a_command() -> None:
    from gateway.admin.app import endpoints
    from gateway.cli import NO_COMMAND, _covered, _parser

    parser = _parser()
    admin = parser._subparsers._group_actions[0].choices["admin"]
    covered = _covered(admin._subparsers._group_actions[0])
    assert {e.path for e in endpoints()} - covered == NO_COMMAND


async def test_generated_commands_send_messages_and_set_blacklists(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["admin", "--url", server.url, "--data", str(server.data)]
    for user in ("alice", "bob"):
        assert await ember(*base, "create-user", user) == 0
    capsys.readouterr()
    assert await ember(
        *base, "message-send", "alice", "--conv", '{"type": 0, "target": "bob"}', "--content", '{"type": 1, "content": "hi"}'
    ) == 0
    ack = json.loads(capsys.readouterr().out)["result"]
    assert ack["seq"] == 1 and ack["message_id"].isdigit()
    assert await ember(*base, "blacklist-set", "alice", "bob") == 0
    capsys.readouterr()
    assert await ember(*base, "blacklist-get", "alice") == 0
    assert json.loads(capsys.readouterr().out)["result"]["user_ids"] == ["bob"]
    assert await ember(*base, "health") == 0
    assert json.loads(capsys.readouterr().out)["result"]["storage_writable"] is True
    with pytest.raises(SystemExit):  # argparse: usage error, exit status 2
        await ember(*base, "message-send", "alice", "--conv", "not json", "--content", "{}")
    assert "argument --conv: invalid JSON value: 'not json'" in capsys.readouterr().err
