"""POST /api/v1/rosters: import a station's duty roster (值班表) as CSV; GET shows who is on duty."""

from __future__ import annotations

from aiohttp import web

from bot.roster import RosterError
from bot.services import SERVICES
from handlers.intake import iso
from handlers.responses import json_error, json_response, read_body

routes = web.RouteTableDef()


@routes.post("/api/v1/rosters")
async def import_roster(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    data = await read_body(request, services.settings.api.max_body_bytes)
    if isinstance(data, web.Response):
        return data
    try:
        summary = await services.escalations.import_roster(data)
    except RosterError as err:
        return json_error(400, "值班表有误，未导入任何班次", errors=err.problems)
    return json_response(summary)


@routes.get("/api/v1/rosters/on-duty")
async def on_duty(request: web.Request) -> web.Response:
    """Who is on duty at every station now: from the roster, the directory, or standing in for a gap."""
    services = request.app[SERVICES]
    planner = services.planner
    now = services.clock()
    stations = []
    for code, station in planner.directory.stations.items():
        duty = planner.roster.on_duty(code, now)
        stations.append({
            "station": code, "name": station.name, "officer": duty.officer, "leader": duty.leader,
            "source": duty.source,
            "gap": None if duty.gap is None else {
                "from": None if duty.gap.start is None else iso(duty.gap.start),
                "to": None if duty.gap.end is None else iso(duty.gap.end),
            },
        })
    return json_response({"at": iso(now), "stations": stations})
