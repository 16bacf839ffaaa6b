"""The source tree itself: no merge left its conflict markers behind.

A merge once left ``<<<<<<<`` blocks in docs/ADMIN_API.md that nothing else noticed (the doc is prose to the
tests); an SDK author reading it would have found two versions of one section.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MARKERS = ("<<<<<<< ", ">>>>>>> ", "||||||| ")


def _tracked_text_files() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=30
        ).stdout.split(b"\0")
        paths = [REPO / name.decode() for name in listed if name]
    except (OSError, subprocess.SubprocessError):  # not a git checkout (an unpacked sdist): walk the tree
        paths = [p for p in REPO.rglob("*") if p.is_file() and ".venv" not in p.parts and ".git" not in p.parts]
    return [p for p in paths if p.suffix in {".py", ".md", ".toml", ".txt", ".cfg", ".yml", ".yaml"} or p.name == "run"]


def test_no_file_holds_a_conflict_marker() -> None:
    found = []
    for path in _tracked_text_files():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        found += [f"{path.relative_to(REPO)}:{n}" for n, line in enumerate(lines, 1) if line.startswith(MARKERS)]
    assert not found, f"conflict markers left by a merge: {found}"
