"""/api/v1/campaigns: awareness campaigns — list, show with runs and delivery log, create, update,
enable/disable, dry run and run now. Changes made here are stored and override the config file."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from aiohttp import web

from bot.awareness.service import AWARENESS, AwarenessService
from bot.awareness.settings import parse_campaign
from bot.awareness.views import campaign_view, log_view, preview_view, run_view
from bot.services import SERVICES
from domain.awareness import Campaign
from handlers.inputs import path_id, read_json
from handlers.responses import json_error, json_response

routes = web.RouteTableDef()
_RECENT_RUNS = 10
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # as parse_campaign has it; other names cannot exist
# The API's own bounds on a definition, beyond what parse_campaign (shared with the config file) checks.
MAX_TEXT = 200
MAX_LIST = 200
MAX_TREND_DAYS = 366


@routes.get("/api/v1/campaigns")
async def list_campaigns(request: web.Request) -> web.Response:
    now = request.app[SERVICES].clock()
    stored = await _service(request).campaigns()
    return json_response({"campaigns": [campaign_view(s, now) for s in stored]})


@routes.post("/api/v1/campaigns")
async def create(request: web.Request) -> web.Response:
    campaign = await _campaign_from(request)
    if isinstance(campaign, web.Response):
        return campaign
    storage = request.app[SERVICES].storage
    if not await storage.save_campaign(campaign, request.app[SERVICES].clock(), create=True):
        return json_error(409, f"活动 {campaign.name} 已存在，请用 PUT 修改")
    return await _show(request, campaign.name, 201)


@routes.get("/api/v1/campaigns/{name}")
async def show(request: web.Request) -> web.Response:
    if problem := _problem(request):
        return problem
    return await _show(request, request.match_info["name"])


@routes.put("/api/v1/campaigns/{name}")
async def update(request: web.Request) -> web.Response:
    if problem := _problem(request):
        return problem
    campaign = await _campaign_from(request, request.match_info["name"])
    if isinstance(campaign, web.Response):
        return campaign
    return await _save(request, campaign)


@routes.post("/api/v1/campaigns/{name}/disable")
async def disable(request: web.Request) -> web.Response:
    return await _set_enabled(request, False)


@routes.post("/api/v1/campaigns/{name}/enable")
async def enable(request: web.Request) -> web.Response:
    return await _set_enabled(request, True)


@routes.get("/api/v1/campaigns/{name}/preview")
async def preview(request: web.Request) -> web.Response:
    if problem := _problem(request):
        return problem
    stored = await request.app[SERVICES].storage.campaign(request.match_info["name"])
    if stored is None:
        return _unknown(request)
    plan = await _service(request).plan(stored.campaign)
    return json_response({"dry_run": True, **preview_view(plan)})


@routes.post("/api/v1/campaigns/{name}/run")
async def run_now(request: web.Request) -> web.Response:
    if problem := _problem(request):
        return problem
    run_id = await _service(request).run_now(request.match_info["name"])
    if run_id is None:
        return _unknown(request)
    run = await request.app[SERVICES].storage.run(run_id)
    return json_response({"run": run_view(run)}, 202)


@routes.get("/api/v1/campaigns/{name}/runs/{run_id}")
async def show_run(request: web.Request) -> web.Response:
    if problem := _problem(request):
        return problem
    storage = request.app[SERVICES].storage
    run_id = path_id(request.match_info["run_id"])
    run = await storage.run(run_id) if run_id is not None else None
    if run is None or run["campaign"] != request.match_info["name"]:
        return json_error(404, "没有这次推送")
    return json_response({"run": run_view(run), "log": log_view(await storage.delivery_log(run["id"]))})


async def _show(request: web.Request, name: str, status: int = 200) -> web.Response:
    services = request.app[SERVICES]
    stored = await services.storage.campaign(name)
    if stored is None:
        return _unknown(request)
    runs = await services.storage.runs(name, _RECENT_RUNS)
    body = {"campaign": campaign_view(stored, services.clock()), "runs": [run_view(r) for r in runs]}
    if runs:
        body["latest_log"] = log_view(await services.storage.delivery_log(runs[0]["id"]))
    return json_response(body, status)


async def _set_enabled(request: web.Request, enabled: bool) -> web.Response:
    if problem := _problem(request):
        return problem
    stored = await request.app[SERVICES].storage.campaign(request.match_info["name"])
    if stored is None:
        return _unknown(request)
    return await _save(request, dataclasses.replace(stored.campaign, enabled=enabled))


async def _save(request: web.Request, campaign: Campaign) -> web.Response:
    services = request.app[SERVICES]
    if not await services.storage.save_campaign(campaign, services.clock(), create=False):
        return _unknown(request)
    return await _show(request, campaign.name)


async def _campaign_from(request: web.Request, name: str | None = None) -> Campaign | web.Response:
    body = await read_json(request, request.app[SERVICES].settings.api.max_body_bytes)
    if isinstance(body, web.Response):
        return body
    if isinstance(body, dict) and name is not None and body.setdefault("name", name) != name:
        return json_error(400, "请求体中的 name 与地址中的活动名不一致")
    if isinstance(body, dict) and isinstance(body.get("trend_days"), float) and body["trend_days"].is_integer():
        body["trend_days"] = int(body["trend_days"])  # JSON has one number type: 6.0 is the integer 6
    if problem := _beyond_api_bounds(body):
        return json_error(400, f"活动定义有误：{problem}")
    settings = _service(request).settings
    try:
        campaign = parse_campaign(body, "campaign", trend_days=settings.trend_days, quiet_hours=settings.quiet_hours)
    except ValueError as err:
        return json_error(400, f"活动定义有误：{err}")
    if campaign.item and campaign.item not in _service(request).library.by_id:
        return json_error(400, f"内容库中没有编号为 {campaign.item} 的内容")
    return campaign


def _problem(request: web.Request) -> web.Response | None:
    """The 404 to answer before looking anything up: a name that no campaign can have is unknown."""
    if not _NAME.fullmatch(request.match_info["name"]):
        return _unknown(request)
    return None


def _beyond_api_bounds(body: Any) -> str | None:
    """Why a definition is refused by the API's bounds on text, lists and numbers, or None."""
    if not isinstance(body, dict):
        return None  # parse_campaign says what it must be
    trend_days = body.get("trend_days")
    if isinstance(trend_days, int) and not isinstance(trend_days, bool) and trend_days > MAX_TREND_DAYS:
        return f"trend_days 不能超过 {MAX_TREND_DAYS}"
    stack: list[tuple[str, Any]] = [("", body)]
    while stack:
        key, value = stack.pop()
        if isinstance(value, str):
            if len(value) > MAX_TEXT:
                return f"{key} 不能超过 {MAX_TEXT} 个字符"
            if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
                return f"{key} 不能包含控制字符"
        elif isinstance(value, list):
            if len(value) > MAX_LIST:
                return f"{key} 最多 {MAX_LIST} 项"
            stack.extend((key, v) for v in value)
        elif isinstance(value, dict):
            stack.extend(("字段名", k) for k in value)
            stack.extend((f"{key}.{k}".lstrip("."), v) for k, v in value.items() if len(k) <= MAX_TEXT)
    return None


def _service(request: web.Request) -> AwarenessService:
    return request.app[AWARENESS]


def _unknown(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    return json_error(404, f"没有名为 {name} 的宣防活动" if _NAME.fullmatch(name) else "没有这个宣防活动")
