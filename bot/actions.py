"""What people do to an instruction — sign, report, close, re-assign — with authorisation and audit.

Every entry point (card button, chat command, API) comes through here; the state machine in
bot.lifecycle (`transition`, the only place that decides what is possible and which state an action
leads to) answers for every action, storage writes each action in one transaction with its audit
event and the WeCom messages it causes, among them the updates of the cards it changes (bot/cards.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from bot.cards import card_status, card_update
from bot.dispatch import Assignee, DispatchPlanner, phone_assignees, visit_assignees
from bot.render import Renderer, format_duration
from domain.cards import CardUpdate, ClickCode, StoredCard
from domain.deadlines import MILESTONE_LABELS, visit_deadlines
from domain.directory import Person
from domain.lifecycle import OPEN_STATES, VERBS, VISIT_STATES, Part, Transition, TransitionRefused, transition
from domain.models import (
    RISK_PRIORITY,
    ROLE_LABELS,
    ActionWrite,
    Assignment,
    AuditEvent,
    Deadline,
    Instruction,
    NewAssignment,
    NewDeadline,
    OutboxMessage,
    Settlement,
)
from domain.policy import Policy
from storage import Storage

_LOGGER = logging.getLogger(__name__)
_REPLIES = "wecom/replies.j2"
_NOTICES = "wecom/notices.j2"
_MANAGERS = ("officer", "station_leader", "center")


@dataclass(frozen=True)
class Report:
    outcome: str
    method: str | None = None
    loss_avoided: float | None = None
    amount_lost: float | None = None
    note: str | None = None


@dataclass(frozen=True)
class Outcome:
    """The answer to the person who acted; card_label greys out the clicked card's buttons when set."""

    ok: bool
    reply: str
    card_label: str | None = None


@dataclass(frozen=True)
class _Who:
    userid: str
    name: str
    role_label: str


class Actions:
    def __init__(self, storage: Storage, planner: Callable[[], DispatchPlanner], renderer: Renderer,
                 clock: Callable[[], float], wake: Callable[[], None]) -> None:
        self._storage = storage
        self._planner = planner
        self._renderer = renderer
        self._clock = clock
        self._wake = wake

    # -- entry points ----------------------------------------------------------------------

    async def ack(self, userid: str, instruction_id: int, channel: str, clicked: ClickCode | None = None) -> Outcome:
        begun = await self._begin(userid, instruction_id, "ack", channel)
        if isinstance(begun, Outcome):
            return begun
        i, person = begun
        task = await self._task(i, person)
        moved = self._transition("ack", i, task.part())
        if isinstance(moved, Outcome):
            return moved
        now = self._clock()
        to_state = moved.to_state
        fields: dict = {"acked_at": now, "acked_by": userid} if moved.signs else {}
        elapsed = format_duration(now - i.received_at)
        timing = task.timing("ack", now, i)
        notice = self._renderer.macro(_NOTICES, "acked", i=i, who=self._who(person, i), elapsed=elapsed,
                                      late=timing["late"], late_by=timing["late_by"], stage=task.stage)
        write = ActionWrite(
            i.id, i.state, to_state, fields=fields,
            events=[self._event("ack", person, channel, i.state, to_state, {**timing, "stage": task.stage})],
            messages=[self._group_notice(i, notice), self._feedback_card(i, userid)],
            ack_user=userid, ack_stage=task.stage, settle=[Settlement("met", task.stage, "ack")],
        )
        if not await self._write(write, await self._card_updates(i, write, clicked)):
            return await self.ack(userid, instruction_id, channel, clicked)  # moved meanwhile: decide again
        if to_state != i.state or task.mine is None or i.acked_by is None:
            reply = self._renderer.macro(_REPLIES, "acked", i=i, elapsed=elapsed, stage=task.stage)
        else:
            first = self._planner().directory.people.get(i.acked_by)
            reply = self._renderer.macro(_REPLIES, "also_acked", i=i, first_by=first.name if first else i.acked_by)
        return Outcome(True, reply, "已签收")

    async def report(self, userid: str, instruction_id: int, report: Report, channel: str,
                     clicked: ClickCode | None = None) -> Outcome:
        begun = await self._begin(userid, instruction_id, "report", channel)
        if isinstance(begun, Outcome):
            return begun
        i, person = begun
        task = await self._task(i, person)
        now = self._clock()
        visitors = self._visitors(i, now)
        moved = self._transition("report", i, task.part(visitors_available=bool(visitors)), report.outcome)
        if isinstance(moved, Outcome):
            return moved
        policy = self._planner().policies[i.risk_level]
        visit_exists = task.visit_exists
        to_state = moved.to_state
        if not moved.starts_visit:
            visitors = []
        fields = {
            "contact_method": report.method, "outcome": report.outcome, "loss_avoided": report.loss_avoided,
            "amount_lost": report.amount_lost, "outcome_note": report.note, "reported_at": now,
            "reported_by": userid,
        }
        events = []
        if moved.signs:  # reporting counts as signing
            fields.update(acked_at=now, acked_by=userid)
            events.append(self._event("ack", person, channel, i.state, "acknowledged",
                                      {**task.timing("ack", now, i), "implicit": True, "stage": task.stage}))
        events.append(self._event("report", person, channel, i.state, to_state, {
            "method": report.method, "outcome": report.outcome, "loss_avoided": report.loss_avoided,
            "amount_lost": report.amount_lost, "note": report.note, "stage": task.stage,
            **({"contact": task.timing("contact", now, i)} if task.stage == "phone" else {}),
        }))
        settle = [Settlement("met", task.stage, "ack")]
        if task.stage == "phone":
            settle.append(Settlement("met", "phone", "contact"))
        if to_state == "resolved":
            settle += [Settlement("met", None, "report"), Settlement("moot")]
        elif visit_exists or visitors:
            settle.append(Settlement("superseded", "phone", "report"))
        visit = await self._order_visit(i, person, visitors, policy, now) if visitors else None
        notice = self._renderer.macro(
            _NOTICES, "reported", i=i, who=self._who(person, i), method=report.method, outcome=report.outcome,
            loss_avoided=report.loss_avoided, amount_lost=report.amount_lost, note=report.note,
            still_open=to_state != "resolved", visit=visit.notice if visit else None,
        )
        write = ActionWrite(
            i.id, i.state, to_state, fields=fields, events=events + (visit.events if visit else []),
            messages=[self._group_notice(i, notice), *(visit.cards if visit else [])], ack_user=userid,
            ack_stage=task.stage, settle=settle, deadlines=visit.deadlines if visit else [],
            assign=visit.assign if visit else [],
        )
        if not await self._write(write, await self._card_updates(i, write, clicked)):
            return await self.report(userid, instruction_id, report, channel, clicked)
        reply = self._renderer.macro(_REPLIES, "reported", i=i, method=report.method, outcome=report.outcome,
                                     loss_avoided=report.loss_avoided, amount_lost=report.amount_lost,
                                     still_open=to_state != "resolved", visit=visit.notice if visit else None)
        return Outcome(True, reply, "已反馈")

    async def close(self, userid: str, instruction_id: int, outcome: str | None, note: str | None,
                    channel: str) -> Outcome:
        begun = await self._begin(userid, instruction_id, "close", channel)
        if isinstance(begun, Outcome):
            return begun
        i, person = begun
        moved = self._transition("close", i)
        if isinstance(moved, Outcome):
            return moved
        now = self._clock()
        fields: dict = {"closed_at": now, "closed_by": userid}
        if outcome:
            fields["outcome"] = outcome
        if note:
            fields["outcome_note"] = "；".join(filter(None, (i.outcome_note, note)))
        closed = replace(i, state=moved.to_state, **fields)
        notice = self._renderer.macro(_NOTICES, "closed", i=closed, who=self._who(person, i),
                                      total=format_duration(now - i.received_at))
        write = ActionWrite(i.id, i.state, moved.to_state, fields=fields,
                            events=[self._event("close", person, channel, i.state, moved.to_state,
                                                {"outcome": closed.outcome, "note": note})],
                            messages=[self._group_notice(i, notice)])
        if not await self._write(write, await self._card_updates(i, write)):
            return await self.close(userid, instruction_id, outcome, note, channel)
        return Outcome(True, self._renderer.macro(_REPLIES, "closed", i=closed))

    async def reassign(self, userid: str, instruction_id: int, to_userid: str, channel: str) -> Outcome:
        begun = await self._begin(userid, instruction_id, "reassign", channel)
        if isinstance(begun, Outcome):
            return begun
        i, person = begun
        moved = self._transition("reassign", i)
        if isinstance(moved, Outcome):
            return moved
        target = self._planner().directory.people.get(to_userid)
        if target is None:
            return Outcome(False, f"通讯录中没有用户 {to_userid}，请核对用户ID（可在企业微信通讯录查看）。")
        if person.role != "center" and self._station_of(target) != i.routed_station:
            return await self._refuse_transfer(i, person, target, channel)
        assignments = await self._storage.assignments(i.id)
        released = [a.userid for a in assignments if a.active and a.acked_at is None and a.userid != to_userid]
        who_to = self._who(target, i)
        planner = self._planner()
        stage = "visit" if target.role == "grid_worker" or i.state in VISIT_STATES else "phone"
        due = {(d.stage, d.milestone): d.due_at for d in await self._storage.deadlines(i.id)}
        card = planner.assignee_card(i, Assignee(to_userid, who_to.name, who_to.role_label, stage),
                                     due.get((stage, "ack"), self._clock()), later=True, now=self._clock())
        notice = self._renderer.macro(_NOTICES, "reassigned", i=i, who=self._who(person, i), to=who_to)
        write = ActionWrite(
            i.id, i.state, moved.to_state,
            events=[self._event("reassign", person, channel, i.state, moved.to_state,
                                {"to": to_userid, "released": released})],
            messages=[card, self._group_notice(i, notice)],
            assign=[NewAssignment(to_userid, who_to.role_label, stage)],
            unassign=[*released, to_userid],
        )
        handed = dict.fromkeys(released, to_userid)
        if not await self._write(write, await self._card_updates(i, write, handed=handed)):
            return await self.reassign(userid, instruction_id, to_userid, channel)
        return Outcome(True, self._renderer.macro(_REPLIES, "reassigned", i=i, to=who_to))

    async def query(self, userid: str, instruction_id: int) -> Outcome:
        loaded = await self._load(userid, instruction_id)
        if isinstance(loaded, Outcome):
            return loaded
        i, person = loaded
        if not await self._may_act(person, i):
            return Outcome(False, f"你无权查看指令 #{i.id}：它不属于你所在的派出所或网格。")
        events = (await self._storage.timeline(i.id))[-6:]
        full = self._may_manage(person, i) or any(
            a.userid == userid and a.active for a in await self._storage.assignments(i.id)
        )
        return Outcome(True, self._renderer.macro(_REPLIES, "detail", i=i, full=full, events=events))

    async def my_tasks(self, userid: str) -> Outcome:
        if self._planner().directory.people.get(userid) is None:
            return _stranger()
        tasks = await self._storage.open_tasks(userid)
        due = {}
        for i in tasks:  # the next thing this person must do on each, and by when
            stage = next((a.stage for a in await self._storage.assignments(i.id) if a.userid == userid and a.active),
                         "phone")
            pending = [d for d in await self._storage.deadlines(i.id) if d.state == "open" and d.stage == stage]
            if pending:
                first = min(pending, key=lambda d: d.due_at)
                due[i.id] = (MILESTONE_LABELS[(first.stage, first.milestone)], first.due_at)
        return Outcome(True, self._renderer.macro(_REPLIES, "tasks", items=tasks, due=due, now=self._clock()))

    # -- helpers ---------------------------------------------------------------------------

    async def _begin(self, userid: str, instruction_id: int, action: str,
                     channel: str) -> tuple[Instruction, Person] | Outcome:
        """Load the instruction and the person and check the person may do action (_transition checks the state).

        Returns what the action needs, or the answer to give instead (refusals are audited).
        """
        loaded = await self._load(userid, instruction_id)
        if isinstance(loaded, Outcome):
            return loaded
        i, person = loaded
        allowed = self._may_manage(person, i) if action in ("close", "reassign") else await self._may_act(person, i)
        if not allowed:
            return await self._refuse(i, person, action, channel)
        return i, person

    def _transition(self, action: str, i: Instruction, part: Part | None = None,
                    outcome: str | None = None) -> Transition | Outcome:
        """What action does to the instruction (bot.lifecycle), or the refusal to give instead."""
        try:
            return transition(action, i.id, i.state, self._planner().policies[i.risk_level], part, outcome)
        except TransitionRefused as err:
            return Outcome(False, str(err))

    async def _load(self, userid: str, instruction_id: int) -> tuple[Instruction, Person] | Outcome:
        person = self._planner().directory.people.get(userid)
        if person is None:
            return _stranger()
        instruction = await self._storage.get_instruction(instruction_id)
        if instruction is None:
            return Outcome(False, f"指令 #{instruction_id} 不存在，请核对编号（发送“我的任务”查看你的指令）。")
        return instruction, person

    async def _may_act(self, person: Person, i: Instruction) -> bool:
        """Sign and report: the assignees, the instruction's station officers and leaders, its grid, the center."""
        if self._may_manage(person, i):
            return True
        if person.role == "grid_worker" and i.routed_grid and person.grid_code == i.routed_grid:
            return True
        return any(a.userid == person.userid and a.active for a in await self._storage.assignments(i.id))

    @staticmethod
    def _may_manage(person: Person, i: Instruction) -> bool:
        """Close and re-assign: officers and leaders of the instruction's station, and the center."""
        if person.role == "center":
            return True
        return person.role in _MANAGERS and i.routed_station is not None and person.station_code == i.routed_station

    async def _refuse(self, i: Instruction, person: Person, action: str, channel: str) -> Outcome:
        event = self._event("refused", person, channel, i.state, i.state, {"attempted": action})
        await self._write(ActionWrite(i.id, i.state, i.state, events=[event]))
        _LOGGER.warning("refused", extra={"instruction_id": i.id, "userid": person.userid, "action": action})
        if action in ("close", "reassign"):
            return Outcome(False, f"抱歉，只有指令 #{i.id} 所属派出所的民警或所领导可以{VERBS[action]}。")
        return Outcome(False, f"抱歉，指令 #{i.id} 不属于你所在的派出所或网格，不能{VERBS[action]}。"
                              "如需协助请联系值班民警。")

    def _station_of(self, person: Person) -> str | None:
        grid = self._planner().directory.grids.get(person.grid_code or "")
        return person.station_code or (grid.station_code if grid else None)

    async def _refuse_transfer(self, i: Instruction, person: Person, target: Person, channel: str) -> Outcome:
        """A re-assignment to someone outside the instruction's station: the resident's data stays in the
        station. Moving an instruction to another station is the center's to do (a separate, audited action)."""
        event = self._event("refused", person, channel, i.state, i.state,
                            {"attempted": "reassign", "to": target.userid, "reason": "other_station"})
        await self._write(ActionWrite(i.id, i.state, i.state, events=[event]))
        _LOGGER.warning("reassignment outside the station refused",
                        extra={"instruction_id": i.id, "userid": person.userid, "to": target.userid})
        station = self._planner().directory.stations.get(i.routed_station or "")
        return Outcome(False, f"不能转派：{target.userid} 不是{station.name if station else '本所'}的人员。"
                              f"指令 #{i.id} 只能转派给本所民警、所领导或本所网格员；"
                              "如需移交其他派出所，请联系反诈中心办理。")

    async def _write(self, write: ActionWrite, card_updates: list[CardUpdate] | None = None) -> bool:
        written = await self._storage.apply_action(write, self._clock(), card_updates or ())
        if written and (write.messages or card_updates):
            self._wake()
        return written

    # -- cards that stay true (bot/cards.py) -------------------------------------------------

    async def refresh_card(self, userid: str, instruction_id: int, task_id: str, code: str | None) -> None:
        """Show a person's card as its instruction stands now, with the code of their click on it (刷新, or a
        button the card should no longer have): nothing if the card's original content is still true."""
        i = await self._storage.get_instruction(instruction_id)
        if i is None:
            return
        now = self._clock()
        card = next((c for c in await self._storage.instruction_cards(i.id, now)
                     if c.task_id == task_id and c.userid == userid), None)
        if card is None:
            return
        mine = [a for a in await self._storage.assignments(i.id) if a.userid == userid and a.active]
        active = bool(mine)
        handed = None if active else (await self._handovers(i.id)).get(userid)
        status = self._card_status(i, card, active, handed)
        if status is None:
            return
        update = card_update(self._renderer, self._planner().agent_id, i, card, status, prefer=code,
                             still_to_sign=i.state in OPEN_STATES and any(a.acked_at is None for a in mine))
        if await self._storage.enqueue_card_updates([update], now):
            self._wake()

    async def _card_updates(self, i: Instruction, write: ActionWrite, clicked: ClickCode | None = None,
                            handed: dict[str, str] | None = None) -> list[CardUpdate]:
        """The updates of the cards whose status `write` changes, for those with a code left. Not the clicked
        card: the passive reply greys its buttons with what was done (已签收, 已提交), which is what its update
        would say, and keeps the click's code for a later change. When that reply cannot be given in time,
        the inbox brings the clicked card up to date with the click's code (refresh_card)."""
        cards = [c for c in await self._storage.instruction_cards(i.id, self._clock()) if c.usable]
        if not cards:
            return []
        after = replace(i, state=write.to_state, **write.fields)
        assignments = [a for a in await self._storage.assignments(i.id) if a.active]
        active = {a.userid for a in assignments} - set(write.unassign)
        active |= {a.userid for a in write.assign} | ({write.ack_user} if write.ack_user else set())
        unsigned = {a.userid for a in assignments if a.acked_at is None} - {write.ack_user} - set(write.unassign)
        if any(c.userid not in active for c in cards):
            handed = {**await self._handovers(i.id), **(handed or {})}
        updates = []
        for card in cards:
            if clicked is not None and clicked.task_id == card.task_id and clicked.userid == card.userid:
                continue
            status = self._card_status(after, card, card.userid in active, (handed or {}).get(card.userid))
            if status is None or status == card.shows:
                continue
            updates.append(card_update(self._renderer, self._planner().agent_id, after, card, status,
                                       still_to_sign=after.state in OPEN_STATES and card.userid in unsigned))
        return updates

    def _card_status(self, i: Instruction, card: StoredCard, active: bool, handed_to: str | None) -> str | None:
        people = self._planner().directory.people

        def name(userid: str | None) -> str:
            person = people.get(userid or "")
            return person.name if person else (userid or "—")

        return card_status(self._renderer, i, card, active, handed_to, name)

    async def _handovers(self, instruction_id: int) -> dict[str, str]:
        """Whom each re-assignment gave a released person's part to (the latest one counts)."""
        handed: dict[str, str] = {}
        for event in await self._storage.timeline(instruction_id):
            if event["action"] == "reassign":
                handed.update(dict.fromkeys(event["detail"].get("released", []), event["detail"].get("to")))
        return handed

    def _group_notice(self, i: Instruction, content: str) -> OutboxMessage:
        planner = self._planner()
        group = planner.station_group(i) or planner.directory.group(planner.directory.fallback_group)
        if group is None:
            raise RuntimeError("no group to notify: configure the station's group or center.fallback_group")
        return planner.group_markdown(group, content, "action_notice", RISK_PRIORITY[i.risk_level])

    def _feedback_card(self, i: Instruction, userid: str) -> OutboxMessage:
        planner = self._planner()
        card = self._renderer.json("wecom/feedback_card.json.j2", i=i, task_id=planner.card_task_id(i.id),
                                   center_name=planner.directory.center_name)
        return planner.personal_card(userid, card, "feedback_card", RISK_PRIORITY[i.risk_level])

    def _who(self, person: Person, i: Instruction) -> _Who:
        on_duty = (i.routed_station is not None and person.role == "officer"
                   and self._planner().roster.on_duty(i.routed_station, self._clock()).officer == person.userid)
        return _Who(person.userid, person.name, "值班民警" if on_duty else ROLE_LABELS[person.role])

    @staticmethod
    def _event(action: str, person: Person, channel: str, from_state: str, to_state: str,
               detail: dict | None = None) -> AuditEvent:
        return AuditEvent(action, person.userid, channel, from_state, to_state, detail or {})

    async def _task(self, i: Instruction, person: Person) -> _Task:
        """The person's part in the instruction: their assignment and the stage they act for."""
        assignments = [a for a in await self._storage.assignments(i.id) if a.active]
        deadlines = {(d.stage, d.milestone): d for d in await self._storage.deadlines(i.id)}
        mine = next((a for a in assignments if a.userid == person.userid), None)
        if mine is not None:
            stage = mine.stage
        elif person.role == "grid_worker" or i.state in VISIT_STATES:
            stage = "visit"
        else:
            open_phone_ack = deadlines.get(("phone", "ack"))
            open_visit_ack = deadlines.get(("visit", "ack"))
            phone_pending = open_phone_ack is not None and open_phone_ack.state == "open"
            stage = "visit" if not phone_pending and open_visit_ack and open_visit_ack.state == "open" else "phone"
        visitors = [a for a in assignments if a.stage == "visit"]
        return _Task(
            mine=mine, stage=stage, deadlines=deadlines,
            visit_exists=bool(visitors) or ("visit", "ack") in deadlines,
            visit_signed=any(a.acked_at is not None for a in visitors) or stage == "visit",
        )

    def _visitors(self, i: Instruction, now: float) -> list[Assignee]:
        """Who goes to the door: the grid's workers, or the officer on duty where the grid has none."""
        planner = self._planner()
        visitors = visit_assignees(planner.directory, i.routed_grid)
        if not visitors:
            visitors = [replace(a, stage="visit")
                        for a in phone_assignees(planner.directory, planner.roster, i.routed_station, now)]
        return visitors

    async def _order_visit(self, i: Instruction, person: Person, visitors: list[Assignee], policy: Policy,
                           now: float) -> _Visit:
        """The second stage of the playbook: visit cards, their deadlines and the line for the group."""
        planner = self._planner()
        deadlines = visit_deadlines(policy, now)
        due = {d.milestone: d.due_at for d in deadlines}
        cards = [planner.assignee_card(i, a, due["ack"], later=True) for a in visitors]
        notice = self._renderer.macro(_NOTICES, "visit_ordered", i=i, visitors=visitors, ack_due=due["ack"],
                                      report_due=due["report"])
        event = AuditEvent("visit_ordered", "system", "playbook", i.state, i.state, {
            "after_report_by": person.userid, "visitors": [a.userid for a in visitors],
            "ack_due": due["ack"], "report_due": due["report"]})
        return _Visit(notice, [event], cards, deadlines,
                      [NewAssignment(a.userid, a.role_label, "visit") for a in visitors])


@dataclass(frozen=True)
class _Task:
    mine: Assignment | None
    stage: str  # phone | visit
    deadlines: dict[tuple[str, str], Deadline]
    visit_exists: bool
    visit_signed: bool

    def part(self, visitors_available: bool = True) -> Part:
        """This part as the state machine sees it."""
        return Part(stage=self.stage, assigned=self.mine is not None,
                    signed=self.mine is not None and self.mine.acked_at is not None, visit_exists=self.visit_exists,
                    visit_signed=self.visit_signed, visitors_available=visitors_available)

    def timing(self, milestone: str, now: float, i: Instruction) -> dict:
        """How the action stands against its deadline, for the audit trail and the group notice."""
        deadline = self.deadlines.get((self.stage, milestone))
        late_by = max(0.0, now - deadline.due_at) if deadline is not None else 0.0
        return {"seconds_since_received": round(now - i.received_at, 1), "late": late_by > 0,
                "late_by": round(late_by, 1), "due_at": deadline.due_at if deadline else None}


@dataclass(frozen=True)
class _Visit:
    notice: str
    events: list[AuditEvent]
    cards: list[OutboxMessage]
    deadlines: list[NewDeadline]
    assign: list[NewAssignment]


def _stranger() -> Outcome:
    return Outcome(False, "你不在反诈处置通讯录中，无法办理指令。如有需要请联系派出所或反诈中心管理员。")


