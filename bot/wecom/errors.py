"""WeCom errcodes as typed errors: what the caller should do is in the type, not in a number."""

from __future__ import annotations


class WeComError(Exception):
    """A WeCom call did not succeed."""

    def __init__(self, errcode: int | None, errmsg: str) -> None:
        super().__init__(f"{errcode}: {errmsg}" if errcode is not None else errmsg)
        self.errcode = errcode
        self.errmsg = errmsg


class WeComRetryable(WeComError):
    """Transient: try again after a backoff (system busy, concurrency limit, 5xx)."""

    retry_after: float | None = None


class WeComUnavailable(WeComRetryable):
    """WeCom could not be reached or answered with a non-200 HTTP status."""


class WeComRateLimited(WeComRetryable):
    """45009: frequency limit. Its windows are a minute or longer, so wait for the window to end."""

    retry_after = 60.0


class WeComTokenError(WeComError):
    """The access token is missing, invalid or expired: refresh and retry once."""


class WeComConfigError(WeComError):
    """Wrong credentials, permissions or IP allow-list: retrying cannot help, an operator must act."""


class WeComRejected(WeComError):
    """The request itself is wrong for WeCom (bad recipients, bad fields): retrying cannot help."""


_RETRYABLE = {-1, 45033}
_RATE_LIMITED = {45009}
_TOKEN = {40014, 42001, 41001}
_CONFIG = {40001, 40013, 40091, 41002, 41004, 48002, 60011, 60020, 301002, 93004}


def error_for(errcode: int, errmsg: str) -> WeComError:
    """The typed error for a non-zero errcode."""
    if errcode in _RETRYABLE:
        return WeComRetryable(errcode, errmsg)
    if errcode in _RATE_LIMITED:
        return WeComRateLimited(errcode, errmsg)
    if errcode in _TOKEN:
        return WeComTokenError(errcode, errmsg)
    if errcode in _CONFIG:
        return WeComConfigError(errcode, errmsg)
    return WeComRejected(errcode, errmsg)
