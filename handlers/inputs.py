"""Reading what a client sends to the API before anything acts on it: JSON bodies and ids in paths.

Everything here refuses (ValueError / None) rather than raises something else, so that hostile input
is a 400 or 404 at the edge, never an error deeper down (a RecursionError in the JSON decoder, an
overflow in the database driver, a lone surrogate that cannot be stored as UTF-8).
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from handlers.responses import json_error, read_body

MAX_JSON_DEPTH = 32  # the API's deepest document (an instruction's target) is 2 levels deep
MAX_ID = 2**63 - 1  # the largest id a database column holds
_ID = re.compile(r"[1-9][0-9]{0,18}")
NOT_JSON = "请求体不是合法的 JSON（UTF-8）"


def strict_json(text: str | bytes) -> Any:
    """JSON as RFC 8259 has it, or ValueError: no NaN or Infinity, no lone surrogate (it cannot be stored
    as UTF-8), and nested at most MAX_JSON_DEPTH deep."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError as err:  # the decoder recurses once per level
        raise ValueError("JSON nested too deep") from err
    if _depth_exceeds(value, MAX_JSON_DEPTH):
        raise ValueError("JSON nested too deep")
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # UnicodeEncodeError is a ValueError
    return value


async def read_json(request: web.Request, limit: int) -> Any:
    """The request's body as strict JSON, or the 400/413 response to answer instead."""
    body = await read_body(request, limit)
    if isinstance(body, web.Response):
        return body
    try:
        return strict_json(body)
    except (ValueError, UnicodeDecodeError):
        return json_error(400, NOT_JSON)


def path_id(segment: str) -> int | None:
    """A database id written in a path (1 … 2^63-1, ASCII digits, no sign or padding), else None."""
    if not _ID.fullmatch(segment):
        return None
    value = int(segment)
    return value if value <= MAX_ID else None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether containers nest deeper than limit (iterative: no recursion on hostile input)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False
