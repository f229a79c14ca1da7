"""JSON responses as the center's platform and operators read them (UTF-8, Chinese messages)."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from aiohttp import web

_dumps = partial(json.dumps, ensure_ascii=False)

SLOW_BODY_MESSAGE = "请求体接收超时，请检查网络后重试"
_MESSAGES = {
    400: "请求有误",
    401: "未授权：缺少或错误的访问令牌",
    404: "未找到",
    405: "不支持该请求方法",
    408: SLOW_BODY_MESSAGE,
    413: "请求体过大",
    415: "请求体必须是 JSON",
}


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=_dumps)


def json_error(status: int, message: str | None = None, **extra: Any) -> web.Response:
    body = {"error": message or _MESSAGES.get(status, "请求失败"), **extra}
    response = json_response(body, status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="quanzu"'
    return response


class BodyTimeout(TimeoutError):
    """The client did not send the whole body within [server] body_timeout (set on the request's stream)."""


def too_large(limit: int) -> web.Response:
    return json_error(413, f"请求体过大（上限 {limit} 字节）")


async def read_body(request: web.Request, limit: int | None = None) -> bytes | web.Response:
    """The whole request body however it is framed (any segmentation, chunked), or the 4xx to answer.

    The cap is the route's (handlers.limits gives each request its client_max_size), or `limit` when
    smaller: a declared Content-Length over it is refused before reading, a chunked body as soon as it
    crosses it. A body that does not arrive within [server] body_timeout answers 408.
    """
    cap = min(limit, request.client_max_size) if limit else request.client_max_size
    if request.content_length is not None and request.content_length > cap:
        return too_large(cap)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return too_large(cap)
    except BodyTimeout as exc:
        drop_traceback(exc)
        return json_error(408, SLOW_BODY_MESSAGE)
    return too_large(cap) if len(body) > cap else body


def drop_traceback(exc: BaseException) -> None:
    """Forget where a failed body read was raised. The exception stays set on the request's stream (and its
    read's future), so its traceback's frames — holding the request and the part of the body read so far —
    form a cycle that only a full garbage collection frees: a wave of stalled uploads would keep its
    bodies' memory for minutes."""
    exc.__traceback__ = None
