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


# Errors that no retry can cure and that hit every message of a kind, not one message: the sender pauses
# that kind (bot/outbox.py) and keeps its messages due until an operator fixes the setting.
_CREDENTIALS = {40001, 40013, 40091, 41002, 41004, 60020, 301002}  # every call with an access token fails
_NO_PERMISSION = 48002  # this API is not allowed for the app: only the channel that uses it is affected
TOKEN_CHANNELS = ("app", "appchat", "customer_group")  # the outbox channels that need an access token


def pause_scope(err: WeComError, channel: str) -> str | None:
    """What a credential or permission error stops: "token" (every channel with an access token), one
    channel (48002 is per API), or None when it is this message's own problem."""
    if not isinstance(err, WeComConfigError) or channel not in TOKEN_CHANNELS:
        return None
    if err.errcode in _CREDENTIALS:
        return "token"
    if err.errcode == _NO_PERMISSION:
        return channel
    return None


# What an operator must change, in Chinese, per errcode: the setting and where in the admin console.
_ADVICE = {
    40013: "企业ID（[wecom] corp_id）不正确：在企业微信管理后台「我的企业 → 企业信息」页底部复制企业ID",
    40001: "应用 Secret（[wecom] corp_secret）不正确：在管理后台「应用管理 → 自建 → 本应用」查看 Secret 并填入配置",
    40091: "应用 Secret（[wecom] corp_secret）不属于该企业：在管理后台「应用管理 → 自建 → 本应用」查看 Secret",
    41002: "缺少企业ID（[wecom] corp_id）：在管理后台「我的企业 → 企业信息」复制企业ID",
    41004: "缺少应用 Secret（[wecom] corp_secret）：在管理后台「应用管理 → 自建 → 本应用」查看 Secret",
    60020: "本服务器的出口IP不在应用的企业可信IP中：在管理后台「应用管理 → 自建 → 本应用 → 企业可信IP」添加"
           "（约1分钟后生效）",
    301002: "应用 AgentId（[wecom] agent_id）与 Secret 不属于同一应用：在管理后台「应用管理 → 自建 → 本应用」核对两者",
}
_PERMISSION_ADVICE = {
    "customer_group": "本应用无权调用客户联系接口（客户群群发，48002）：在管理后台「客户与上下游 → 客户联系 → API → "
                      "可调用应用」中加入本应用",
    "app": "本应用无权调用该接口（48002）：在管理后台「应用管理 → 自建 → 本应用」检查权限与可见范围",
    "appchat": "本应用无权使用应用群聊（48002）：应用群聊要求应用可见范围为根部门，在管理后台「应用管理 → 自建 → "
               "本应用 → 可见范围」设置",
}


def operator_advice(err: WeComError, channel: str = "app") -> str:
    """One Chinese line naming the setting to fix and where in the WeCom admin console."""
    if err.errcode == _NO_PERMISSION:
        return _PERMISSION_ADVICE.get(channel, _PERMISSION_ADVICE["app"])
    advice = _ADVICE.get(err.errcode or 0)
    return advice or f"企业微信拒绝了请求（错误码 {err.errcode}）：{err.errmsg[:80]}"
