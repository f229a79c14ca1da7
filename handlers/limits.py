"""Per-route body limits and the body read deadline, given to every request before its handler runs.

aiohttp's one application-wide client_max_size would let the unauthenticated login form buffer as
much as the API's batches. Here each route gets what it needs: a declared Content-Length over it is
refused at once, and any read of the body (handlers.responses.read_body, request.post(), .json())
stops as soon as a chunked body crosses it. A body still incomplete after [server] body_timeout fails
its reader with BodyTimeout (a 408), however the handler reads it.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.streams import StreamReader

from bot.services import SETTINGS
from handlers.responses import BodyTimeout, too_large

CALLBACK_MAX_BYTES = 64 * 1024  # WeCom's callbacks are a few KB
FORM_MAX_BYTES = 8 * 1024  # the dashboard's forms: a login, a filter, a re-assignment
OTHER_MAX_BYTES = 4 * 1024  # routes that take no body at all


def body_limit(request: web.Request) -> int:
    """The most bytes of body this request's route accepts."""
    path = request.path
    if path.startswith("/api/"):
        return request.app[SETTINGS].api.max_body_bytes
    if path == "/wecom/callback":
        return CALLBACK_MAX_BYTES
    if path.startswith("/dashboard"):
        return FORM_MAX_BYTES
    return OTHER_MAX_BYTES


@web.middleware
async def body_limits(request: web.Request, handler) -> web.StreamResponse:
    if not request.body_exists:
        return await handler(request)
    limit = body_limit(request)
    if request.content_length is not None and request.content_length > limit:
        return too_large(limit)
    timeout = request.app[SETTINGS].server.body_timeout
    deadline = asyncio.get_running_loop().call_later(timeout, _expire, request.content)
    try:
        return await handler(request.clone(client_max_size=limit))
    finally:
        deadline.cancel()


def _expire(body: StreamReader) -> None:
    if not body.is_eof():
        body.set_exception(BodyTimeout())
