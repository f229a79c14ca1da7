"""The dashboard's pages: login (WeCom OAuth, local admin), the board, details, statistics, bulletins, exports.

Server-rendered (Jinja2, autoescaped), no script, works on a phone inside WeCom and on a desktop.
Every page checks the viewer (handlers/dashboard/access.py) before it reads anything; filters and ids
are all that URLs carry, never personal data.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import date
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from bot.app import CLOCK, SERVICES, SETTINGS
from bot.deadlines import MILESTONE_LABELS, STAGE_LABELS
from bot.lifecycle import OPEN_STATES, STATE_LABELS
from bot.masking import mask_id_number, mask_name, mask_phone
from bot.models import RISK_LABELS, RISK_LEVELS
from bot.render import TEMPLATES_DIR, beijing_time, format_duration, format_yuan
from bot.reports import charts, exports
from bot.reports.bulletin import station_names
from bot.reports.figures import compute_figures
from bot.reports.models import ReportFilter, date_day, day_date, day_number
from bot.reports.periods import Period, daily_period, due_daily, due_weekly, weekly_period
from bot.wecom import WeComError
from handlers.dashboard.access import Viewer, viewer_for
from handlers.dashboard.session import (
    LOGIN_CSRF_COOKIE,
    OAUTH_COOKIE,
    SESSION_COOKIE,
    Signer,
    new_token,
    verify_password,
)

_LOGGER = logging.getLogger(__name__)
routes = web.RouteTableDef()
_CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'")
_OAUTH_TTL = 600
_MAX_DAYS = 366
_CHOICES_TTL = 600


@dataclass
class Dashboard:
    env: jinja2.Environment
    signer: Signer | None = None
    fraud_types: tuple[float, list[str]] = (float("-inf"), [])  # (when read, the filter's choices)


DASHBOARD = web.AppKey("dashboard", Dashboard)


def setup(app: web.Application) -> None:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR / "dashboard"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters.update(bjtime=beijing_time, yuan=format_yuan, duration=format_duration, mask_name=mask_name,
                       mask_phone=mask_phone, mask_id=mask_id_number,
                       pct=lambda r: "—" if r is None else f"{r * 100:.1f}%",
                       dur=lambda s: "—" if s is None else format_duration(s))
    env.globals.update(risk_labels=RISK_LABELS, state_labels=STATE_LABELS, stage_labels=STAGE_LABELS,
                       milestone_labels={f"{k[0]}/{k[1]}": v for k, v in MILESTONE_LABELS.items()})
    app[DASHBOARD] = Dashboard(env)
    app.router.add_routes(routes)
    app.router.add_static("/dashboard/static", TEMPLATES_DIR / "dashboard" / "static")


# -- plumbing ------------------------------------------------------------------------------------


async def _signer(request: web.Request) -> Signer:
    dashboard = request.app[DASHBOARD]
    if dashboard.signer is None:
        secret = request.app[SETTINGS].dashboard.session_secret or await request.app[SERVICES].storage.meta_default(
            "dashboard_session_secret", secrets.token_urlsafe(32))
        dashboard.signer = Signer(secret)
    return dashboard.signer


def _now(request: web.Request) -> float:
    return request.app[CLOCK]()


async def _session(request: web.Request) -> dict | None:
    return (await _signer(request)).loads(request.cookies.get(SESSION_COOKIE), _now(request))


def _render(request: web.Request, template: str, status: int = 200, **context) -> web.Response:
    html = request.app[DASHBOARD].env.get_template(template).render(request_path=request.path_qs, **context)
    return web.Response(text=html, content_type="text/html", status=status,
                        headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store",
                                 "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"})


def _error(request: web.Request, status: int, message: str, viewer: Viewer | None = None) -> web.Response:
    return _render(request, "error.html", status, message=message, viewer=viewer, csrf="")


def _cookie(request: web.Request, response: web.StreamResponse, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/dashboard", httponly=True, samesite="Lax",
                        secure=_origin(request).startswith("https://"))


def _origin(request: web.Request) -> str:
    """How the browser reaches the bot: the configured public URL, else this request's own origin."""
    return request.app[SETTINGS].server.public_url or f"{request.scheme}://{request.host}"


def _safe_next(value: str | None) -> str:
    return value if value and value.startswith("/dashboard") and not value.startswith("//") else "/dashboard"


Handler = Callable[[web.Request, Viewer, dict], Awaitable[web.StreamResponse]]


def page(*, statistics: bool = False) -> Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Log in first (redirect), then check the role; the handler gets the viewer and the session."""

    def wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        @functools.wraps(handler)
        async def view(request: web.Request) -> web.StreamResponse:
            session = await _session(request)
            directory = request.app[SERVICES].directory
            admin = request.app[SETTINGS].dashboard.admin_user
            viewer = viewer_for(session["u"], directory, admin) if session else None
            if viewer is None:
                raise web.HTTPFound("/dashboard/login?" + urlencode({"next": request.path_qs}))
            if statistics and not viewer.sees_statistics:
                return _error(request, 403, "统计、通报和导出仅限派出所和反诈中心查看。", viewer)
            return await handler(request, viewer, session)

        return view

    return wrap


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
        return cls(*(query.get(k, "").strip()[:40] for k in ("station", "risk", "fraud", "state", "from", "to")))

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
        first, last = _day(self.start), _day(self.end)
        if states != OPEN_STATES and first is None and last is None:
            first = today - 6  # the history is long: closed ones default to the last seven days
        return replace(scope, station=self.station or None, risk_level=self.risk if self.risk in RISK_LEVELS else None,
                       fraud_type=self.fraud or None, states=states, first_day=first, last_day=last)


def _day(value: str) -> int | None:
    try:
        return date_day(date.fromisoformat(value)) if value else None
    except ValueError:
        return None


async def _choices(request: web.Request, viewer: Viewer) -> dict:
    directory = request.app[SERVICES].directory
    names = station_names(directory)
    today = day_number(_now(request))
    dashboard = request.app[DASHBOARD]
    read_at, fraud_types = dashboard.fraud_types
    if _now(request) - read_at > _CHOICES_TTL:  # a scan of a month of history: not on every page
        fraud_types = await request.app[SERVICES].storage.fraud_types(today - 30)
        dashboard.fraud_types = (_now(request), fraud_types)
    return {"stations": [(code, names.get(code, code)) for code in viewer.stations(directory)],
            "fraud_types": fraud_types,
            "states": [("", "未办结（默认）"), ("all", "全部"), *STATE_LABELS.items()], "names": names}


# -- login ---------------------------------------------------------------------------------------


@routes.get("/dashboard/login")
async def login_page(request: web.Request) -> web.StreamResponse:
    next_path = _safe_next(request.query.get("next"))
    if "wxwork" in request.headers.get("User-Agent", "").lower():  # opened inside WeCom: no form, straight in
        raise web.HTTPFound("/dashboard/oauth?" + urlencode({"next": next_path}))
    token = new_token()
    settings = request.app[SETTINGS].dashboard
    response = _render(request, "login.html", next=next_path, csrf=token, viewer=None,
                       admin=bool(settings.admin_password_hash), failed=request.query.get("failed") == "1")
    _cookie(request, response, LOGIN_CSRF_COOKIE, token, _OAUTH_TTL)
    return response


@routes.post("/dashboard/login")
async def admin_login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    settings = request.app[SETTINGS].dashboard
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not secrets.compare_digest(cookie, str(form.get("csrf", ""))):
        return _error(request, 403, "页面已过期，请重新打开登录页。")
    next_path = _safe_next(str(form.get("next", "")))
    ok = (bool(settings.admin_password_hash) and secrets.compare_digest(str(form.get("user", "")), settings.admin_user)
          and verify_password(str(form.get("password", "")), settings.admin_password_hash))
    if not ok:
        _LOGGER.warning("dashboard admin login refused", extra={"remote": request.remote})
        raise web.HTTPFound("/dashboard/login?" + urlencode({"next": next_path, "failed": "1"}))
    return await _start_session(request, f"admin:{settings.admin_user}", next_path)


@routes.get("/dashboard/oauth")
async def oauth_start(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    state = new_token()
    query = urlencode({"appid": settings.wecom.corp_id, "redirect_uri": f"{_origin(request)}/dashboard/oauth/callback",
                       "response_type": "code", "scope": "snsapi_base", "state": state,
                       "agentid": settings.wecom.agent_id})
    response = web.HTTPFound(f"{settings.dashboard.oauth_authorize_url}?{query}#wechat_redirect")
    payload = {"s": state, "n": _safe_next(request.query.get("next"))}
    _cookie(request, response, OAUTH_COOKIE, (await _signer(request)).dumps(payload, _now(request) + _OAUTH_TTL),
            _OAUTH_TTL)
    raise response


@routes.get("/dashboard/oauth/callback")
async def oauth_callback(request: web.Request) -> web.StreamResponse:
    pending = (await _signer(request)).loads(request.cookies.get(OAUTH_COOKIE), _now(request))
    state, code = request.query.get("state", ""), request.query.get("code", "")
    if pending is None or not code or not secrets.compare_digest(str(pending.get("s", "")), state):
        return _error(request, 400, "登录已过期或来源无效，请从企业微信重新打开。")
    try:
        userid = await request.app[SERVICES].wecom.user_from_oauth_code(code)
    except WeComError as err:
        _LOGGER.warning("WeCom OAuth code refused: %s", err)
        return _error(request, 403, "企业微信未能确认你的身份，请重新打开。")
    if not userid or userid not in request.app[SERVICES].directory.people:
        _LOGGER.warning("dashboard login by someone not in the directory")
        return _error(request, 403, "你不在本系统的通讯录中，无权查看。")
    response = await _start_session(request, userid, _safe_next(pending.get("n")))
    response.del_cookie(OAUTH_COOKIE, path="/dashboard")
    return response


async def _start_session(request: web.Request, userid: str, next_path: str) -> web.StreamResponse:
    max_age = request.app[SETTINGS].dashboard.session_max_age
    value = (await _signer(request)).dumps({"u": userid, "c": new_token()}, _now(request) + max_age)
    response = web.Response(status=302, headers={"Location": next_path})
    _cookie(request, response, SESSION_COOKIE, value, max_age)
    _LOGGER.info("dashboard login", extra={"userid": userid})
    return response


@routes.post("/dashboard/logout")
@page()
async def logout(request: web.Request, viewer: Viewer, session: dict) -> web.StreamResponse:
    form = await request.post()
    if not secrets.compare_digest(str(form.get("csrf", "")), session["c"]):
        return _error(request, 403, "页面已过期，请刷新后重试。", viewer)
    response = web.HTTPFound("/dashboard/login")
    response.del_cookie(SESSION_COOKIE, path="/dashboard")
    raise response


# -- pages ---------------------------------------------------------------------------------------


@routes.get("/dashboard")
@page()
async def board(request: web.Request, viewer: Viewer, session: dict) -> web.StreamResponse:
    services = request.app[SERVICES]
    now = _now(request)
    filters = Filters.parse(request.query)
    flt = filters.apply(viewer.scope(), day_number(now))
    result = await services.storage.board(flt, now, request.app[SETTINGS].dashboard.page_size)
    return _render(request, "board.html", viewer=viewer, csrf=session["c"], board=result, now=now, f=filters,
                   counts=[(s, result.by_state.get(s, 0)) for s in STATE_LABELS if s in result.by_state or
                           s in OPEN_STATES], **await _choices(request, viewer))


@routes.get(r"/dashboard/instructions/{number:\d+}")
@page()
async def detail(request: web.Request, viewer: Viewer, session: dict) -> web.StreamResponse:
    storage = request.app[SERVICES].storage
    number = int(request.match_info["number"])
    instruction = await storage.get_instruction(number)
    if instruction is None:
        return _error(request, 404, f"没有编号为 {number} 的指令。", viewer)
    assignments = await storage.assignments(number)
    if not viewer.may_view(instruction, assignments):
        _LOGGER.warning("dashboard detail refused", extra={"userid": viewer.userid, "instruction_id": number})
        return _error(request, 403, "你无权查看这条指令。", viewer)
    directory = request.app[SERVICES].directory
    people = {p.userid: p.name for p in directory.people.values()}
    return _render(request, "detail.html", viewer=viewer, csrf=session["c"], i=instruction, now=_now(request),
                   assignments=assignments, deadlines=await storage.deadlines(number),
                   timeline=await storage.timeline(number), people=people, names=station_names(directory))


@routes.get("/dashboard/stats")
@page(statistics=True)
async def stats(request: web.Request, viewer: Viewer, session: dict) -> web.StreamResponse:
    return await _figures_page(request, viewer, session, _chosen_period(request), "统计分析")


@routes.get("/dashboard/bulletin")
@page(statistics=True)
async def bulletin(request: web.Request, viewer: Viewer, session: dict) -> web.StreamResponse:
    period = _bulletin_period(request)
    if period is None:
        return _error(request, 400, "通报参数有误。", viewer)
    return await _figures_page(request, viewer, session, period, period.title)


def _chosen_period(request: web.Request) -> Period:
    """from..to (YYYY-MM-DD) as asked, at most a year and never past today; the last seven days by default."""
    today = day_number(_now(request))
    first, last = _day(request.query.get("from", "")), _day(request.query.get("to", ""))
    last = min(last if last is not None else today, today)
    first = first if first is not None and first <= last else last - 6
    return Period("custom", max(first, last - _MAX_DAYS + 1), last)


def _bulletin_period(request: web.Request) -> Period | None:
    kind, day = request.query.get("kind", "daily"), _day(request.query.get("date", ""))
    now = _now(request)
    b = request.app[SETTINGS].bulletin
    if kind == "daily":
        return daily_period(day) if day is not None else due_daily(now, b.daily_time)[0]
    if kind == "weekly":
        return weekly_period(day) if day is not None else due_weekly(now, b.weekly_day, b.weekly_time)[0]
    return None


async def _figures_page(request: web.Request, viewer: Viewer, session: dict, period: Period,
                        heading: str) -> web.StreamResponse:
    directory = request.app[SERVICES].directory
    filters = Filters.parse(request.query)
    figures = await _figures(request, viewer, period, filters)
    names = station_names(directory)
    svg = [charts.to_svg(charts.layout(chart, 0, 0, 760, 260), 760, 260, chart.title)
           for chart in (charts.trend_chart(figures), charts.station_chart(figures, names))]
    return _render(request, "figures.html", viewer=viewer, csrf=session["c"], heading=heading, fig=figures,
                   charts=svg, f=filters, from_value=day_date(period.first_day).isoformat(),
                   to_value=day_date(period.last_day).isoformat(), export_query=_export_query(request, period),
                   **await _choices(request, viewer))


def _export_query(request: web.Request, period: Period) -> str:
    """The figures page's own period and filters, for its export links."""
    if period.kind == "custom":
        pairs = {"from": day_date(period.first_day).isoformat(), "to": day_date(period.last_day).isoformat()}
    else:
        pairs = {"kind": period.kind, "date": day_date(period.first_day).isoformat()}
    pairs.update({k: request.query[k] for k in ("station", "risk", "fraud") if request.query.get(k)})
    return urlencode(pairs)


async def _figures(request: web.Request, viewer: Viewer, period: Period, filters: Filters):
    directory = request.app[SERVICES].directory
    flt = replace(viewer.scope(), station=filters.station or None,
                  risk_level=filters.risk if filters.risk in RISK_LEVELS else None, fraud_type=filters.fraud or None)
    stations = [code for code in viewer.stations(directory) if not filters.station or code == filters.station]
    return await compute_figures(request.app[SERVICES].storage, period, _now(request), flt, stations)


# -- exports -------------------------------------------------------------------------------------


@routes.get(r"/dashboard/export/instructions.{fmt:xlsx|csv}")
@page(statistics=True)
async def export_instructions(request: web.Request, viewer: Viewer, session: dict) -> web.StreamResponse:
    services = request.app[SERVICES]
    now = _now(request)
    filters = Filters.parse(request.query)
    full = request.query.get("full") == "1"
    if full and not viewer.is_center:
        return _error(request, 403, "含完整个人信息的导出仅限反诈中心。", viewer)
    rows = await services.storage.instruction_rows(filters.apply(viewer.scope(), day_number(now)),
                                                   request.app[SETTINGS].dashboard.export_max_rows)
    table = exports.instruction_table(rows, station_names(services.directory), now, lambda _: full)
    _LOGGER.info("dashboard export", extra={"userid": viewer.userid, "rows": len(rows), "full": full})
    return _download(request, [table], f"instructions-{beijing_time(now, '%Y%m%d-%H%M')}")


@routes.get(r"/dashboard/export/bulletin.{fmt:xlsx|csv}")
@page(statistics=True)
async def export_bulletin(request: web.Request, viewer: Viewer, session: dict) -> web.StreamResponse:
    period = _bulletin_period(request) if request.query.get("kind") else _chosen_period(request)
    if period is None:
        return _error(request, 400, "通报参数有误。", viewer)
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
