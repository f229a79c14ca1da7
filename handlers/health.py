"""Liveness and metrics, for load balancers and Prometheus. Neither needs a token nor shows personal data."""

from __future__ import annotations

import time

from aiohttp import web

from bot.services import SERVICES
from bot.wecom.check import SELF_CHECK

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    storage = services.storage
    try:
        counts = await storage.outbox_counts()
        body = {"status": "ok", "outbox": counts, "instance": storage.instance_id,
                "runs_scheduled_work": services.cluster.leads()}
        reasons = wecom_problems(request.app)
        if reasons:  # up and accepting instructions, but WeCom is not set up right: an operator must act
            body = {"status": "degraded", "reasons": reasons, **{k: v for k, v in body.items() if k != "status"}}
        if storage.shared:  # the instances on this database and the lease holder
            body["cluster"] = await storage.cluster_view(time.time() - services.settings.cluster.dead_after)
    except Exception as err:
        return web.json_response({"status": "error", "database": str(err)}, status=503)
    return web.json_response(body)


def wecom_problems(app: web.Application) -> list[str]:
    """What the start-up self-check found wrong and why the sender is paused, each line once."""
    self_check = app.get(SELF_CHECK)
    lines = (self_check.problems if self_check else []) + app[SERVICES].worker.paused_reasons
    return list(dict.fromkeys(lines))


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    counts = await services.storage.outbox_counts()
    services.metrics.outbox_pending.set(counts.get("pending", 0) + counts.get("sending", 0))
    return web.Response(body=services.metrics.render(), content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})
