"""APScheduler in the app's event loop: periodic sweeps and cron jobs (Asia/Shanghai).

APScheduler only decides *when to look*. What is due is always decided from the database and the
app's clock, so a job that runs late, twice, or after a restart does the right thing: each piece of
work is marked done in the same transaction that does it. Tests move the app's clock (the
simulator's) and let the sweep find what became due.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

SHANGHAI = ZoneInfo("Asia/Shanghai")
_LOGGER = logging.getLogger(__name__)

Job = Callable[[], Awaitable[object]]


class Scheduler:
    """Owns one AsyncIOScheduler; jobs are registered before start() and never overlap themselves."""

    def __init__(self) -> None:
        self._aps = AsyncIOScheduler(timezone=SHANGHAI)

    def every(self, seconds: float, job: Job, name: str) -> None:
        """Run job every `seconds`, the first time as soon as the scheduler starts."""
        self._aps.add_job(self._guarded(job, name), IntervalTrigger(seconds=seconds, timezone=SHANGHAI), id=name,
                          name=name, max_instances=1, coalesce=True, misfire_grace_time=None,
                          next_run_time=datetime.now(SHANGHAI))

    def cron(self, expression: str, job: Job, name: str) -> None:
        """Run job on a crontab expression ("minute hour day month day_of_week") in Asia/Shanghai."""
        self._aps.add_job(self._guarded(job, name), CronTrigger.from_crontab(expression, timezone=SHANGHAI), id=name,
                          name=name, max_instances=1, coalesce=True, misfire_grace_time=None)

    def start(self) -> None:
        self._aps.start()
        _LOGGER.info("scheduler started", extra={"jobs": [j.id for j in self._aps.get_jobs()]})

    def stop(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=False)

    @staticmethod
    def _guarded(job: Job, name: str) -> Job:
        async def run() -> None:
            try:
                await job()
            except Exception:
                _LOGGER.exception("scheduled job %s failed; it runs again at its next time", name)

        return run
