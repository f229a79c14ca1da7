"""Who gets an instruction, and the exact WeCom messages they get. Pure: no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.directory import ChatGroup, Directory, Person
from bot.models import (
    RISK_LABELS,
    RISK_PRIORITY,
    ROLE_LABELS,
    AuditEvent,
    DispatchPlan,
    Instruction,
    NewInstruction,
    OutboxMessage,
)
from bot.render import Renderer, fit_bytes

# WeCom's markdown limits in UTF-8 bytes: app-chat messages 2048, group robots 4096.
MARKDOWN_LIMITS = {"appchat": 2048, "webhook": 4096}
_TASK_ID_UNSAFE = re.compile(r"[^0-9A-Za-z_@-]")


@dataclass(frozen=True)
class Assignee:
    userid: str
    name: str
    role_label: str


def route(item: NewInstruction, directory: Directory) -> dict[str, Any]:
    """Resolve the center's jurisdiction codes against the directory."""
    station = directory.stations.get(item.station_code)
    grid = directory.grids.get(item.grid_code) if item.grid_code else None
    if grid is not None and station is not None and grid.station_code != station.code:
        grid = None  # a grid of another station is as good as unknown here
    routed_station = station.code if station else None
    routed_grid = grid.code if grid else None
    has_assignees = bool(assignees_for(directory, routed_station, routed_grid))
    reason = assignment_reason(item.station_code, item.grid_code, routed_station, routed_grid, has_assignees)
    return {"routed_station": routed_station, "routed_grid": routed_grid, "needs_assignment": reason is not None}


def assignees_for(directory: Directory, station_code: str | None, grid_code: str | None) -> list[Assignee]:
    """The grid's workers and the station's on-duty officer, each once."""
    if station_code is None:
        return []
    people: list[Person] = directory.grid_workers(grid_code) if grid_code else []
    station = directory.stations[station_code]
    if station.duty_officer and station.duty_officer in directory.people:
        people.append(directory.people[station.duty_officer])
    seen: set[str] = set()
    result = []
    for p in people:
        if p.userid not in seen:
            seen.add(p.userid)
            on_duty = p.userid == station.duty_officer and p.role == "officer"
            result.append(Assignee(p.userid, p.name, "值班民警" if on_duty else ROLE_LABELS[p.role]))
    return result


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
    """Turns a stored instruction into its outbox messages and first audit events."""

    def __init__(self, directory: Directory, renderer: Renderer, agent_id: int, task_prefix: str,
                 duplicate_check_interval: int = 1800) -> None:
        self.directory = directory
        self.renderer = renderer
        self.agent_id = agent_id
        self.task_prefix = task_prefix
        self.duplicate_check_interval = duplicate_check_interval

    def __call__(self, i: Instruction) -> DispatchPlan:
        d = self.directory
        station = d.stations.get(i.routed_station) if i.routed_station else None
        grid = d.grids.get(i.routed_grid) if i.routed_grid else None
        priority = RISK_PRIORITY[i.risk_level]
        risk_label = RISK_LABELS[i.risk_level]
        messages: list[OutboxMessage] = []
        received = AuditEvent(
            "received", "center", "api", None, "received",
            {"instruction_no": i.instruction_no, "station": i.routed_station, "grid": i.routed_grid},
        )
        events = [received]

        assignees = assignees_for(d, i.routed_station, i.routed_grid)
        if station:
            group = d.group(station.group_code)
            if group:
                content = self.renderer.text("wecom/station_notice.md.j2", i=i, grid=grid, station=station,
                                             risk_label=risk_label, assignees=assignees)
                messages.append(self.group_markdown(group, content, "station_notice", priority))
            for a in assignees:
                messages.append(self._card(i, a, grid, risk_label, priority))

        reason = assignment_reason(i.station_code, i.grid_code, i.routed_station, i.routed_grid, bool(assignees))
        if reason:
            events.append(AuditEvent("needs_assignment", "system", "api", detail={"reason": reason}))
            fallback = d.group(d.fallback_group)
            if fallback:
                content = self.renderer.text("wecom/fallback_notice.md.j2", i=i, station=station, grid=grid,
                                             risk_label=risk_label, reason=reason)
                messages.append(self.group_markdown(fallback, content, "fallback_notice", priority))
        return DispatchPlan(messages, events, [(a.userid, a.role_label) for a in assignees])

    def task_id(self, instruction_id: int, userid: str, suffix: str = "") -> str:
        """A card task_id unique per app (WeCom refuses reuse), from this database's salt, the id and user."""
        return f"{self.task_prefix}-{instruction_id}-{_TASK_ID_UNSAFE.sub('_', userid)}{suffix}"[:128]

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

    def _card(self, i: Instruction, a: Assignee, grid: Any, risk_label: str, priority: int) -> OutboxMessage:
        task_id = self.task_id(i.id, a.userid)
        card = self.renderer.json("wecom/assignee_card.json.j2", i=i, assignee=a, grid=grid, task_id=task_id,
                                  risk_label=risk_label, center_name=self.directory.center_name)
        return self.personal_card(a.userid, card, "assignee_card", priority)

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

