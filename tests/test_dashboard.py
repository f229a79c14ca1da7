"""The dashboard over real HTTP: WeCom OAuth through the simulator, the local admin, and who sees what."""

from __future__ import annotations

import csv
import io

import aiohttp
import pytest
from openpyxl import load_workbook

from tests.helpers import ADMIN_PASSWORD, AUTH, instruction, wait_state


async def submit(bot, station: str, grid: str) -> int:
    resp = await bot.post("/api/v1/instructions", headers=AUTH,
                          json=instruction(jurisdiction={"station": station, "grid": grid}))
    number = (await resp.json())["id"]
    await wait_state(bot, number, "dispatched")
    return number


async def oauth_login(aiohttp_client, dash, userid: str):
    """A fresh browser-like client (own cookies) logged in as userid through the simulator's OAuth pages."""
    client = await aiohttp_client(dash.server)
    start = await client.get("/dashboard/oauth", params={"next": "/dashboard"}, allow_redirects=False)
    assert start.status == 302
    authorize = start.headers["Location"]
    assert authorize.endswith("#wechat_redirect") and "scope=snsapi_base" in authorize
    async with aiohttp.ClientSession() as wecom, \
            wecom.get(authorize.split("#")[0] + f"&sim_user={userid}", allow_redirects=False) as picked:
        assert picked.status == 302
        callback = picked.headers["Location"]
    back = await client.get(callback[callback.index("/dashboard"):], allow_redirects=False)
    assert (back.status, back.headers["Location"]) == (302, "/dashboard")
    return client


async def admin_login(aiohttp_client, dash, password: str = ADMIN_PASSWORD):
    client = await aiohttp_client(dash.server)
    page = await client.get("/dashboard/login")
    csrf = (await page.text()).split('name="csrf" value="')[1].split('"')[0]
    resp = await client.post("/dashboard/login", data={"csrf": csrf, "user": "admin", "password": password,
                                                        "next": "/dashboard"}, allow_redirects=False)
    return client, resp


# Who may open what. ok: 200; 403: refused; "login": sent to the login page.
_PAGES = ("board", "dm_detail", "lh_detail", "stats", "bulletin", "export_xlsx", "export_csv_full",
          "export_bulletin")
_MATRIX = {
    "anonymous": dict.fromkeys(_PAGES, "login"),
    "zhengjie": dict.fromkeys(_PAGES, 200),  # the center
    "admin": dict.fromkeys(_PAGES, 200),  # the center's local account
    "chenlong": {**dict.fromkeys(_PAGES, 200), "lh_detail": 403, "export_csv_full": 403},  # 东门 leader
    "wangqiang": {**dict.fromkeys(_PAGES, 200), "lh_detail": 403, "export_csv_full": 403},  # 东门 officer
    "zhaolei": {**dict.fromkeys(_PAGES, 200), "dm_detail": 403, "export_csv_full": 403},  # 龙湖 officer
    "liuhong": {**dict.fromkeys(_PAGES, 403), "board": 200, "dm_detail": 200},  # grid worker, assigned to the 东门 one
    "zhangwei": {**dict.fromkeys(_PAGES, 403), "board": 200},  # grid worker of another grid
}
# Which instructions each viewer's board and export list: D = the 东门 one, L = the 龙湖 one.
_SEES = {"zhengjie": "DL", "admin": "DL", "chenlong": "D", "wangqiang": "D", "zhaolei": "L", "liuhong": "D",
         "zhangwei": ""}


@pytest.mark.parametrize("who", list(_MATRIX))
async def test_permissions_on_every_page_and_export(aiohttp_client, dash, who):
    dm, lh = await submit(dash, "DM", "DM-01"), await submit(dash, "LH", "LH-01")
    paths = {
        "board": "/dashboard", "dm_detail": f"/dashboard/instructions/{dm}",
        "lh_detail": f"/dashboard/instructions/{lh}",
        "stats": "/dashboard/stats", "bulletin": "/dashboard/bulletin?kind=daily",
        "export_xlsx": "/dashboard/export/instructions.xlsx?state=all",
        "export_csv_full": "/dashboard/export/instructions.csv?state=all&full=1",
        "export_bulletin": "/dashboard/export/bulletin.csv?kind=weekly",
    }
    if who == "anonymous":
        client = await aiohttp_client(dash.server)
    elif who == "admin":
        client, _ = await admin_login(aiohttp_client, dash)
    else:
        client = await oauth_login(aiohttp_client, dash, who)
    pages = {}
    for name, path in paths.items():
        resp = await client.get(path, allow_redirects=False)
        if resp.status == 302:
            assert resp.headers["Location"].startswith("/dashboard/login?next=")
            pages[name] = "login"
        else:
            pages[name] = resp.status
        if resp.status == 200:
            pages[name + ":body"] = await resp.read()
    assert {k: v for k, v in pages.items() if ":" not in k} == _MATRIX[who]
    if who == "anonymous":
        return

    board = pages["board:body"].decode()
    listed = "".join(code for code, number in (("D", dm), ("L", lh)) if f">#{number}</a>" in board)
    assert listed == _SEES[who]
    assert "唐小明" not in board and "13812348000" not in board and "唐某" in board if listed else True
    if pages.get("dm_detail") == 200:  # the detail is unmasked for whoever may open it
        assert "唐小明" in pages["dm_detail:body"].decode() and "13812348000" in pages["dm_detail:body"].decode()
    if "export_xlsx:body" in pages:
        sheet = load_workbook(io.BytesIO(pages["export_xlsx:body"]), read_only=True)["指令明细"]
        rows = list(sheet.iter_rows(values_only=True))
        assert rows[0][:3] == ("编号", "指令编号", "接收时间")
        assert "".join(code for code, n in (("D", dm), ("L", lh)) if n in [r[0] for r in rows[1:]]) == _SEES[who]
        assert {r[9] for r in rows[1:]} == {"唐某"}  # masked unless the center asks for full data
    if "export_csv_full:body" in pages:
        text = pages["export_csv_full:body"].decode("utf-8-sig")
        assert "唐小明" in text and "13812348000" in text


async def test_admin_login_needs_the_password_and_the_form_token(aiohttp_client, dash):
    _, wrong = await admin_login(aiohttp_client, dash, "guess")
    assert wrong.status == 302 and "failed=1" in wrong.headers["Location"]
    forged = await aiohttp_client(dash.server)
    resp = await forged.post("/dashboard/login", data={"csrf": "x", "user": "admin", "password": ADMIN_PASSWORD})
    assert resp.status == 403
    client, ok = await admin_login(aiohttp_client, dash)
    assert ok.status == 302
    cookie = ok.cookies["qz_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/dashboard"
    assert (await client.get("/dashboard")).status == 200


async def test_logout_needs_the_session_token_and_forged_cookies_are_ignored(aiohttp_client, dash):
    client = await oauth_login(aiohttp_client, dash, "zhengjie")
    page = await (await client.get("/dashboard")).text()
    assert (await client.post("/dashboard/logout", data={"csrf": "wrong"})).status == 403
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    out = await client.post("/dashboard/logout", data={"csrf": csrf}, allow_redirects=False)
    assert (out.status, out.headers["Location"]) == (302, "/dashboard/login")
    assert (await client.get("/dashboard", allow_redirects=False)).status == 302

    forger = await aiohttp_client(dash.server)
    forger.session.cookie_jar.update_cookies({"qz_session": "eyJ1IjoiemhlbmdqaWUiLCJleHAiOjk5OTk5OTk5OTl9.AAAA"})
    assert (await forger.get("/dashboard", allow_redirects=False)).status == 302


async def test_oauth_refuses_a_wrong_state_and_a_used_code(aiohttp_client, dash, sim):
    client = await aiohttp_client(dash.server)
    await client.get("/dashboard/oauth", allow_redirects=False)
    code = sim.oauth.issue("zhengjie", sim.clock.now())
    bad = await client.get("/dashboard/oauth/callback", params={"code": code, "state": "forged"})
    assert bad.status == 400 and "登录已过期" in await bad.text()

    start = await client.get("/dashboard/oauth", allow_redirects=False)
    state = start.headers["Location"].split("state=")[1].split("&")[0].split("#")[0]
    used = sim.oauth.issue("zhengjie", sim.clock.now())
    sim.oauth.redeem(used, sim.clock.now())
    refused = await client.get("/dashboard/oauth/callback", params={"code": used, "state": state})
    assert refused.status == 403 and "企业微信未能确认你的身份" in await refused.text()


async def test_board_filters_and_highlights_the_overdue(aiohttp_client, dash, sim):
    high = await submit(dash, "DM", "DM-01")
    resp = await dash.post("/api/v1/instructions", headers=AUTH,
                           json=instruction(risk_level="low", jurisdiction={"station": "LH", "grid": "LH-02"}))
    low = (await resp.json())["id"]
    await wait_state(dash, low, "dispatched")
    sim.clock.advance(6 * 60)  # the high-risk one is past its 5-minute sign-for deadline; the low one is not
    client = await oauth_login(aiohttp_client, dash, "zhengjie")
    page = await (await client.get("/dashboard")).text()
    rows = page.split('data-testid="board-row"')
    overdue_row = next(r for r in rows if f">#{high}</a>" in r)
    assert "超时" in overdue_row and 'class="overdue risk-high"' in rows[rows.index(overdue_row) - 1][-40:]
    assert 'data-testid="overdue-count"><b>1</b>' in page
    filtered = await (await client.get("/dashboard", params={"risk": "low"})).text()
    assert f">#{low}</a>" in filtered and f">#{high}</a>" not in filtered
    by_station = await (await client.get("/dashboard", params={"station": "DM"})).text()
    assert f">#{high}</a>" in by_station and f">#{low}</a>" not in by_station


async def test_statistics_page_and_bulletin_export_hold_the_figures(aiohttp_client, dash, sim):
    number = await submit(dash, "DM", "DM-01")
    await sim.send_text("liuhong", f"反馈 {number} 上门 劝阻成功 挽损10万")
    await wait_state(dash, number, "resolved")
    client = await oauth_login(aiohttp_client, dash, "zhengjie")
    page = await (await client.get("/dashboard/stats")).text()
    assert "<svg" in page and "东门派出所" in page and "10万元" in page
    export = await client.get("/dashboard/export/bulletin.csv")
    text = (await export.read()).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert ["接收指令(条)", "1"] in rows and ["劝阻成功", "1"] in rows and ["挽损(元)", "100000.0"] in rows
