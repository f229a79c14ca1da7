"""Login throttling: failed attempts per client address and per account name in a sliding window.

Kept in memory, per instance (with several instances each one counts its own, so the effective limit
is the configured one times the instances; a restart forgets). An attempt counts from the moment it
starts, so a burst of concurrent requests cannot all slip through before the first one fails; a
successful login takes its attempt back. The number of keys is bounded: beyond it the least recently
used are forgotten, so a flood of made-up account names costs fixed memory.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass

MAX_KEYS = 10_000  # per kind (addresses, accounts): a few MB at most
_MAX_ACCOUNT = 64  # characters of an account name kept as its key


class SlidingWindow:
    """Attempts per key in the last `window` seconds."""

    def __init__(self, limit: int, window: float, max_keys: int = MAX_KEYS) -> None:
        self._limit = limit
        self._window = window
        self._max_keys = max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def wait(self, key: str, now: float) -> float:
        """Seconds until `key` may try again; 0 if it may now."""
        hits = self._hits.get(key)
        if hits is None:
            return 0.0
        while hits and hits[0] <= now - self._window:
            hits.popleft()
        if not hits:
            del self._hits[key]
            return 0.0
        return 0.0 if len(hits) < self._limit else hits[0] + self._window - now

    def add(self, key: str, now: float) -> None:
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= self._max_keys:
                self._hits.popitem(last=False)
            hits = self._hits[key] = deque(maxlen=self._limit)
        else:
            self._hits.move_to_end(key)
        hits.append(now)

    def discard(self, key: str, at: float) -> None:
        """Take back the attempt made at `at`."""
        hits = self._hits.get(key)
        if hits is not None and at in hits:
            hits.remove(at)


@dataclass(frozen=True)
class Attempt:
    address: str
    account: str | None
    at: float


class LoginThrottle:
    def __init__(self, per_address: int, per_account: int, window: float) -> None:
        self._addresses = SlidingWindow(per_address, window)
        self._accounts = SlidingWindow(per_account, window)

    def address_wait(self, address: str, now: float) -> int:
        """Seconds until this address may try again (0: now), without counting anything: checked before
        the form is even read, so a throttled flood costs next to nothing."""
        wait = self._addresses.wait(address, now)
        return max(1, math.ceil(wait)) if wait > 0 else 0

    def begin(self, address: str, account: str | None, now: float) -> Attempt | int:
        """Count an attempt now, or say in how many seconds (at least 1) one may be made.
        account None: an attempt that names no account (a WeCom OAuth code) counts per address only."""
        key = None if account is None else account.strip().casefold()[:_MAX_ACCOUNT]
        wait = self._addresses.wait(address, now)
        if key is not None:
            wait = max(wait, self._accounts.wait(key, now))
        if wait > 0:
            return max(1, math.ceil(wait))
        self._addresses.add(address, now)
        if key is not None:
            self._accounts.add(key, now)
        return Attempt(address, key, now)

    def succeeded(self, attempt: Attempt) -> None:
        """A successful login does not count against the limits."""
        self._addresses.discard(attempt.address, attempt.at)
        if attempt.account is not None:
            self._accounts.discard(attempt.account, attempt.at)
