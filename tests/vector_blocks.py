"""Fenced vector blocks in docs/PROTOCOL.md, shared by the per-subject vector modules.

Each subject labels its blocks with a fence of its own (```` ```relvector name=... ````, ```` ```convvector ````,
…) so that the modules never read each other's. A block holds lowercase hex wrapped at 64 digits
(whitespace does not count), or text (a JSON inputs block). ``Fence.main`` is the command line every
module offers: rewrite the doc from the code, or ``--check`` that it is fresh.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "PROTOCOL.md"


def render(value: bytes | str) -> str:
    """A block's body: hex in lines of 64 digits, or text as it is (ending in a newline)."""
    if isinstance(value, str):
        return value if value.endswith("\n") else value + "\n"
    digits = value.hex()
    return "".join(digits[k : k + 64] + "\n" for k in range(0, len(digits), 64))


class Fence:
    def __init__(self, label: str, what: str) -> None:
        self.label = label
        self.what = what  # for messages: "relation vectors"
        self.block = re.compile(
            rf"^```{re.escape(label)} name=(?P<name>[a-z0-9_]+)[ \t]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S
        )

    def bodies(self, text: str) -> dict[str, str]:
        """Every block's body as written; a name used twice is an error."""
        found: dict[str, str] = {}
        for match in self.block.finditer(text):
            if match["name"] in found:
                raise ValueError(f"{self.label} block {match['name']!r} appears twice")
            found[match["name"]] = match["body"]
        return found

    def hex_blocks(self, text: str) -> dict[str, bytes]:
        return {name: bytes.fromhex("".join(body.split())) for name, body in self.bodies(text).items()}

    def rewrite(self, text: str, values: Mapping[str, bytes | str]) -> str:
        """The doc with every block named in ``values`` refilled; other blocks stay as they are."""

        def replace(match: re.Match[str]) -> str:
            name = match["name"]
            if name not in values:
                return match[0]
            return f"```{self.label} name={name}\n{render(values[name])}```"

        return self.block.sub(replace, text)

    def main(self, argv: list[str], compute: Callable[[str], Mapping[str, bytes | str]]) -> int:
        """Rewrite the doc from ``compute(doc_text)``, or with ``--check`` exit 1 if that would change it."""
        text = DOC.read_text(encoding="utf-8")
        new = self.rewrite(text, compute(text))
        if "--check" in argv:
            if new != text:
                print(f"{DOC}: {self.what} are stale", file=sys.stderr)
                return 1
            return 0
        if new != text:
            DOC.write_text(new, encoding="utf-8")
            print(f"{DOC}: {self.what} rewritten")
        return 0
