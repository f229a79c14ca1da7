"""The deadline sweep: reminders before a deadline, the escalation ladder after it, roster gap warnings.

The timers live in the database: each open deadline has one pending timer, the next step of its
ladder (the later steps wait in the deadline row). Each sweep (APScheduler, every
`escalation.sweep_interval`) takes the timers that fell due by the app's clock and fires each in one
transaction that marks it fired, queues its messages and writes the ladder's next step, so a crash or
a restart never loses or repeats one: steps that fell due while the bot was down fire at the first
sweep after the start. Settling a deadline (a sign-for, a report) cancels its pending timer in the
same transaction as the action, so escalation stops the moment the instruction moves on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from bot.config import EscalationSettings
from bot.dispatch import DispatchPlanner
from bot.render import Renderer
from bot.roster import parse_roster_csv, summarise
from domain.deadlines import MILESTONE_LABELS, MILESTONE_ORDER, OVERDUE_LABELS
from domain.directory import Person
from domain.models import RISK_PRIORITY, AuditEvent, Deadline, Instruction, OutboxMessage, Timer
from domain.roster import RosterBook
from storage import Storage

_LOGGER = logging.getLogger(__name__)
_TEMPLATE = "wecom/escalation.j2"
_BATCH = 200
_NOTICE_PRIORITY = 3  # after every alert's messages


@dataclass(frozen=True)
class _Overdue:
    """One deadline of a firing step, as the messages tell it."""

    deadline: Deadline
    userids: list[str]  # who is late on it
    late: str  # 网格员〈刘红〉、值班民警〈王强〉, or 承办人 when nobody is assigned
    what: str  # what they have not done: 未签收 …
    todo: str  # what the deadline asks: 签收 …
    late_by: float  # seconds past the deadline
    left: float  # seconds before it

    @property
    def due_at(self) -> float:
        return self.deadline.due_at

    @property
    def milestone(self) -> str:
        return self.deadline.milestone


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
        self._gaps_warned: set[str] = set()  # known to be recorded; spares a write transaction per sweep

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
        """Fire every timer due by now, including the later steps that firing an earlier one writes
        (after a stop, a ladder's overdue steps all go in this sweep, each its own message, in order)."""
        now = self._clock()
        fired = 0
        seen: set[int | None] = set()
        while True:
            timers = [t for t in await self._storage.due_timers(now, _BATCH) if t.id not in seen]
            if not timers:
                return fired
            seen.update(t.id for t in timers)
            for step in _same_step(timers):
                fired += await self._fire(step, now)

    async def _fire(self, timers: list[Timer], now: float) -> int:
        """Fire one step of an instruction's ladders: its deadlines that fall due together, in one message."""
        i = await self._storage.get_instruction(timers[0].instruction_id)
        if i is None:
            return 0
        deadlines = await self._storage.deadlines(i.id)
        by_id = {d.id: d for d in deadlines}
        firing: list[tuple[Timer, Deadline]] = []
        for timer in timers:
            deadline = by_id[timer.deadline_id]
            if _waits_for_earlier(deadline, deadlines):
                # The earlier deadline's own ladder is already climbing for this stage; one ladder at a time.
                await self._storage.fire_timers([timer], "folded", [], [], now)
            else:
                firing.append((timer, deadline))
        if not firing:
            return 0
        overdue = [await self._overdue(i, deadline, now) for _, deadline in firing]
        notify = timers[0].notify
        messages = self._messages(i, notify, overdue, now)
        action = "remind" if notify == "remind" else "escalate"
        events = [
            AuditEvent(action, "system", "timer", i.state, i.state, {
                "stage": o.deadline.stage, "milestone": o.deadline.milestone, "step": timer.step, "notify": notify,
                "to": [m.label for m in messages], "late": o.userids, "due_at": o.deadline.due_at,
                "late_by": round(o.late_by, 1)})
            for (timer, _), o in zip(firing, overdue, strict=True)
        ]
        if not await self._storage.fire_timers([t for t, _ in firing], "fired", events, messages, now):
            return 0  # a deadline was settled meanwhile; the next sweep looks again
        _LOGGER.info("deadline step fired", extra={"instruction_id": i.id, "notify": notify,
                                                   "deadlines": [f"{o.deadline.stage}/{o.deadline.milestone}"
                                                                 for o in overdue]})
        return len(firing)

    async def _overdue(self, i: Instruction, deadline: Deadline, now: float) -> _Overdue:
        people = self._planner().directory.people
        stage = [a for a in await self._storage.assignments(i.id) if a.active and a.stage == deadline.stage]
        if deadline.milestone == "ack":
            stage = [a for a in stage if a.acked_at is None]
        names = "、".join(f"{a.role_label}〈{people[a.userid].name if a.userid in people else a.userid}〉"
                         for a in stage)
        key = (deadline.stage, deadline.milestone)
        return _Overdue(deadline, [a.userid for a in stage], names or "承办人", OVERDUE_LABELS[key],
                        MILESTONE_LABELS[key], max(0.0, now - deadline.due_at), max(0.0, deadline.due_at - now))

    def _messages(self, i: Instruction, notify: str, overdue: list[_Overdue], now: float) -> list[OutboxMessage]:
        planner = self._planner()
        directory = planner.directory
        priority = RISK_PRIORITY[i.risk_level]
        messages: list[OutboxMessage] = []

        def personal(userid: str, macro: str, **context: object) -> None:
            content = self._renderer.macro(_TEMPLATE, macro, i=i, **context)
            messages.append(planner.personal_markdown(userid, content, "escalation", priority))

        def group(code: str | None, macro: str, **context: object) -> None:
            target = directory.group(code)
            if target is not None:
                content = self._renderer.macro(_TEMPLATE, macro, i=i, items=overdue, **context)
                messages.append(planner.group_markdown(target, content, "escalation", priority))

        station_group = planner.station_group(i)
        station_code = station_group.code if station_group else None
        if notify in ("remind", "assignee"):
            for item in overdue:
                for userid in item.userids:
                    personal(userid, "reminder" if notify == "remind" else "overdue", item=item)
        elif notify in ("duty_officer", "station_leader"):
            boss = self._on_duty(i, notify, now)
            others = [o for o in overdue if boss is None or boss.userid not in o.userids]
            if boss is not None and others:  # about what others are late on; his own he heard at step 1
                personal(boss.userid, "escalated_personal", items=others)
            group(station_code, "escalated_group", step=notify, boss=boss)
        elif notify == "center":
            group(directory.fallback_group, "escalated_center", station=directory.stations.get(i.routed_station or ""))
            if station_code != directory.fallback_group:
                group(station_code, "escalated_group", step="center", boss=None)
        return messages

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
                if gap.key in self._gaps_warned:
                    continue
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
                self._gaps_warned.add(gap.key)  # warned now, or before this process started
        return warned


def _same_step(timers: list[Timer]) -> list[list[Timer]]:
    """Timers of one instruction's step that fall due together (its phone and visit sign-for, say)."""
    steps: dict[tuple[int, str, float], list[Timer]] = {}
    for timer in timers:
        steps.setdefault((timer.instruction_id, timer.notify, timer.fire_at), []).append(timer)
    return list(steps.values())


def _waits_for_earlier(deadline: Deadline, deadlines: list[Deadline]) -> bool:
    rank = MILESTONE_ORDER.index(deadline.milestone)
    return any(d.stage == deadline.stage and d.state == "open" and MILESTONE_ORDER.index(d.milestone) < rank
               for d in deadlines)
