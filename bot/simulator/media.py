"""Temporary media (media/upload): kept three days, referred to by media_id in image and file messages."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from .errors import ApiError

MEDIA_TTL = 3 * 86400
# Per type: the largest file WeCom takes, in bytes, and the formats it accepts (by their first bytes).
LIMITS = {"image": 10 * 1024 * 1024, "voice": 2 * 1024 * 1024, "video": 10 * 1024 * 1024,
          "file": 20 * 1024 * 1024}
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


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
            raise ApiError(40004)
        if not 5 <= len(content) <= LIMITS[kind]:
            raise ApiError(40006 if kind != "image" else 40009)
        if kind == "image" and not content.startswith(_IMAGE_MAGIC):
            raise ApiError(40005, "image must be JPG or PNG")
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
