"""``pip install .`` installs every package: none of the project's directories with ``__init__.py`` is left out.

(A hand-written package list once left out ``gateway/rpc/handlers``, and an installed ``ember serve`` died with an
ImportError.) The wheel itself is built and run from outside the checkout by ``.ci/run``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages

REPO = Path(__file__).resolve().parent.parent
TOP_LEVEL = ("protocol", "storage", "gateway", "client", "bench")


def _package_dirs() -> set[str]:
    found = set()
    for top in TOP_LEVEL:
        for init in (REPO / top).rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(REPO).parts))
    return found


def test_the_install_config_finds_every_package_directory() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "packages" in config and "find" in config["packages"], "packages must be discovered, not listed"
    find = config["packages"]["find"]
    installed = set(find_packages(where=str(REPO / find.get("where", ["."])[0]), include=find["include"]))
    expected = _package_dirs()
    assert "gateway.rpc.handlers" in expected and "gateway.admin" in expected
    assert expected <= installed, f"left out of the install: {sorted(expected - installed)}"
    assert not {p for p in installed if p.split(".")[0] not in TOP_LEVEL}, "tests or other dirs installed"


def test_every_package_ships_its_typing_marker() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "py.typed" in config["package-data"]["*"]
    for package in _package_dirs():
        assert (REPO / package.replace(".", "/") / "py.typed").is_file(), f"{package} has no py.typed"
