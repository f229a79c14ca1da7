"""Per-key frequency limits measured on the simulator clock."""

from __future__ import annotations

from collections import deque
from typing import Protocol

# Asia/Shanghai has no daylight saving, so a natural day there is a fixed UTC+8 bucket.
_SHANGHAI_OFFSET = 8 * 3600
_DAY = 86400


class Limit(Protocol):
    """A cap on how many events one key may have."""

    def has_room(self, key: str, now: float) -> bool: ...

    def record(self, key: str, now: float) -> None: ...


class WindowLimit:
    """At most `limit` events per key within any trailing `period` seconds."""

    __slots__ = ("_events", "limit", "period")

    def __init__(self, limit: int, period: float) -> None:
        self.limit = limit
        self.period = period
        self._events: dict[str, deque[float]] = {}

    def has_room(self, key: str, now: float) -> bool:
        """Tell whether one more event for `key` fits at `now`."""
        events = self._events.get(key)
        if not events:
            return True
        horizon = now - self.period
        while events and events[0] <= horizon:
            events.popleft()
        return len(events) < self.limit

    def record(self, key: str, now: float) -> None:
        """Count one event for `key` at `now`."""
        self._events.setdefault(key, deque()).append(now)


class DailyLimit:
    """At most `limit` events per key per natural day in Asia/Shanghai."""

    __slots__ = ("_counts", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, tuple[int, int]] = {}

    def has_room(self, key: str, now: float) -> bool:
        """Tell whether one more event for `key` fits today."""
        day, count = self._counts.get(key, (-1, 0))
        return day != _day(now) or count < self.limit

    def record(self, key: str, now: float) -> None:
        """Count one event for `key` today."""
        today = _day(now)
        day, count = self._counts.get(key, (today, 0))
        self._counts[key] = (today, count + 1 if day == today else 1)


class Quota:
    """Several limits at once: an event is granted only if every limit has room."""

    __slots__ = ("_limits",)

    def __init__(self, *limits: Limit) -> None:
        self._limits = limits

    def acquire(self, key: str, now: float) -> bool:
        """Count an event for `key` and return True, or return False and count nothing."""
        if not all(limit.has_room(key, now) for limit in self._limits):
            return False
        for limit in self._limits:
            limit.record(key, now)
        return True


def _day(now: float) -> int:
    return int((now + _SHANGHAI_OFFSET) // _DAY)
