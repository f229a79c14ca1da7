"""The dashboard's pages: the board, details, statistics, bulletins, exports (login: login.py).

Every page checks the viewer (handlers/dashboard/access.py) before it reads anything; filters and ids
are all that URLs carry, never personal data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from urllib.parse import urlencode

from aiohttp import web

from bot.render import beijing_time
from bot.reports import charts, exports
from bot.reports.bulletin import station_names
from bot.reports.figures import compute_figures
from bot.reports.periods import Period, daily_period, due_daily, due_weekly, weekly_period
from bot.services import SERVICES, SETTINGS
from domain.lifecycle import OPEN_STATES, STATE_LABELS
from domain.models import RISK_LEVELS
from domain.reports import ReportFilter, day_date, day_number
from handlers.dashboard.access import Viewer
from handlers.dashboard.base import DASHBOARD, LoginSession, error, now, page, parse_day, render, text

_LOGGER = logging.getLogger(__name__)
routes = web.RouteTableDef()
_MAX_DAYS = 366
_CHOICES_TTL = 600
_MAX_ID = 2**63 - 1  # the largest id a database row can have


@dataclass(frozen=True)
class Filters:
    station: str = ""
    risk: str = ""
    fraud: str = ""
    state: str = ""  # "": open ones; "all"; or one state
    start: str = ""  # YYYY-MM-DD
    end: str = ""

    @classmethod
    def parse(cls, query) -> Filters:
        return cls(*(text(query.get(k, ""), 40) for k in ("station", "risk", "fraud", "state", "from", "to")))

    def query(self) -> str:
        pairs = {"station": self.station, "risk": self.risk, "fraud": self.fraud, "state": self.state,
                 "from": self.start, "to": self.end}
        return urlencode({k: v for k, v in pairs.items() if v})

    def apply(self, scope: ReportFilter, today: int) -> ReportFilter:
        states: tuple[str, ...] | None = OPEN_STATES
        if self.state == "all":
            states = None
        elif self.state in STATE_LABELS:
            states = (self.state,)
        first, last = parse_day(self.start), parse_day(self.end)
        if states != OPEN_STATES and first is None and last is None:
            first = today - 6  # the history is long: closed ones default to the last seven days
        return replace(scope, station=self.station or None, risk_level=self.risk if self.risk in RISK_LEVELS else None,
                       fraud_type=self.fraud or None, states=states, first_day=first, last_day=last)


async def _choices(request: web.Request, viewer: Viewer) -> dict:
    directory = request.app[SERVICES].directory
    names = station_names(directory)
    return {"stations": [(code, names.get(code, code)) for code in viewer.stations(directory)],
            "fraud_types": await _fraud_types(request, viewer),
            "states": [("", "未办结（默认）"), ("all", "全部"), *STATE_LABELS.items()], "names": names}


async def _fraud_types(request: web.Request, viewer: Viewer) -> list[str]:
    """The fraud types of the last 30 days within the viewer's scope (the center: all; a station: its
    own; a grid worker: their assignments'), never another station's free text. Cached per scope: a
    scan of a month of history is not for every page."""
    scope = viewer.scope()
    key = (scope.stations, scope.assignee)
    cache = request.app[DASHBOARD].fraud_types
    read_at, fraud_types = cache.get(key, (float("-inf"), []))
    if now(request) - read_at > _CHOICES_TTL:
        fraud_types = await request.app[SERVICES].storage.fraud_types(day_number(now(request)) - 30, scope)
        cache[key] = (now(request), fraud_types)
    return fraud_types
# -- pages ---------------------------------------------------------------------------------------


@routes.get("/dashboard")
@page()
async def board(request: web.Request, viewer: Viewer, session: LoginSession) -> web.StreamResponse:
    services = request.app[SERVICES]
    at = now(request)
    filters = Filters.parse(request.query)
    flt = filters.apply(viewer.scope(), day_number(at))
    result = await services.storage.board(flt, at, request.app[SETTINGS].dashboard.page_size)
    return render(request, "board.html", viewer=viewer, csrf=session.csrf, board=result, now=at, f=filters,
                   counts=[(s, result.by_state.get(s, 0)) for s in STATE_LABELS if s in result.by_state or
                           s in OPEN_STATES], **await _choices(request, viewer))


@routes.get(r"/dashboard/instructions/{number:[0-9]+}")
@page()
async def detail(request: web.Request, viewer: Viewer, session: LoginSession) -> web.StreamResponse:
    storage = request.app[SERVICES].storage
    digits = request.match_info["number"].lstrip("0")
    number = int(digits) if 0 < len(digits) <= 19 else 0
    instruction = await storage.get_instruction(number) if 0 < number <= _MAX_ID else None
    if instruction is None:
        if not 0 < number <= _MAX_ID:
            return error(request, 404, "没有这条指令。", viewer)
        return error(request, 404, f"没有编号为 {number} 的指令。", viewer)
    assignments = await storage.assignments(number)
    if not viewer.may_view(instruction, assignments):
        _LOGGER.warning("dashboard detail refused", extra={"userid": viewer.userid, "instruction_id": number})
        return error(request, 403, "你无权查看这条指令。", viewer)
    directory = request.app[SERVICES].directory
    people = {p.userid: p.name for p in directory.people.values()}
    return render(request, "detail.html", viewer=viewer, csrf=session.csrf, i=instruction, now=now(request),
                   assignments=assignments, deadlines=await storage.deadlines(number),
                   timeline=await storage.timeline(number), people=people, names=station_names(directory))


@routes.get("/dashboard/stats")
@page(statistics=True)
async def stats(request: web.Request, viewer: Viewer, session: LoginSession) -> web.StreamResponse:
    return await _figures_page(request, viewer, session, _chosen_period(request), "统计分析")


@routes.get("/dashboard/bulletin")
@page(statistics=True)
async def bulletin(request: web.Request, viewer: Viewer, session: LoginSession) -> web.StreamResponse:
    period = _bulletin_period(request)
    if period is None:
        return error(request, 400, "通报参数有误。", viewer)
    return await _figures_page(request, viewer, session, period, period.title)


def _chosen_period(request: web.Request) -> Period:
    """from..to (YYYY-MM-DD) as asked, at most a year and never past today; the last seven days by default."""
    today = day_number(now(request))
    first, last = parse_day(text(request.query.get("from"), 40)), parse_day(text(request.query.get("to"), 40))
    last = min(last if last is not None else today, today)
    first = first if first is not None and first <= last else last - 6
    return Period("custom", max(first, last - _MAX_DAYS + 1), last)


def _bulletin_period(request: web.Request) -> Period | None:
    kind, day = request.query.get("kind", "daily"), parse_day(text(request.query.get("date"), 40))
    at = now(request)
    b = request.app[SETTINGS].bulletin
    if kind == "daily":
        return daily_period(day) if day is not None else due_daily(at, b.daily_time)[0]
    if kind == "weekly":
        return weekly_period(day) if day is not None else due_weekly(at, b.weekly_day, b.weekly_time)[0]
    return None


async def _figures_page(request: web.Request, viewer: Viewer, session: LoginSession, period: Period,
                        heading: str) -> web.StreamResponse:
    directory = request.app[SERVICES].directory
    filters = Filters.parse(request.query)
    figures = await _figures(request, viewer, period, filters)
    names = station_names(directory)
    svg = [charts.to_svg(charts.layout(chart, 0, 0, 760, 260), 760, 260, chart.title)
           for chart in (charts.trend_chart(figures), charts.station_chart(figures, names))]
    return render(request, "figures.html", viewer=viewer, csrf=session.csrf, heading=heading, fig=figures,
                   charts=svg, f=filters, from_value=day_date(period.first_day).isoformat(),
                   to_value=day_date(period.last_day).isoformat(), export_query=_export_query(request, period),
                   **await _choices(request, viewer))


def _export_query(request: web.Request, period: Period) -> str:
    """The figures page's own period and filters, for its export links."""
    if period.kind == "custom":
        pairs = {"from": day_date(period.first_day).isoformat(), "to": day_date(period.last_day).isoformat()}
    else:
        pairs = {"kind": period.kind, "date": day_date(period.first_day).isoformat()}
    filters = Filters.parse(request.query)
    pairs.update({k: v for k, v in (("station", filters.station), ("risk", filters.risk), ("fraud", filters.fraud))
                  if v})
    return urlencode(pairs)


async def _figures(request: web.Request, viewer: Viewer, period: Period, filters: Filters):
    directory = request.app[SERVICES].directory
    flt = replace(viewer.scope(), station=filters.station or None,
                  risk_level=filters.risk if filters.risk in RISK_LEVELS else None, fraud_type=filters.fraud or None)
    stations = [code for code in viewer.stations(directory) if not filters.station or code == filters.station]
    return await compute_figures(request.app[SERVICES].storage, period, now(request), flt, stations)


# -- exports -------------------------------------------------------------------------------------


@routes.get(r"/dashboard/export/instructions.{fmt:xlsx|csv}")
@page(statistics=True)
async def export_instructions(request: web.Request, viewer: Viewer, session: LoginSession) -> web.StreamResponse:
    services = request.app[SERVICES]
    at = now(request)
    filters = Filters.parse(request.query)
    full = request.query.get("full") == "1"
    if full and not viewer.is_center:
        return error(request, 403, "含完整个人信息的导出仅限反诈中心。", viewer)
    rows = await services.storage.instruction_rows(filters.apply(viewer.scope(), day_number(at)),
                                                   request.app[SETTINGS].dashboard.export_max_rows)
    table = exports.instruction_table(rows, station_names(services.directory), at, lambda _: full)
    _LOGGER.info("dashboard export", extra={"userid": viewer.userid, "rows": len(rows), "full": full})
    return _download(request, [table], f"instructions-{beijing_time(at, '%Y%m%d-%H%M')}")


@routes.get(r"/dashboard/export/bulletin.{fmt:xlsx|csv}")
@page(statistics=True)
async def export_bulletin(request: web.Request, viewer: Viewer, session: LoginSession) -> web.StreamResponse:
    period = _bulletin_period(request) if request.query.get("kind") else _chosen_period(request)
    if period is None:
        return error(request, 400, "通报参数有误。", viewer)
    figures = await _figures(request, viewer, period, Filters.parse(request.query))
    tables = exports.bulletin_tables(figures, station_names(request.app[SERVICES].directory))
    name = f"bulletin-{day_date(period.first_day).isoformat()}-{day_date(period.last_day).isoformat()}"
    return _download(request, tables, name)


def _download(request: web.Request, tables: list[exports.Table], name: str) -> web.Response:
    fmt = request.match_info["fmt"]
    body = exports.to_xlsx(tables) if fmt == "xlsx" else exports.to_csv(tables)
    return web.Response(body=body, headers={
        "Content-Type": exports.CONTENT_TYPES[fmt], "Content-Disposition": f'attachment; filename="{name}.{fmt}"',
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
