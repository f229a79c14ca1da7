"""The center's intake: POST /api/v1/instructions and GET /api/v1/instructions/{id}."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from bot.render import SHANGHAI
from bot.services import SERVICES
from domain.deadlines import MILESTONE_LABELS
from domain.policy import LADDER_LABELS
from handlers.inputs import path_id, read_json
from handlers.responses import json_error, json_response
from storage import Storage

routes = web.RouteTableDef()


@routes.post("/api/v1/instructions")
async def submit(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    payload = await read_json(request, services.settings.api.max_body_bytes)
    if isinstance(payload, web.Response):
        return payload

    if isinstance(payload, list):
        max_batch = services.settings.api.max_batch
        if not payload:
            return json_error(400, "批量指令不能为空数组")
        if len(payload) > max_batch:
            return json_error(413, f"一次最多提交 {max_batch} 条指令，本次 {len(payload)} 条")
        outcomes = await services.intake.submit(payload)
        results = [{"index": n, "code": o.status, **o.body} for n, o in enumerate(outcomes)]
        summary = {
            "accepted": sum(o.status == 202 for o in outcomes),
            "duplicates": sum(o.status == 200 for o in outcomes),
            "rejected": sum(o.status == 400 for o in outcomes),
            "failed": sum(o.status == 503 for o in outcomes),  # not stored for a fault of ours: send again
        }
        return json_response({**summary, "results": results})

    (outcome,) = await services.intake.submit([payload])
    response = json_response(outcome.body, outcome.status)
    if outcome.status == 503:
        response.headers["Retry-After"] = "5"
    return response


@routes.get("/api/v1/instructions/{id}")
async def show(request: web.Request) -> web.Response:
    instruction_id = path_id(request.match_info["id"])
    if instruction_id is None:
        return json_error(404, "指令编号必须是正整数")
    storage = request.app[SERVICES].storage
    instruction = await storage.get_instruction(instruction_id)
    if instruction is None:
        return json_error(404, f"指令 #{instruction_id} 不存在")
    t = instruction.target
    body: dict[str, Any] = {
        "id": instruction.id,
        "instruction_no": instruction.instruction_no,
        "state": instruction.state,
        "needs_assignment": instruction.needs_assignment,
        "delivery_failed": instruction.delivery_failed,
        "issued_at": iso(instruction.issued_at),
        "received_at": iso(instruction.received_at),
        "warning_type": instruction.warning_type,
        "fraud_type": instruction.fraud_type,
        "risk_level": instruction.risk_level,
        "target": {"name": t.name, "phone": t.phone, "id_number": t.id_number, "address": t.address, "age": t.age},
        "jurisdiction": {"station": instruction.station_code, "grid": instruction.grid_code},
        "routed": {"station": instruction.routed_station, "grid": instruction.routed_grid},
        "summary": instruction.summary,
        "amount_at_risk": instruction.amount_at_risk,
        "acknowledged": {"at": _iso_or_none(instruction.acked_at), "by": instruction.acked_by},
        "outcome": {
            "method": instruction.contact_method, "result": instruction.outcome,
            "loss_avoided": instruction.loss_avoided, "amount_lost": instruction.amount_lost,
            "note": instruction.outcome_note, "at": _iso_or_none(instruction.reported_at),
            "by": instruction.reported_by,
        },
        "closed": {"at": _iso_or_none(instruction.closed_at), "by": instruction.closed_by},
        "assignments": [
            {"userid": a.userid, "role": a.role_label, "stage": a.stage, "assigned_at": iso(a.assigned_at),
             "acked_at": _iso_or_none(a.acked_at), "active": a.active}
            for a in await storage.assignments(instruction_id)
        ],
        **await _deadlines(storage, instruction_id, request.app[SERVICES].clock()),
        "timeline": [{**e, "at": iso(e["at"])} for e in await storage.timeline(instruction_id)],
        "deliveries": [
            {**d, "created_at": iso(d["created_at"]), "sent_at": _iso_or_none(d["sent_at"])}
            for d in await storage.deliveries(instruction_id)
        ],
    }
    return json_response(body)


async def _deadlines(storage: Storage, instruction_id: int, now: float) -> dict[str, Any]:
    """Each deadline with how late it was met (or is, while open), and each timer of its ladder."""
    deadlines = await storage.deadlines(instruction_id)
    by_id = {d.id: d for d in deadlines}
    return {
        "deadlines": [
            {"stage": d.stage, "milestone": d.milestone, "label": MILESTONE_LABELS[(d.stage, d.milestone)],
             "due_at": iso(d.due_at), "state": d.state, "settled_at": _iso_or_none(d.settled_at),
             "settled_by": d.settled_by, "overdue": d.state == "open" and now > d.due_at,
             "late_seconds": _late(d.due_at, d.settled_at if d.state != "open" else now)}
            for d in deadlines
        ],
        "escalations": [
            {"stage": by_id[t.deadline_id].stage, "milestone": by_id[t.deadline_id].milestone, "step": t.step,
             "notify": t.notify, "label": LADDER_LABELS[t.notify], "fire_at": iso(t.fire_at), "state": t.state,
             "fired_at": _iso_or_none(t.fired_at),
             "late_seconds": _late(by_id[t.deadline_id].due_at, t.fired_at) if t.fired_at is not None else None}
            for t in await storage.timers(instruction_id)
        ],
    }


def _late(due_at: float, at: float | None) -> float:
    """Seconds past the deadline at `at` (0 when on time)."""
    return round(max(0.0, (at or due_at) - due_at), 1)


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, SHANGHAI).isoformat(timespec="milliseconds")


def _iso_or_none(epoch: float | None) -> str | None:
    return iso(epoch) if epoch is not None else None

