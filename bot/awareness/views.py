"""Campaigns, runs and dry runs as JSON-ready dicts, for the API and the command line."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.awareness.schedule import next_slot
from bot.awareness.settings import campaign_trigger
from bot.scheduler import SHANGHAI
from domain.awareness import RunPlan, StoredCampaign

STATE_LABELS = {
    "sent": "已送达", "awaiting_confirmation": "待员工确认群发", "pending": "排队中", "failed": "失败",
}


def iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, SHANGHAI).isoformat(timespec="seconds") if epoch is not None else None


def campaign_view(stored: StoredCampaign, now: float) -> dict[str, Any]:
    c = stored.campaign
    upcoming = next_slot(campaign_trigger(c), stored.last_slot, now) if c.enabled else None
    return {
        **c.as_dict(), "source": stored.source, "last_slot": iso(stored.last_slot), "next_run": iso(upcoming),
    }


def run_view(run: dict[str, Any]) -> dict[str, Any]:
    return {**run, "slot": iso(run["slot"]), "created_at": iso(run["created_at"]),
            "finished_at": iso(run["finished_at"])}


def log_view(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**e, "state_label": STATE_LABELS[e["state"]], "sent_at": iso(e["sent_at"]),
         "task_created_at": iso(e["task_created_at"]), "next_attempt_at": iso(e["next_attempt_at"])}
        for e in entries
    ]


def preview_view(plan: RunPlan) -> dict[str, Any]:
    """A dry run: per group the item, why, the channel and the exact text; nothing is stored or sent."""
    texts = {}
    for push in plan.pushes:
        body = push.message.body
        content = (body.get("markdown") or body.get("text") or {}).get("content", "")
        for code in push.groups:
            texts[code] = content
    return {
        "campaign": plan.campaign.name,
        "groups": len(plan.targets),
        "calls": len(plan.pushes),
        "targets": [
            {"group": t.group.code, "group_name": t.group.name, "station": t.group.station_code,
             "channel": t.group.channel, "item": t.item.id, "title": t.item.title, "fraud_type": t.item.fraud_type,
             "reason": t.reason, "content": texts[t.group.code]}
            for t in plan.targets
        ],
        "left_out": [{"group": code, "reason": reason} for code, reason in plan.left_out],
    }
