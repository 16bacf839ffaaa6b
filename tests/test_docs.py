"""Every Markdown file of the repository renders as written: its code fences pair up.

One unclosed fence turns the rest of the file inside out (prose shows as code, code as prose), as it once
did to docs/ADMIN_API.md from its Groups section on. A fence is a line whose first non-blank characters are
three or more backticks or tildes (CommonMark); a fence closes only with a fence of the same character at
least as long, with nothing after it. Counting fences is not enough: see ``unclosed_fence``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


def markdown_files() -> list[Path]:
    """The repository's tracked *.md files (README, docs/, bench/RESULTS.md, ...); a walk without git."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
        files = [ROOT / name for name in listed]
    except (OSError, subprocess.CalledProcessError):
        files = []
    skip = {".venv", ".git", "node_modules"}
    walked = [p for p in ROOT.rglob("*.md") if not skip & set(p.relative_to(ROOT).parts)]
    return sorted({p for p in (*files, *walked) if p.is_file()})


def unclosed_fence(text: str) -> int | None:
    """The line of a code fence that is not closed where it was meant to be, or None when all pair up.

    Two shapes: a fence still open at the end of the file, and a fence that opens a new block (it has an
    info string, ```` ```json ````) while one is still open. The second is how a forgotten closing fence
    shows in the middle of a file: the next fences pair up the wrong way round, prose between them renders
    as code, and the file may still end with every fence "closed".
    """
    opened: tuple[str, int, int] | None = None  # (character, length, line)
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if match is None:
            continue
        marks, rest = match[1], match[2].strip()
        if opened is None:
            opened = (marks[0], len(marks), number)
        elif marks[0] == opened[0] and len(marks) >= opened[1]:
            if rest:  # meant to open a block: the one above was never closed
                return opened[2]
            opened = None
    return None if opened is None else opened[2]


def test_the_check_finds_an_unclosed_fence() -> None:
    assert unclosed_fence("a\n```sh\nx\n```\n") is None
    assert unclosed_fence("a\n```sh\nx\n\n## Next\n") == 2
    assert unclosed_fence("````md\n```json\n```\n````\n") is None  # a longer fence holds a shorter one
    # A forgotten close in the middle: the fences after it pair up flipped, the count comes out even.
    assert unclosed_fence("```sh\nx\n\n## Next\n```json\n{}\n```\n") == 1


def test_markdown_files_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in markdown_files()}
    assert {"README.md", "docs/ADMIN_API.md", "docs/PROTOCOL.md", "bench/RESULTS.md"} <= names


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_code_fence_is_closed(path: Path) -> None:
    line = unclosed_fence(path.read_text(encoding="utf-8"))
    assert line is None, f"{path.relative_to(ROOT)}: the code fence opened on line {line} is never closed"
