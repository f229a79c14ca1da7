"""Bearer-token check for the center's API. Several tokens may be valid at once, so they rotate without downtime."""

from __future__ import annotations

import hmac

from aiohttp import web

from bot.app import SETTINGS
from handlers.responses import json_error


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
