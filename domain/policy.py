"""Deadline and escalation policies per risk level, read from [policy.<risk>] in the config.

A policy says how long the phone stage (sign for it, phone the resident, report the outcome) and the
in-person visit stage (sign for the visit, report its outcome) may take, when to remind before a
deadline, and the escalation ladder after it. The defaults follow the pace of the real process: a
high-risk warning means money is about to leave, so it is signed within minutes and a grid worker
goes to the door at once; lower risks get hours.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from domain.lifecycle import OUTCOMES
from domain.models import RISK_LEVELS

# The escalation ladder, in the order it climbs.
LADDER_STEPS = ("assignee", "duty_officer", "station_leader", "center")
LADDER_LABELS = {"remind": "到期前提醒", "assignee": "再次提醒承办人", "duty_officer": "值班民警",
                 "station_leader": "所领导", "center": "反诈中心"}
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


@dataclass(frozen=True)
class Policy:
    """Times in seconds. Phone-stage deadlines count from receipt; visit-stage ones from the visit's creation."""

    ack_within: int
    contact_within: int
    report_within: int
    remind_before: int
    visit_ack_within: int
    visit_report_within: int
    visit_from_start: bool = False  # send the grid worker to the door at once, alongside the phone call
    visit_on: tuple[str, ...] = ("无法联系", "拒绝配合")  # phone results that start the visit stage
    ladder: tuple[tuple[str, int], ...] = field(default_factory=tuple)  # (step, seconds after the deadline)


DEFAULT_POLICIES: dict[str, Policy] = {
    # Money is about to leave: a sign-for in 5 minutes, the phone call within 10, the grid worker
    # sent to the door at the same time and at the resident within 45 minutes (Chongqing's grid
    # worker took about twenty). The ladder reaches the center within a quarter of an hour.
    "high": Policy(
        ack_within=5 * 60, contact_within=10 * 60, report_within=60 * 60, remind_before=2 * 60,
        visit_ack_within=5 * 60, visit_report_within=45 * 60, visit_from_start=True,
        ladder=(("assignee", 0), ("duty_officer", 3 * 60), ("station_leader", 8 * 60), ("center", 15 * 60)),
    ),
    # A warning without money moving yet: within the half hour, outcome the same shift.
    "medium": Policy(
        ack_within=30 * 60, contact_within=60 * 60, report_within=4 * 3600, remind_before=10 * 60,
        visit_ack_within=30 * 60, visit_report_within=4 * 3600,
        ladder=(("assignee", 0), ("duty_officer", 15 * 60), ("station_leader", 30 * 60), ("center", 60 * 60)),
    ),
    # Preventive contact: within the working day.
    "low": Policy(
        ack_within=2 * 3600, contact_within=8 * 3600, report_within=24 * 3600, remind_before=30 * 60,
        visit_ack_within=2 * 3600, visit_report_within=24 * 3600,
        ladder=(("assignee", 0), ("duty_officer", 3600), ("station_leader", 2 * 3600), ("center", 4 * 3600)),
    ),
}


def parse_duration(value: Any, key: str, error: Callable[[str], Exception]) -> int:
    """'90s', '5m', '2h', '1d', '1h30m' or a number of seconds → seconds."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        match = _DURATION.match(value.strip())
        if match and any(match.groups()):
            d, h, m, s = (int(g or 0) for g in match.groups())
            return ((d * 24 + h) * 60 + m) * 60 + s
    raise error(f"{key} must be a duration such as \"90s\", \"5m\", \"2h\", \"1d\" or seconds, got {value!r}")


def parse_policies(raw: Mapping[str, Any], error: Callable[[str], Exception]) -> dict[str, Policy]:
    """[policy.high|medium|low] tables over the defaults; each key is optional."""
    if not isinstance(raw, Mapping):
        raise error("[policy] must be a table of [policy.high], [policy.medium], [policy.low]")
    policies = dict(DEFAULT_POLICIES)
    for risk, table in raw.items():
        if risk not in RISK_LEVELS:
            raise error(f"unknown policy [policy.{risk}]: use high, medium or low")
        if not isinstance(table, Mapping):
            raise error(f"[policy.{risk}] must be a table")
        policies[risk] = _parse_one(risk, table, DEFAULT_POLICIES[risk], error)
    return policies


def _parse_one(risk: str, table: Mapping[str, Any], base: Policy, error: Callable[[str], Exception]) -> Policy:
    where = f"policy.{risk}"
    durations = ("ack_within", "contact_within", "report_within", "remind_before", "visit_ack_within",
                 "visit_report_within")
    known = {*durations, "visit_from_start", "visit_on", "ladder"}
    for key in table:
        if key not in known:
            raise error(f"unknown key {where}.{key}")
    changes: dict[str, Any] = {
        key: parse_duration(table[key], f"{where}.{key}", error) for key in durations if key in table
    }
    if "visit_from_start" in table:
        if not isinstance(table["visit_from_start"], bool):
            raise error(f"{where}.visit_from_start must be true or false")
        changes["visit_from_start"] = table["visit_from_start"]
    if "visit_on" in table:
        visit_on = table["visit_on"]
        if not isinstance(visit_on, list) or any(o not in OUTCOMES for o in visit_on):
            raise error(f"{where}.visit_on must be a list of outcomes from {', '.join(OUTCOMES)}")
        changes["visit_on"] = tuple(visit_on)
    if "ladder" in table:
        changes["ladder"] = _parse_ladder(table["ladder"], where, error)
    policy = replace(base, **changes)
    for first, second in (("ack_within", "contact_within"), ("contact_within", "report_within"),
                          ("visit_ack_within", "visit_report_within")):
        if getattr(policy, first) > getattr(policy, second):
            raise error(f"{where}.{first} must not be longer than {where}.{second}")
    if policy.remind_before >= policy.ack_within:
        raise error(f"{where}.remind_before must be shorter than {where}.ack_within")
    return policy


def _parse_ladder(value: Any, where: str, error: Callable[[str], Exception]) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, Mapping):
        raise error(f"{where}.ladder must be a table such as "
                    "{ assignee = \"0m\", duty_officer = \"3m\", station_leader = \"8m\", center = \"15m\" }")
    for step in value:
        if step not in LADDER_STEPS:
            raise error(f"{where}.ladder.{step}: steps are {', '.join(LADDER_STEPS)}")
    ladder = tuple((step, parse_duration(value[step], f"{where}.ladder.{step}", error))
                   for step in LADDER_STEPS if step in value)
    delays = [after for _, after in ladder]
    if delays != sorted(delays):
        raise error(f"{where}.ladder must climb: each step no earlier than the one before "
                    f"({' → '.join(LADDER_STEPS)})")
    return ladder
