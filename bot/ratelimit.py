"""WeCom's send limits, kept by the bot itself because WeCom drops the excess without an error.

Each message counts against one or more buckets ("app:<userid>", "appchat:<userid>",
"robot:<group>"); a bucket has sliding windows. The limiter answers "when may this message go"
and never drops anything: the caller defers the message to that time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

# (count, seconds) per bucket kind, from WeCom's documentation; one second of margin per window
# so that a clock difference with WeCom cannot tip us over.
LIMITS: dict[str, tuple[tuple[int, float], ...]] = {
    "app": ((30, 61.0), (1000, 3601.0)),  # app messages per member
    "appchat": ((200, 61.0), (10000, 86401.0)),  # group-chat messages per member, across all groups
    "robot": ((20, 61.0),),  # group robot
}


class SendLimiter:
    """Sliding-window bookkeeping of sends per bucket."""

    def __init__(self, limits: dict[str, tuple[tuple[int, float], ...]] = LIMITS) -> None:
        self._limits = limits
        self._sent: dict[str, deque[float]] = {}

    def _windows(self, key: str) -> tuple[tuple[int, float], ...]:
        return self._limits.get(key.split(":", 1)[0], ())

    def earliest(self, keys: Iterable[str], now: float) -> float:
        """The first moment at which a message counting against all keys may be sent."""
        at = now
        for key in keys:
            history = self._sent.get(key)
            if not history:
                continue
            for count, seconds in self._windows(key):
                self._trim(history, now, key)
                if len(history) >= count:
                    # The window frees up when the count-th most recent send leaves it.
                    at = max(at, history[-count] + seconds)
        return at

    def record(self, keys: Iterable[str], at: float) -> None:
        for key in keys:
            if self._windows(key):
                self._sent.setdefault(key, deque()).append(at)

    def _trim(self, history: deque[float], now: float, key: str) -> None:
        longest = max(seconds for _, seconds in self._windows(key))
        while history and history[0] <= now - longest:
            history.popleft()
