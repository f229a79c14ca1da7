"""The one state machine (bot.lifecycle.transition) as a table: every state × every action, and for reports
every outcome, for each kind of person acting, under each risk level's default policy.

The expected values are written out, not derived: a change to the state machine must change this table.
The flows that reach it through WeCom and the API (tests/test_callbacks.py, tests/test_escalation.py) show
the same transitions end to end.
"""

from __future__ import annotations

import ast
import itertools
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from domain.lifecycle import ACTIONS, OUTCOMES, STATE_LABELS, Part, TransitionRefused, transition
from domain.policy import DEFAULT_POLICIES


@dataclass(frozen=True)
class Refused:
    says: str  # a fragment of the Chinese refusal


@dataclass(frozen=True)
class Moves:
    to: str
    starts_visit: bool = False


STATES = tuple(STATE_LABELS)
OPEN = ("received", "dispatched", "acknowledged", "contacting", "visit_required", "visiting")
UNSIGNED = ("received", "dispatched")

# Who acts, as the state machine sees them.
PARTS = {
    # an officer or leader of the station, or the center, without an assignment of their own
    "manager": Part(),
    # the officer the card went to, not yet signed
    "phone_assignee": Part(assigned=True),
    # the same officer after signing
    "phone_signed": Part(assigned=True, signed=True),
    # the phone stage with nobody who could be sent to the door (no grid worker, no officer on duty)
    "no_visitors": Part(assigned=True, signed=True, visitors_available=False),
    # the phone officer after the visit was ordered, before anyone signed for it
    "visit_ordered": Part(assigned=True, signed=True, visit_exists=True),
    # the phone officer once a grid worker signed for the visit
    "visit_signed": Part(assigned=True, signed=True, visit_exists=True, visit_signed=True),
    # the grid worker sent to the door, not yet signed
    "visitor": Part(stage="visit", assigned=True, visit_exists=True, visit_signed=True),
}

SIGNED = Refused("已签收（当前：")
NOT_YET_REPORTED = Refused("尚未反馈劝阻结果，不能结案")

# ack: state → expected for each part (a sign-for depends on who signs)
ACK = {
    "received": dict.fromkeys(PARTS, Moves("acknowledged")),
    "dispatched": dict.fromkeys(PARTS, Moves("acknowledged")),
    "acknowledged": {"manager": SIGNED, "phone_assignee": Moves("acknowledged"), "phone_signed": SIGNED,
                     "no_visitors": SIGNED, "visit_ordered": SIGNED, "visit_signed": SIGNED,
                     "visitor": Moves("acknowledged")},
    "contacting": {"manager": SIGNED, "phone_assignee": Moves("contacting"), "phone_signed": SIGNED,
                   "no_visitors": SIGNED, "visit_ordered": SIGNED, "visit_signed": SIGNED,
                   "visitor": Moves("contacting")},
    "visit_required": {"manager": SIGNED, "phone_assignee": Moves("visit_required"), "phone_signed": SIGNED,
                       "no_visitors": SIGNED, "visit_ordered": SIGNED, "visit_signed": SIGNED,
                       "visitor": Moves("visiting")},
    "visiting": {"manager": SIGNED, "phone_assignee": Moves("visiting"), "phone_signed": SIGNED,
                 "no_visitors": SIGNED, "visit_ordered": SIGNED, "visit_signed": SIGNED,
                 "visitor": Moves("visiting")},
    "resolved": dict.fromkeys(PARTS, SIGNED),
    "closed": dict.fromkeys(PARTS, SIGNED),
}

# report from any open state: part → outcome → expected (a final outcome resolves; otherwise the default
# policies send someone to the door after a failed phone call, 无法联系 and 拒绝配合 alike)
_FINAL = {"劝阻成功": Moves("resolved"), "已被骗": Moves("resolved"), "误报": Moves("resolved")}
REPORT_OPEN = {
    "manager": {**_FINAL, "无法联系": Moves("visit_required", True), "拒绝配合": Moves("visit_required", True)},
    "phone_assignee": {**_FINAL, "无法联系": Moves("visit_required", True),
                       "拒绝配合": Moves("visit_required", True)},
    "phone_signed": {**_FINAL, "无法联系": Moves("visit_required", True), "拒绝配合": Moves("visit_required", True)},
    "no_visitors": {**_FINAL, "无法联系": Moves("contacting"), "拒绝配合": Moves("contacting")},
    "visit_ordered": {**_FINAL, "无法联系": Moves("visit_required"), "拒绝配合": Moves("visit_required")},
    "visit_signed": {**_FINAL, "无法联系": Moves("visiting"), "拒绝配合": Moves("visiting")},
    "visitor": {**_FINAL, "无法联系": Moves("visiting"), "拒绝配合": Moves("visiting")},
}
REPORT = {
    **{state: REPORT_OPEN for state in OPEN},
    "resolved": {part: dict.fromkeys(OUTCOMES, Refused("当前已反馈，不能反馈。可以：结案 7")) for part in PARTS},
    "closed": {part: dict.fromkeys(OUTCOMES, Refused("当前已结案，不能反馈。可以：查询 7")) for part in PARTS},
}

# close and reassign do not depend on who acts (whether they may is checked before, in bot/actions.py)
CLOSE = {**dict.fromkeys(OPEN, NOT_YET_REPORTED), "resolved": Moves("closed"),
         "closed": Refused("当前已结案，不能结案")}
REASSIGN = {**{state: Moves(state) for state in OPEN}, "resolved": Refused("当前已反馈，不能转派"),
            "closed": Refused("当前已结案，不能转派")}

TABLE = {"ack": ACK, "report": REPORT, "close": CLOSE, "reassign": REASSIGN}

CASES = [
    pytest.param(risk, action, state, part, outcome, id=f"{risk}-{action}-{state}-{part}-{outcome}")
    for risk in DEFAULT_POLICIES
    for action, state in itertools.product(ACTIONS, STATES)
    for part in PARTS
    for outcome in (OUTCOMES if action == "report" else (None,))
]


def expected(action: str, state: str, part: str, outcome: str | None) -> Moves | Refused:
    row = TABLE[action][state]
    if action == "ack":
        return row[part]
    if action == "report":
        return row[part][outcome]
    return row


def test_the_table_covers_every_pair():
    assert set(ACTIONS) == set(TABLE)
    for action in ACTIONS:
        assert set(TABLE[action]) == set(STATES), action
    for state in STATES:
        assert set(ACK[state]) == set(PARTS)
        assert set(REPORT[state]) == set(PARTS)
        for part in PARTS:
            assert set(REPORT[state][part]) == set(OUTCOMES)
    assert len(CASES) == len(DEFAULT_POLICIES) * len(STATES) * len(PARTS) * (3 + len(OUTCOMES))


@pytest.mark.parametrize(("risk", "action", "state", "part", "outcome"), CASES)
def test_transition(risk, action, state, part, outcome):
    want = expected(action, state, part, outcome)
    policy = DEFAULT_POLICIES[risk]
    if isinstance(want, Refused):
        with pytest.raises(TransitionRefused) as refused:
            transition(action, 7, state, policy, PARTS[part], outcome)
        message = str(refused.value)
        assert want.says in message
        assert message.startswith("指令 #7 ")
        assert "可以：" in message  # every refusal says what is possible instead
        return
    moved = transition(action, 7, state, policy, PARTS[part], outcome)
    assert (moved.action, moved.from_state, moved.to_state) == (action, state, want.to)
    assert moved.starts_visit == want.starts_visit
    # The first sign-for of the instruction: a sign-for or a report while nobody has signed yet.
    assert moved.signs == (action in ("ack", "report") and state in UNSIGNED)


def test_no_part_means_someone_without_an_assignment():
    policy = DEFAULT_POLICIES["medium"]
    assert transition("report", 7, "acknowledged", policy, None, "无法联系") == \
        transition("report", 7, "acknowledged", policy, PARTS["manager"], "无法联系")
    with pytest.raises(TransitionRefused, match=r"已签收（当前：已签收）。可以：反馈 7"):
        transition("ack", 7, "acknowledged", policy)


@pytest.mark.parametrize(
    ("visit_on", "outcome", "to_state", "starts_visit"),
    [
        ((), "无法联系", "contacting", False),  # a policy that never sends anyone to the door
        ((), "拒绝配合", "contacting", False),
        (("无法联系",), "无法联系", "visit_required", True),
        (("无法联系",), "拒绝配合", "contacting", False),  # only the listed outcomes start the visit
    ],
)
def test_the_policy_decides_when_a_failed_call_starts_the_visit(visit_on, outcome, to_state, starts_visit):
    policy = replace(DEFAULT_POLICIES["low"], visit_on=visit_on)
    moved = transition("report", 7, "acknowledged", policy, PARTS["phone_signed"], outcome)
    assert (moved.to_state, moved.starts_visit) == (to_state, starts_visit)


def test_the_state_machine_is_pure():
    """No I/O and no framework: domain/lifecycle.py imports only from the standard library's typing helpers."""
    tree = ast.parse(Path(__file__).parents[1].joinpath("domain", "lifecycle.py").read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "collections.abc", "dataclasses", "typing"}
