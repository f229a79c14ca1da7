"""The instruction state machine and the outcome vocabulary. Pure: every transition is checked here."""

from __future__ import annotations

from dataclasses import dataclass

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

# action → the states it may start from
_ALLOWED = {
    "ack": (*UNSIGNED_STATES, "visit_required"),
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


class TransitionRefused(Exception):
    """The action is not possible in the instruction's current state; the message says what is."""


@dataclass(frozen=True)
class Transition:
    action: str
    from_state: str
    to_state: str


def plan(action: str, instruction_id: int, state: str, outcome: str | None = None) -> Transition:
    """The transition an action makes from state, or TransitionRefused with a Chinese explanation."""
    if state not in _ALLOWED[action]:
        label = STATE_LABELS.get(state, state)
        hint = _HINTS.get(state, "").format(id=instruction_id)
        if action == "ack" and state in ("acknowledged", "contacting", "visiting", "resolved", "closed"):
            raise TransitionRefused(already_signed(instruction_id, state))
        if action == "close" and state in OPEN_STATES:
            raise TransitionRefused(f"指令 #{instruction_id} 尚未反馈劝阻结果，不能结案（当前：{label}）。可以：{hint}")
        raise TransitionRefused(
            f"指令 #{instruction_id} 当前{label}，不能{VERBS[action]}。" + (f"可以：{hint}" if hint else "")
        )
    if action == "ack":
        return Transition(action, state, "visiting" if state == "visit_required" else "acknowledged")
    if action == "report":
        return Transition(action, state, "resolved" if outcome in FINAL_OUTCOMES else "contacting")
    if action == "close":
        return Transition(action, state, "closed")
    return Transition(action, state, state)


def already_signed(instruction_id: int, state: str) -> str:
    """The refusal for a sign-for that has been done (by this person, or for the instruction)."""
    hint = _HINTS.get(state, "").format(id=instruction_id)
    return f"指令 #{instruction_id} 已签收（当前：{STATE_LABELS.get(state, state)}）。可以：{hint}"


def report_target(outcome: str, stage: str, visit_exists: bool, visit_signed: bool, starts_visit: bool) -> str:
    """The state a report leads to under the two-stage playbook.

    A final outcome resolves the instruction. Otherwise the resident still has to be reached: a
    failed phone call sends someone to the door (visit_required until they sign, then visiting), a
    failed attempt at the door keeps the visit going, and without a visit the phone stage goes on.
    """
    if outcome in FINAL_OUTCOMES:
        return "resolved"
    if stage == "visit":
        return "visiting"  # reporting counts as signing for the visit
    if visit_exists or starts_visit:
        return "visiting" if visit_signed else "visit_required"
    return "contacting"
