"""Several instances on one database: heartbeats, the lease on scheduled work, and taking over the dead.

Every instance takes intake, callbacks and deliveries. Scheduled work — deadline sweeps and
escalations, campaigns, bulletins — runs on whichever instance holds the 'scheduler' lease; the holder
renews it with every heartbeat, and when it stops (or dies) another takes it within [cluster]
dead_after. The lease only decides who looks: each piece of scheduled work is also marked done in the
transaction that does it, so even two holders for a moment would not send anything twice.

An instance that stops heart-beating is dead: the outbox rows it had claimed but not recorded as
sent go back to the queue and another instance sends them. With SQLite there is one process; this
runs the same way and is always the holder.

Times here are the wall clock (time.time()), shared by every instance: keep their clocks in sync (NTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from bot.config import ClusterSettings
from storage import Storage

_LOGGER = logging.getLogger(__name__)
SCHEDULER_LEASE = "scheduler"


class Cluster:
    def __init__(self, storage: Storage, settings: ClusterSettings, on_released: Callable[[], None],
                 clock: Callable[[], float] = time.time) -> None:
        self._storage = storage
        self._settings = settings
        self._on_released = on_released
        self._clock = clock
        self._lease_until = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def instance_id(self) -> str:
        return self._storage.instance_id

    def leads(self) -> bool:
        """Whether this instance holds the scheduler lease now."""
        return self._clock() < self._lease_until

    async def start(self) -> None:
        """Register, take back what dead instances left, try for the lease; then keep doing so."""
        await self.beat(starting=True)
        self._task = asyncio.create_task(self._run(), name="cluster-heartbeat")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._lease_until = 0.0
        try:
            await self._storage.leave()  # the others take over at once instead of after dead_after
        except Exception:
            _LOGGER.exception("could not hand back the scheduler lease; another instance takes it after dead_after")

    async def beat(self, starting: bool = False) -> None:
        now = self._clock()
        s = self._settings
        await self._storage.heartbeat(now)
        was_leading = self.leads()
        if await self._storage.hold_lease(SCHEDULER_LEASE, now, s.dead_after):
            # Count from before the write: the lease may expire for others no later than this.
            self._lease_until = now + s.dead_after - s.heartbeat_interval
            if not was_leading:
                _LOGGER.info("this instance now runs the scheduled work", extra={"instance": self.instance_id})
        else:
            self._lease_until = 0.0
            if was_leading:
                _LOGGER.warning("lost the scheduler lease to another instance", extra={"instance": self.instance_id})
        if not (starting or self._storage.shared):
            return  # one process on the database: what others claimed was found at start
        released = await self._storage.release_claims(now - s.dead_after)
        if released:
            _LOGGER.warning("re-queued %d messages claimed by an instance that stopped before sending them",
                            released)
            self._on_released()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._settings.heartbeat_interval)
            try:
                await self.beat()
            except Exception:
                # Keep trying: a database that is away for a moment must not end the heartbeat.
                self._lease_until = 0.0
                _LOGGER.exception("heartbeat failed; retrying")
