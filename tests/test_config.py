"""gateway.config: defaults, TOML, environment overrides, errors, the generated file and the README table."""

from __future__ import annotations

import dataclasses
import re
import stat
import tomllib
from pathlib import Path

import pytest

from gateway.config import (
    CONFIG_FILENAME,
    Config,
    ConfigError,
    config_table_markdown,
    ensure_config,
)

KEY = "ab" * 32
SECRETS = {"EMBER_ADMIN__SECRET": "admin-secret", "EMBER_TOKEN__KEY": KEY}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_match_the_documented_keys() -> None:
    c = Config.default()
    assert (c.server.host, c.server.port, c.server.multi_endpoint) == ("127.0.0.1", 7600, False)
    assert c.server.client_support_kickoff_event is False
    assert c.server.max_clock_skew_seconds == 86400
    assert c.server.handshake_timeout_seconds == 10.0
    assert c.server.max_frame_bytes == 262144
    assert (c.server.keepalive_seconds, c.server.min_keepalive_seconds, c.server.max_keepalive_seconds) == (
        60, 10, 900)
    assert c.server.node_id == 0
    assert (c.admin.host, c.admin.port, c.admin.max_clock_skew_seconds) == ("127.0.0.1", 7601, 300)
    assert c.token.expire_seconds == 0
    assert c.client.request_rate_limit == 100
    assert c.storage.synchronous == "NORMAL"
    assert c.user.hosting is True
    assert c.log.level == "INFO"
    # Fresh random secrets, of the documented shape.
    assert len(c.token.key_bytes()) == 32
    assert len(c.admin.secret) == 64 and c.admin.secret != Config.default().admin.secret


def test_default_takes_overrides_and_checks_them() -> None:
    c = Config.default(server={"multi_endpoint": True}, token={"key": KEY, "expire_seconds": 60})
    assert c.server.multi_endpoint is True
    assert c.token.key_bytes() == bytes.fromhex(KEY)
    with pytest.raises(ConfigError, match="server.port"):
        Config.default(server={"port": 70000})
    with pytest.raises(ConfigError, match="unknown key server.nope"):
        Config.default(server={"nope": 1})
    with pytest.raises(ConfigError, match="unknown section"):
        Config.default(nope={})


def test_config_is_frozen_and_hides_secrets_in_repr() -> None:
    c = Config.default(admin={"secret": "s3cr3t-admin"}, token={"key": KEY})
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.server.port = 1  # type: ignore[misc]
    assert "s3cr3t-admin" not in repr(c) and KEY not in repr(c)


def test_load_file_then_env_with_types(tmp_path: Path) -> None:
    write(tmp_path / CONFIG_FILENAME, f"""
[server]
port = 8000
handshake_timeout_seconds = 5   # an int is fine for a float key
[admin]
secret = "from-file"
[token]
key = "{KEY}"
[storage]
path = "db/ember.db"
""")
    env = {
        "EMBER_SERVER__PORT": "9000",
        "EMBER_SERVER__MULTI_ENDPOINT": "true",
        "EMBER_SERVER__HANDSHAKE_TIMEOUT_SECONDS": "2.5",
        "EMBER_USER__HOSTING": "off",
        "EMBER_ADMIN_URL": "http://ignored",  # no double underscore: belongs to the CLI, not config
        "PATH": "/bin",
    }
    c = Config.load(tmp_path, env=env)
    assert c.server.port == 9000
    assert c.server.multi_endpoint is True
    assert c.server.handshake_timeout_seconds == 2.5
    assert c.user.hosting is False
    assert c.admin.secret == "from-file"
    assert c.admin.key_bytes() == b"from-file"
    assert c.storage.path == str(tmp_path / "db" / "ember.db")
    assert c.data_dir == tmp_path


def test_load_with_env_only_and_explicit_path(tmp_path: Path) -> None:
    c = Config.load(tmp_path, env=SECRETS)
    assert c.admin.secret == "admin-secret"
    other = write(tmp_path / "other.toml", "[log]\nlevel = \"DEBUG\"\n")
    assert Config.load(tmp_path, other, env=SECRETS).log.level == "DEBUG"
    absolute = write(tmp_path / "abs.toml", "[storage]\npath = \"/var/lib/ember/x.db\"\n")
    assert Config.load(tmp_path, absolute, env=SECRETS).storage.path == "/var/lib/ember/x.db"


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ("[server]\nprot = 1\n", {}, "unknown key server.prot"),
        ("[sever]\nport = 1\n", {}, r"unknown section \[sever\]"),
        ("server = 1\n", {}, "must be a \\[server\\] table"),
        ("[server]\nport = \"80\"\n", {}, "server.port: expected int"),
        ("[server]\nmulti_endpoint = 1\n", {}, "server.multi_endpoint: expected bool"),
        ("[server]\nport = true\n", {}, "server.port: expected int"),
        ("[server]\nnode_id = 1024\n", {}, "server.node_id: must be at most 1023"),
        ("[server]\nkeepalive_seconds = 5\n", {}, "keepalive_seconds must lie between"),
        ("[storage]\nsynchronous = \"OFF\"\n", {}, "storage.synchronous: must be one of NORMAL, FULL"),
        ("[server\n", {}, "ember.toml"),
        ("", {"EMBER_SERVER__PROT": "1"}, "EMBER_SERVER__PROT: unknown key server.prot"),
        ("", {"EMBER_SERVER__PORT": "x"}, "EMBER_SERVER__PORT: expected int"),
        ("", {"EMBER_SERVER__MULTI_ENDPOINT": "maybe"}, "EMBER_SERVER__MULTI_ENDPOINT: expected bool"),
        ("", {"EMBER_NOPE__X": "1"}, "unknown key nope.x"),
        ("", {"EMBER_TOKEN__KEY": "abcd"}, "token.key: must be 64 hex"),
        ("", {"EMBER_TOKEN__KEY": ""}, "token.key is required .*EMBER_TOKEN__KEY"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, toml: str, env: dict[str, str], message: str) -> None:
    write(tmp_path / CONFIG_FILENAME, toml)
    with pytest.raises(ConfigError, match=message):
        Config.load(tmp_path, env={**SECRETS, **env})


def test_missing_secret_is_an_error_that_does_not_echo_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="admin.secret is required"):
        Config.load(tmp_path, env={"EMBER_TOKEN__KEY": KEY})
    with pytest.raises(ConfigError, match="expected str, got <secret>"):
        write(tmp_path / CONFIG_FILENAME, "[admin]\nsecret = 12345\n")
        Config.load(tmp_path, env={"EMBER_TOKEN__KEY": KEY})


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        Config.load(tmp_path, tmp_path / "missing.toml", env=SECRETS)


def test_ensure_config_writes_a_private_self_documenting_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    path, created = ensure_config(data)
    assert created and path == data / CONFIG_FILENAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert ensure_config(data) == (path, False)
    assert path.read_text() == text  # never rewritten: its secrets are kept

    c = Config.load(data, env={})
    assert re.fullmatch("[0-9a-f]{64}", c.admin.secret)
    assert len(c.token.key_bytes()) == 32
    assert c.admin.secret != c.token.key
    assert c.storage.path == str(data / "ember.db")

    # Uncommenting every default gives back exactly the defaults: the file documents itself.
    uncommented = re.sub(r"^# (\w+ = )", r"\1", text, flags=re.MULTILINE)
    document = tomllib.loads(uncommented)
    defaults = Config.default(admin={"secret": c.admin.secret}, token={"key": c.token.key})
    for section, table in document.items():
        for key, value in table.items():
            expected = getattr(getattr(defaults, section), key)
            assert value == expected or (section, key) == ("storage", "path"), (section, key)


def test_two_starts_get_different_secrets(tmp_path: Path) -> None:
    ensure_config(tmp_path / "a")
    ensure_config(tmp_path / "b")
    a, b = Config.load(tmp_path / "a", env={}), Config.load(tmp_path / "b", env={})
    assert a.admin.secret != b.admin.secret and a.token.key != b.token.key


def test_table_lists_every_key() -> None:
    table = config_table_markdown()
    assert table.startswith("| key | default | meaning |\n|---|---|---|\n")
    for section in dataclasses.fields(Config):
        if section.name == "data_dir":
            continue
        for f in dataclasses.fields(getattr(Config.default(), section.name)):
            assert f"| `{section.name}.{f.name}` |" in table
    assert "| `admin.secret` | *generated* |" in table


def test_readme_contains_the_config_table() -> None:
    readme = Path(__file__).resolve().parent.parent / "README.md"
    if not readme.exists():
        pytest.skip("README.md not written yet")
    assert config_table_markdown() in readme.read_text(encoding="utf-8"), (
        "README.md's config table is stale: paste gateway.config.config_table_markdown() into it"
    )


def test_a_setting_must_fit_one_sync_page() -> None:
    Config.default(server={"max_frame_bytes": 32768})  # 16384 + 256 fit in ¾ of 32 KiB
    with pytest.raises(ConfigError, match="setting.max_key_bytes"):
        Config.default(server={"max_frame_bytes": 16384})
    Config.default(server={"max_frame_bytes": 16384}, setting={"max_value_bytes": 8192})


# --- storage.url (PostgreSQL, issue 23) ---------------------------------------------------------


def test_storage_url_selects_postgresql_and_never_shows_its_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.cli import main

    assert Config.default().storage.url == ""  # SQLite at storage.path unless set
    url = "postgresql://ember:pw-in-the-url@db.example:5432/ember?sslmode=verify-full&password=pw-in-the-query"
    path = write(tmp_path / "ember.toml", f'[admin]\nsecret = "s"\n[token]\nkey = "{KEY}"\n')
    monkeypatch.setenv("EMBER_STORAGE__URL", url)
    config = Config.load(tmp_path, path)
    assert config.storage.url == url  # given to libpq as written, every parameter kept
    assert "pw-in-the" not in repr(config)
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr()
    line = next(line for line in out.out.splitlines() if line.startswith("storage.url"))
    assert line.split()[:3] == [
        "storage.url", "=", '"postgresql://ember:***@db.example:5432/ember?sslmode=verify-full&password=***"']  # fmt: skip
    assert line.split()[-1] == "env" and "pw-in-the" not in out.out + out.err


@pytest.mark.parametrize("url", ["mysql://u:pw-secret@db/x", "db.example:5432", "host=db password=pw-secret"])
def test_storage_url_must_be_postgresql_and_the_error_masks_it(url: str) -> None:
    with pytest.raises(ConfigError, match="storage.url: must be empty or a postgresql:// URL") as info:
        Config.default(storage={"url": url})
    assert "pw-secret" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:p@h/d", "postgresql://u:***@h/d"),
        ("postgres://u@h:5432/d", "postgres://u@h:5432/d"),
        ("postgresql://u:p%40ss@h1:1,h2:2/d?sslmode=require", "postgresql://u:***@h1:1,h2:2/d?sslmode=require"),
        ("postgresql://u:p@ss/w@h/d", "postgresql://u:***@h/d"),  # an unescaped @ and / in the password
        ("postgresql:///d?host=/run/pg&password=p&user=u", "postgresql:///d?host=/run/pg&password=***&user=u"),
        ("host=h password='a b' user=u", "host=h password=*** user=u"),
    ],
)
def test_mask_password(url: str, shown: str) -> None:
    from storage.postgres.url import mask_password

    assert mask_password(url) == shown
