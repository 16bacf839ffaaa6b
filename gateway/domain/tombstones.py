"""Tombstone retention: a deletion's tombstone is removed once it is older than ``storage.tombstone_retention_seconds``.

A deletion (a friend deleted, a user unblocked, a setting removed, a group member kicked or gone) leaves a
tombstone so that devices syncing by version learn of it (docs/PROTOCOL.md §12.1, §13.4). Kept for good they
would grow without end, so a task here removes, every ``storage.tombstone_purge_interval_seconds``, those made
more than the retention ago (default 90 days), by the ``Clock`` (tests move it with ``ManualClock``).

The rule is the retention alone, not "older than every device's last sync": a device that has not synced for
longer than the retention might be gone for good, and waiting for it would keep every tombstone of its user
forever. What makes it safe is the *horizon* each purge raises: per stream (a user's relation stream, a
group's member list), the highest version of a tombstone removed. A device asking from a version below it
may have missed one of those deletions, so it is answered with the stream from 0, flagged ``reset``: it drops
its copy and takes the server's (``storage.relations.needs_reset``; ``gateway.domain.groups._members_page``). A
device within the retention syncs as before, by version.

Each purge step is one writer operation removing at most ``PURGE_BATCH`` tombstones, oldest first, so a big
backlog (the first purge after an upgrade) goes in short steps between other writes instead of one long
transaction holding up sends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import trio

from gateway.clock import Clock
from gateway.config import Config
from storage import Store
from storage import groups as groups_db
from storage import relations as relations_db

log = logging.getLogger("ember.tombstones")

#: Tombstones removed per writer operation.
PURGE_BATCH: Final = 500


@dataclass(frozen=True, slots=True)
class Purged:
    """What one purge removed: relation tombstones (friend, blacklist, setting) and group member tombstones."""

    relations: int = 0
    members: int = 0


class TombstonePurge:
    """Removes tombstones past the retention: ``purge()`` once, ``run()`` every purge interval."""

    def __init__(self, config: Config, store: Store, clock: Clock) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        #: Passes of ``run`` completed (for tests: ``wait_for_pass``).
        self.passes = 0
        self._passed = trio.Event()

    async def purge(self) -> Purged:
        """Remove every tombstone older than the retention now (nothing with retention 0)."""
        retention = self.config.storage.tombstone_retention_seconds
        if retention == 0:
            return Purged()
        cutoff_ms = self.clock.now_ms() - retention * 1000
        purged = Purged(
            await self._drain(relations_db.purge_tombstones, cutoff_ms),
            await self._drain(groups_db.purge_tombstones, cutoff_ms),
        )
        if purged.relations or purged.members:
            log.info("purged tombstones relations=%d members=%d", purged.relations, purged.members)
        return purged

    async def _drain(self, purge_batch: Callable[..., int], cutoff_ms: int) -> int:
        total = 0
        while True:
            removed = await self.store.run(purge_batch, cutoff_ms, PURGE_BATCH)
            total += removed
            if removed < PURGE_BATCH:
                return total

    async def run(self) -> None:
        """Purge every ``storage.tombstone_purge_interval_seconds`` (trio's clock) until cancelled."""
        while True:
            await trio.sleep(self.config.storage.tombstone_purge_interval_seconds)
            try:
                await self.purge()
            except Exception as exc:  # noqa: BLE001 - a failed purge is retried next time; the server goes on
                log.warning("purging tombstones failed: %s", type(exc).__name__)
            self.passes += 1
            self._passed.set()
            self._passed = trio.Event()

    async def wait_for_pass(self, passes: int) -> None:
        """Wait until ``run`` has completed more than ``passes`` passes."""
        while self.passes <= passes:
            await self._passed.wait()
