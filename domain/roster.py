"""Duty rosters (值班表) as the service sees them: shifts, and who is on duty at a station at a moment
(imported from CSV by bot/roster.py)."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from domain.directory import Directory


@dataclass(frozen=True)
class Shift:
    station_code: str
    duty_date: str  # YYYY-MM-DD, the day the shift is listed under
    shift: str
    starts_at: float
    ends_at: float
    officer: str  # userid
    leader: str | None = None  # userid of the leader in charge (带班领导)


@dataclass(frozen=True)
class Gap:
    """A stretch of time a rostered station has nobody on duty; None means open-ended."""

    station_code: str
    start: float | None
    end: float | None

    @property
    def key(self) -> str:
        return f"{self.station_code}:{_stamp(self.start)}:{_stamp(self.end)}"


@dataclass(frozen=True)
class OnDuty:
    officer: str | None
    leader: str | None
    source: str  # roster | directory (the station keeps no roster) | fallback (a gap in its roster)
    gap: Gap | None = None


class RosterBook:
    """In-memory lookups over the imported shifts of every station."""

    def __init__(self, shifts: Iterable[Shift], directory: Directory) -> None:
        self._directory = directory
        self._shifts: dict[str, list[Shift]] = {}
        for s in sorted(shifts, key=lambda s: (s.station_code, s.starts_at)):
            self._shifts.setdefault(s.station_code, []).append(s)
        self._starts = {code: [s.starts_at for s in rows] for code, rows in self._shifts.items()}
        self._covered = {code: _merge(rows) for code, rows in self._shifts.items()}

    @property
    def stations(self) -> list[str]:
        return sorted(self._shifts)

    def on_duty(self, station_code: str, at: float) -> OnDuty:
        station = self._directory.stations.get(station_code)
        default_officer = station.duty_officer if station else None
        default_leader = station.leader if station else None
        rows = self._shifts.get(station_code)
        if not rows:
            return OnDuty(default_officer or default_leader, default_leader, "directory")
        # The latest-starting shift that covers `at` (a hand-over overlap goes to the incoming shift).
        for s in reversed(rows[: bisect.bisect_right(self._starts[station_code], at)]):
            if s.starts_at <= at < s.ends_at:
                return OnDuty(s.officer, s.leader or default_leader, "roster")
        return OnDuty(default_officer or default_leader, default_leader, "fallback", self._gap_at(station_code, at))

    def gaps(self, station_code: str, since: float, until: float) -> list[Gap]:
        """The gaps of a rostered station that overlap [since, until)."""
        covered = self._covered.get(station_code)
        if not covered:
            return []
        holes = [Gap(station_code, None, covered[0][0])]
        holes += [Gap(station_code, a[1], b[0]) for a, b in itertools.pairwise(covered)]
        holes.append(Gap(station_code, covered[-1][1], None))
        return [g for g in holes if (g.start is None or g.start < until) and (g.end is None or g.end > since)]

    def _gap_at(self, station_code: str, at: float) -> Gap:
        return next(g for g in self.gaps(station_code, at, at + 1e-6))


def _merge(rows: list[Shift]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for s in rows:
        if merged and s.starts_at <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], s.ends_at)
        else:
            merged.append([s.starts_at, s.ends_at])
    return [(a, b) for a, b in merged]


def _stamp(epoch: float | None) -> str:
    return "open" if epoch is None else str(int(epoch))
