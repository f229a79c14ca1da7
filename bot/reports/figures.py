"""The figures of a bulletin or statistics page: what was received, how fast it was signed and handled,
what came of it, what is overdue now, and how the stations rank.

Definitions (docs/reports.md):
- received: instructions received in the period (Asia/Shanghai days, midnight to midnight);
- signed within deadline: the phone-stage sign-for deadline met by its due time (the visit stage's where
  there is no phone stage or it was made moot); the rate is over all received;
- time to sign: first sign-for − receipt; time to contact: the phone contact deadline's settled time −
  receipt; median and 90th percentile by linear interpolation between the closest ranks;
- in-person visits: someone was sent to the door (visit stage, 转上门) or the outcome was reported as 见面/上门;
- overdue: open instructions with a deadline past due now, whenever they were received.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from bot.reports.periods import Period
from domain.lifecycle import OUTCOMES
from domain.reports import FactGroup, OverdueItem, Percentiles, ReportFilter

NO_OUTCOME = "未反馈"


@dataclass(frozen=True)
class Counts:
    received: int = 0
    signed: int = 0
    ack_ontime: int = 0
    contacted: int = 0
    visits: int = 0
    loss_avoided: float = 0.0
    amount_lost: float = 0.0

    @classmethod
    def of(cls, g: FactGroup) -> Counts:
        return cls(*g[1:])

    @classmethod
    def total(cls, groups: Iterable[FactGroup]) -> Counts:
        columns = list(zip(*(g[1:] for g in groups), strict=True))
        return cls(*(sum(column) for column in columns)) if columns else cls()

    @property
    def ontime_rate(self) -> float | None:
        """Signed within deadline, as a share of received (None when nothing was received)."""
        return self.ack_ontime / self.received if self.received else None


@dataclass(frozen=True)
class Speed:
    sign_p50: float | None = None
    sign_p90: float | None = None
    contact_p50: float | None = None
    contact_p90: float | None = None


@dataclass(frozen=True)
class StationFigures:
    station: str
    counts: Counts
    speed: Speed
    overdue: int  # open and past a deadline now
    rank: int = 0


@dataclass(frozen=True)
class DayFigures:
    day: int
    received: int
    ack_ontime: int
    loss_avoided: float


@dataclass(frozen=True)
class Figures:
    period: Period
    now: float
    counts: Counts
    speed: Speed
    outcomes: dict[str, int]  # every outcome, then 未反馈, in a fixed order
    overdue_total: int
    overdue: list[OverdueItem]
    stations: list[StationFigures]  # ranked
    trend: list[DayFigures]  # one per day from period.trend_first_day to period.last_day
    unrouted: int = 0  # received with no known station
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.counts.received == 0

    def summary(self) -> dict[str, object]:
        """Headline figures as JSON-ready data (kept with each bulletin run)."""
        c = self.counts
        return {"received": c.received, "ack_ontime": c.ack_ontime, "signed": c.signed, "visits": c.visits,
                "loss_avoided": c.loss_avoided, "amount_lost": c.amount_lost, "overdue": self.overdue_total,
                "sign_p50": self.speed.sign_p50, "sign_p90": self.speed.sign_p90,
                "contact_p50": self.speed.contact_p50, "contact_p90": self.speed.contact_p90,
                "outcomes": self.outcomes}


async def compute_figures(storage, period: Period, now: float, flt: ReportFilter | None = None,
                          stations: Iterable[str] = (), overdue_limit: int = 50) -> Figures:
    """Read and compute a period's figures; `stations` are listed in the ranking even with nothing received."""
    flt = flt or ReportFilter()
    within = replace(flt, first_day=period.first_day, last_day=period.last_day)
    by_day = await storage.report_groups(replace(flt, first_day=period.trend_first_day, last_day=period.last_day),
                                         "day")
    by_station = await storage.report_groups(within, "station")
    by_outcome = await storage.report_groups(within, "outcome")
    sign, contact = percentiles(await storage.report_durations(within))
    overdue_counts, overdue = await storage.overdue_items(now, replace(flt, first_day=None, last_day=None),
                                                          overdue_limit)
    return build_figures(period, now, by_day, by_station, by_outcome, sign, contact, overdue_counts, overdue,
                         stations)


def build_figures(period: Period, now: float, by_day: Sequence[FactGroup], by_station: Sequence[FactGroup],
                  by_outcome: Sequence[FactGroup], sign_speeds: Sequence[Percentiles],
                  contact_speeds: Sequence[Percentiles],
                  overdue_counts: dict[str | None, int], overdue: list[OverdueItem],
                  stations: Iterable[str] = ()) -> Figures:
    """The figures from what the queries returned. Pure."""
    days = {g.key: g for g in by_day}
    trend = [DayFigures(day, days[day].received, days[day].ack_ontime, days[day].loss_avoided) if day in days
             else DayFigures(day, 0, 0, 0.0) for day in range(period.trend_first_day, period.last_day + 1)]
    outcomes = dict.fromkeys((*OUTCOMES, NO_OUTCOME), 0)
    for g in by_outcome:
        outcomes[g.key if g.key in outcomes else NO_OUTCOME] += g.received
    sign = {p.station: p for p in sign_speeds}
    contact = {p.station: p for p in contact_speeds}
    per_station = {code: Counts() for code in stations}
    per_station.update({g.key: Counts.of(g) for g in by_station if g.key is not None})
    per_station.update({code: Counts() for code in overdue_counts if code is not None and code not in per_station})
    ranked = sorted((StationFigures(code, counts, _speed(sign.get(code), contact.get(code)),
                                    overdue_counts.get(code, 0)) for code, counts in per_station.items()),
                    key=_rank_key)
    return Figures(period, now, Counts.total(by_station), _speed(sign.get(None), contact.get(None)), outcomes,
                   sum(overdue_counts.values()), overdue, [replace(s, rank=n) for n, s in enumerate(ranked, 1)],
                   trend, sum(g.received for g in by_station if g.key is None))


def percentiles(durations: Iterable[tuple[str | None, float | None, float | None]]
                ) -> tuple[list[Percentiles], list[Percentiles]]:
    """Median and 90th percentile of the time to sign and to contact, per station and overall (station None)."""
    signs: dict[str | None, list[float]] = defaultdict(list)
    contacts: dict[str | None, list[float]] = defaultdict(list)
    for station, to_sign, to_contact in durations:
        if to_sign is not None:
            signs[station].append(to_sign if to_sign > 0 else 0.0)
        if to_contact is not None:
            contacts[station].append(to_contact if to_contact > 0 else 0.0)
    return _per_station(signs), _per_station(contacts)


def _per_station(values: dict[str | None, list[float]]) -> list[Percentiles]:
    result = []
    for station, v in values.items():
        v.sort()
        if station is not None:  # unrouted ones count in the overall figure, not in the ranking
            result.append(Percentiles(station, len(v), percentile(v, 50), percentile(v, 90)))
    everything = sorted(x for v in values.values() for x in v)
    return [*result, Percentiles(None, len(everything), percentile(everything, 50), percentile(everything, 90))]


def percentile(values: Sequence[float], p: float) -> float | None:
    """The p-th percentile (0–100) of sorted values, interpolating linearly between ranks; None for none."""
    if not values:
        return None
    rank = (len(values) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


def _speed(sign: Percentiles | None, contact: Percentiles | None) -> Speed:
    return Speed(sign.p50 if sign else None, sign.p90 if sign else None,
                 contact.p50 if contact else None, contact.p90 if contact else None)


def _rank_key(s: StationFigures) -> tuple:
    """Best first: the highest share signed in time, then the fastest median, then the fewest overdue."""
    rate = s.counts.ontime_rate
    return (rate is None, -(rate or 0.0), s.speed.sign_p50 if s.speed.sign_p50 is not None else math.inf,
            s.overdue, s.station)
