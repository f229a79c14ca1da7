"""Temporary media (media/upload): kept three days, referred to by media_id in image and file messages."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from .errors import ApiError

MEDIA_TTL = 3 * 86400
# 上传临时素材 (https://developer.work.weixin.qq.com/document/path/90253): per type the largest file WeCom
# takes, in bytes, and the one format it accepts (told here by the file's first bytes); every file must be
# larger than 5 bytes. The errcodes are those of 全局错误码 (…/path/90313): a `type` outside the four is
# 40005 不合法的type参数, a file of the wrong format 40004 不合法的媒体文件类型, no bytes at all 44001 多媒体文件为空.
LIMITS = {"image": 10 * 1024 * 1024, "voice": 2 * 1024 * 1024, "video": 10 * 1024 * 1024,
          "file": 20 * 1024 * 1024}
_MIN_BYTES = 6
_TOO_SMALL_OR_LARGE = {"image": 40009, "video": 40011}  # the others: 40006 不合法的文件大小


def _is_image(content: bytes) -> bool:
    return content.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"))  # PNG, JPG


def _is_amr(content: bytes) -> bool:
    return content.startswith(b"#!AMR")


def _is_mp4(content: bytes) -> bool:
    return content[4:8] == b"ftyp"


_FORMATS = {"image": (_is_image, "image must be JPG or PNG"), "voice": (_is_amr, "voice must be AMR"),
            "video": (_is_mp4, "video must be MP4")}


@dataclass(frozen=True)
class Media:
    media_id: str
    kind: str
    filename: str
    content_type: str
    content: bytes
    created_at: float


class MediaStore:
    """Uploaded files by media_id."""

    def __init__(self) -> None:
        self._items: dict[str, Media] = {}

    def upload(self, kind: str, filename: str, content_type: str, content: bytes, now: float) -> Media:
        """Keep a file as media/upload would, or raise WeCom's errcode for a bad type, format or size."""
        if kind not in LIMITS:
            raise ApiError(40005, "type must be image, voice, video or file")
        if not content:
            raise ApiError(44001)
        if not _MIN_BYTES <= len(content) <= LIMITS[kind]:
            raise ApiError(_TOO_SMALL_OR_LARGE.get(kind, 40006))
        if kind in _FORMATS and not _FORMATS[kind][0](content):
            raise ApiError(40004, _FORMATS[kind][1])
        media = Media(secrets.token_urlsafe(48), kind, filename, content_type, content, now)
        self._items[media.media_id] = media
        return media

    def get(self, media_id: str, now: float) -> Media | None:
        media = self._items.get(media_id)
        return media if media is not None and now - media.created_at < MEDIA_TTL else None

    def check(self, media_id: object, kind: str, now: float) -> None:
        """Raise 40007 unless media_id names a live upload of that kind."""
        media = self.get(media_id, now) if isinstance(media_id, str) else None
        if media is None or media.kind != kind:
            raise ApiError(40007)
