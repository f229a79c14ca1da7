"""WeCom error codes answered by the simulator and the exception that carries them."""

from __future__ import annotations

import secrets

_TEXTS: dict[int, str] = {
    -1: "system is busy",
    40001: "invalid credential",
    40003: "invalid userid",
    40008: "invalid message type",
    40004: "invalid media type",
    40005: "invalid file type",
    40006: "invalid file size",
    40007: "invalid media_id",
    40009: "invalid image size",
    40011: "invalid video size",
    40029: "invalid code",
    40013: "invalid corpid",
    40014: "invalid access_token",
    40056: "invalid agentid",
    40058: "invalid Request Parameter",
    41001: "access_token missing",
    41002: "corpid missing",
    41004: "corpsecret missing",
    41005: "media data missing",
    41006: "media_id missing",
    41008: "missing code",
    41010: "url missing",
    41011: "agentid missing",
    41016: "title missing",
    41033: "description missing",
    42001: "access_token expired",
    42014: "taskid has existed or empty or exceed max len",
    42016: "task_id not exist",
    42031: "invalid template_card.card_type",
    43012: "app needs a callback url",
    44001: "empty media data",
    44004: "empty content",
    45002: "content size out of limit",
    45008: "article count out of limit",
    45009: "api freq out of limit",
    45034: "url must start with a scheme",
    48002: "api forbidden",
    50001: "redirect_uri unauthorized",
    60140: "invalid response_code",
    81013: "user & party & tag all invalid",
    81017: "too many users in the app's visible range, give owner_filter",
    82001: "All touser & toparty & totag invalid",
    86001: "invalid chatid",
    86003: "chatid not found",
    86004: "invalid chat name",
    86006: "chat member count out of range",
    86007: "invalid chat member",
    86008: "not allowed to operate on a chat this app did not create",
    86201: "chatid required",
    86207: "owner not in member list",
    86215: "chatid already exists",
    86220: "invalid msgtype for appchat",
    93000: "invalid webhook url",
    301002: "not allow operate another agent with this accesstoken.",
    301019: "invalid md5",
}


def error_text(errcode: int) -> str:
    """Return WeCom's short description of `errcode`."""
    return _TEXTS.get(errcode, "simulated error")


def format_errmsg(errcode: int, detail: str, remote: str | None) -> str:
    """Render an errmsg the way WeCom does: text, hint, caller IP and a help link."""
    hint = secrets.token_hex(8)
    return (
        f"{detail}, hint: [{hint}], from ip: {remote or '127.0.0.1'}, "
        f"more info at https://open.work.weixin.qq.com/devtool/query?e={errcode}"
    )


class ApiError(Exception):
    """A WeCom API failure answered as HTTP 200 with a non-zero errcode."""

    def __init__(self, errcode: int, detail: str | None = None) -> None:
        self.errcode = errcode
        self.detail = detail or error_text(errcode)
        super().__init__(f"{errcode}: {self.detail}")

    def payload(self, remote: str | None = None) -> dict:
        """Return the JSON object WeCom would answer with."""
        return {"errcode": self.errcode, "errmsg": format_errmsg(self.errcode, self.detail, remote)}
