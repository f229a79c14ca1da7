"""GET /api/v1/openapi.json: the OpenAPI 3.1 description of the /api/v1 surface (handlers/openapi.json).

The description is public (no token), like any API's documentation; the calls it describes are not.
tests/test_api_contract.py validates it and drives the running bot from it with schemathesis.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from aiohttp import web

DESCRIPTION = Path(__file__).resolve().with_name("openapi.json")
routes = web.RouteTableDef()


@routes.get("/api/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_description(), content_type="application/json", charset="utf-8")


@cache
def _description() -> bytes:
    return DESCRIPTION.read_bytes()
