"""The dashboard's plumbing: start-up (signing keys, password checker), sessions, pages, input checks.

Server-rendered (Jinja2, autoescaped), no script. Every page checks the viewer (access.py) before it
reads anything. Input a person can type or tamper with (cookies, query strings, forms, ids, dates,
the login's `next`) is checked here and answered with a Chinese 4xx page, never a server error.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from bot.config import ConfigError, Settings
from bot.logs import client_warning
from bot.render import TEMPLATES_DIR, beijing_time, format_duration, format_yuan
from bot.services import CLOCK, SERVICES, SETTINGS
from domain.deadlines import MILESTONE_LABELS, STAGE_LABELS
from domain.lifecycle import STATE_LABELS
from domain.masking import mask_id_number, mask_name, mask_phone
from domain.models import RISK_LABELS
from domain.reports import date_day
from handlers.dashboard.access import Viewer, viewer_for
from handlers.dashboard.passwords import PasswordChecker
from handlers.dashboard.session import SESSION_COOKIE, Signer, load_or_create_secret, token_hash
from handlers.dashboard.throttle import LoginThrottle
from handlers.proxy import public_origin

_LOGGER = logging.getLogger(__name__)
_CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'")
_HEADERS = {"Content-Security-Policy": _CSP, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin"}
SECRET_FILE_NAME = "dashboard-session.key"  # beside the SQLite file, when the config names no key
# Dates a filter may name: the service's lifetime with room on both sides, and day numbers that
# stay valid dates however a period is widened around them.
FIRST_DATE, LAST_DATE = date(2000, 1, 1), date(2099, 12, 31)


@dataclass
class Dashboard:
    env: jinja2.Environment
    sessions: Signer  # the session cookie
    oauth: Signer  # the OAuth state cookie: its own key, so it never passes as a session
    throttle: LoginThrottle
    passwords: PasswordChecker
    # The fraud-type filter's choices per viewer scope: (when read, the choices)
    fraud_types: dict[Any, tuple[float, list[str]]] = field(default_factory=dict)
    # The 429 page per "retry after" seconds: a flood of throttled logins is answered without rendering
    throttled_pages: dict[int, str] = field(default_factory=dict)


DASHBOARD = web.AppKey("dashboard", Dashboard)


class InputError(Exception):
    """Input the page cannot use: a 400 page with this (Chinese) message."""


@dataclass(frozen=True)
class LoginSession:
    id: str  # the random id in the cookie; the database knows its hash
    userid: str
    csrf: str


def setup(app: web.Application, *route_tables: web.RouteTableDef) -> None:
    app.cleanup_ctx.append(_dashboard_context)
    for routes in route_tables:
        app.router.add_routes(routes)
    app.router.add_static("/dashboard/static", TEMPLATES_DIR / "dashboard" / "static")


async def _dashboard_context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    d = settings.dashboard
    secret = signing_secret(settings)
    if app[SERVICES].storage.shared and not (d.session_secret or d.session_secret_file):
        _LOGGER.warning("several instances share the database: give them one [dashboard] session_secret or "
                        "session_secret_file, or a session made on one is refused by the others")
    passwords = PasswordChecker(d.admin_user, d.admin_password_hash)
    try:
        await passwords.start()
        app[DASHBOARD] = Dashboard(_environment(), Signer(secret, "session"), Signer(secret, "oauth"),
                                   LoginThrottle(d.login_attempts_per_address, d.login_attempts_per_account,
                                                 d.login_window), passwords)
        yield
    finally:
        passwords.close()


def signing_secret(settings: Settings) -> str:
    """[dashboard] session_secret, else the key file (created at first start), never the database."""
    d = settings.dashboard
    if d.session_secret:
        return d.session_secret
    path = d.session_secret_file or settings.database.path.parent / SECRET_FILE_NAME
    try:
        return load_or_create_secret(path)
    except (OSError, ValueError) as err:
        raise ConfigError(f"dashboard.session_secret_file: {err}") from err


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR / "dashboard"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters.update(bjtime=beijing_time, yuan=format_yuan, duration=format_duration, mask_name=mask_name,
                       mask_phone=mask_phone, mask_id=mask_id_number,
                       pct=lambda r: "—" if r is None else f"{r * 100:.1f}%",
                       dur=lambda s: "—" if s is None else format_duration(s))
    env.globals.update(risk_labels=RISK_LABELS, state_labels=STATE_LABELS, stage_labels=STAGE_LABELS,
                       milestone_labels={f"{k[0]}/{k[1]}": v for k, v in MILESTONE_LABELS.items()})
    return env


# -- responses -----------------------------------------------------------------------------------


def now(request: web.Request) -> float:
    return request.app[CLOCK]()


def render(request: web.Request, template: str, status: int = 200, **context) -> web.Response:
    html = request.app[DASHBOARD].env.get_template(template).render(**context)
    return web.Response(text=html, content_type="text/html", status=status, headers=_HEADERS)


def error(request: web.Request, status: int, message: str, viewer: Viewer | None = None) -> web.Response:
    return render(request, "error.html", status, message=message, viewer=viewer, csrf="")


def too_many(request: web.Request, seconds: int) -> web.Response:
    pages = request.app[DASHBOARD].throttled_pages
    html = pages.get(seconds)
    if html is None:
        html = request.app[DASHBOARD].env.get_template("error.html").render(
            message=f"登录尝试过于频繁，请 {format_duration(seconds)}后再试。", viewer=None, csrf="")
        if len(pages) < 2000:  # at most one per second of the window
            pages[seconds] = html
    return web.Response(text=html, content_type="text/html", status=429,
                        headers={**_HEADERS, "Retry-After": str(seconds)})


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/dashboard", httponly=True, samesite="Lax",
                        secure=public_origin(request).startswith("https://"))


def delete_cookie(request: web.Request, response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path="/dashboard", secure=public_origin(request).startswith("https://"),
                        httponly=True, samesite="Lax")


# -- input ---------------------------------------------------------------------------------------

# Where a login may send the browser on: a dashboard path with an optional query, in plain URL
# characters (no CR/LF, spaces, backslashes or quotes), never "//" (a scheme-relative URL) or "..".
_NEXT = re.compile(r"/dashboard(?:[/?][A-Za-z0-9\-._~!$&()*+,;=:@%/?]*)?")


def safe_next(value: Any) -> str:
    if isinstance(value, str) and len(value) <= 1000 and _NEXT.fullmatch(value) and "//" not in value \
            and "/." not in value:
        return value
    return "/dashboard"


def text(value: Any, limit: int) -> str:
    """A form or query value as plain text: at most `limit` characters, nothing that cannot be stored
    or shown (lone surrogates, control characters)."""
    if not isinstance(value, str):
        return ""
    value = value.strip()[:limit]
    return "".join(c for c in value if c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF)


async def form(request: web.Request) -> dict[str, str]:
    """The posted form's text fields; a body that is not a form (or not text) is a 400."""
    try:
        data = await request.post()
    except (ValueError, LookupError, HttpProcessingError) as err:  # broken multipart, bad charset or bytes
        client_warning(_LOGGER, "dashboard_form", f"dashboard form refused: {type(err).__name__}", path=request.path)
        raise InputError("提交的内容无法识别，请刷新页面后重试。") from err
    return {key: value for key, value in data.items() if isinstance(value, str)}


def parse_day(value: str) -> int | None:
    """A YYYY-MM-DD date as a day number; None for none; InputError if it is not a usable date."""
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise InputError("日期格式应为 YYYY-MM-DD。") from None
    if not FIRST_DATE <= day <= LAST_DATE:
        raise InputError(f"日期须在 {FIRST_DATE.isoformat()} 至 {LAST_DATE.isoformat()} 之间。")
    return date_day(day)


# -- sessions and pages --------------------------------------------------------------------------


async def current_session(request: web.Request) -> LoginSession | None:
    """The live session the request's cookie names: signed by us, not expired, and still recorded
    (logout and revocation delete the record). One read by primary key."""
    payload = request.app[DASHBOARD].sessions.loads(request.cookies.get(SESSION_COOKIE), now(request))
    if payload is None or not isinstance(payload.get("i"), str) or not isinstance(payload.get("c"), str):
        return None
    userid = await request.app[SERVICES].storage.session_user(token_hash(payload["i"]), now(request))
    return None if userid is None else LoginSession(payload["i"], userid, payload["c"])


Handler = Callable[[web.Request, Viewer, LoginSession], Awaitable[web.StreamResponse]]


def page(*, statistics: bool = False) -> Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Log in first (redirect), then check the role; the handler gets the viewer and the session."""

    def wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        @functools.wraps(handler)
        async def view(request: web.Request) -> web.StreamResponse:
            session = await current_session(request)
            directory = request.app[SERVICES].directory
            admin = request.app[SETTINGS].dashboard.admin_user
            viewer = viewer_for(session.userid, directory, admin) if session else None
            if viewer is None or session is None:
                raise web.HTTPFound("/dashboard/login?" + urlencode({"next": safe_next(request.path_qs)}))
            if statistics and not viewer.sees_statistics:
                return error(request, 403, "统计、通报和导出仅限派出所和反诈中心查看。", viewer)
            try:
                return await handler(request, viewer, session)
            except InputError as err:
                return error(request, 400, str(err), viewer)

        return view

    return wrap
