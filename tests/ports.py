"""Loopback ports for servers a test starts: one allocator for the whole suite.

Why not ``bind(("127.0.0.1", 0))`` and hand the number on: the kernel gives port 0 from the ephemeral
range (``/proc/sys/net/ipv4/ip_local_port_range``, 32768-60999 here), the same range every outgoing
connection's local port comes from, and the three pytest-xdist workers each ask for their own. Between
the probe closing and the child process binding, a client socket of another test (or another worker's
probe) could take the number, and the child failed with EADDRINUSE — seen once in the cluster tests.
Ports here come from below the ephemeral range, from a slice of its own per xdist worker, handed out in
turn and probed before use, so two workers never pick the same one and no outgoing connection is given
one.
"""

from __future__ import annotations

import itertools
import os
import socket

#: The span below the ephemeral range that tests take ports from; each worker gets SLICE of it.
FIRST, LAST = 20000, 32000
SLICE = 1000


def _worker_index() -> int:
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # "gw0", "gw1", ...; absent without xdist
    digits = name.removeprefix("gw")
    return int(digits) if digits.isdigit() else 0


def _candidates() -> itertools.cycle[int]:
    start = FIRST + (_worker_index() * SLICE) % (LAST - FIRST)
    # Start at a point in the slice that depends on the process, so two pytest runs at once (a developer's
    # and CI's) do not walk the same numbers in step.
    offset = os.getpid() % SLICE
    span = list(range(start, start + SLICE))
    return itertools.cycle(span[offset:] + span[:offset])


_next = _candidates()


def free_port() -> int:
    """A loopback port nothing listens on now, in this worker's slice (raises after a full lap of it)."""
    for _ in range(SLICE):
        port = next(_next)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free loopback port in this worker's slice of {FIRST}-{LAST}")
