"""Loopback ports for servers a test starts: one allocator for the whole suite.

Why not ``bind(("127.0.0.1", 0))`` and hand the number on: the kernel gives port 0 from the ephemeral
range (``/proc/sys/net/ipv4/ip_local_port_range``, 32768-60999 here), the same range every outgoing
connection's local port comes from, and the three pytest-xdist workers each ask for their own. Between
the probe closing and the child process binding, a client socket of another test (or another worker's
probe) could take the number, and the child failed with EADDRINUSE — seen once in the cluster tests.
Ports here come from below the ephemeral range, from a slice of its own per xdist worker, handed out in
turn and probed before use, so two workers never pick the same one and no outgoing connection is given
one.

Two pytest runs at once (a developer's and CI's, or the SQLite and PostgreSQL passes side by side) have
workers of the same names, so the same slices, and workers started together have pids a few apart: they
walked the same numbers a few steps apart, and a probe of one run found free a port the other had handed
out and whose server had not bound it yet (15 cases failed with EADDRINUSE in each of two side-by-side
passes). So a port is also claimed across processes before it is handed out: an exclusive ``flock`` on a
file named after it in a shared folder, held by the process that claimed it (the kernel drops it when the
process ends, however it ends) until it has claimed ``KEPT_CLAIMS`` more: by then the server given the port
has long bound it (a claim only needs to cover the moment between the probe and that bind), and holding
one open file per port of a whole lap would come near the open-file limit. Another process skips a port
while it is claimed.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import socket
import tempfile
from pathlib import Path

#: The span below the ephemeral range that tests take ports from; each worker gets SLICE of it.
FIRST, LAST = 20000, 32000
SLICE = 1000


def _worker_index() -> int:
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # "gw0", "gw1", ...; absent without xdist
    digits = name.removeprefix("gw")
    return int(digits) if digits.isdigit() else 0


def _candidates() -> itertools.cycle[int]:
    start = FIRST + (_worker_index() * SLICE) % (LAST - FIRST)
    # Start at a point in the slice that depends on the process, so two pytest runs at once mostly walk
    # different numbers; workers started together have pids a few apart, so this alone is not enough: the
    # claims below are what keep two processes off one port.
    offset = os.getpid() % SLICE
    span = list(range(start, start + SLICE))
    return itertools.cycle(span[offset:] + span[:offset])


_next = _candidates()


#: Where the claim files are: one folder for every test process of this machine's user(s).
_CLAIMS = Path(tempfile.gettempdir()) / "ember-test-ports"
#: Claims a process keeps, newest last; the oldest is released when one more is made.
KEPT_CLAIMS = 128
#: Ports this process claims now: port -> the open claim file whose lock it holds (insertion order: oldest first).
_claimed: dict[int, int] = {}


def _claim(port: int) -> bool:
    """Whether ``port`` is this process's to hand out: claimed by it and not yet released, or claimed now."""
    if port in _claimed:
        return True
    _CLAIMS.mkdir(mode=0o1777, exist_ok=True)
    fd = os.open(_CLAIMS / f"{port}.lock", os.O_CREAT | os.O_RDWR, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)  # another live process holds it
        return False
    _claimed[port] = fd
    if len(_claimed) > KEPT_CLAIMS:
        os.close(_claimed.pop(next(iter(_claimed))))  # closing the file releases its lock
    return True


def free_port() -> int:
    """A loopback port nothing listens on now, in this worker's slice and claimed by this process (raises
    after a full lap of the slice)."""
    for _ in range(SLICE):
        port = next(_next)
        if not _claim(port):
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free loopback port in this worker's slice of {FIRST}-{LAST}")
