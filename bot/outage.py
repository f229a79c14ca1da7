"""Telling an outage of WeCom from one bad message, so that an outage loses nothing and is announced once.

A call that fails because WeCom could not be reached, answered a non-200 status or errcode -1 (system
busy) is an *outage failure*. Three in a row from at least two messages, or any for 30 s with nothing
getting through, open the breaker: the worker then stops spending attempts and sends one message at a
time as a probe, at growing intervals, until one gets through. Everything else waits in the database,
due, so that after the recovery it goes out in queue order (most urgent risk first, then oldest).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.wecom import WeComError
from bot.wecom.errors import WeComUnavailable

STREAK = 3  # consecutive outage failures (from at least two messages) that open the breaker
SPAN = 30.0  # seconds of outage failures with no success that open it, even for one message
NOTICE_AFTER = 60.0  # outages at least this long are announced to the center's group on recovery
PROBE_MAX = 15.0  # longest wait between probes while open
_SYSTEM_BUSY = -1


def is_outage_failure(err: WeComError) -> bool:
    return isinstance(err, WeComUnavailable) or err.errcode == _SYSTEM_BUSY


@dataclass
class Recovery:
    """An outage that just ended."""

    since: float
    until: float

    @property
    def seconds(self) -> float:
        return self.until - self.since


class Breaker:
    """Outage state of WeCom as the delivery worker sees it; in memory, rebuilt by failures after a restart."""

    def __init__(self, probe_base: float, probe_max: float = PROBE_MAX) -> None:
        self._probe_base = max(probe_base, 0.01)
        self._probe_max = max(probe_max, self._probe_base)
        self._failing_since: float | None = None
        self._streak = 0
        self._rows: set[int] = set()
        self.open_since: float | None = None
        self.next_probe_at = 0.0
        self._probe_interval = self._probe_base

    @property
    def is_open(self) -> bool:
        return self.open_since is not None

    def may_probe(self, now: float) -> bool:
        """While open: whether a probe may go now (and book the next one)."""
        if now < self.next_probe_at:
            return False
        self.next_probe_at = now + self._probe_interval
        return True

    def failure(self, row_id: int, now: float) -> bool:
        """Count an outage failure; True if it opened the breaker."""
        if self._failing_since is None:
            self._failing_since = now
        self._streak += 1
        self._rows.add(row_id)
        if self.is_open:
            self._probe_interval = min(self._probe_interval * 2, self._probe_max)
            self.next_probe_at = now + self._probe_interval
            return False
        if (self._streak >= STREAK and len(self._rows) >= 2) or now - self._failing_since >= SPAN:
            self.open_since = self._failing_since
            self._probe_interval = self._probe_base
            self.next_probe_at = now + self._probe_interval
            return True
        return False

    def trip(self, now: float) -> bool:
        """Open at once, for an error that no retry cures (a wrong secret, a missing permission); True if it
        opened now. While open, each further failure doubles the wait before the next probe."""
        if self.is_open:
            self._probe_interval = min(self._probe_interval * 2, self._probe_max)
            self.next_probe_at = now + self._probe_interval
            return False
        self._failing_since = self.open_since = now
        self._probe_interval = self._probe_base
        self.next_probe_at = now + self._probe_interval
        return True

    def answered(self, now: float) -> Recovery | None:
        """WeCom answered a call (success or an errcode other than -1); the outage it ended, if any."""
        recovery = Recovery(self.open_since, now) if self.open_since is not None else None
        self._failing_since = None
        self._streak = 0
        self._rows.clear()
        self.open_since = None
        return recovery
