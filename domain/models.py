"""Domain records passed between the intake, routing, storage and delivery layers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RISK_LEVELS = ("high", "medium", "low")
RISK_PRIORITY = {"high": 0, "medium": 1, "low": 2}
RISK_LABELS = {"high": "高风险", "medium": "中风险", "low": "低风险"}
ROLES = ("grid_worker", "officer", "station_leader", "center")
ROLE_LABELS = {"grid_worker": "网格员", "officer": "民警", "station_leader": "所领导", "center": "反诈中心"}


@dataclass(frozen=True)
class Target:
    name: str
    phone: str
    id_number: str | None = None
    address: str | None = None
    age: int | None = None


@dataclass(frozen=True)
class NewInstruction:
    """A validated instruction from the center, not yet stored."""

    instruction_no: str
    issued_at: float
    warning_type: str
    fraud_type: str
    risk_level: str
    target: Target
    station_code: str
    grid_code: str | None
    summary: str
    amount_at_risk: float | None
    raw: dict[str, Any]


@dataclass(frozen=True)
class Instruction:
    """A stored instruction."""

    id: int
    instruction_no: str
    issued_at: float
    received_at: float
    warning_type: str
    fraud_type: str
    risk_level: str
    target: Target
    station_code: str
    grid_code: str | None
    routed_station: str | None
    routed_grid: str | None
    needs_assignment: bool
    summary: str
    amount_at_risk: float | None
    state: str
    delivery_failed: bool
    acked_at: float | None = None
    acked_by: str | None = None
    contact_method: str | None = None
    outcome: str | None = None
    loss_avoided: float | None = None
    amount_lost: float | None = None
    outcome_note: str | None = None
    reported_at: float | None = None
    reported_by: str | None = None
    closed_at: float | None = None
    closed_by: str | None = None


# Instruction columns an action may set.
ACTION_FIELDS = frozenset({
    "acked_at", "acked_by", "contact_method", "outcome", "loss_avoided", "amount_lost", "outcome_note",
    "reported_at", "reported_by", "closed_at", "closed_by",
})


@dataclass(frozen=True)
class Assignment:
    instruction_id: int
    userid: str
    role_label: str
    assigned_at: float
    acked_at: float | None
    active: bool
    stage: str = "phone"  # phone | visit


@dataclass(frozen=True)
class NewAssignment:
    userid: str
    role_label: str
    stage: str  # phone | visit


@dataclass(frozen=True)
class NewDeadline:
    """A deadline to record with its timers: (step, notify, fire_at); step 0 is the reminder."""

    stage: str  # phone | visit
    milestone: str  # ack | contact | report
    due_at: float
    timers: tuple[tuple[int, str, float], ...]


@dataclass(frozen=True)
class Settlement:
    """Close the open deadlines of a stage (None: every stage) and milestone (None: every one)."""

    state: str  # met | superseded | moot
    stage: str | None = None
    milestone: str | None = None


@dataclass(frozen=True)
class Deadline:
    id: int
    instruction_id: int
    stage: str
    milestone: str
    due_at: float
    state: str
    settled_at: float | None
    settled_by: str | None


@dataclass(frozen=True)
class Timer:
    id: int | None  # None: a later step of a ladder, not written as a timer yet
    deadline_id: int
    instruction_id: int
    step: int
    notify: str
    fire_at: float
    state: str
    fired_at: float | None


@dataclass(frozen=True)
class OutboxMessage:
    """One WeCom API call to make: who gets it, through which channel, and the exact body."""

    purpose: str
    channel: str  # app | appchat | webhook
    address: str
    label: str
    body: dict[str, Any]
    rate_keys: tuple[str, ...]
    priority: int
    task_id: str | None = None


@dataclass(frozen=True)
class OutboxRow:
    id: int
    instruction_id: int | None
    purpose: str
    channel: str
    address: str
    label: str
    body: str
    rate_keys: tuple[str, ...]
    priority: int
    state: str
    attempts: int
    created_at: float
    task_id: str | None


@dataclass(frozen=True)
class AuditEvent:
    action: str
    actor: str
    channel: str
    from_state: str | None = None
    to_state: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DispatchPlan:
    """What accepting an instruction writes besides the instruction itself."""

    messages: list[OutboxMessage]
    events: list[AuditEvent]
    assignees: list[NewAssignment]
    deadlines: list[NewDeadline] = field(default_factory=list)


@dataclass(frozen=True)
class ActionWrite:
    """One action on an instruction, written in one transaction if the instruction is still in from_state."""

    instruction_id: int
    from_state: str
    to_state: str
    fields: dict[str, Any] = field(default_factory=dict)
    events: list[AuditEvent] = field(default_factory=list)
    messages: list[OutboxMessage] = field(default_factory=list)
    ack_user: str | None = None  # this user's assignment is marked signed (added if they had none)
    ack_stage: str = "phone"  # the stage of the assignment added for an ack_user who had none
    assign: list[NewAssignment] = field(default_factory=list)  # new active assignments
    unassign: list[str] = field(default_factory=list)  # users whose assignment ends
    settle: list[Settlement] = field(default_factory=list)  # deadlines this action meets or ends
    deadlines: list[NewDeadline] = field(default_factory=list)  # deadlines this action starts


@dataclass(frozen=True)
class AcceptResult:
    id: int
    instruction_no: str
    created: bool  # False: the center sent this instruction_no before
    state: str
    outbox: tuple[OutboxRow, ...] = ()  # its messages, claimed for this process to send at once
