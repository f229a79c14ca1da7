"""The dashboard under attack, over real HTTP: sessions that end, a signing key outside the database,
login throttling, reverse-proxy rules, OAuth's state and redirect_uri, per-viewer filter choices, and
hostile cookies, forms, ids, dates and `next` values (never a 5xx; fuzzed as in test_drills_hostile)."""

from __future__ import annotations

import re
import secrets
import stat
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from hypothesis import strategies as st

from bot.app import create_app
from bot.render import format_duration
from handlers.dashboard.base import DASHBOARD
from handlers.dashboard.session import Signer
from tests.conftest import services
from tests.helpers import ADMIN_HASH, ADMIN_PASSWORD, AUTH, free_port, instruction, wait_state
from tests.test_dashboard import admin_login, oauth_login, submit
from tests.test_drills_hostile import _fuzz, hostile_text


@pytest.fixture
def start_dash(aiohttp_client, sim, sim_server, make_settings):
    """Start a bot with its dashboard (OAuth through the simulator, the local admin) and these sections."""

    async def start(**sections):
        sim_url = str(sim_server.make_url("")).rstrip("/")
        port = free_port()
        server = {"port": port, **sections.pop("server", {})}
        dashboard = {"oauth_authorize_url": f"{sim_url}/connect/oauth2/authorize", "admin_password_hash": ADMIN_HASH,
                     **sections.pop("dashboard", {})}
        settings = make_settings(sim_url, server=server, dashboard=dashboard, **sections)
        client = await aiohttp_client(create_app(settings, clock=sim.clock.now), server_kwargs={"port": port})
        sim.config.callback_url = str(client.make_url("/wecom/callback"))
        return client

    return start


def csrf_of(html: str) -> str:
    return html.split('name="csrf" value="')[1].split('"')[0]


async def login_form(client, user: str = "admin", password: str = ADMIN_PASSWORD, headers=None):
    page = await client.get("/dashboard/login")
    return await client.post("/dashboard/login", data={"csrf": csrf_of(await page.text()), "user": user,
                                                       "password": password, "next": "/dashboard"},
                             headers=headers or {}, allow_redirects=False)


def session_cookie(client) -> str:
    return next(c.value for c in client.session.cookie_jar if c.key == "qz_session")


# -- sessions end when they should -------------------------------------------------------------------


async def test_logout_ends_the_session_for_every_copy_of_its_cookie(aiohttp_client, dash):
    client = await oauth_login(aiohttp_client, dash, "zhengjie")
    copy = await aiohttp_client(dash.server)
    copy.session.cookie_jar.update_cookies({"qz_session": session_cookie(client)})
    assert (await copy.get("/dashboard", allow_redirects=False)).status == 200  # the copy works while logged in
    page = await (await client.get("/dashboard")).text()
    out = await client.post("/dashboard/logout", data={"csrf": csrf_of(page)}, allow_redirects=False)
    assert out.status == 302
    refused = await copy.get("/dashboard", allow_redirects=False)
    assert refused.status == 302 and refused.headers["Location"].startswith("/dashboard/login")


async def test_expired_and_revoked_sessions_are_refused_by_the_server(aiohttp_client, dash, sim):
    client = await oauth_login(aiohttp_client, dash, "wangqiang")
    other = await oauth_login(aiohttp_client, dash, "zhengjie")
    storage = services(dash).storage
    assert await storage.end_sessions("wangqiang") == 1  # an administrator revokes one person's sessions
    assert (await client.get("/dashboard", allow_redirects=False)).status == 302
    assert (await other.get("/dashboard", allow_redirects=False)).status == 200
    # A cookie signed with the right key but naming no recorded session (or an expired one) is refused.
    signer = dash.server.app[DASHBOARD].sessions
    forged = signer.dumps({"i": secrets.token_urlsafe(32), "c": "x"}, sim.clock.now() + 3600)
    forger = await aiohttp_client(dash.server)
    forger.session.cookie_jar.update_cookies({"qz_session": forged})
    assert (await forger.get("/dashboard", allow_redirects=False)).status == 302
    sim.clock.advance(services(dash).settings.dashboard.session_max_age + 1)
    assert (await other.get("/dashboard", allow_redirects=False)).status == 302


async def test_the_signing_key_is_a_0600_file_outside_the_database_and_survives_a_restart(
        aiohttp_client, start_dash, tmp_path, sim):
    key_file = tmp_path / "keys" / "dashboard.key"
    first = await start_dash(dashboard={"session_secret_file": str(key_file)})
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and len(key_file.read_text().strip()) >= 32
    assert await services(first).storage.meta("dashboard_session_secret") is None
    client = await oauth_login(aiohttp_client, first, "zhengjie")
    cookie = session_cookie(client)
    await first.close()

    again = await start_dash(dashboard={"session_secret_file": str(key_file)})  # same key: the session holds
    browser = await aiohttp_client(again.server)
    browser.session.cookie_jar.update_cookies({"qz_session": cookie})
    assert (await browser.get("/dashboard", allow_redirects=False)).status == 200
    # Someone with the database but not the key (a backup) cannot make a cookie the bot accepts.
    minted = Signer("x" * 40, "session").dumps({"i": "anything", "c": "x"}, sim.clock.now() + 3600)
    thief = await aiohttp_client(again.server)
    thief.session.cookie_jar.update_cookies({"qz_session": minted})
    assert (await thief.get("/dashboard", allow_redirects=False)).status == 302


async def test_the_oauth_state_cookie_never_passes_as_a_session(aiohttp_client, dash):
    client = await aiohttp_client(dash.server)
    await client.get("/dashboard/oauth", allow_redirects=False)
    state_cookie = next(c.value for c in client.session.cookie_jar if c.key == "qz_oauth")
    client.session.cookie_jar.update_cookies({"qz_session": state_cookie})
    resp = await client.get("/dashboard", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"].startswith("/dashboard/login")


# -- login throttling ---------------------------------------------------------------------------------


async def test_failed_logins_are_throttled_per_address_with_a_clear_429(aiohttp_client, start_dash, sim):
    bot = await start_dash(dashboard={"login_attempts_per_address": 3, "login_attempts_per_account": 100,
                                      "login_window": "10m"})
    client = await aiohttp_client(bot.server)
    for name in ("admin", "root", "zhengjie"):  # different accounts, one address
        assert (await login_form(client, name, "wrong")).status == 302
    throttled = await login_form(client, "admin", ADMIN_PASSWORD)  # even the right password waits now
    assert throttled.status == 429
    wait = int(throttled.headers["Retry-After"])
    assert 0 < wait <= 600 and f"登录尝试过于频繁，请 {format_duration(wait)}后再试" in await throttled.text()
    assert "qz_session" not in throttled.cookies
    sim.clock.advance(wait)
    assert (await login_form(client)).status == 302 and "qz_session" in client.session.cookie_jar.filter_cookies(
        bot.make_url("/dashboard"))


async def test_failed_logins_are_throttled_per_account_across_addresses_and_successes_do_not_count(
        aiohttp_client, start_dash):
    bot = await start_dash(server={"trusted_proxies": ["127.0.0.1"]},
                           dashboard={"login_attempts_per_address": 100, "login_attempts_per_account": 3})
    client = await aiohttp_client(bot.server)
    for n in range(5):  # successful logins from one address, many times: never throttled
        ok = await login_form(client, headers={"X-Forwarded-For": "10.0.0.1"})
        assert ok.status == 302 and ok.headers["Location"] == "/dashboard", n
    for n in range(3):  # wrong passwords for one account from three addresses behind the proxy
        assert (await login_form(client, "admin", "guess", {"X-Forwarded-For": f"10.0.1.{n}"})).status == 302
    resp = await login_form(client, " ADMIN ", ADMIN_PASSWORD, {"X-Forwarded-For": "10.0.2.1"})
    assert resp.status == 429 and "Retry-After" in resp.headers
    other = await login_form(client, "center", "guess", {"X-Forwarded-For": "10.0.2.1"})
    assert other.status == 302  # another account name is not held up


async def test_wrong_oauth_codes_are_throttled_per_address(aiohttp_client, start_dash):
    bot = await start_dash(dashboard={"login_attempts_per_address": 2})
    client = await aiohttp_client(bot.server)
    start = await client.get("/dashboard/oauth", allow_redirects=False)
    state = parse_qs(urlsplit(start.headers["Location"]).query)["state"][0]
    for code in ("guess1", "guess2"):
        resp = await client.get("/dashboard/oauth/callback", params={"code": code, "state": state})
        assert resp.status == 403
    resp = await client.get("/dashboard/oauth/callback", params={"code": "guess3", "state": state})
    assert resp.status == 429 and "登录尝试过于频繁" in await resp.text()


# -- behind a reverse proxy ----------------------------------------------------------------------------


def _redirect_uri(location: str) -> str:
    return parse_qs(urlsplit(location.split("#")[0]).query)["redirect_uri"][0]


async def test_oauth_state_is_alphanumeric_and_redirect_uri_is_percent_encoded(dash):
    resp = await dash.get("/dashboard/oauth", params={"next": "/dashboard/stats"}, allow_redirects=False)
    location = resp.headers["Location"]
    state = parse_qs(urlsplit(location).query)["state"][0]
    assert re.fullmatch(r"[A-Za-z0-9]{1,128}", state)
    raw = re.search(r"[?&]redirect_uri=([^&#]*)", location).group(1)
    assert raw.startswith("http%3A%2F%2F127.0.0.1%3A") and "/" not in raw and ":" not in raw
    port = services(dash).settings.server.port
    assert _redirect_uri(location) == f"http://127.0.0.1:{port}/dashboard/oauth/callback"


async def test_an_arbitrary_host_header_never_reaches_redirects_or_cookie_flags(start_dash):
    bot = await start_dash()
    port = services(bot).settings.server.port
    hostile = {"Host": "evil.example", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}
    resp = await bot.get("/dashboard/oauth", headers=hostile, allow_redirects=False)
    assert _redirect_uri(resp.headers["Location"]) == f"http://127.0.0.1:{port}/dashboard/oauth/callback"
    assert not resp.cookies["qz_oauth"]["secure"]


async def test_public_url_sets_the_origin_and_secure_cookies(start_dash):
    bot = await start_dash(server={"public_url": "https://quanzu.example.gov.cn"})
    resp = await bot.get("/dashboard/oauth", headers={"Host": "evil.example"}, allow_redirects=False)
    assert _redirect_uri(resp.headers["Location"]) == "https://quanzu.example.gov.cn/dashboard/oauth/callback"
    assert resp.cookies["qz_oauth"]["secure"]
    page = await bot.get("/dashboard/login")
    assert page.cookies["qz_login_csrf"]["secure"]
    login = await bot.post("/dashboard/login", data={"csrf": csrf_of(await page.text()), "user": "admin",
                                                     "password": ADMIN_PASSWORD},
                           cookies={"qz_login_csrf": page.cookies["qz_login_csrf"].value}, allow_redirects=False)
    assert login.status == 302 and login.cookies["qz_session"]["secure"]


async def test_forwarded_headers_are_believed_only_from_a_trusted_proxy(start_dash):
    bot = await start_dash(server={"trusted_proxies": ["127.0.0.0/8"]})
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "quanzu.city.gov.cn"}
    resp = await bot.get("/dashboard/oauth", headers=forwarded, allow_redirects=False)
    assert _redirect_uri(resp.headers["Location"]) == "https://quanzu.city.gov.cn/dashboard/oauth/callback"
    assert resp.cookies["qz_oauth"]["secure"]
    junk = await bot.get("/dashboard/oauth", headers={"X-Forwarded-Proto": "gopher",
                                                      "X-Forwarded-Host": "a b\\c"}, allow_redirects=False)
    port = services(bot).settings.server.port
    assert _redirect_uri(junk.headers["Location"]) == f"http://127.0.0.1:{port}/dashboard/oauth/callback"

    untrusted = await start_dash(server={"trusted_proxies": ["10.9.9.9"]})
    resp = await untrusted.get("/dashboard/oauth", headers=forwarded, allow_redirects=False)
    assert _redirect_uri(resp.headers["Location"]).startswith("http://127.0.0.1:")
    assert not resp.cookies["qz_oauth"]["secure"]


# -- the fraud-type filter shows each viewer their own scope -------------------------------------------


async def test_fraud_type_choices_are_scoped_to_the_viewer(aiohttp_client, dash):
    kinds = {("DM", "DM-01"): "甲类诈骗", ("DM", "DM-02"): "乙类诈骗", ("LH", "LH-01"): "丙类诈骗"}
    for (station, grid), fraud in kinds.items():
        resp = await dash.post("/api/v1/instructions", headers=AUTH, json=instruction(
            fraud_type=fraud, jurisdiction={"station": station, "grid": grid}))
        await wait_state(dash, (await resp.json())["id"], "dispatched")
    expected = {"zhengjie": {"甲类诈骗", "乙类诈骗", "丙类诈骗"}, "wangqiang": {"甲类诈骗", "乙类诈骗"},
                "zhaolei": {"丙类诈骗"}, "liuhong": {"甲类诈骗"}, "zhangwei": {"乙类诈骗"}}
    for who, visible in expected.items():
        client = await oauth_login(aiohttp_client, dash, who)
        page = await (await client.get("/dashboard")).text()
        options = set(re.findall(r'<option value="([^"]*类诈骗)"', page))
        assert options == visible, who
        assert not ({"甲类诈骗", "乙类诈骗", "丙类诈骗"} - visible) & set(re.findall(r"[甲乙丙]类诈骗", page)), who


# -- hostile input: 4xx, never 5xx -------------------------------------------------------------------


async def test_non_ascii_and_foreign_cookies_are_refused_not_errors(aiohttp_client, dash):
    for value in ("中文.签名", "é" * 30 + ".x", "a.b", "..", "x" * 5000, "eyJ1IjoiYSJ9.中"):
        client = await aiohttp_client(dash.server)
        resp = await client.get("/dashboard", headers={"Cookie": f"qz_session={value}"}, allow_redirects=False)
        assert resp.status == 302, value
        oauth = await client.get("/dashboard/oauth/callback", params={"code": "c", "state": "s"},
                                 headers={"Cookie": f"qz_oauth={value}"})
        assert oauth.status == 400, value


async def test_non_ascii_login_fields_and_oauth_parameters_get_4xx(aiohttp_client, dash):
    client = await aiohttp_client(dash.server)
    page = await client.get("/dashboard/login")
    csrf = csrf_of(await page.text())
    for user, password, token in (("管理员", "密码", csrf), ("admin", "пароль\u0000", csrf), ("admin", "x", "令牌")):
        resp = await client.post("/dashboard/login", data={"csrf": token, "user": user, "password": password,
                                                           "next": "/dashboard"}, allow_redirects=False)
        assert resp.status in (302, 403), (user, resp.status)
        if resp.status == 302:
            assert "failed=1" in resp.headers["Location"]
    await client.get("/dashboard/oauth", allow_redirects=False)
    for params in ({"code": "码", "state": "状态"}, {"code": "abc", "state": "é" * 10},
                   {"code": "a" * 600, "state": "a"}, {"code": "abc", "state": "a" * 129}):
        resp = await client.get("/dashboard/oauth/callback", params=params)
        assert resp.status == 400 and "登录已过期或来源无效" in await resp.text(), params
    form = "application/x-www-form-urlencoded"
    for body, content_type in ((f"csrf={csrf}&user=%ED%A0%80&password=%FF%FE".encode(), form),
                               (f"csrf={csrf}&user=admin&password=x".encode(), f"{form}; charset=nope"),
                               (f"csrf={csrf}&user=".encode() + "管理员".encode("gbk"), f"{form}; charset=utf-8")):
        resp = await client.post("/dashboard/login", data=body, headers={"Content-Type": content_type},
                                 allow_redirects=False)
        assert resp.status in (302, 400), (body, content_type, resp.status)
    broken = await client.post("/dashboard/login", data=b"--x\r\nbroken",
                               headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert broken.status in (400, 403)


async def test_huge_ids_and_calendar_ends_get_chinese_4xx_pages(aiohttp_client, dash):
    client = await oauth_login(aiohttp_client, dash, "zhengjie")
    for n in (2**63, 2**63 - 1, 10**40, "0", "00000000000000000000001" + "0" * 30, "9" * 5000):
        resp = await client.get(f"/dashboard/instructions/{n}")
        assert resp.status == 404 and "没有" in await resp.text(), n
    paths = [f"{p}?from={a}&to={b}" for p in ("/dashboard/stats", "/dashboard", "/dashboard/export/instructions.csv",
                                              "/dashboard/export/bulletin.xlsx")
             for a, b in (("0001-01-01", "0001-01-07"), ("9999-12-25", "9999-12-31"), ("0001-01-01", "9999-12-31"))]
    paths += [f"/dashboard/bulletin?kind={k}&date={d}" for k in ("daily", "weekly")
              for d in ("0001-01-01", "9999-12-31", "9999-12-28")]
    paths += [f"/dashboard/export/bulletin.csv?kind=weekly&date={d}" for d in ("0001-01-01", "9999-12-31")]
    for path in paths:
        resp = await client.get(path)
        assert resp.status == 400 and "日期须在" in await resp.text(), path
    ok = await client.get("/dashboard/stats?from=2000-01-01&to=2099-12-31")
    assert ok.status == 200


@pytest.mark.parametrize("next_value", [
    "/dashboard\r\nSet-Cookie: qz_session=evil", "/dashboard%0d%0aSet-Cookie:x", "//evil.example/dashboard",
    "/\\evil.example", "/dashboard\\..\\..\\evil", "https://evil.example/dashboard", "/dashboard/../../x",
    "/dashboard//evil.example", "/dashboardx\r\n", "\\\\evil.example", "/dashboard/\u2028", "/dashboard?x=\"<",
])
async def test_login_next_never_redirects_away_or_splits_headers(aiohttp_client, dash, next_value):
    client = await aiohttp_client(dash.server)
    page = await client.get("/dashboard/login", params={"next": next_value})
    assert page.status == 200
    resp = await client.post("/dashboard/login", data={"csrf": csrf_of(await page.text()), "user": "admin",
                                                       "password": ADMIN_PASSWORD, "next": next_value},
                             allow_redirects=False)
    assert resp.status == 302
    location = resp.headers["Location"]
    assert location.startswith("/dashboard") and "\r" not in location and "\n" not in location
    assert "//" not in location and "\\" not in location
    cookies = resp.headers.getall("Set-Cookie", [])  # the session only: nothing injected beside it
    assert len(cookies) == 1 and cookies[0].startswith("qz_session=") and "evil" not in cookies[0]
    start = await client.get("/dashboard/oauth", params={"next": next_value}, allow_redirects=False)
    assert start.status == 302
    wecom = await client.get("/dashboard/login", params={"next": next_value}, headers={"User-Agent": "wxwork/4.1"},
                             allow_redirects=False)
    assert wecom.status == 302 and wecom.headers["Location"].startswith("/dashboard/oauth?next=")
    assert parse_qs(urlsplit(wecom.headers["Location"]).query)["next"][0].startswith("/dashboard")


# -- fuzzing every dashboard route -----------------------------------------------------------------------

_GET_ROUTES = ["/dashboard", "/dashboard/login", "/dashboard/oauth", "/dashboard/oauth/callback",
               "/dashboard/instructions/1", "/dashboard/stats", "/dashboard/bulletin",
               "/dashboard/export/instructions.csv", "/dashboard/export/instructions.xlsx",
               "/dashboard/export/bulletin.csv", "/dashboard/export/bulletin.xlsx", "/dashboard/static/dashboard.css"]
_POST_ROUTES = ["/dashboard/login", "/dashboard/logout"]
_KEYS = ["from", "to", "date", "kind", "station", "risk", "fraud", "state", "full", "next", "code", "state", "csrf",
         "user", "password"]
_header_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=60)
_values = hostile_text() | _header_text | st.sampled_from(
    ["0001-01-01", "9999-12-31", "2026-02-30", "weekly", "daily", "all", "1", "high", "DM", str(2**64), "-1"])


@st.composite
def dashboard_requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str], dict[str, str], str | None]:
    method = draw(st.sampled_from(["GET", "GET", "POST"]))
    path = draw(st.sampled_from(_GET_ROUTES if method == "GET" else _POST_ROUTES))
    if draw(st.integers(0, 9)) == 0:
        path = "/dashboard/instructions/" + draw(st.sampled_from([str(2**63), "9" * 30, "0", "١٢"]))
    query = draw(st.dictionaries(st.sampled_from(_KEYS) | _header_text, _values, max_size=4))
    form = draw(st.dictionaries(st.sampled_from(_KEYS) | _header_text, _values, max_size=4))
    cookie = draw(st.sampled_from(["qz_session", "qz_oauth", "qz_login_csrf", "other"]))
    value = draw(st.none() | _header_text)
    return method, path, query, form, None if value is None else f"{cookie}={value}"


def _encoded(pairs: dict[str, str]) -> str:
    """key=value&… percent-encoded byte by byte, lone surrogates included (as invalid UTF-8, which a
    client can send even if Python's own encoders refuse to)."""
    return "&".join(f"{quote(k.encode('utf-8', 'surrogatepass'))}={quote(v.encode('utf-8', 'surrogatepass'))}"
                    for k, v in pairs.items())


async def _fuzz_dashboard(client, name: str, examples: int) -> None:
    async def case(value) -> None:
        method, path, query, form, cookie = value
        headers = {"Cookie": cookie.encode("utf-8", "surrogatepass").decode("latin-1")} if cookie else {}
        url = f"{path}?{_encoded(query)}" if query else path
        if method == "GET":
            resp = await client.get(url, headers=headers, allow_redirects=False)
        else:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            resp = await client.post(url, data=_encoded(form).encode(), headers=headers, allow_redirects=False)
        assert resp.status < 500, (method, path, query, form, cookie, resp.status, await resp.text())
        location = resp.headers.get("Location", "")
        assert not location or location.startswith("/dashboard") or location.startswith("http://127.0.0.1:"), \
            location

    await _fuzz(name, examples, dashboard_requests(), case)


async def test_fuzz_every_dashboard_route_anonymously(aiohttp_client, dash):
    await _fuzz_dashboard(await aiohttp_client(dash.server), "dashboard routes, anonymous", 800)


async def test_fuzz_every_dashboard_route_logged_in(aiohttp_client, dash):
    await submit(dash, "DM", "DM-01")
    client, resp = await admin_login(aiohttp_client, dash)
    assert resp.status == 302
    await _fuzz_dashboard(client, "dashboard routes, logged in as the center", 800)
