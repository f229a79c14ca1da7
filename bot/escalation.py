"""The deadline sweep: reminders before a deadline, the escalation ladder after it, roster gap warnings.

The timers live in the database. Each sweep (APScheduler, every `escalation.sweep_interval`) takes
the timers that fell due by the app's clock and fires each in one transaction that marks it fired
and queues its messages, so a crash or a restart never loses or repeats one: timers that fell due
while the bot was down fire at the first sweep after the start. Settling a deadline (a sign-for, a
report) cancels its pending timers in the same transaction as the action, so escalation stops the
moment the instruction moves on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from bot.config import EscalationSettings
from bot.deadlines import MILESTONE_LABELS, MILESTONE_ORDER, OVERDUE_LABELS
from bot.directory import Person
from bot.dispatch import DispatchPlanner
from bot.models import RISK_PRIORITY, AuditEvent, Deadline, Instruction, OutboxMessage, Timer
from bot.render import Renderer
from bot.roster import RosterBook, parse_roster_csv, summarise
from storage import Storage

_LOGGER = logging.getLogger(__name__)
_TEMPLATE = "wecom/escalation.j2"
_BATCH = 200
_NOTICE_PRIORITY = 3  # after every alert's messages


@dataclass(frozen=True)
class _Late:
    """Who is late on a deadline, as people read it."""

    userids: list[str]
    names: str  # 网格员〈刘红〉、值班民警〈王强〉 or 承办人


class Escalations:
    def __init__(self, storage: Storage, planner: Callable[[], DispatchPlanner], renderer: Renderer,
                 clock: Callable[[], float], wake: Callable[[], None], settings: EscalationSettings) -> None:
        self._storage = storage
        self._planner = planner
        self._renderer = renderer
        self._clock = clock
        self._wake = wake
        self._settings = settings
        self._roster_version: str | None = None

    async def sweep(self) -> int:
        """One pass: pick up a newly imported roster, fire due timers, warn about roster gaps."""
        await self.refresh_roster()
        fired = await self.fire_due()
        warned = await self.warn_roster_gaps()
        if fired or warned:
            self._wake()
        return fired

    async def refresh_roster(self, force: bool = False) -> None:
        """Reload the duty roster when an import (from the CLI or the API) changed it."""
        version = await self._storage.meta("roster_version")
        if version == self._roster_version and not force:
            return
        planner = self._planner()
        planner.roster = RosterBook(await self._storage.load_shifts(), planner.directory)
        self._roster_version = version

    async def import_roster(self, data: bytes) -> dict:
        """Import a station's roster CSV (RosterError lists every bad row); it applies at once."""
        planner = self._planner()
        shifts = parse_roster_csv(data, planner.directory)
        await self._storage.replace_shifts(shifts, self._clock())
        await self.refresh_roster()
        return summarise(shifts, planner.roster)

    async def fire_due(self) -> int:
        now = self._clock()
        fired = 0
        while True:
            timers = await self._storage.due_timers(now, _BATCH)
            for timer in timers:
                fired += await self._fire(timer, now)
            if len(timers) < _BATCH:
                return fired

    async def _fire(self, timer: Timer, now: float) -> bool:
        i = await self._storage.get_instruction(timer.instruction_id)
        deadlines = await self._storage.deadlines(timer.instruction_id)
        deadline = next(d for d in deadlines if d.id == timer.deadline_id)
        if i is None:
            return False
        if _waits_for_earlier(deadline, deadlines):
            # The earlier deadline's own ladder is already climbing for this stage; one ladder at a time.
            return await self._storage.fire_timer(timer, "folded", [], [], now)
        late = await self._late(i, deadline)
        messages, to = self._messages(i, deadline, timer, late, now)
        detail = {"stage": deadline.stage, "milestone": deadline.milestone, "step": timer.step,
                  "notify": timer.notify, "to": to, "late": late.userids, "due_at": deadline.due_at,
                  "late_by": round(max(0.0, now - deadline.due_at), 1)}
        action = "remind" if timer.notify == "remind" else "escalate"
        event = AuditEvent(action, "system", "timer", i.state, i.state, detail)
        done = await self._storage.fire_timer(timer, "fired", [event], messages, now)
        if done:
            _LOGGER.info("deadline timer fired", extra={"instruction_id": i.id, "stage": deadline.stage,
                                                        "milestone": deadline.milestone, "notify": timer.notify})
        return done

    async def _late(self, i: Instruction, deadline: Deadline) -> _Late:
        people = self._planner().directory.people
        stage = [a for a in await self._storage.assignments(i.id) if a.active and a.stage == deadline.stage]
        if deadline.milestone == "ack":
            stage = [a for a in stage if a.acked_at is None]
        names = "、".join(f"{a.role_label}〈{people[a.userid].name if a.userid in people else a.userid}〉"
                         for a in stage)
        return _Late([a.userid for a in stage], names or "承办人")

    def _messages(self, i: Instruction, deadline: Deadline, timer: Timer, late: _Late,
                  now: float) -> tuple[list[OutboxMessage], list[str]]:
        planner = self._planner()
        directory = planner.directory
        priority = RISK_PRIORITY[i.risk_level]
        what = OVERDUE_LABELS[(deadline.stage, deadline.milestone)]
        context = {"i": i, "what": what, "todo": MILESTONE_LABELS[(deadline.stage, deadline.milestone)],
                   "milestone": deadline.milestone, "late": late.names, "due_at": deadline.due_at,
                   "late_by": max(0.0, now - deadline.due_at), "left": max(0.0, deadline.due_at - now)}
        messages: list[OutboxMessage] = []

        def personal(userid: str, macro: str, **extra: object) -> None:
            content = self._renderer.macro(_TEMPLATE, macro, **context, **extra)
            messages.append(planner.personal_markdown(userid, content, "escalation", priority))

        def group(code: str | None, macro: str, **extra: object) -> None:
            target = directory.group(code)
            if target is not None:
                content = self._renderer.macro(_TEMPLATE, macro, **context, **extra)
                messages.append(planner.group_markdown(target, content, "escalation", priority))

        station_group = planner.station_group(i)
        station_code = station_group.code if station_group else None
        if timer.notify in ("remind", "assignee"):
            for userid in late.userids:
                personal(userid, "reminder" if timer.notify == "remind" else "overdue")
        elif timer.notify in ("duty_officer", "station_leader"):
            boss = self._on_duty(i, timer.notify, now)
            if boss is not None and boss.userid not in late.userids:  # the late one was told at step 1
                personal(boss.userid, "escalated_personal", step=timer.notify)
            group(station_code, "escalated_group", step=timer.notify, boss=boss)
        elif timer.notify == "center":
            group(directory.fallback_group, "escalated_center", station=directory.stations.get(i.routed_station or ""))
            if station_code != directory.fallback_group:
                group(station_code, "escalated_group", step="center", boss=None)
        return messages, [m.label for m in messages]

    def _on_duty(self, i: Instruction, step: str, now: float) -> Person | None:
        planner = self._planner()
        if i.routed_station is None:
            return None
        duty = planner.roster.on_duty(i.routed_station, now)
        userid = duty.officer if step == "duty_officer" else duty.leader
        return planner.directory.people.get(userid or "")

    async def warn_roster_gaps(self) -> int:
        """Tell a station's leader, once per gap, that its roster leaves nobody on duty soon (or now)."""
        planner = self._planner()
        directory = planner.directory
        now = self._clock()
        warned = 0
        for code in planner.roster.stations:
            station = directory.stations.get(code)
            if station is None:
                continue
            for gap in planner.roster.gaps(code, now, now + self._settings.roster_gap_warning):
                stand_in = directory.people.get(station.duty_officer or station.leader or "")
                content = self._renderer.macro(_TEMPLATE, "roster_gap", station=station, gap=gap, now=now,
                                               stand_in=stand_in)
                messages = []
                if station.leader:
                    messages.append(planner.personal_markdown(station.leader, content, "roster_gap", _NOTICE_PRIORITY))
                group = directory.group(station.group_code)
                if group is not None:
                    messages.append(planner.group_markdown(group, content, "roster_gap", _NOTICE_PRIORITY))
                if await self._storage.warn_roster_gap(gap.key, messages, now):
                    _LOGGER.warning("duty roster gap", extra={"station": code, "gap": gap.key})
                    warned += 1
        return warned


def _waits_for_earlier(deadline: Deadline, deadlines: list[Deadline]) -> bool:
    rank = MILESTONE_ORDER.index(deadline.milestone)
    return any(d.stage == deadline.stage and d.state == "open" and MILESTONE_ORDER.index(d.milestone) < rank
               for d in deadlines)
