"""The daily bulletin (日通报) and weekly review (周研判): figures, messages within WeCom's limits, a chart,
pushed to the command group through the outbox exactly once per period.

Whether a bulletin is due is decided from the database and the app's clock, never from APScheduler's
memory: `tick()` (run by the cron jobs and once at start) finds the latest period due, and
`record_bulletin` records the run and queues its messages in one transaction, so a restart, a second
tick or a late start never sends the same period twice.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import urlencode

from bot.config import WEEKDAYS, BulletinSettings
from bot.dispatch import MARKDOWN_LIMITS, DispatchPlanner
from bot.render import Renderer, fit_bytes
from bot.reports import charts
from bot.reports.figures import Figures, compute_figures
from bot.reports.periods import Period, due_daily, due_weekly
from bot.scheduler import Scheduler
from bot.wecom import WeComClient, WeComError
from domain.deadlines import OVERDUE_LABELS
from domain.directory import ChatGroup, Directory
from domain.masking import redact
from domain.models import OutboxMessage
from domain.reports import day_date

_LOGGER = logging.getLogger(__name__)
_TEMPLATE = "wecom/bulletin.md.j2"
PRIORITY = 5  # after every alert, reminder and escalation
SINCE_KEY = "bulletins_since"  # meta: when this database began to count (its first start, or its history)
PURPOSE = "bulletin"
_OVERDUE_LABELS = {f"{stage}/{milestone}": label for (stage, milestone), label in OVERDUE_LABELS.items()}
_TITLE_ROOM = 80  # bytes kept free in each part for its title line
_RANK_TOP, _RANK_BOTTOM = 10, 5


def station_names(directory: Directory) -> dict[str, str]:
    return {code: s.name for code, s in directory.stations.items()}


def bulletin_url(public_url: str, period: Period) -> str:
    return f"{public_url}/dashboard/bulletin?" + urlencode({"kind": period.kind,
                                                            "date": day_date(period.first_day).isoformat()})


def bulletin_parts(renderer: Renderer, figures: Figures, directory: Directory, limit: int, max_parts: int,
                   link: str | None, overdue_limit: int) -> list[str]:
    """The bulletin as markdown messages of at most `limit` UTF-8 bytes each, at most `max_parts` of them.

    Sections are kept whole where they fit; a long list (overdue, ranking) is cut between lines. What
    does not fit in `max_parts` is left to the dashboard, which the last part links to.
    """
    names = station_names(directory)

    def m(name: str, **kw) -> str:
        return renderer.macro(_TEMPLATE, name, **kw)

    overdue = [m("overdue_header", f=figures)]
    overdue += [m("overdue_line", o=o, names=names, labels=_OVERDUE_LABELS, now=figures.now)
                for o in figures.overdue[:overdue_limit]]
    if figures.overdue_total > min(len(figures.overdue), overdue_limit):
        overdue.append(m("overdue_more", count=figures.overdue_total - min(len(figures.overdue), overdue_limit)))
    stations = figures.stations
    if len(stations) > _RANK_TOP + _RANK_BOTTOM:  # a big city: the best and the last; all on the dashboard
        stations = [*stations[:_RANK_TOP], None, *stations[-_RANK_BOTTOM:]]
    ranking = [m("ranking_header")] + [m("ranking_line", s=s, names=names) if s else "……" for s in stations]
    sections = [[m("headline", f=figures, center=directory.center_name)], [m("outcomes", f=figures)], overdue,
                ranking if figures.stations else []]
    footer = m("link", url=link) if link else ""
    budget = limit - _TITLE_ROOM
    parts: list[list[str]] = [[]]
    for lines in filter(None, sections):
        block = "\n".join(lines)
        if _size(parts[-1] + [block]) > budget and parts[-1]:
            parts.append([])
        if _size(parts[-1] + [block]) <= budget:
            parts[-1].append(block)
            continue
        for line in lines:  # a section longer than a whole message: cut it between lines
            if _size(parts[-1] + [line]) > budget and parts[-1]:
                parts.append([])
            parts[-1].append(fit_bytes(line, budget))
    if len(parts) > max_parts:
        parts = parts[:max_parts]
        if footer:
            parts[-1].append("……")
    if footer:
        while _size(parts[-1] + [footer]) > budget and len(parts[-1]) > 1:
            parts[-1].pop()
        parts[-1].append(footer)
    total = len(parts)
    return [fit_bytes("\n\n".join([m("title", f=figures, center=directory.center_name, part=n, parts=total), *p]),
                      limit) for n, p in enumerate(parts, start=1)]


def _size(blocks: list[str]) -> int:
    return len("\n\n".join(blocks).encode("utf-8"))


class Bulletins:
    """Decides when a bulletin is due, builds it and queues it for the command group."""

    def __init__(self, storage, planner: Callable[[], DispatchPlanner], renderer: Renderer, wecom: WeComClient,
                 clock: Callable[[], float], settings: BulletinSettings, public_url: str,
                 wake: Callable[[], None]) -> None:
        self._storage = storage
        self._planner = planner
        self._renderer = renderer
        self._wecom = wecom
        self._clock = clock
        self._settings = settings
        self._public_url = public_url
        self._wake = wake

    async def start(self, scheduler: Scheduler) -> None:
        """Cron jobs at the configured times, and a first look now for one that fell due while the bot was down."""
        s = self._settings
        if not s.enabled:
            return
        scheduler.cron(f"{s.daily_time % 3600 // 60} {s.daily_time // 3600} * * *", self.tick, "daily-bulletin")
        scheduler.cron(f"{s.weekly_time % 3600 // 60} {s.weekly_time // 3600} * * {WEEKDAYS[s.weekly_day]}",
                       self.tick, "weekly-review")
        await self.tick()

    def due(self, now: float) -> list[tuple[Period, float]]:
        """The latest daily and weekly periods due by now, with the time each fell due."""
        s = self._settings
        return [due_daily(now, s.daily_time), due_weekly(now, s.weekly_day, s.weekly_time)]

    async def tick(self) -> list[Period]:
        """Queue every bulletin that is due, not sent yet and not older than catch_up; returns what was queued."""
        if not self._settings.enabled:
            return []
        sent = []
        # A database's first bulletin is for a period it saw: a new install does not open with an empty one.
        since = float(await self._storage.meta_default(SINCE_KEY, repr(self._clock())))
        for period, due_at in self.due(self._clock()):
            if self._clock() - due_at > self._settings.catch_up or period.end <= since:
                continue
            if await self._storage.bulletin_sent(period.kind, period.first_day):
                continue
            if await self.send(period):
                sent.append(period)
        return sent

    async def figures(self, period: Period, now: float | None = None) -> Figures:
        directory = self._planner().directory
        return await compute_figures(self._storage, period, self._clock() if now is None else now,
                                     stations=directory.stations, overdue_limit=max(self._settings.overdue_limit, 50))

    async def send(self, period: Period) -> bool:
        """Build and queue one bulletin; False if it was queued before (by another tick or process)."""
        now = self._clock()
        planner = self._planner()
        directory = planner.directory
        figures = await self._for_group(await self.figures(period, now))
        groups = self._recipients(directory)
        if not groups:
            _LOGGER.error("no group to send the %s bulletin to (bulletin.recipients, center.fallback_group)",
                          period.kind)
            return False
        link = bulletin_url(self._public_url, period)
        image = await self._chart(figures, directory) if self._settings.chart else None
        messages: list[OutboxMessage] = []
        for group in groups:
            for part in bulletin_parts(self._renderer, figures, directory, MARKDOWN_LIMITS[group.kind],
                                       self._settings.max_messages, link, self._settings.overdue_limit):
                messages.append(planner.group_markdown(group, part, PURPOSE, PRIORITY))
            chart = await self._image_message(planner, group, image) if image is not None else None
            if chart is not None:
                messages.append(chart)
        queued = await self._storage.record_bulletin(period.kind, period.first_day, messages, figures.summary(), now)
        if queued:
            _LOGGER.info("bulletin queued", extra={"kind": period.kind, "period": period.label,
                                                   "messages": len(messages), "received": figures.counts.received})
            self._wake()
        return queued

    async def _for_group(self, figures: Figures) -> Figures:
        """The figures as a group may read them: each overdue instruction's fraud type (the center's free
        text) redacted against its own resident."""
        overdue = []
        for item in figures.overdue:
            instruction = await self._storage.get_instruction(item.instruction_id)
            target = instruction.target if instruction else None
            overdue.append(replace(item, fraud_type=redact(item.fraud_type, target)))
        return replace(figures, overdue=overdue)

    def _recipients(self, directory: Directory) -> list[ChatGroup]:
        codes = self._settings.recipients or ((directory.fallback_group,) if directory.fallback_group else ())
        groups = []
        for code in codes:
            group = directory.group(code)
            if group is None:
                _LOGGER.error("bulletin recipient %s is not a group in the directory", code)
            else:
                groups.append(group)
        return groups

    async def _chart(self, figures: Figures, directory: Directory) -> bytes | None:
        shapes, width, height = charts.bulletin_shapes(figures, station_names(directory))
        return charts.to_png(shapes, width, height)

    async def _image_message(self, planner: DispatchPlanner, group: ChatGroup, png: bytes) -> OutboxMessage | None:
        """The chart as a group message: uploaded media for an app chat, inline base64 for a robot."""
        template = planner.group_markdown(group, "图表", PURPOSE, PRIORITY)
        if group.kind == "webhook":
            body = {"msgtype": "image", "image": {"base64": base64.b64encode(png).decode("ascii"),
                                                  "md5": hashlib.md5(png).hexdigest()}}
            return replace(template, body=body)
        try:
            media_id = await self._wecom.upload_media("image", "bulletin.png", png, "image/png")
        except WeComError as err:
            _LOGGER.warning("bulletin chart not uploaded, sending without it: %s", err)
            return None
        return replace(template, body={"chatid": group.address, "msgtype": "image", "image": {"media_id": media_id},
                                       "safe": 0})
