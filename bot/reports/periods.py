"""Report periods in Asia/Shanghai days, and when a daily or weekly bulletin falls due. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from domain.reports import day_date, day_number, day_start

KINDS = {"daily": "日通报", "weekly": "周研判", "custom": "统计"}
WEEKDAY_LABELS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
TREND_DAYS = 7


@dataclass(frozen=True)
class Period:
    """Whole Asia/Shanghai days first_day..last_day (inclusive), from midnight to midnight."""

    kind: str  # daily | weekly | custom
    first_day: int
    last_day: int

    @property
    def start(self) -> float:
        return day_start(self.first_day)

    @property
    def end(self) -> float:
        return day_start(self.last_day + 1)

    @property
    def days(self) -> int:
        return self.last_day - self.first_day + 1

    @property
    def trend_first_day(self) -> int:
        """The trend chart shows at least the last week, the period itself when it is longer."""
        return min(self.first_day, self.last_day - TREND_DAYS + 1)

    @property
    def title(self) -> str:
        return KINDS[self.kind]

    @property
    def label(self) -> str:
        first, last = day_date(self.first_day), day_date(self.last_day)
        if self.days == 1:
            return f"{first.year}年{first.month}月{first.day}日"
        tail = f"{last.month}月{last.day}日" if last.year == first.year else f"{last.year}年{last.month}月{last.day}日"
        return f"{first.year}年{first.month}月{first.day}日至{tail}"


def daily_period(day: int) -> Period:
    return Period("daily", day, day)


def weekly_period(first_day: int, days: int = 7) -> Period:
    return Period("weekly" if days == 7 else "custom", first_day, first_day + days - 1)


def due_daily(now: float, at: int) -> tuple[Period, float]:
    """The latest daily bulletin due by now (yesterday's, sent `at` seconds after midnight) and when it fell due."""
    today = day_number(now)
    scheduled = day_start(today) + at
    if now < scheduled:
        today -= 1
        scheduled -= 86400
    return daily_period(today - 1), scheduled


def due_weekly(now: float, weekday: int, at: int) -> tuple[Period, float]:
    """The latest weekly review due by now: the seven days before the last `weekday` (0 = Monday) at `at`."""
    today = day_number(now)
    send_day = today - (day_date(today).weekday() - weekday) % 7
    if now < day_start(send_day) + at:
        send_day -= 7
    return weekly_period(send_day - 7), day_start(send_day) + at
