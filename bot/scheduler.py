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

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.render import SHANGHAI

_LOGGER = logging.getLogger(__name__)

Job = Callable[[], Awaitable[object]]


class Scheduler:
    """Owns one AsyncIOScheduler; jobs are registered before start() and never overlap themselves.

    `leads` says whether this instance runs scheduled work now (bot/cluster.py: one instance of a
    cluster does); a job whose time comes on another instance does nothing there.
    """

    def __init__(self, leads: Callable[[], bool] = lambda: True) -> None:
        self._aps = AsyncIOScheduler(timezone=SHANGHAI)
        self._leads = leads

    def every(self, seconds: float, job: Job, name: str) -> None:
        """Run job every `seconds`, the first time as soon as the scheduler starts."""
        self._aps.add_job(self._guarded(job, name), IntervalTrigger(seconds=seconds, timezone=SHANGHAI), id=name,
                          name=name, max_instances=1, coalesce=True, misfire_grace_time=None,
                          next_run_time=datetime.now(SHANGHAI))

    def cron(self, expression: str, job: Job, name: str) -> None:
        """Run job on a crontab expression ("minute hour day month day_of_week") in Asia/Shanghai."""
        self._aps.add_job(self._guarded(job, name), crontab_trigger(expression), id=name,
                          name=name, max_instances=1, coalesce=True, misfire_grace_time=None)

    def start(self) -> None:
        self._aps.start()
        _LOGGER.info("scheduler started", extra={"jobs": [j.id for j in self._aps.get_jobs()]})

    def stop(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=False)

    def _guarded(self, job: Job, name: str) -> Job:
        async def run() -> None:
            if not self._leads():
                return
            try:
                await job()
            except Exception:
                _LOGGER.exception("scheduled job %s failed; it runs again at its next time", name)

        return run


_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def crontab_trigger(expression: str) -> CronTrigger:
    """A standard crontab line ("minute hour day month weekday") in Asia/Shanghai.

    APScheduler 3's from_crontab counts weekdays from 0 = Monday; crontab (and the people who write
    schedules) from 0 = Sunday. Numeric weekdays are turned into names, so "0 10 * * 1" is Monday.
    """
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"wrong number of fields; got {len(fields)}, expected 5")
    minute, hour, day, month, weekday = fields
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=_weekday_names(weekday),
                       timezone=SHANGHAI)


def _weekday_names(field: str) -> str:
    names: list[str] = []
    for part in field.split(","):
        base, _, step = part.partition("/")
        numbers = base.split("-")
        if base == "*" and not step:
            return "*"
        if base == "*":
            low, high = 0, 6
        elif all(n.isdigit() for n in numbers) and len(numbers) <= 2:
            low, high = int(numbers[0]), int(numbers[-1]) if len(numbers) == 2 or not step else 6
        else:
            names.append(part)  # names (mon-fri) mean the same in both
            continue
        if high > 7 or low > high or (step and not step.isdigit()):
            raise ValueError(f"bad day of week {part!r}")
        names += [_WEEKDAYS[d % 7] for d in range(low, high + 1, int(step or 1))]
    return ",".join(dict.fromkeys(names))
