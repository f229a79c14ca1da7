"""Logging in and out of the dashboard: WeCom OAuth for officers, a password for the center's local account.

Password checks run off the event loop (passwords.py) and are throttled per client address and per
account name (throttle.py); a wrong OAuth code is throttled per address, as each costs a WeCom API call.
A login records a server-side session (migration 009) and sets its signed cookie; logout deletes it.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from urllib.parse import quote, urlencode

from aiohttp import web

from bot.logs import client_warning
from bot.services import SERVICES, SETTINGS
from bot.wecom import WeComError
from handlers.dashboard.access import Viewer
from handlers.dashboard.base import (
    DASHBOARD,
    InputError,
    LoginSession,
    delete_cookie,
    error,
    form,
    now,
    page,
    render,
    safe_next,
    set_cookie,
    text,
    too_many,
)
from handlers.dashboard.passwords import Busy
from handlers.dashboard.session import (
    LOGIN_CSRF_COOKIE,
    OAUTH_COOKIE,
    SESSION_COOKIE,
    new_token,
    token_hash,
)
from handlers.dashboard.throttle import Attempt
from handlers.proxy import client_address, public_origin

_LOGGER = logging.getLogger(__name__)
routes = web.RouteTableDef()
_OAUTH_TTL = 600
_STATE = re.compile(r"[A-Za-z0-9]{1,128}")  # WeCom: state is letters and digits, at most 128 bytes
_CODE = re.compile(r"[A-Za-z0-9_-]{1,512}")


def _same(a: str, b: str) -> bool:
    """Constant-time equality of two strings, whatever characters they hold."""
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


@routes.get("/dashboard/login")
async def login_page(request: web.Request) -> web.StreamResponse:
    next_path = safe_next(request.query.get("next"))
    if "wxwork" in request.headers.get("User-Agent", "").lower():  # opened inside WeCom: no form, straight in
        raise web.HTTPFound("/dashboard/oauth?" + urlencode({"next": next_path}))
    token = new_token()
    settings = request.app[SETTINGS].dashboard
    response = render(request, "login.html", next=next_path, csrf=token, viewer=None,
                      admin=bool(settings.admin_password_hash), failed=request.query.get("failed") == "1")
    set_cookie(request, response, LOGIN_CSRF_COOKIE, token, _OAUTH_TTL)
    return response


@routes.post("/dashboard/login")
async def admin_login(request: web.Request) -> web.StreamResponse:
    dashboard, address = request.app[DASHBOARD], client_address(request)
    wait = dashboard.throttle.address_wait(address, now(request))
    if wait:  # before reading the body: a throttled flood costs next to nothing
        return _throttled(request, address, wait)
    try:
        fields = await form(request)
    except InputError as err:
        return error(request, 400, str(err))
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not _same(cookie, fields.get("csrf", "")):
        return error(request, 403, "页面已过期，请重新打开登录页。")
    next_path = safe_next(fields.get("next"))
    user = text(fields.get("user"), 200)
    attempt = dashboard.throttle.begin(address, user, now(request))
    if not isinstance(attempt, Attempt):
        return _throttled(request, address, attempt)
    try:
        ok = await dashboard.passwords.check(user, fields.get("password", "")[:1024])
    except Busy:
        client_warning(_LOGGER, "dashboard_login_busy", "dashboard login refused: password checks busy")
        return too_many(request, 1)
    if not ok:
        client_warning(_LOGGER, "dashboard_login_refused", "dashboard admin login refused", remote=address)
        raise web.HTTPFound("/dashboard/login?" + urlencode({"next": next_path, "failed": "1"}))
    dashboard.throttle.succeeded(attempt)
    return await _start_session(request, f"admin:{request.app[SETTINGS].dashboard.admin_user}", next_path)


@routes.get("/dashboard/oauth")
async def oauth_start(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    state = secrets.token_hex(16)  # WeCom accepts letters and digits only, up to 128 bytes
    redirect_uri = f"{public_origin(request)}/dashboard/oauth/callback"
    query = urlencode({"appid": settings.wecom.corp_id, "redirect_uri": redirect_uri, "response_type": "code",
                       "scope": "snsapi_base", "state": state, "agentid": settings.wecom.agent_id}, quote_via=quote)
    # The header as written: HTTPFound would normalise the URL and undo redirect_uri's percent-encoding.
    response = web.Response(status=302, headers={
        "Location": f"{settings.dashboard.oauth_authorize_url}?{query}#wechat_redirect"})
    payload = {"s": state, "n": safe_next(request.query.get("next"))}
    set_cookie(request, response, OAUTH_COOKIE, request.app[DASHBOARD].oauth.dumps(payload, now(request) + _OAUTH_TTL),
               _OAUTH_TTL)
    return response


@routes.get("/dashboard/oauth/callback")
async def oauth_callback(request: web.Request) -> web.StreamResponse:
    dashboard = request.app[DASHBOARD]
    pending = dashboard.oauth.loads(request.cookies.get(OAUTH_COOKIE), now(request))
    state, code = request.query.get("state", ""), request.query.get("code", "")
    if pending is None or not _STATE.fullmatch(state) or not _CODE.fullmatch(code) \
            or not _same(str(pending.get("s", "")), state):
        return error(request, 400, "登录已过期或来源无效，请从企业微信重新打开。")
    # Each code is checked with WeCom (an API call): wrong ones are throttled per address.
    address = client_address(request)
    attempt = dashboard.throttle.begin(address, None, now(request))
    if not isinstance(attempt, Attempt):
        return _throttled(request, address, attempt)
    try:
        userid = await request.app[SERVICES].wecom.user_from_oauth_code(code)
    except WeComError as err:
        client_warning(_LOGGER, "dashboard_oauth_refused", f"WeCom OAuth code refused: {err}", remote=address)
        return error(request, 403, "企业微信未能确认你的身份，请重新打开。")
    if not userid or userid not in request.app[SERVICES].directory.people:
        client_warning(_LOGGER, "dashboard_oauth_stranger", "dashboard login by someone not in the directory")
        return error(request, 403, "你不在本系统的通讯录中，无权查看。")
    dashboard.throttle.succeeded(attempt)
    response = await _start_session(request, userid, safe_next(pending.get("n")))
    delete_cookie(request, response, OAUTH_COOKIE)
    return response


def _throttled(request: web.Request, address: str, seconds: int) -> web.Response:
    client_warning(_LOGGER, "dashboard_login_throttled", "dashboard login throttled", remote=address)
    return too_many(request, seconds)


async def _start_session(request: web.Request, userid: str, next_path: str) -> web.StreamResponse:
    max_age = request.app[SETTINGS].dashboard.session_max_age
    session_id, expires_at = secrets.token_urlsafe(32), now(request) + max_age
    await request.app[SERVICES].storage.create_session(token_hash(session_id), userid, now(request), expires_at)
    value = request.app[DASHBOARD].sessions.dumps({"i": session_id, "c": new_token()}, expires_at)
    response = web.Response(status=302, headers={"Location": next_path})
    set_cookie(request, response, SESSION_COOKIE, value, max_age)
    _LOGGER.info("dashboard login", extra={"userid": userid})
    return response


@routes.post("/dashboard/logout")
@page()
async def logout(request: web.Request, viewer: Viewer, session: LoginSession) -> web.StreamResponse:
    fields = await form(request)
    if not _same(fields.get("csrf", ""), session.csrf):
        return error(request, 403, "页面已过期，请刷新后重试。", viewer)
    await request.app[SERVICES].storage.end_session(token_hash(session.id))  # a copy of the cookie dies too
    _LOGGER.info("dashboard logout", extra={"userid": viewer.userid})
    response = web.HTTPFound("/dashboard/login")
    delete_cookie(request, response, SESSION_COOKIE)
    raise response
