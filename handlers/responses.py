"""JSON responses as the center's platform and operators read them (UTF-8, Chinese messages)."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from aiohttp import web

_dumps = partial(json.dumps, ensure_ascii=False)

_MESSAGES = {
    400: "请求有误",
    401: "未授权：缺少或错误的访问令牌",
    404: "未找到",
    405: "不支持该请求方法",
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


async def read_body(request: web.Request, limit: int) -> bytes | web.Response:
    """The request body, or the 413 to answer when it is over limit (refused before reading when declared)."""
    too_large = json_error(413, f"请求体过大（上限 {limit} 字节）")
    if request.content_length is not None and request.content_length > limit:
        return too_large
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return too_large
