"""The admin API's contract: every endpoint's answers match the OpenAPI document it serves.

Schemathesis' method without its runner (it cannot sign requests byte-exactly without a custom
transport, and hypothesis-jsonschema does not run on this hypothesis): for every operation in the served
``/openapi.json``, ``from_schema`` below generates request bodies from the documented request schema (the
JSON Schema subset pydantic emits: objects, strings, integers, booleans, arrays, anyOf, enum/const), plus
arbitrary JSON (wrong types, missing and extra fields) and non-JSON bytes; each is signed and POSTed over real HTTP to a real gateway (tests/harness.py, in a
thread of its own so hypothesis drives it synchronously), and the answer must

- have a status code the document lists for the operation, never 500;
- validate (jsonschema) against the document's schema for that status.

Bounded: a few dozen examples per operation, so the whole module takes a few seconds.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.signing import signed_headers
from protocol.codes import ErrorCode
from tests.harness import Gateway, start_gateway

#: Examples per operation. Derandomized (the same ones every run, so CI is deterministic); for a deeper
#: search run e.g. ``CONTRACT_EXAMPLES=300 CONTRACT_RANDOM=1 pytest tests/test_admin_contract.py``.
EXAMPLES = int(os.environ.get("CONTRACT_EXAMPLES", "25"))
DERANDOMIZE = not os.environ.get("CONTRACT_RANDOM")
SIGNED_STATUSES = {"401", "413", "429"}


class Running:
    def __init__(self, gw: Gateway, token: trio.lowlevel.TrioToken, stop: trio.Event) -> None:
        self.gw, self.token, self.stop = gw, token, stop
        self.url = gw.running.admin_url
        self.secret = gw.config.admin.secret.encode()
        # No kept-alive connections: one that Hypercorn closed as idle (after 5 s) would be reused and
        # fail ("Server disconnected without sending a response"), a race of the test, not of the API.
        self.http = httpx.Client(timeout=10, limits=httpx.Limits(max_keepalive_connections=0))

    def post(self, path: str, body: bytes) -> httpx.Response:
        headers = signed_headers(self.secret, _nonce(), self.gw.clock.now_ms(), body)
        return self.http.post(self.url + path, content=body, headers={**headers, "content-type": "application/json"})


_nonces = iter(range(10**9))


def _nonce() -> str:
    return f"contract-{next(_nonces)}"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    ready = threading.Event()
    box: dict[str, Any] = {}
    data = tmp_path_factory.mktemp("contract")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            gw = await start_gateway(nursery, Path(data))
            await gw.user("alice")
            await gw.user("bob")
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


def _inline(node: Any, components: dict[str, Any]) -> Any:
    """The schema with every ``#/components/schemas/X`` reference replaced by its target."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            return _inline(components[ref.rsplit("/", 1)[1]], components)
        return {k: _inline(v, components) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, components) for v in node]
    return node


def _document() -> dict[str, Any]:
    from gateway.admin.app import create_admin_app  # the same app the gateway serves
    from gateway.config import Config

    cfg = Config.default()
    return create_admin_app(
        config=cfg, store=None, sessions=None, delivery=None, clock=None, messages=_NoMessages(),  # type: ignore[arg-type]
    ).openapi()


class _NoMessages:
    store = None


DOC = _document()
COMPONENTS = DOC.get("components", {}).get("schemas", {})
OPERATIONS = sorted(
    (path, method, op)
    for path, item in DOC["paths"].items()
    for method, op in item.items()
    if method == "post"
)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid for ``schema`` (refs inlined), for the keywords pydantic's schemas use; else any JSON."""
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([from_schema(s) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**64)), schema.get("maximum", 2**64))
    if kind == "string":
        text = st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 40), 80))
        # Ids and message ids are constrained further (validators the schema cannot say): mix in plausible ones.
        return text | st.sampled_from(["alice", "bob", "c1", "1", "264905950861721600"]).filter(
            lambda v: schema.get("minLength", 0) <= len(v) <= schema.get("maxLength", 80)
        )
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {})), max_size=min(schema.get("maxItems", 3), 3))
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {k: from_schema(v) for k, v in props.items() if k in required},
            optional={k: from_schema(v) for k, v in props.items() if k not in required},
        )
    return _json_values()


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=80)
    return st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=20), c, max_size=5), max_leaves=12)


def _request_bodies(op: dict[str, Any]) -> st.SearchStrategy[bytes]:
    schema = _inline(op["requestBody"]["content"]["application/json"]["schema"], COMPONENTS)
    valid = from_schema(schema).map(lambda v: json.dumps(v).encode())
    anything = _json_values().map(lambda v: json.dumps(v).encode())
    garbage = st.binary(max_size=64)
    return st.one_of(valid, valid, anything, garbage)


def check_answer(op: dict[str, Any], response: httpx.Response) -> None:
    status = str(response.status_code)
    assert status != "500", response.text
    documented = op["responses"]
    assert status in documented, f"HTTP {status} is not in the document ({sorted(documented)}): {response.text}"
    schema = documented[status]["content"]["application/json"]["schema"]
    jsonschema.validate(response.json(), copy.deepcopy(_inline(schema, COMPONENTS)))


def test_every_operation_documents_its_bodies_and_refusals() -> None:
    assert len(OPERATIONS) >= 13
    for path, _method, op in OPERATIONS:
        assert "requestBody" in op, path
        assert {"200", *SIGNED_STATUSES} <= set(op["responses"]), path
        assert "422" not in op["responses"], "validation errors answer 200 with code 251, not 422"
        assert op.get("summary") or op.get("description"), path


@pytest.mark.parametrize(("path", "method", "op"), OPERATIONS, ids=[p for p, _, _ in OPERATIONS])
def test_generated_requests_get_documented_answers(running: Running, path: str, method: str, op: dict) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=DERANDOMIZE,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip
    @given(body=_request_bodies(op))
    def run(body: bytes) -> None:
        check_answer(op, running.post(path, body))

    run()


@pytest.mark.parametrize(("path", "method", "op"), OPERATIONS, ids=[p for p, _, _ in OPERATIONS])
def test_unsigned_stale_forged_and_replayed_calls_are_refused(running: Running, path: str, method: str, op: dict) -> None:
    body = b'{"user_id":"alice"}'
    url = running.url + path
    http = running.http
    now = running.gw.clock.now_ms()
    unsigned = http.post(url, content=body)
    stale = http.post(url, content=body, headers=signed_headers(running.secret, _nonce(), now - 3_600_000, body))
    forged = http.post(url, content=body, headers=signed_headers(b"not-the-secret", _nonce(), now, body))
    headers = signed_headers(running.secret, _nonce(), now, body)
    first = http.post(url, content=body, headers=headers)
    replayed = http.post(url, content=body, headers=headers)
    for response, why in ((unsigned, "missing"), (stale, "stale"), (forged, "bad X-Sign"), (replayed, "already used")):
        assert response.status_code == 401, (why, response.text)
        assert response.json()["code"] == ErrorCode.NOT_RIGHT and why in response.json()["msg"]
        check_answer(op, response)
    assert first.status_code == 200
    check_answer(op, first)


GETS = sorted((path, op) for path, item in DOC["paths"].items() for method, op in item.items() if method == "get")


@pytest.mark.parametrize(("path", "op"), GETS, ids=[p for p, _ in GETS])
def test_unsigned_probes_answer_as_documented(running: Running, path: str, op: dict) -> None:
    response = running.http.get(running.url + path)
    assert response.status_code == 200
    content_type = response.headers["content-type"].split(";")[0]
    documented = op["responses"]["200"]["content"]
    assert content_type in {t.split(";")[0] for t in documented}, (content_type, list(documented))
    if content_type == "application/json":
        check_answer(op, response)
