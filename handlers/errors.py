"""One funnel for errors at the HTTP edge: every error is JSON with a Chinese message, never a bare 500."""

from __future__ import annotations

import logging

from aiohttp import web

from handlers.responses import json_error

_LOGGER = logging.getLogger(__name__)


@web.middleware
async def error_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status)
    except Exception:
        _LOGGER.exception("unhandled error", extra={"path": request.path, "method": request.method})
        return json_error(500, "服务器内部错误，请稍后重试；已接收的指令不会丢失")
