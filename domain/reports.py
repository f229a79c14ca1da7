"""Records the report queries take and give: filters, aggregates, overdue items, board rows. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import NamedTuple

# Asia/Shanghai has kept UTC+8 all year since 1991, so a calendar day is a fixed 86,400-second slice.
SHANGHAI_OFFSET = 8 * 3600
_EPOCH = date(1970, 1, 1)


def day_number(epoch: float) -> int:
    """The Asia/Shanghai calendar day of an instant, as days since 1970-01-01."""
    return int((epoch + SHANGHAI_OFFSET) // 86400)


def day_start(day: int) -> float:
    """The instant an Asia/Shanghai day begins (its midnight)."""
    return day * 86400 - SHANGHAI_OFFSET


def day_date(day: int) -> date:
    return _EPOCH + timedelta(days=day)


def date_day(value: date) -> int:
    return (value - _EPOCH).days


@dataclass(frozen=True)
class ReportFilter:
    """What a board, statistics page or export is restricted to. None means no restriction.

    `stations` and `assignee` come from the viewer's permissions; the rest from the page's filters.
    Days are Asia/Shanghai day numbers (inclusive) of when the instruction was received.
    """

    stations: tuple[str, ...] | None = None
    assignee: str | None = None  # a grid worker sees only what was assigned to them
    station: str | None = None
    risk_level: str | None = None
    fraud_type: str | None = None
    states: tuple[str, ...] | None = None
    first_day: int | None = None
    last_day: int | None = None


GROUPINGS = ("day", "station", "outcome")


class FactGroup(NamedTuple):
    """Counts and sums over the instructions of one day, station or outcome (the key; None for none)."""

    key: int | str | None
    received: int
    signed: int
    ack_ontime: int
    contacted: int
    visits: int
    loss_avoided: float
    amount_lost: float


class Percentiles(NamedTuple):
    """Median and 90th percentile of a duration over one station's instructions (station None: all of them)."""

    station: str | None
    count: int
    p50: float | None
    p90: float | None


@dataclass(frozen=True)
class OverdueItem:
    """An open instruction with a deadline past due: the earliest one it missed."""

    instruction_id: int
    station: str | None
    risk_level: str
    fraud_type: str
    state: str
    received_at: float
    stage: str
    milestone: str
    due_at: float


@dataclass(frozen=True)
class BoardRow:
    """One instruction as the board lists it (names and phones are masked when shown)."""

    id: int
    instruction_no: str
    received_at: float
    risk_level: str
    fraud_type: str
    warning_type: str
    station: str | None
    grid: str | None
    state: str
    target_name: str
    target_phone: str
    amount_at_risk: float | None
    acked_at: float | None
    outcome: str | None
    contact_method: str | None
    loss_avoided: float | None
    amount_lost: float | None
    next_due_at: float | None  # the earliest open deadline
    needs_assignment: bool
    delivery_failed: bool
    closed_at: float | None = None
    target_address: str | None = None
    target_id_number: str | None = None

    def overdue(self, now: float) -> bool:
        return self.next_due_at is not None and self.next_due_at < now


@dataclass(frozen=True)
class Board:
    rows: list[BoardRow]
    total: int  # matching instructions, of which `rows` is the newest part
    by_state: dict[str, int] = field(default_factory=dict)
    overdue: int = 0


@dataclass
class History:
    """Rows for one batch, in the column order insert_history expects."""

    instructions: list[tuple] = field(default_factory=list)
    deadlines: list[tuple] = field(default_factory=list)
    assignments: list[tuple] = field(default_factory=list)
    events: list[tuple] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.instructions)
