"""Liveness and metrics, for load balancers and Prometheus. Neither needs a token nor shows personal data."""

from __future__ import annotations

from aiohttp import web

from bot.app import SERVICES

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    try:
        counts = await services.storage.outbox_counts()
    except Exception as err:
        return web.json_response({"status": "error", "database": str(err)}, status=503)
    return web.json_response({"status": "ok", "outbox": counts})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    counts = await services.storage.outbox_counts()
    services.metrics.outbox_pending.set(counts.get("pending", 0) + counts.get("sending", 0))
    return web.Response(body=services.metrics.render(), content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})
