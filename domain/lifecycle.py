"""The instruction state machine and the outcome vocabulary. Pure: every transition is checked here."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

STATE_LABELS = {
    "received": "已接收",
    "dispatched": "已推送",
    "acknowledged": "已签收",
    "contacting": "劝阻中",
    "visit_required": "待上门",
    "visiting": "上门劝阻中",
    "resolved": "已反馈",
    "closed": "已结案",
}
OPEN_STATES = ("received", "dispatched", "acknowledged", "contacting", "visit_required", "visiting")
UNSIGNED_STATES = ("received", "dispatched")
VISIT_STATES = ("visit_required", "visiting")

CONTACT_METHODS = ("电话", "见面", "上门", "视频")
OUTCOMES = ("劝阻成功", "已被骗", "无法联系", "拒绝配合", "误报")
# 无法联系 and 拒绝配合 leave the instruction open: someone still has to reach the resident.
FINAL_OUTCOMES = ("劝阻成功", "已被骗", "误报")

# action → the states it may start from (a sign-for is decided by _ack: it also depends on the person's part)
_ALLOWED = {
    "report": OPEN_STATES,
    "close": ("resolved",),
    "reassign": OPEN_STATES,
}
# What a person can still do in each state, for refusals that say what is possible.
_HINTS = {
    "received": "签收 {id}、反馈 {id} …",
    "dispatched": "签收 {id}、反馈 {id} …",
    "acknowledged": "反馈 {id} 见面 劝阻成功 …",
    "contacting": "反馈 {id} 上门 劝阻成功 …（继续劝阻后再反馈）",
    "visit_required": "签收 {id}（上门任务）、反馈 {id} 上门 劝阻成功 …",
    "visiting": "反馈 {id} 上门 劝阻成功 …",
    "resolved": "结案 {id}（民警或所领导）",
    "closed": "查询 {id}",
}
VERBS = {"ack": "签收", "report": "反馈", "close": "结案", "reassign": "转派"}
# Audit actions as the timeline shows them to people.
ACTION_LABELS = {
    "received": "接收指令", "needs_assignment": "待人工指派", "delivered": "推送送达", "delivery_failed": "推送失败",
    "dispatched": "推送完成", "ack": "签收", "report": "反馈结果", "close": "结案", "reassign": "转派",
    "refused": "越权操作被拒", "visit_ordered": "转上门劝阻", "remind": "到期提醒", "escalate": "超时督办",
}
# Option ids of the outcome card (ASCII, as WeCom wants them) and what they mean.
METHOD_OPTIONS = {"phone": "电话", "meet": "见面", "home": "上门", "video": "视频"}
OUTCOME_OPTIONS = {"success": "劝阻成功", "defrauded": "已被骗", "unreachable": "无法联系", "refused": "拒绝配合",
                   "false_alarm": "误报"}


ACTIONS = ("ack", "report", "close", "reassign")


class VisitPolicy(Protocol):
    """The part of a risk level's policy (bot.policy.Policy) the state machine reads."""

    @property
    def visit_on(self) -> Collection[str]: ...  # phone results that start the visit stage


class TransitionRefused(Exception):
    """The action is not possible in the instruction's current state; the message says what is."""


@dataclass(frozen=True)
class Part:
    """The acting person's part in the instruction, as far as the state machine needs to know it."""

    stage: str = "phone"  # the stage they act for: phone | visit
    assigned: bool = False  # they hold an active assignment of their own
    signed: bool = False  # ... and have signed for it
    visit_exists: bool = False  # the visit stage has begun
    visit_signed: bool = False  # someone has signed for the visit (or the person acts for it)
    visitors_available: bool = True  # someone could be sent to the door (grid workers or the officer on duty)


@dataclass(frozen=True)
class Transition:
    action: str
    from_state: str
    to_state: str
    signs: bool = False  # the instruction's first sign-for (a report before any sign-for counts as one)
    starts_visit: bool = False  # the report ends the phone stage without reaching the resident: order the visit


def transition(action: str, instruction_id: int, state: str, policy: VisitPolicy, part: Part | None = None,
               outcome: str | None = None) -> Transition:
    """The one state machine: what action (with outcome, for a report) does from state under policy, for
    the person whose part it is (an officer of the station without an assignment of their own when None),
    or TransitionRefused with a Chinese message that says what is possible."""
    part = part or Part()
    if action == "ack":
        return _ack(instruction_id, state, part)
    if state not in _ALLOWED[action]:
        raise TransitionRefused(_refusal(action, instruction_id, state))
    if action == "report":
        return _report(state, policy, part, outcome)
    if action == "close":
        return Transition(action, state, "closed")
    return Transition(action, state, state)  # reassign: the people change, the state does not


def _ack(instruction_id: int, state: str, part: Part) -> Transition:
    if state in UNSIGNED_STATES:
        return Transition("ack", state, "acknowledged", signs=True)
    if state == "visit_required" and part.stage == "visit":
        return Transition("ack", state, "visiting")
    if state in OPEN_STATES and part.assigned and not part.signed:
        return Transition("ack", state, state)  # another assignee signs their own task: recorded, the state stays
    raise TransitionRefused(already_signed(instruction_id, state))


def _report(state: str, policy: VisitPolicy, part: Part, outcome: str | None) -> Transition:
    """Under the two-stage playbook a final outcome resolves the instruction. Otherwise the resident still
    has to be reached: a failed phone call sends someone to the door (visit_required until they sign, then
    visiting), a failed attempt at the door keeps the visit going, and without a visit the phone stage goes on.
    """
    starts_visit = (part.stage == "phone" and not part.visit_exists and outcome in policy.visit_on
                    and part.visitors_available)
    if outcome in FINAL_OUTCOMES:
        to_state = "resolved"
    elif part.stage == "visit":
        to_state = "visiting"  # reporting counts as signing for the visit
    elif part.visit_exists or starts_visit:
        to_state = "visiting" if part.visit_signed else "visit_required"
    else:
        to_state = "contacting"
    return Transition("report", state, to_state, signs=state in UNSIGNED_STATES, starts_visit=starts_visit)


def _refusal(action: str, instruction_id: int, state: str) -> str:
    label = STATE_LABELS.get(state, state)
    hint = _HINTS.get(state, "").format(id=instruction_id)
    if action == "close" and state in OPEN_STATES:
        return f"指令 #{instruction_id} 尚未反馈劝阻结果，不能结案（当前：{label}）。可以：{hint}"
    return f"指令 #{instruction_id} 当前{label}，不能{VERBS[action]}。" + (f"可以：{hint}" if hint else "")


def already_signed(instruction_id: int, state: str) -> str:
    """The refusal for a sign-for that has been done (by this person, or for the instruction)."""
    hint = _HINTS.get(state, "").format(id=instruction_id)
    return f"指令 #{instruction_id} 已签收（当前：{STATE_LABELS.get(state, state)}）。可以：{hint}"
