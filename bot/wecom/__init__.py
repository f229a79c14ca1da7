"""Async WeCom client (aiohttp) and its typed errors."""

from bot.wecom.client import WeComClient
from bot.wecom.errors import (
    WeComConfigError,
    WeComError,
    WeComRateLimited,
    WeComRejected,
    WeComRetryable,
    WeComTokenError,
    WeComUnavailable,
)

__all__ = [
    "WeComClient",
    "WeComConfigError",
    "WeComError",
    "WeComRateLimited",
    "WeComRejected",
    "WeComRetryable",
    "WeComTokenError",
    "WeComUnavailable",
]
