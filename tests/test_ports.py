"""tests/ports.py: a port handed out by one test process is not handed out by another meanwhile."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests import ports

ROOT = Path(__file__).resolve().parent.parent


def test_a_port_one_process_handed_out_is_refused_to_another_until_released() -> None:
    mine = [ports.free_port() for _ in range(3)]
    ask = f"from tests import ports; print([ports._claim(p) for p in {mine}])"
    other = subprocess.run([sys.executable, "-c", ask], cwd=ROOT, capture_output=True, text=True, check=True)
    assert other.stdout.strip() == "[False, False, False]"  # claimed here: another process skips them
    # Once this process has made KEPT_CLAIMS newer claims, the oldest are released and free to claim again.
    for _ in range(ports.KEPT_CLAIMS):
        ports.free_port()
    assert not set(mine) & set(ports._claimed)
    again = subprocess.run([sys.executable, "-c", ask], cwd=ROOT, capture_output=True, text=True, check=True)
    assert again.stdout.strip() == "[True, True, True]"
