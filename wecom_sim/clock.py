"""The simulator's notion of "now", which tests and demos can move forward."""

from __future__ import annotations

import time


class SimClock:
    """Epoch-seconds clock: wall time (or a frozen start) plus a manual offset."""

    def __init__(self, start: float | None = None, *, frozen: bool = False) -> None:
        self._frozen = frozen
        self._base = time.time() if start is None else start
        # A running clock keeps its distance to the wall clock, so a given start is an offset.
        self._offset = 0.0 if frozen else self._base - time.time()

    def now(self) -> float:
        """Return the current simulated time in epoch seconds."""
        if self._frozen:
            return self._base + self._offset
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds` (never backwards)."""
        if seconds < 0:
            raise ValueError("the simulator clock cannot go backwards")
        self._offset += seconds
