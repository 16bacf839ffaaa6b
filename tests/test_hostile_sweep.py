"""Generated sweeps (issue 20): hostile values into every admin endpoint and every client method.

One real gateway for the module, in a thread of its own (as tests/test_admin_contract.py does) so
hypothesis drives it synchronously: admin requests go over real HTTP, client requests over a real
connection (run in the gateway's trio loop with ``trio.from_thread``). For every POST operation of the
OpenAPI document the gateway serves, and for every method of the dispatch table, bodies and params
are plausible ones with hostile values planted at a few of their fields (nested ones included):
JSON text nested 4,000 deep, lone surrogates, huge strings, containers nested too deep, wrong types.

Asserted: never an HTTP 5xx, never code 4 (server error), never an ERROR closing the connection, and
nothing logged at ERROR or with a traceback. Derandomized and bounded (a few examples per operation).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.rpc.methods import METHODS
from gateway.signing import signed_headers
from protocol import events
from protocol.codes import ErrorCode
from tests.harness import OPENAPI_TIMEOUT, Gateway, start_gateway
from tests.test_admin_contract import _inline
from tests.test_messaging import Device

EXAMPLES = 6
HANDLERS = Path(__file__).resolve().parent.parent / "gateway"


def _deep(levels: int) -> Any:
    value: Any = []
    for _ in range(levels):
        value = [value]
    return value


#: Values a hostile peer sends in place of any field; all JSON-encodable (``json.dumps`` recurses, so
#: the deep containers stay within its reach: deeper bodies are tests/test_hostile_input.py's).
HOSTILE_COMMON: list[Any] = [
    "[" * 4000 + "]" * 4000,
    "{" * 40 + "}" * 40,
    "x" * 70_000,
    "",
    "\x00\x1b",
    _deep(40),
    {"a": _deep(20)},
    -1,
    1e308,
    True,
    None,
    {},
    [],
    [{"x": "y"}] * 3,
]
HOSTILE_JSON = [*HOSTILE_COMMON, 2**70, -(2**70), "a\ud800b", "\udfff", ["ok", "\ud800"], {"k\udc00": 1}]
HOSTILE_MSGPACK = [*HOSTILE_COMMON, b"\xff" * 10, 2**64 - 1, -(2**63), b"", _deep(100)]


class Running:
    def __init__(self, gw: Gateway, token: trio.lowlevel.TrioToken, stop: trio.Event) -> None:
        self.gw, self.token, self.stop = gw, token, stop
        self.url = gw.running.admin_url
        self.secret = gw.config.admin.secret.encode()
        self.http = httpx.Client(timeout=10, limits=httpx.Limits(max_keepalive_connections=0))
        self.nonces = iter(range(10**9))

    def post(self, path: str, body: bytes) -> httpx.Response:
        headers = signed_headers(self.secret, f"sweep-{next(self.nonces)}", self.gw.clock.now_ms(), body)
        return self.http.post(self.url + path, content=body, headers={**headers, "content-type": "application/json"})

    def run(self, afn: Any, *args: Any) -> Any:
        return trio.from_thread.run(afn, *args, trio_token=self.token)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    ready = threading.Event()
    box: dict[str, Any] = {}
    data = tmp_path_factory.mktemp("sweep")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            # No rate limit to speak of: the sweep sends hundreds of requests on one connection.
            gw = await start_gateway(nursery, Path(data), client={"request_rate_limit": 1_000_000})
            for user in ("alice", "bob", "carol"):
                await gw.user(user)
            stop = trio.Event()
            box["running"] = Running(gw, trio.lowlevel.current_trio_token(), stop)
            ready.set()
            await stop.wait()
            nursery.cancel_scope.cancel()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # noqa: BLE001 - reported by the fixture below
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(30) and "error" not in box, box
    r: Running = box["running"]
    try:
        yield r
    finally:
        r.http.close()
        trio.from_thread.run_sync(r.stop.set, trio_token=r.token)
        thread.join(30)


@pytest.fixture(autouse=True)
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.INFO)
    yield
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]


def plant(value: Any, path: tuple[str, ...], hostile: Any) -> Any:
    """``value`` (a dict) with ``hostile`` at ``path``, making the maps on the way."""
    if not path:
        return hostile
    out = dict(value) if isinstance(value, dict) else {}
    out[path[0]] = plant(out.get(path[0]), path[1:], hostile)
    return out


# ------------------------------------------------------------------------------------------- admin


def _plausible(schema: dict[str, Any]) -> Any:
    """A value that passes ``schema``'s shape, so planted values reach the checks behind it."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        return _plausible(next((s for s in schema["anyOf"] if s.get("type") != "null"), schema["anyOf"][0]))
    kind = schema.get("type")
    if kind == "boolean":
        return True
    if kind == "integer":
        return max(schema.get("minimum", 0), min(1, schema.get("maximum", 1)))
    if kind == "string":
        return "1" if schema.get("maxLength") == 19 else "bob"  # a message id, else a user id
    if kind == "array":
        return [_plausible(schema.get("items", {}))]
    if "properties" in schema:
        return {k: _plausible(v) for k, v in schema["properties"].items()}
    return None


def _paths(schema: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every field path of ``schema`` (objects inside objects, through ``anyOf``)."""
    found = []
    for option in schema.get("anyOf", [schema]):
        for key, sub in option.get("properties", {}).items():
            found.append((*prefix, key))
            found += _paths(sub, (*prefix, key))
    return found


def _served_operations(running: Running) -> list[tuple[str, dict[str, Any]]]:
    doc = running.http.get(running.url + "/openapi.json", timeout=OPENAPI_TIMEOUT).json()
    components = doc.get("components", {}).get("schemas", {})
    ops = []
    for path, item in sorted(doc["paths"].items()):
        op = item.get("post")
        if op is not None:
            # An endpoint that takes no body (some robot API calls) is swept with hostile bodies all the same.
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            ops.append((path, _inline(body.get("schema", {"type": "object"}), components)))
    return ops


def test_every_admin_endpoint_answers_hostile_bodies_without_a_5xx(running: Running) -> None:
    operations = _served_operations(running)
    assert len(operations) >= 40  # groups and channels included: the gateway serves them

    for path, schema in operations:
        _admin_sweep(running, path, schema)()


def _sweep(paths: list[tuple[str, ...]], values: list[Any]) -> Any:
    """The hypothesis decorators of one operation's sweep: 1-3 hostile values planted at its paths."""
    plantings = st.lists(st.tuples(st.sampled_from(paths), st.sampled_from(values)), min_size=1, max_size=3)

    def decorate(test: Any) -> Any:
        return settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                        suppress_health_check=list(HealthCheck))(given(plantings=plantings)(test))

    return decorate


def _admin_sweep(running: Running, path: str, schema: dict[str, Any]) -> Any:
    base = _plausible(schema)

    @_sweep([*_paths(schema), ("unknown_field",)], HOSTILE_JSON)
    def sweep(plantings: list[tuple[tuple[str, ...], Any]]) -> None:
        body = base
        for where, hostile in plantings:
            body = plant(body, where, hostile)
        response = running.post(path, json.dumps(body).encode())
        assert response.status_code < 500, (path, response.text)
        if response.status_code == 200:
            assert response.json()["code"] != ErrorCode.SERVER_ERROR, (path, response.text)

    return sweep


# ------------------------------------------------------------------------------------------ client


def _param_names() -> list[str]:
    """Every params name the handlers read (through ``Fields`` or the relation ``_text``/``_extra`` helpers)."""
    source = "\n".join(p.read_text() for p in [*HANDLERS.glob("handlers/*.py"), *HANDLERS.glob("*.py")])
    names = set(re.findall(r'\.(?:text|integer|boolean|binary|mapping|array|identifier|identifier_list|'
                           r'text_list)\(\s*"([a-z_]+)"', source))
    names |= set(re.findall(r'_(?:text|extra)\(params, "([a-z_]+)"', source))
    return sorted(names | {"name", "portrait", "extra", "desc", "callback", "private", "state", "title"})


CONTENT_FIELDS = ["type", "searchable_content", "push_content", "content", "data", "media_type",
                  "remote_media_url", "persist_flag", "expire_duration", "mentioned_type",
                  "mentioned_targets", "extra"]  # fmt: skip
BASE_PARAMS: dict[str, Any] = {
    "conv": {"type": 0, "target": "bob"},
    "content": {"type": 1, "searchable_content": "hi"},
    "group_id": "g1",
    "channel_id": "c1",
    "chatroom_id": "r1",
    "user_id": "bob",
    "user_ids": ["bob"],
    "members": ["bob"],
    "target": "bob",
    "member": "bob",
    "new_owner": "bob",
    "scope": 1,
    "key": "k",
    "value": "v",
    "field": "name",
}


def test_every_client_method_answers_hostile_params_without_code_4(running: Running) -> None:
    names = [n for n in _param_names() if n != "method"]
    paths = [(n,) for n in names]
    paths += [("conv", k) for k in ("type", "target", "line")]
    paths += [(outer, k) for outer in ("content", "notify_content") for k in CONTENT_FIELDS]
    methods = METHODS.names()
    assert len(methods) >= 50

    token = running.run(running.gw.token, "alice", "alice-sweep", 2)
    device: Device = running.run(_connect, running.gw, token)
    try:
        for name in methods:
            _client_sweep(running, device, name, paths)()
    finally:
        running.run(device.aclose)


def _client_sweep(running: Running, device: Device, name: str, paths: list[tuple[str, ...]]) -> Any:
    @_sweep(paths, HOSTILE_MSGPACK)
    def sweep(plantings: list[tuple[tuple[str, ...], Any]]) -> None:
        params: Any = BASE_PARAMS
        for where, hostile in plantings:
            params = plant(params, where, hostile)
        answer = running.run(_call, device, name, params)
        assert answer.code != ErrorCode.SERVER_ERROR, (name, answer)
        assert not any(isinstance(e, events.ServerError) for e in device.client.received), name

    return sweep


async def _connect(gw: Gateway, token: str) -> Device:
    from tests.harness import RawClient

    return Device(await RawClient.connected(gw, token))


async def _call(device: Device, name: str, params: dict[str, Any]) -> events.Response:
    response = await device.call(name, **params)
    device.pushes.clear()  # the sweep's own sends are pushed back to nobody it reads; keep memory flat
    return response


# ------------------------------------------------------------------------ every field, deterministically
#
# The generated sweeps above pick a few fields per operation; these plant the values that broke things
# (issue 20) at every field of every operation once, so no field is left to chance.

DEEP_JSON_TEXT = HOSTILE_COMMON[0]


def test_every_admin_field_answers_deep_json_and_lone_surrogates(running: Running) -> None:
    for path, schema in _served_operations(running):
        base = _plausible(schema)
        for where in _paths(schema):
            for hostile in (DEEP_JSON_TEXT, "a\ud800b"):
                response = running.post(path, json.dumps(plant(base, where, hostile)).encode())
                assert response.status_code < 500, (path, where, response.text)
                if response.status_code == 200:
                    assert response.json()["code"] != ErrorCode.SERVER_ERROR, (path, where, response.text)


def test_every_client_param_answers_deep_json(running: Running) -> None:
    token = running.run(running.gw.token, "alice", "alice-fields", 2)
    device: Device = running.run(_connect, running.gw, token)
    try:
        running.run(_every_param, device, _client_paths())
    finally:
        running.run(device.aclose)


def _client_paths() -> list[tuple[str, ...]]:
    paths = [(n,) for n in _param_names() if n != "method"]
    paths += [("conv", k) for k in ("type", "target", "line")]
    return paths + [(outer, k) for outer in ("content", "notify_content") for k in CONTENT_FIELDS]


async def _every_param(device: Device, paths: list[tuple[str, ...]]) -> None:
    for name in METHODS.names():
        for where in paths:
            answer = await _call(device, name, plant(BASE_PARAMS, where, DEEP_JSON_TEXT))
            assert answer.code != ErrorCode.SERVER_ERROR, (name, where, answer)
            assert not any(isinstance(e, events.ServerError) for e in device.client.received), (name, where)
