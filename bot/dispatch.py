"""Who gets an instruction, and the exact WeCom messages they get. Pure: no I/O."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from bot.render import Renderer, fit_bytes
from domain.deadlines import STAGE_LABELS, phone_deadlines, visit_deadlines
from domain.directory import ChatGroup, Directory, Person
from domain.models import (
    RISK_LABELS,
    RISK_PRIORITY,
    ROLE_LABELS,
    AuditEvent,
    DispatchPlan,
    Instruction,
    NewAssignment,
    NewInstruction,
    OutboxMessage,
)
from domain.policy import DEFAULT_POLICIES, Policy
from domain.roster import RosterBook

# WeCom's markdown limits in UTF-8 bytes: app and app-chat messages 2048, group robots 4096.
MARKDOWN_LIMITS = {"app": 2048, "appchat": 2048, "webhook": 4096}
_TASK_ID_UNSAFE = re.compile(r"[^0-9A-Za-z_@-]")


@dataclass(frozen=True)
class Assignee:
    userid: str
    name: str
    role_label: str
    stage: str = "phone"  # phone: the officer who phones; visit: who goes to the door


def phone_assignees(directory: Directory, roster: RosterBook, station_code: str | None, at: float) -> list[Assignee]:
    """Whoever is on duty at the station at that moment phones the resident."""
    if station_code is None:
        return []
    officer = directory.people.get(roster.on_duty(station_code, at).officer or "")
    return [Assignee(officer.userid, officer.name, on_duty_label(officer))] if officer else []


def visit_assignees(directory: Directory, grid_code: str | None) -> list[Assignee]:
    """The grid's workers go to the door."""
    workers = directory.grid_workers(grid_code) if grid_code else []
    return [Assignee(p.userid, p.name, ROLE_LABELS[p.role], "visit") for p in workers]


def on_duty_label(person: Person) -> str:
    return "值班民警" if person.role == "officer" else ROLE_LABELS[person.role]


def assignment_reason(station_code: str, grid_code: str | None, routed_station: str | None,
                      routed_grid: str | None, has_assignees: bool) -> str | None:
    """Why people at the center must assign this instruction by hand, or None."""
    if routed_station is None:
        return f"派出所编码 {station_code} 未在通讯录中登记"
    if grid_code and routed_grid is None:
        return f"网格编码 {grid_code} 未在派出所 {station_code} 登记"
    if not has_assignees:
        return "该辖区没有可推送的网格员或值班民警"
    return None


class DispatchPlanner:
    """Turns a stored instruction into its outbox messages, assignments, deadlines and first audit events."""

    def __init__(self, directory: Directory, renderer: Renderer, agent_id: int, task_prefix: str,
                 duplicate_check_interval: int = 1800, policies: dict[str, Policy] | None = None,
                 roster: RosterBook | None = None) -> None:
        self.directory = directory
        self.renderer = renderer
        self.agent_id = agent_id
        self.task_prefix = task_prefix
        self.duplicate_check_interval = duplicate_check_interval
        self.policies = policies or DEFAULT_POLICIES
        # Replaced whenever a roster is imported; lookups always see the latest.
        self.roster = roster or RosterBook((), directory)

    def route(self, item: NewInstruction, at: float) -> dict[str, Any]:
        """Resolve the center's jurisdiction codes against the directory."""
        d = self.directory
        station = d.stations.get(item.station_code)
        grid = d.grids.get(item.grid_code) if item.grid_code else None
        if grid is not None and station is not None and grid.station_code != station.code:
            grid = None  # a grid of another station is as good as unknown here
        routed_station = station.code if station else None
        routed_grid = grid.code if grid else None
        has_assignees = bool(phone_assignees(d, self.roster, routed_station, at) or visit_assignees(d, routed_grid))
        reason = assignment_reason(item.station_code, item.grid_code, routed_station, routed_grid, has_assignees)
        return {"routed_station": routed_station, "routed_grid": routed_grid, "needs_assignment": reason is not None}

    def __call__(self, i: Instruction) -> DispatchPlan:
        d = self.directory
        station = d.stations.get(i.routed_station) if i.routed_station else None
        grid = d.grids.get(i.routed_grid) if i.routed_grid else None
        priority = RISK_PRIORITY[i.risk_level]
        policy = self.policies[i.risk_level]
        messages: list[OutboxMessage] = []
        received = AuditEvent(
            "received", "center", "api", None, "received",
            {"instruction_no": i.instruction_no, "station": i.routed_station, "grid": i.routed_grid},
        )
        events = [received]

        phone = phone_assignees(d, self.roster, i.routed_station, i.received_at)
        visit = visit_assignees(d, i.routed_grid) if policy.visit_from_start else []
        deadlines = phone_deadlines(policy, i.received_at, with_report=not visit)
        if visit:
            deadlines += visit_deadlines(policy, i.received_at)
        assignees = _unique(visit + phone)
        if station:
            group = d.group(station.group_code)
            if group:
                content = self.renderer.text("wecom/station_notice.md.j2", i=i, grid=grid, station=station,
                                             risk_label=RISK_LABELS[i.risk_level], assignees=assignees)
                messages.append(self.group_markdown(group, content, "station_notice", priority))
            due = {(x.stage, x.milestone): x.due_at for x in deadlines}
            messages += [self.assignee_card(i, a, due[(a.stage, "ack")]) for a in assignees]

        reason = assignment_reason(i.station_code, i.grid_code, i.routed_station, i.routed_grid,
                                   bool(phone or visit_assignees(d, i.routed_grid)))
        if reason:
            events.append(AuditEvent("needs_assignment", "system", "api", detail={"reason": reason}))
            fallback = d.group(d.fallback_group)
            if fallback:
                content = self.renderer.text("wecom/fallback_notice.md.j2", i=i, station=station, grid=grid,
                                             risk_label=RISK_LABELS[i.risk_level], reason=reason)
                messages.append(self.group_markdown(fallback, content, "fallback_notice", priority))
        return DispatchPlan(messages, events, [NewAssignment(a.userid, a.role_label, a.stage) for a in assignees],
                            deadlines)

    def assignee_card(self, i: Instruction, a: Assignee, ack_due: float, later: bool = False,
                      now: float | None = None) -> OutboxMessage:
        """The personal card with the resident's details, the task (phone or visit) and the sign-for deadline.

        `later`: a card made after the dispatch (a re-assignment, a visit), with a task_id of its own."""
        task_id = self.card_task_id(i.id) if later else self.task_id(i.id, a.userid)
        card = self.renderer.json("wecom/assignee_card.json.j2", i=i, assignee=a, task_id=task_id,
                                  grid=self.directory.grids.get(i.routed_grid or ""),
                                  risk_label=RISK_LABELS[i.risk_level], center_name=self.directory.center_name,
                                  stage_label=STAGE_LABELS[a.stage], ack_due=ack_due,
                                  overdue=now is not None and ack_due <= now)
        return self.personal_card(a.userid, card, "assignee_card", RISK_PRIORITY[i.risk_level])

    # WeCom refuses a task_id used before by the app, for ever (42014). Both forms start with this database's
    # salt and the instruction's id; neither can take the other's shape (a '-' or an '@' follows the id), and
    # a re-send of an outbox row is byte-identical because the task_id is written into its body once.

    def task_id(self, instruction_id: int, userid: str) -> str:
        """The task_id of a card sent at dispatch: each person gets one card then, so the user makes it unique."""
        return f"{self.task_prefix}-{instruction_id}-{_TASK_ID_UNSAFE.sub('_', userid)}"[:128]

    def card_task_id(self, instruction_id: int) -> str:
        """The task_id of a card made later (re-assignment, outcome, visit): 64 random bits after the
        instruction's id, so that it is new for ever without a database round trip (an instruction has a
        handful of cards; a repeat within one would take billions of them)."""
        return f"{self.task_prefix}-{instruction_id}@{secrets.token_hex(8)}"

    def personal_card(self, userid: str, card: dict[str, Any], purpose: str, priority: int) -> OutboxMessage:
        """An interaction card to one person through the app; re-sends are swallowed by WeCom's duplicate check."""
        body = {
            "touser": userid,
            "msgtype": "template_card",
            "agentid": self.agent_id,
            "template_card": card,
            # If a crash leaves it unclear whether this card went out, the re-send is byte-identical
            # and WeCom's duplicate check swallows it.
            "enable_duplicate_check": 1,
            "duplicate_check_interval": self.duplicate_check_interval,
        }
        return OutboxMessage(purpose, "app", userid, userid, body, (f"app:{userid}",), priority, card["task_id"])

    def personal_markdown(self, userid: str, content: str, purpose: str, priority: int) -> OutboxMessage:
        """A markdown app message to one person; a re-send after a crash is swallowed by WeCom's duplicate check."""
        body = {
            "touser": userid, "msgtype": "markdown", "agentid": self.agent_id,
            "markdown": {"content": fit_bytes(content, MARKDOWN_LIMITS["app"])},
            "enable_duplicate_check": 1, "duplicate_check_interval": self.duplicate_check_interval,
        }
        return OutboxMessage(purpose, "app", userid, userid, body, (f"app:{userid}",), priority)

    def station_group(self, i: Instruction) -> ChatGroup | None:
        station = self.directory.stations.get(i.routed_station or "")
        return self.directory.group(station.group_code) if station else None

    def group_markdown(self, group: ChatGroup, content: str, purpose: str, priority: int) -> OutboxMessage:
        """A markdown message to a station or center group, through its app chat or its robot."""
        content = fit_bytes(content, MARKDOWN_LIMITS[group.kind])
        if group.kind == "appchat":
            body = {"chatid": group.address, "msgtype": "markdown", "markdown": {"content": content}, "safe": 0}
            keys = tuple(f"appchat:{m}" for m in group.members)
        else:
            body = {"msgtype": "markdown", "markdown": {"content": content}}
            keys = (f"robot:{group.code}",)
        return OutboxMessage(purpose, group.kind, group.address, group.code, body, keys, priority)



def _unique(assignees: list[Assignee]) -> list[Assignee]:
    """Each person once: someone both on duty and the grid's worker gets one card, for the earlier-listed stage."""
    seen: set[str] = set()
    return [a for a in assignees if not (a.userid in seen or seen.add(a.userid))]
