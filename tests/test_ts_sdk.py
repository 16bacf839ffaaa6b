"""The TypeScript SDK (sdk/ts) in the README's test command: its own Node tests, run by Node's test runner.

The Node tests start their own ``ember serve`` (this venv's, passed as EMBER_BIN) on free loopback ports, so
what they check is the real gateway over real sockets: the vectors of docs/PROTOCOL.md byte for byte
(unit.test.mjs), two TS clients over TCP and WebSocket (live.test.mjs), and the web chat page, served by the
gateway itself, in headless Chromium (browser.test.mjs); and that the page's committed bundle is a fresh build. ``.ci/run`` installs what they need (``npm ci`` in sdk/ts, Debian's chromium);
without Node, the npm packages or Chromium these tests skip with one line, except under CI=true, where
they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

#: The PostgreSQL pass would repeat this module unchanged: the Node tests start their own `ember serve` on a SQLite data folder.
pytestmark = pytest.mark.own_backend

ROOT = Path(__file__).resolve().parent.parent
SDK = ROOT / "sdk" / "ts"
EMBER = Path(sys.executable).parent / "ember"
#: Each Node test file's bound (about 20-40 s here; a gateway start alone can take 30 s on a loaded 2-core machine).
FILE_TIMEOUT_SECONDS = 300


def _missing() -> str | None:
    node = shutil.which("node")
    if node is None:
        return "node is not installed"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    if not version.startswith("v") or int(version[1:].split(".")[0]) < 20:
        return f"node 20+ is needed, found {version or 'none'}"
    if not (SDK / "node_modules" / "@msgpack" / "msgpack").is_dir():
        return "sdk/ts has no node_modules (cd sdk/ts && npm ci)"
    return None


def _build_is_current() -> bool:
    """dist/ is newer than every source of it (.ci/run builds it; a rebuild costs ~20 s on a busy machine)."""
    outputs = [SDK / "dist" / "index.js", SDK / "dist" / "node.js", SDK / "dist" / "browser" / "ember.js"]
    if not all(path.is_file() for path in outputs):
        return False
    sources = [*(SDK / "src").glob("*.ts"), SDK / "tsconfig.json", SDK / "package-lock.json"]
    return max(path.stat().st_mtime for path in sources) < min(path.stat().st_mtime for path in outputs)


@pytest.fixture(scope="module")
def built_sdk() -> Path:
    missing = _missing()
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the TypeScript SDK tests, but {missing}")
        pytest.skip(f"TypeScript SDK tests skipped: {missing}")
    if not _build_is_current():
        build = subprocess.run(
            ["npm", "run", "--silent", "build"], cwd=SDK, capture_output=True, text=True, timeout=180, check=False
        )
        assert build.returncode == 0, f"npm run build failed:\n{build.stdout}\n{build.stderr}"
    return SDK


def _node_test(sdk: Path, name: str) -> str:
    env = {**os.environ, "EMBER_BIN": str(EMBER)}
    run = subprocess.run(
        [shutil.which("node") or "node", "--test", f"--test-timeout={FILE_TIMEOUT_SECONDS * 1000}", f"test/{name}"],
        cwd=sdk,
        env=env,
        capture_output=True,
        text=True,
        timeout=FILE_TIMEOUT_SECONDS + 30,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"node --test test/{name} failed:\n{output[-6000:]}"
    return output


def _skipped_suites(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if "# SKIP" in line]


def test_the_committed_web_chat_bundle_is_a_fresh_build_of_the_sdk(built_sdk: Path) -> None:
    """gateway/webchat/ember.js (committed, so that a wheel needs no Node) is what ``npm run build`` makes of
    sdk/ts/src now: the lockfile pins esbuild and @msgpack/msgpack, so the build is byte-for-byte repeatable."""
    fresh = (built_sdk / "dist" / "browser" / "ember.js").read_bytes()
    committed = (ROOT / "gateway" / "webchat" / "ember.js").read_bytes()
    assert committed == fresh, "gateway/webchat/ember.js is stale: cd sdk/ts && npm run build:webchat, and commit it"


def test_vectors_of_protocol_md_byte_for_byte(built_sdk: Path) -> None:
    output = _node_test(built_sdk, "unit.test.mjs")
    assert "# fail 0" in output


def test_two_ts_clients_on_a_live_gateway(built_sdk: Path) -> None:
    output = _node_test(built_sdk, "live.test.mjs")
    assert "# fail 0" in output and not _skipped_suites(output), output[-3000:]


def test_web_chat_page_in_headless_chromium(built_sdk: Path) -> None:
    output = _node_test(built_sdk, "browser.test.mjs")
    skipped = _skipped_suites(output)
    if skipped:
        pytest.skip(f"browser test skipped: {skipped[0]}")
    assert "# fail 0" in output
