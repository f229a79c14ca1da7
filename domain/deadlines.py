"""The deadlines an instruction's stages get from its policy, with their reminder and ladder timers. Pure."""

from __future__ import annotations

from domain.models import NewDeadline
from domain.policy import Policy

STAGE_LABELS = {"phone": "电话劝阻", "visit": "上门劝阻"}
MILESTONE_LABELS = {
    ("phone", "ack"): "签收",
    ("phone", "contact"): "电话联系对象",
    ("phone", "report"): "反馈劝阻结果",
    ("visit", "ack"): "签收上门任务",
    ("visit", "report"): "上门见到对象并反馈",
}
# What someone late on a deadline has not done, as the escalation messages say it.
OVERDUE_LABELS = {
    ("phone", "ack"): "未签收",
    ("phone", "contact"): "未电话联系对象",
    ("phone", "report"): "未反馈劝阻结果",
    ("visit", "ack"): "未签收上门任务",
    ("visit", "report"): "未上门见到对象并反馈",
}
# Milestones in the order they are reached within a stage: a later one's ladder waits for an earlier one.
MILESTONE_ORDER = ("ack", "contact", "report")


def phone_deadlines(policy: Policy, start: float, with_report: bool = True) -> list[NewDeadline]:
    """Sign, phone and report, counted from receipt; without the report when a visit's report is the one that counts."""
    deadlines = [
        _deadline("phone", "ack", start, start + policy.ack_within, policy),
        _deadline("phone", "contact", start, start + policy.contact_within, policy),
    ]
    if with_report:
        deadlines.append(_deadline("phone", "report", start, start + policy.report_within, policy))
    return deadlines


def visit_deadlines(policy: Policy, start: float) -> list[NewDeadline]:
    """Sign for the visit, and reach the resident and report, counted from when the visit was ordered."""
    return [
        _deadline("visit", "ack", start, start + policy.visit_ack_within, policy),
        _deadline("visit", "report", start, start + policy.visit_report_within, policy),
    ]


def _deadline(stage: str, milestone: str, start: float, due: float, policy: Policy) -> NewDeadline:
    timers: list[tuple[int, str, float]] = []
    if policy.remind_before and due - policy.remind_before > start:
        timers.append((0, "remind", due - policy.remind_before))
    timers += [(n, step, due + after) for n, (step, after) in enumerate(policy.ladder, start=1)]
    return NewDeadline(stage, milestone, due, tuple(timers))
