"""media/upload (multipart, field `media`) and auth/getuserinfo."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import ApiError

if TYPE_CHECKING:
    from ..simulator import Simulator


def upload(sim: Simulator, query: Mapping[str, str], body: dict) -> dict:
    """Keep an uploaded file; the body is the parsed multipart form."""
    part = body.get("media")
    if part is None:
        raise ApiError(41005, "media data missing (multipart field 'media')")
    filename, content_type, content = part
    media = sim.media.upload(query.get("type", ""), filename, content_type, content, sim.clock.now())
    return {"type": media.kind, "media_id": media.media_id, "created_at": str(int(media.created_at))}


def getuserinfo(sim: Simulator, query: Mapping[str, str], body: dict) -> dict:
    """The member behind a web OAuth code (codes are single-use and live five minutes)."""
    return {"userid": sim.oauth.redeem(query.get("code"), sim.clock.now())}
