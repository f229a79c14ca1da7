"""WeCom's send limits, kept by the bot itself because WeCom drops the excess without an error.

Each message counts against one or more buckets ("app:<userid>", "appchat:<userid>",
"robot:<group>"); a bucket has sliding windows. The limiter answers "when may this message go"
and never drops anything: the caller defers the message to that time.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

# (count, seconds) per bucket kind, from WeCom's documentation; one second of margin per window
# so that a clock difference with WeCom cannot tip us over.
LIMITS: dict[str, tuple[tuple[int, float], ...]] = {
    "app": ((30, 61.0), (1000, 3601.0)),  # app messages per member
    "appchat": ((200, 61.0), (10000, 86401.0)),  # group-chat messages per member, across all groups
    "robot": ((20, 61.0),),  # group robot
    # 客户群群发: WeCom delivers at most (days in the month) mass messages per customer group a month,
    # or 7 a week / 1 a day as the admin sets it, and silently skips the excess. One per 24 h keeps
    # within all three.
    "groupmsg": ((1, 86401.0),),
}
# "quiet:22:00-07:30": a message that may not be sent in that daily span (Asia/Shanghai) waits for its end.
_QUIET = "quiet:"
_SHANGHAI = ZoneInfo("Asia/Shanghai")


def quiet_until(spec: str, now: float) -> float:
    """The end of the quiet span "HH:MM-HH:MM" that `now` falls in, or `now` if it is outside."""
    start, end = (int(t[:2]) * 60 + int(t[3:]) for t in spec.split("-"))
    local = datetime.fromtimestamp(now, _SHANGHAI)
    minute = local.hour * 60 + local.minute
    inside = start <= minute < end if start < end else (minute >= start or minute < end)
    if not inside:
        return now
    until = local.replace(hour=end // 60, minute=end % 60, second=0, microsecond=0)
    if until <= local:
        until += timedelta(days=1)
    return until.timestamp()


class SendLimiter:
    """Sliding-window bookkeeping of sends per bucket (sorted send times per bucket)."""

    def __init__(self, limits: dict[str, tuple[tuple[int, float], ...]] = LIMITS) -> None:
        self._limits = limits
        self._sent: dict[str, list[float]] = {}

    def _windows(self, key: str) -> tuple[tuple[int, float], ...]:
        return self._limits.get(key.split(":", 1)[0], ())

    def earliest(self, keys: Iterable[str], now: float) -> float:
        """The first moment at which a message counting against all keys may be sent."""
        at = now
        for key in keys:
            if key.startswith(_QUIET):
                at = max(at, quiet_until(key[len(_QUIET):], now))
                continue
            history = self._sent.get(key)
            if not history:
                continue
            self._trim(history, now, key)
            for count, seconds in self._windows(key):
                if len(history) >= count:
                    # The window frees up when the count-th most recent send leaves it.
                    at = max(at, history[-count] + seconds)
        return at

    def record(self, keys: Iterable[str], at: float) -> None:
        for key in keys:
            if self._windows(key):
                bisect.insort(self._sent.setdefault(key, []), at)

    def settle(self, keys: Iterable[str], reserved_at: float, done_at: float) -> None:
        """Move a send recorded when it was claimed to when its call finished.

        WeCom counts a message when it arrives, which may be well after the claim (a slow
        connection, a token refresh); counting it at the later time keeps the windows honest.
        """
        for key in keys:
            history = self._sent.get(key)
            if not history:
                continue
            i = bisect.bisect_left(history, reserved_at)
            if i < len(history) and history[i] == reserved_at:
                del history[i]
                bisect.insort(history, done_at)

    def release(self, keys: Iterable[str], reserved_at: float) -> None:
        """Forget a send recorded when it was claimed: WeCom refused the call before delivering anything
        (the app's credentials or permission), so it counts against no window."""
        for key in keys:
            history = self._sent.get(key)
            if history:
                i = bisect.bisect_left(history, reserved_at)
                if i < len(history) and history[i] == reserved_at:
                    del history[i]

    def _trim(self, history: list[float], now: float, key: str) -> None:
        longest = max(seconds for _, seconds in self._windows(key))
        cut = bisect.bisect_right(history, now - longest)
        if cut:
            del history[:cut]
