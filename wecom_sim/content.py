"""Validation of message bodies per msgtype and channel, with WeCom's byte limits."""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Literal

from .errors import ApiError

Channel = Literal["app", "appchat", "webhook"]

APP_MSGTYPES = frozenset(
    {"text", "markdown", "textcard", "news", "image", "voice", "video", "file", "mpnews", "template_card"}
)
APPCHAT_MSGTYPES = frozenset({"text", "image", "voice", "video", "file", "textcard", "news", "mpnews", "markdown"})
WEBHOOK_MSGTYPES = frozenset({"text", "markdown", "image", "news", "file", "voice", "template_card"})
# Types WeCom knows somewhere; a known type on the wrong channel is a channel error, not 40008.
KNOWN_MSGTYPES = APP_MSGTYPES | APPCHAT_MSGTYPES | WEBHOOK_MSGTYPES | {"miniprogram_notice", "link"}

TEXT_LIMIT = 2048
MARKDOWN_LIMIT = 2048
WEBHOOK_MARKDOWN_LIMIT = 4096
_ROBOT_IMAGE_LIMIT = 2 * 1024 * 1024


def utf8_len(text: str) -> int:
    """Return the UTF-8 size of `text` in bytes."""
    return len(text.encode())


def truncate_utf8(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` UTF-8 bytes without splitting a character."""
    return text.encode()[:limit].decode(errors="ignore")


def validate_body(msgtype: str, body: dict, channel: Channel) -> bool:
    """Check the `<msgtype>` object of a send; return True if WeCom would truncate it (app text only)."""
    part = body.get(msgtype, {})
    if not isinstance(part, dict):
        raise ApiError(40058, f"{msgtype} must be an object")
    if msgtype in ("text", "markdown"):
        return _check_text(msgtype, part, channel)
    if msgtype == "textcard":
        _check_textcard(part)
    elif msgtype == "news":
        _check_news(part, channel)
    elif msgtype == "mpnews":
        _check_mpnews(part)
    elif msgtype == "image" and channel == "webhook":
        _check_robot_image(part)
    elif msgtype in ("image", "voice", "video", "file"):
        _require_str(part, "media_id", 41006)
    return False


def _check_text(msgtype: str, part: dict, channel: Channel) -> bool:
    content = part.get("content")
    if not isinstance(content, str) or not content:
        raise ApiError(44004)
    size = utf8_len(content)
    if msgtype == "markdown":
        # App and app-chat markdown "最长不超过2048个字节" (发送应用消息 …/path/90236, 应用推送消息 …/path/90248),
        # robot markdown 4096 (消息推送 …/path/91770); WeCom refuses longer ones with 40058
        # ("markdown.content exceed max length 4096", seen from a robot) and cuts nothing.
        limit = WEBHOOK_MARKDOWN_LIMIT if channel == "webhook" else MARKDOWN_LIMIT
        if size > limit:
            raise ApiError(40058, f"markdown.content exceed max length {limit}")
        return False
    if channel == "webhook":
        if size > TEXT_LIMIT:
            raise ApiError(45002, f"text.content exceeds {TEXT_LIMIT} bytes")
        return False
    # App text: "最长不超过2048个字节，超过将截断" (…/path/90236): delivered, cut to 2048 bytes.
    return size > TEXT_LIMIT


def _check_textcard(part: dict) -> None:
    _require_str(part, "title", 41016, max_bytes=128)
    _require_str(part, "description", 41033, max_bytes=512)
    _check_url(_require_str(part, "url", 41010, max_bytes=2048))
    btntxt = part.get("btntxt")
    if btntxt is not None and (not isinstance(btntxt, str) or len(btntxt) > 4):
        raise ApiError(40058, "textcard.btntxt must be at most 4 characters")


def _check_news(part: dict, channel: Channel) -> None:
    articles = _articles(part)
    for article in articles:
        _require_str(article, "title", 41016, max_bytes=128)
        description = article.get("description")
        if description is not None and (not isinstance(description, str) or utf8_len(description) > 512):
            raise ApiError(45002, "news.articles.description exceeds 512 bytes")
        if channel != "webhook" and article.get("appid"):
            continue
        _check_url(_require_str(article, "url", 41010, max_bytes=2048))


def _check_mpnews(part: dict) -> None:
    for article in _articles(part):
        _require_str(article, "title", 41016, max_bytes=128)
        _require_str(article, "thumb_media_id", 41006)
        _require_str(article, "content", 40058)


def _check_robot_image(part: dict) -> None:
    encoded = _require_str(part, "base64", 40058)
    digest = _require_str(part, "md5", 40058)
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error as err:
        raise ApiError(40058, "image.base64 is not valid base64") from err
    if len(raw) > _ROBOT_IMAGE_LIMIT:
        raise ApiError(40009, "image exceeds 2 MB")
    if hashlib.md5(raw).hexdigest() != digest.lower():
        raise ApiError(301019, "image.md5 does not match the image bytes")


def _articles(part: dict) -> list[dict]:
    articles = part.get("articles")
    if not isinstance(articles, list) or not 1 <= len(articles) <= 8:
        raise ApiError(45008, "articles must hold 1..8 items")
    if not all(isinstance(article, dict) for article in articles):
        raise ApiError(40058, "articles must be objects")
    return articles


def _require_str(part: dict, key: str, errcode: int, *, max_bytes: int | None = None) -> str:
    value = part.get(key)
    if not isinstance(value, str) or not value:
        raise ApiError(errcode, f"{key} is required")
    if max_bytes is not None and utf8_len(value) > max_bytes:
        raise ApiError(45002, f"{key} exceeds {max_bytes} bytes")
    return value


def _check_url(url: str) -> None:
    if "://" not in url:
        raise ApiError(45034)
