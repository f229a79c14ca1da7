"""WeCom's duplicate check: an identical request inside the interval is not delivered again."""

from __future__ import annotations

import hashlib
import json

from .errors import ApiError

DEFAULT_INTERVAL = 1800
MAX_INTERVAL = 14400


class DuplicateFilter:
    """Remembers canonical request bodies until their duplicate-check interval ends."""

    def __init__(self) -> None:
        self._until: dict[bytes, float] = {}
        self._prune_at = 1024

    @staticmethod
    def key(body: dict) -> bytes:
        """Digest of the request JSON with sorted keys, so formatting and key order do not matter."""
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).digest()

    def is_duplicate(self, key: bytes, now: float) -> bool:
        """Tell whether an identical request was delivered within its interval."""
        return self._until.get(key, 0.0) > now

    def remember(self, key: bytes, now: float, interval: int) -> None:
        """Start the interval for a delivered request."""
        self._until[key] = now + interval
        if len(self._until) >= self._prune_at:
            self._until = {k: until for k, until in self._until.items() if until > now}
            self._prune_at = max(1024, 2 * len(self._until))


def check_settings(body: dict) -> int | None:
    """Return the interval if the body enables the duplicate check, else None."""
    if body.get("enable_duplicate_check") not in (1, True):
        return None
    interval = body.get("duplicate_check_interval", DEFAULT_INTERVAL)
    if not isinstance(interval, int) or isinstance(interval, bool):
        raise ApiError(40058, "duplicate_check_interval must be an integer")
    if interval <= 0:
        return DEFAULT_INTERVAL
    return min(interval, MAX_INTERVAL)
