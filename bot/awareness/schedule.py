"""When a campaign is due, decided from its stored last slot and the app's clock (never from APScheduler).

Slots missed while the bot was down: the latest one still runs if it is at most `grace` seconds old;
older ones are skipped (and logged). A new or re-enabled campaign counts from the moment it was stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from apscheduler.triggers.cron import CronTrigger

from bot.scheduler import SHANGHAI

_MAX_SLOTS = 100_000  # a minute-by-minute campaign down for ~70 days; beyond that, counted as "many"


@dataclass(frozen=True)
class Due:
    run: float | None  # the slot to run now, if any
    last: float  # the new last handled slot
    skipped: int  # slots passed over without a run


def due(trigger: CronTrigger, last_slot: float, now: float, grace: float) -> Due | None:
    """What to do for a campaign whose last handled slot is `last_slot`; None when nothing is due."""
    now_dt = datetime.fromtimestamp(now, SHANGHAI)
    previous = datetime.fromtimestamp(last_slot, SHANGHAI)
    latest = None
    count = 0
    while count < _MAX_SLOTS:
        nxt = trigger.get_next_fire_time(previous, now_dt)
        if nxt is None or nxt > now_dt:
            break
        latest, previous, count = nxt, nxt, count + 1
    if latest is None:
        return None
    slot = latest.timestamp()
    if now - slot <= grace:
        return Due(slot, slot, count - 1)
    return Due(None, slot, count)


def next_slot(trigger: CronTrigger | None, last_slot: float | None, now: float) -> float | None:
    """The next scheduled time after what was handled (for display)."""
    if trigger is None:
        return None
    start = datetime.fromtimestamp(last_slot if last_slot is not None else now, SHANGHAI)
    nxt = trigger.get_next_fire_time(start, max(start, datetime.fromtimestamp(now, SHANGHAI)))
    return nxt.timestamp() if nxt else None
