"""What people do to an instruction — sign, report, close, re-assign — with authorisation and audit.

Every entry point (card button, chat command, API) comes through here; the state machine in
bot.lifecycle decides what is possible, storage writes each action in one transaction with its audit
event and the WeCom messages it causes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from bot.directory import Person
from bot.dispatch import DispatchPlanner
from bot.lifecycle import OPEN_STATES, UNSIGNED_STATES, VERBS, Transition, TransitionRefused, plan
from bot.models import RISK_LABELS, RISK_PRIORITY, ROLE_LABELS, ActionWrite, AuditEvent, Instruction, OutboxMessage
from bot.render import Renderer, format_duration
from storage import Storage

_LOGGER = logging.getLogger(__name__)
_REPLIES = "wecom/replies.j2"
_NOTICES = "wecom/notices.j2"
_MANAGERS = ("officer", "station_leader", "center")
# A sign-for later than this after the instruction arrived is flagged as late in the group.
# (Per-risk deadlines and escalation come with the escalation policies.)
LATE_ACK_SECONDS = {"high": 300, "medium": 1800, "low": 7200}


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

    async def ack(self, userid: str, instruction_id: int, channel: str) -> Outcome:
        begun = await self._begin(userid, instruction_id, "ack", channel, check_state=False)
        if isinstance(begun, Outcome):
            return begun
        i, person, _ = begun
        assignments = await self._storage.assignments(i.id)
        mine = next((a for a in assignments if a.userid == userid and a.active), None)
        now = self._clock()
        if i.state in UNSIGNED_STATES:
            to_state, fields = "acknowledged", {"acked_at": now, "acked_by": userid}
        elif i.state in OPEN_STATES and mine is not None and mine.acked_at is None:
            to_state, fields = i.state, {}  # a second assignee signs: recorded, the state stays
        else:
            return self._refused_by_state("ack", i)
        elapsed = format_duration(now - i.received_at)
        notice = self._renderer.macro(_NOTICES, "acked", i=i, who=self._who(person, i), elapsed=elapsed,
                                      late=self._late(i, now))
        write = ActionWrite(
            i.id, i.state, to_state, fields=fields,
            events=[self._event("ack", person, channel, i.state, to_state, self._timing(i, now))],
            messages=[self._group_notice(i, notice), self._feedback_card(i, userid)],
            ack_user=userid,
        )
        if not await self._write(write):
            return await self.ack(userid, instruction_id, channel)  # moved meanwhile: decide again
        if fields:
            reply = self._renderer.macro(_REPLIES, "acked", i=i, elapsed=elapsed)
        else:
            first = self._planner().directory.people.get(i.acked_by or "")
            reply = self._renderer.macro(_REPLIES, "also_acked", i=i, first_by=first.name if first else i.acked_by)
        return Outcome(True, reply, "已签收")

    async def report(self, userid: str, instruction_id: int, report: Report, channel: str) -> Outcome:
        begun = await self._begin(userid, instruction_id, "report", channel, report.outcome)
        if isinstance(begun, Outcome):
            return begun
        i, person, transition = begun
        now = self._clock()
        fields = {
            "contact_method": report.method, "outcome": report.outcome, "loss_avoided": report.loss_avoided,
            "amount_lost": report.amount_lost, "outcome_note": report.note, "reported_at": now,
            "reported_by": userid,
        }
        events = []
        if i.state in UNSIGNED_STATES:  # reporting counts as signing
            fields.update(acked_at=now, acked_by=userid)
            events.append(self._event("ack", person, channel, i.state, "acknowledged",
                                      {**self._timing(i, now), "implicit": True}))
        still_open = transition.to_state != "resolved"
        events.append(self._event("report", person, channel, i.state, transition.to_state, {
            "method": report.method, "outcome": report.outcome, "loss_avoided": report.loss_avoided,
            "amount_lost": report.amount_lost, "note": report.note,
        }))
        notice = self._renderer.macro(
            _NOTICES, "reported", i=i, who=self._who(person, i), method=report.method, outcome=report.outcome,
            loss_avoided=report.loss_avoided, amount_lost=report.amount_lost, note=report.note,
            still_open=still_open,
        )
        write = ActionWrite(i.id, i.state, transition.to_state, fields=fields, events=events,
                            messages=[self._group_notice(i, notice)], ack_user=userid)
        if not await self._write(write):
            return await self.report(userid, instruction_id, report, channel)
        reply = self._renderer.macro(_REPLIES, "reported", i=i, method=report.method, outcome=report.outcome,
                                     loss_avoided=report.loss_avoided, amount_lost=report.amount_lost,
                                     still_open=still_open)
        return Outcome(True, reply, "已反馈")

    async def close(self, userid: str, instruction_id: int, outcome: str | None, note: str | None,
                    channel: str) -> Outcome:
        begun = await self._begin(userid, instruction_id, "close", channel)
        if isinstance(begun, Outcome):
            return begun
        i, person, _ = begun
        now = self._clock()
        fields: dict = {"closed_at": now, "closed_by": userid}
        if outcome:
            fields["outcome"] = outcome
        if note:
            fields["outcome_note"] = "；".join(filter(None, (i.outcome_note, note)))
        closed = replace(i, state="closed", **fields)
        notice = self._renderer.macro(_NOTICES, "closed", i=closed, who=self._who(person, i),
                                      total=format_duration(now - i.received_at))
        write = ActionWrite(i.id, i.state, "closed", fields=fields,
                            events=[self._event("close", person, channel, i.state, "closed",
                                                {"outcome": closed.outcome, "note": note})],
                            messages=[self._group_notice(i, notice)])
        if not await self._write(write):
            return await self.close(userid, instruction_id, outcome, note, channel)
        return Outcome(True, self._renderer.macro(_REPLIES, "closed", i=closed))

    async def reassign(self, userid: str, instruction_id: int, to_userid: str, channel: str) -> Outcome:
        begun = await self._begin(userid, instruction_id, "reassign", channel)
        if isinstance(begun, Outcome):
            return begun
        i, person, _ = begun
        target = self._planner().directory.people.get(to_userid)
        if target is None:
            return Outcome(False, f"通讯录中没有用户 {to_userid}，请核对用户ID（可在企业微信通讯录查看）。")
        assignments = await self._storage.assignments(i.id)
        released = [a.userid for a in assignments if a.active and a.acked_at is None and a.userid != to_userid]
        who_to = self._who(target, i)
        planner = self._planner()
        card = self._renderer.json(
            "wecom/assignee_card.json.j2", i=i, assignee=who_to, task_id=planner.task_id(i.id, to_userid, "-r"),
            grid=planner.directory.grids.get(i.routed_grid or ""), risk_label=RISK_LABELS[i.risk_level],
            center_name=planner.directory.center_name,
        )
        notice = self._renderer.macro(_NOTICES, "reassigned", i=i, who=self._who(person, i), to=who_to)
        write = ActionWrite(
            i.id, i.state, i.state,
            events=[self._event("reassign", person, channel, i.state, i.state,
                                {"to": to_userid, "released": released})],
            messages=[planner.personal_card(to_userid, card, "assignee_card", RISK_PRIORITY[i.risk_level]),
                      self._group_notice(i, notice)],
            assign=[(to_userid, who_to.role_label)],
            unassign=[*released, to_userid],
        )
        if not await self._write(write):
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
        return Outcome(True, self._renderer.macro(_REPLIES, "tasks", items=tasks, now=self._clock()))

    # -- helpers ---------------------------------------------------------------------------

    async def _begin(self, userid: str, instruction_id: int, action: str, channel: str, outcome: str | None = None,
                     check_state: bool = True) -> tuple[Instruction, Person, Transition | None] | Outcome:
        """Load the instruction and the person, check the person may do action and the state allows it.

        Returns what the action needs, or the answer to give instead (refusals are audited).
        """
        loaded = await self._load(userid, instruction_id)
        if isinstance(loaded, Outcome):
            return loaded
        i, person = loaded
        allowed = self._may_manage(person, i) if action in ("close", "reassign") else await self._may_act(person, i)
        if not allowed:
            return await self._refuse(i, person, action, channel)
        if not check_state:
            return i, person, None
        try:
            return i, person, plan(action, i.id, i.state, outcome)
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

    def _refused_by_state(self, action: str, i: Instruction) -> Outcome:
        try:
            plan(action, i.id, i.state)
        except TransitionRefused as err:
            return Outcome(False, str(err))
        raise AssertionError("expected a refusal")

    async def _write(self, write: ActionWrite) -> bool:
        written = await self._storage.apply_action(write, self._clock())
        if written and write.messages:
            self._wake()
        return written

    def _group_notice(self, i: Instruction, content: str) -> OutboxMessage:
        planner = self._planner()
        directory = planner.directory
        station = directory.stations.get(i.routed_station or "")
        group = directory.group(station.group_code if station else None) or directory.group(directory.fallback_group)
        if group is None:
            raise RuntimeError("no group to notify: configure the station's group or center.fallback_group")
        return planner.group_markdown(group, content, "action_notice", RISK_PRIORITY[i.risk_level])

    def _feedback_card(self, i: Instruction, userid: str) -> OutboxMessage:
        planner = self._planner()
        card = self._renderer.json("wecom/feedback_card.json.j2", i=i, task_id=planner.task_id(i.id, userid, "-fb"),
                                   center_name=planner.directory.center_name)
        return planner.personal_card(userid, card, "feedback_card", RISK_PRIORITY[i.risk_level])

    def _who(self, person: Person, i: Instruction) -> _Who:
        station = self._planner().directory.stations.get(i.routed_station or "")
        on_duty = station is not None and station.duty_officer == person.userid
        return _Who(person.userid, person.name, "值班民警" if on_duty else ROLE_LABELS[person.role])

    @staticmethod
    def _event(action: str, person: Person, channel: str, from_state: str, to_state: str,
               detail: dict | None = None) -> AuditEvent:
        return AuditEvent(action, person.userid, channel, from_state, to_state, detail or {})

    @staticmethod
    def _late(i: Instruction, now: float) -> bool:
        return now - i.received_at > LATE_ACK_SECONDS[i.risk_level]

    def _timing(self, i: Instruction, now: float) -> dict:
        return {"seconds_since_received": round(now - i.received_at, 1), "late": self._late(i, now)}


def _stranger() -> Outcome:
    return Outcome(False, "你不在反诈处置通讯录中，无法办理指令。如有需要请联系派出所或反诈中心管理员。")


