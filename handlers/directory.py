"""GET /api/v1/directory: the station and grid codes the intake accepts."""

from __future__ import annotations

from aiohttp import web

from bot.services import SERVICES
from handlers.responses import json_response

routes = web.RouteTableDef()


@routes.get("/api/v1/directory")
async def show(request: web.Request) -> web.Response:
    directory = request.app[SERVICES].directory
    stations = [
        {
            "code": s.code,
            "name": s.name,
            "grids": [{"code": g.code, "name": g.name} for g in directory.grids.values() if g.station_code == s.code],
        }
        for s in directory.stations.values()
    ]
    return json_response({"center": directory.center_name, "stations": stations})
