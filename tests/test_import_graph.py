"""The import graph: no module imports itself back, and the method table lists every handler module.

``lint-imports`` (the contracts in pyproject.toml, run by .ci/run) checks the layers and the cycles
between sibling modules and subpackages; this checks cycles module by module, over the same graph, so a
cycle through a package's ``__init__`` is caught too. TYPE_CHECKING imports count: a module that needs
another's types to be read is part of the same knot.
"""

from __future__ import annotations

import pkgutil
import types

import grimp
import pytest

import gateway.rpc.handlers
from gateway.rpc.dispatch import MethodRegistry, method
from gateway.rpc.methods import HANDLER_MODULES, METHODS

PACKAGES = ("protocol", "storage", "gateway", "client", "bench")


def strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """The components of more than one module (Tarjan's algorithm, iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.find_modules_directly_imported_by(nxt)))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_strongly_connected_finds_a_cycle_and_only_cycles() -> None:
    graph = grimp.ImportGraph()
    for name in ("a", "b", "c", "d"):
        graph.add_module(name)
    graph.add_import(importer="a", imported="b")
    graph.add_import(importer="b", imported="c")
    graph.add_import(importer="c", imported="a")
    graph.add_import(importer="c", imported="d")
    assert strongly_connected(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles(package: str) -> None:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)  # grimp's cache can lag behind a fresh edit
    cycles = [c for c in strongly_connected(graph) if c[0].split(".")[0] == package]
    assert cycles == [], f"modules that import each other (break each knot): {cycles}"


def test_every_handler_module_is_listed_in_the_method_table() -> None:
    in_package = {f"gateway.rpc.handlers.{m.name}" for m in pkgutil.iter_modules(gateway.rpc.handlers.__path__)}
    assert {m.__name__ for m in HANDLER_MODULES} == in_package


def test_the_method_table_knows_each_kind_of_method() -> None:
    assert {"send_message", "pull", "get_conversations", "set_push_token"} <= METHODS.known
    assert METHODS.names() == sorted(METHODS.known)
    assert {"pull", "get_conversations"} <= METHODS.serial
    assert {"pull", "get_conversations"} <= set(METHODS.charged_after)
    assert "send_message" not in METHODS.serial  # immediate: answered from the read loop


def _module(name: str, **members: object) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, value in members.items():
        if callable(value):
            value.__module__ = name  # type: ignore[attr-defined]
        setattr(module, key, value)
    return module


def test_a_registry_refuses_a_name_twice_and_skips_imported_handlers() -> None:
    async def ping(*_: object) -> tuple[int, None]:
        return 0, None

    async def ping_again(*_: object) -> tuple[int, None]:
        return 0, None

    first = _module("first", ping=method("ping")(ping))
    second = _module("second", ping_again=method("ping")(ping_again))
    with pytest.raises(ValueError, match="ping registered twice"):
        MethodRegistry([first, second])
    importer = types.ModuleType("importer")
    importer.ping = ping  # type: ignore[attr-defined]  # imported from "first", not its own
    assert MethodRegistry([first, importer]).names() == ["ping"]


def test_every_method_a_handler_module_names_is_registered() -> None:
    """Each ``method("name")`` written in a handler module reaches the registry: a handler made in a loop
    and bound to no module attribute was once skipped, and the four ``sync_*`` methods answered 254."""
    import re
    from pathlib import Path

    handlers_dir = Path(gateway.rpc.handlers.__file__).parent
    named = {
        name
        for source in handlers_dir.glob("*.py")
        for name in re.findall(r"""\bmethod\(\s*["']([a-z_]+)["']""", source.read_text(encoding="utf-8"))
    }
    assert {"sync_friends", "sync_friend_requests", "sync_blacklist", "sync_settings"} <= named
    assert named - METHODS.known == set()
