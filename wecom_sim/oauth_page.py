"""WeCom's web OAuth authorize page, as a member's WeCom client would pass it, and uploaded media.

`GET /connect/oauth2/authorize?appid=CORPID&redirect_uri=…&response_type=code&scope=snsapi_base&state=…`
stands in for open.weixin.qq.com: inside WeCom the client knows who is asking and redirects at once;
here the page lists the corp's members to pick from (or `sim_user=<userid>` picks directly), then
redirects to redirect_uri with a single-use `code` and the `state`, exactly as WeCom does.
"""

from __future__ import annotations

import re
from html import escape
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from .chatview.render import CSP
from .keys import SIMULATOR_KEY

routes = web.RouteTableDef()
_SCOPES = ("snsapi_base", "snsapi_privateinfo")
_STATE_RE = re.compile(r"[A-Za-z0-9]*")
_STATE_MAX_BYTES = 128


def add_routes(app: web.Application) -> None:
    app.router.add_routes(routes)


@routes.get("/connect/oauth2/authorize")
async def authorize(request: web.Request) -> web.StreamResponse:
    sim = request.app[SIMULATOR_KEY]
    q = request.query
    redirect_uri = q.get("redirect_uri", "")
    if q.get("appid") != sim.config.corp_id:
        return _page("参数错误", "<p>appid 与企业 CorpID 不符。</p>", 400)
    if q.get("response_type") != "code" or q.get("scope") not in _SCOPES:
        return _page("参数错误", "<p>response_type 须为 code，scope 须为 snsapi_base 或 snsapi_privateinfo。</p>", 400)
    target = urlsplit(redirect_uri)
    if target.scheme not in ("http", "https"):
        return _page("参数错误", "<p>redirect_uri 无效。</p>", 400)
    # 构造网页授权链接 (https://developer.work.weixin.qq.com/document/path/91022): state only a-zA-Z0-9, at
    # most 128 bytes; redirect_uri on the app's trusted domain, matched exactly with its port (全局错误码 50001,
    # …/path/90313: "url填写的域名，必须与设置的可信域名完全匹配（包括端口号）").
    state = q.get("state", "")
    if len(state.encode()) > _STATE_MAX_BYTES or not _STATE_RE.fullmatch(state):
        return _page("参数错误", "<p>state 只能包含 a-z、A-Z、0-9，且不超过 128 字节。</p>", 400)
    if target.netloc.lower() != (sim.config.oauth_domain() or ""):
        return _page("redirect_uri 需使用应用可信域名",
                     "<p>错误码 50001：redirect_uri 与配置的授权完成回调域名（可信域名）不一致。</p>", 400)
    chosen = q.get("sim_user")
    if chosen:
        user = sim.directory.resolve(chosen)
        if user is None:
            return _page("无此成员", "<p>该成员不在企业通讯录中。</p>", 403)
        code = sim.oauth.issue(user.userid, sim.clock.now())
        separator = "&" if "?" in redirect_uri else "?"
        raise web.HTTPFound(f"{redirect_uri}{separator}{urlencode({'code': code, 'state': q.get('state', '')})}")
    links = "".join(
        f'<li><a data-testid="oauth-user" href="?{escape(urlencode({**q, "sim_user": u.userid}))}">'
        f"{escape(u.name)} <small>{escape(u.userid)}</small></a></li>"
        for u in sim.directory.users.values()
    )
    return _page("企业微信授权登录", f"<p>模拟企业微信：选择以哪位成员的身份打开应用页面。</p><ul>{links}</ul>")


@routes.get("/_sim/media/{media_id}")
async def media(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR_KEY]
    item = sim.media.get(request.match_info["media_id"], sim.clock.now())
    if item is None:
        raise web.HTTPNotFound()
    return web.Response(body=item.content, content_type=item.content_type or "application/octet-stream")


def _page(title: str, body: str, status: int = 200) -> web.Response:
    html = (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
            f"</head><body><h1>{escape(title)}</h1>{body}</body></html>")
    return web.Response(text=html, content_type="text/html", status=status,
                        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store"})
