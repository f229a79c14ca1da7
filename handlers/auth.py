"""Bearer-token check for the center's API, one middleware for every /api/v1 route (its OpenAPI description
aside). Several tokens may be valid at once, so they rotate without downtime. Checked before a body is
read, and for paths that match no route too (an unknown path answers 401, not 404: no route map for the
unauthenticated)."""

from __future__ import annotations

import hmac

from aiohttp import web

from bot.services import SETTINGS
from handlers.responses import json_error

_OPEN = frozenset({"/api/v1/openapi.json"})


@web.middleware
async def api_token(request: web.Request, handler) -> web.StreamResponse:
    if request.path.startswith("/api/") and request.path not in _OPEN and (problem := token_problem(request)):
        return problem
    return await handler(request)


def token_problem(request: web.Request) -> web.Response | None:
    """None if the request carries a configured token, else the 401 to answer."""
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return json_error(401)
    # Header bytes that are not UTF-8 arrive as surrogates (surrogateescape): encodable, and never a token.
    presented_bytes = presented.strip().encode("utf-8", "surrogatepass")
    # Compare against every token, without stopping early, in constant time per comparison.
    matched = False
    for token in request.app[SETTINGS].api.tokens:
        matched |= hmac.compare_digest(presented_bytes, token.encode("utf-8"))
    return None if matched else json_error(401)
