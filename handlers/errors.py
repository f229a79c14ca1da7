"""One funnel for errors at the HTTP edge: every error is JSON with a Chinese message, never a bare 500.

What the client caused (it went away mid-body, broke the body's framing, stalled its upload) is a 4xx
and one rate-limited WARNING line (bot.logs.client_warning); ERROR with a traceback is kept for what is
wrong in Quanzu. asyncio.CancelledError is not caught: aiohttp does not cancel handlers when a client
goes away (handler_cancellation is off), so it only means shutdown.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from bot.logs import client_warning
from handlers.responses import SLOW_BODY_MESSAGE, BodyTimeout, drop_traceback, json_error

_LOGGER = logging.getLogger(__name__)


@web.middleware
async def error_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = json_error(exc.status)
        if "Allow" in exc.headers:  # a 405 says which methods the resource takes (RFC 9110)
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except BodyTimeout as exc:
        drop_traceback(exc)
        client_warning(_LOGGER, "slow_body", "request body not received in time",
                       path=request.path, remote=request.remote)
        return json_error(408, SLOW_BODY_MESSAGE)
    except (ConnectionError, RequestPayloadError) as exc:
        drop_traceback(exc)
        # The answer rarely reaches a client that left; one that broke the framing reads it.
        client_warning(_LOGGER, "client_gone" if isinstance(exc, ConnectionError) else "bad_body",
                       f"request body broken off: {type(exc).__name__}", path=request.path, remote=request.remote)
        return json_error(400, "请求体不完整或格式错误")
    except Exception:
        _LOGGER.exception("unhandled error", extra={"path": request.path, "method": request.method})
        return json_error(500, "服务器内部错误，请稍后重试；已接收的指令不会丢失")
