"""Who may see what: every route and who may call it, the authorisation matrix of every chat action,
and personal data and secrets kept out of group chats, logs and metrics."""

from __future__ import annotations

import hmac
import logging

import pytest

from bot.logs import JsonFormatter, setup_logging
from handlers import auth
from tests.conftest import services
from tests.helpers import AUTH, TOKEN, eventually, instruction, sim_messages, wait_for_messages, wait_state

TARGET = instruction()["target"]
PERSONAL = [TARGET["name"], TARGET["phone"], TARGET["id_number"], TARGET["address"]]

# Every route the bot serves and what guards it. A new route fails this test until it is listed here.
ROUTES = {
    ("POST", "/api/v1/instructions"): "token",
    ("GET", "/api/v1/instructions/{id}"): "token",
    ("GET", "/api/v1/directory"): "token",
    ("POST", "/api/v1/rosters"): "token",
    ("GET", "/api/v1/rosters/on-duty"): "token",
    ("GET", "/api/v1/campaigns"): "token",
    ("POST", "/api/v1/campaigns"): "token",
    ("GET", "/api/v1/campaigns/{name}"): "token",
    ("PUT", "/api/v1/campaigns/{name}"): "token",
    ("POST", "/api/v1/campaigns/{name}/disable"): "token",
    ("POST", "/api/v1/campaigns/{name}/enable"): "token",
    ("GET", "/api/v1/campaigns/{name}/preview"): "token",
    ("POST", "/api/v1/campaigns/{name}/run"): "token",
    ("GET", "/api/v1/campaigns/{name}/runs/{run_id}"): "token",
    ("GET", "/api/v1/openapi.json"): "open",  # the API's description: no data, no token
    ("GET", "/dashboard/login"): "open",  # the login page
    ("POST", "/dashboard/login"): "open",  # checks the local password (CSRF-protected)
    ("GET", "/dashboard/oauth"): "open",  # sends the browser to WeCom's OAuth page
    ("GET", "/dashboard/oauth/callback"): "open",  # WeCom's single-use code, checked with auth/getuserinfo
    ("GET", "/dashboard/static"): "open",  # CSS
    ("POST", "/dashboard/logout"): "login",
    ("GET", "/dashboard"): "login",
    ("GET", "/dashboard/instructions/{number}"): "login",
    ("GET", "/dashboard/stats"): "login",
    ("GET", "/dashboard/bulletin"): "login",
    ("GET", "/dashboard/export/instructions.{fmt}"): "login",
    ("GET", "/dashboard/export/bulletin.{fmt}"): "login",
    ("GET", "/healthz"): "open",  # counts only
    ("GET", "/metrics"): "open",  # counters by risk level, channel, purpose and error kind
    ("GET", "/wecom/callback"): "signature",
    ("POST", "/wecom/callback"): "signature",
}


async def test_every_route_is_known_and_the_api_needs_a_configured_token(bot):
    served = {(r.method, r.resource.canonical) for r in bot.server.app.router.routes() if r.method != "HEAD"}
    assert served == set(ROUTES)
    for path in ("/_sim/messages", "/_sim/faults", "/_sim/tokens/revoke", "/_sim/chat", "/cgi-bin/gettoken"):
        assert (await bot.get(path)).status == 404  # the simulator's controls are never the bot's
        assert (await bot.post(path, json={})).status in (404, 405)
    wrong = ["", "Bearer", "Bearer ", "Bearer nope-nope-nope", f"Basic {TOKEN}", f"bearer{TOKEN}", f"Bearer {TOKEN}x",
             f"Bearer {TOKEN[:-1]}", "Bearer second-token-for-rotatio"]
    for (method, path), guard in ROUTES.items():
        if guard == "login":  # without a session: sent to the login page, never served
            url = path.replace("{number}", "1").replace("{fmt}", "xlsx")
            resp = await bot.request(method, url, allow_redirects=False)
            assert resp.status in (302, 303, 401, 403), (method, url, resp.status)
            assert "/dashboard/login" in resp.headers.get("Location", "/dashboard/login"), (method, url)
        if guard != "token":
            continue
        url = path.replace("{id}", "1").replace("{name}", "no-such-campaign").replace("{run_id}", "1")
        for header in wrong:
            resp = await bot.request(method, url, json=instruction(), headers={"Authorization": header})
            assert resp.status == 401, (method, url, header)
        for token in (TOKEN, "second-token-for-rotation"):  # both valid at once: rotation without a gap
            resp = await bot.request(method, url, json=instruction(), headers={"Authorization": f"Bearer {token}"})
            assert resp.status != 401, (method, url, token)


async def test_token_check_compares_every_configured_token_in_constant_time(bot, monkeypatch):
    compared = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(len(b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    for header in (f"Bearer {TOKEN}", "Bearer second-token-for-rotation", "Bearer wrong-token-000"):
        compared.clear()
        await bot.get("/api/v1/directory", headers={"Authorization": header})
        assert len(compared) == 2  # no early exit on a match: the time does not tell which token matched


USERS = {  # the demo district; the instruction is for station DM, grid DM-01
    "liuhong": "grid worker of the grid, assigned",
    "wangqiang": "duty officer of the station, assigned",
    "lina": "officer of the station",
    "chenlong": "leader of the station",
    "zhengjie": "the center",
    "zhangwei": "grid worker of another grid of the station",
    "zhaolei": "officer of another station",
    "sunli": "grid worker of another station",
    "visitor": "in WeCom, not in the directory",
}
ACT = {"liuhong", "wangqiang", "lina", "chenlong", "zhengjie"}  # sign, report, query
MANAGE = {"wangqiang", "lina", "chenlong", "zhengjie"}  # close, re-assign
FULL_VIEW = MANAGE | {"liuhong"}  # query shows the full name and phone to assignees and managers


def _reply(result: dict) -> str:
    reply = result["reply"] or ""
    return reply.split("<Content><![CDATA[")[1].split("]]></Content>")[0] if "<Content>" in reply else ""


async def _new(bot) -> int:
    resp = await bot.post("/api/v1/instructions", json=instruction(), headers=AUTH)
    number = (await resp.json())["id"]
    await wait_state(bot, number, "dispatched")
    return number


async def _audit(bot, number: int, userid: str) -> list[str]:
    detail = await (await bot.get(f"/api/v1/instructions/{number}", headers=AUTH)).json()
    return [e["action"] for e in detail["timeline"] if e["actor"] == userid]


@pytest.mark.parametrize("userid", list(USERS))
async def test_authorisation_matrix_of_every_action(bot, sim, sim_client, userid):
    if userid == "visitor":
        sim.add_user("visitor", "访客")
    shared = await _new(bot)
    checks = {
        "签收": (f"签收 {shared}", userid in ACT, "ack"),
        "反馈": (f"反馈 {shared} 电话 无法联系", userid in ACT, "report"),
        "查询": (f"查询 {shared}", userid in ACT, None),
        "转派": (f"转派 {await _new(bot)} zhangwei", userid in MANAGE, "reassign"),
    }
    closing = await _new(bot)
    await sim.send_text("liuhong", f"反馈 {closing} 见面 劝阻成功")
    checks["结案"] = (f"结案 {closing}", userid in MANAGE, "close")
    for verb, (text, allowed, action) in checks.items():
        number = int(text.split()[1])
        before = len(await _audit(bot, number, userid))
        reply = _reply(await sim.send_text(userid, text))
        audit = (await _audit(bot, number, userid))[before:]  # what this command did
        if allowed:
            assert "抱歉" not in reply and "无权" not in reply, (verb, reply)
            if action:
                assert action in audit, (verb, audit)
        else:
            assert "抱歉" in reply or "无权" in reply or "通讯录" in reply, (verb, reply)
            assert action not in audit and set(audit) <= {"refused"}, (verb, audit)
        if verb == "查询" and allowed:
            assert (TARGET["name"] in reply) == (userid in FULL_VIEW), reply
            assert (TARGET["phone"] in reply) == (userid in FULL_VIEW), reply
    tasks = _reply(await sim.send_text(userid, "我的任务"))
    assert ("通讯录" in tasks) == (userid == "visitor")
    assert TARGET["phone"] not in tasks


async def test_group_chats_never_show_personal_data(bot, sim, sim_client):
    numbers = []
    for jurisdiction in ({"station": "DM", "grid": "DM-01"}, {"station": "LH", "grid": "LH-01"},
                         {"station": "DM", "grid": "DM-99"}, {"station": "XX"}):
        resp = await bot.post("/api/v1/instructions", json=instruction(jurisdiction=jurisdiction), headers=AUTH)
        numbers.append((await resp.json())["id"])
    await wait_state(bot, numbers[0], "dispatched")
    await sim.send_text("liuhong", f"签收 {numbers[0]}")
    await sim.send_text("liuhong", f"反馈 {numbers[0]} 见面 劝阻成功 挽损1万 {TARGET['name']}已醒悟")
    await sim.send_text("wangqiang", f"结案 {numbers[0]}")
    sim.add_fault("message/send", errcode=81013, times=1)  # a failure report to the center's group as well
    resp = await bot.post("/api/v1/instructions", json=instruction(jurisdiction={"station": "DM"}), headers=AUTH)
    await wait_for_messages(sim_client, 1, chatid="centercmd")
    await eventually(lambda: sim_messages(sim_client, chatid="centercmd"),
                     lambda m: any("推送失败" in x["body"]["markdown"]["content"] for x in m), what="failure report")
    groups = [m for m in await sim_messages(sim_client) if m["api"] in ("appchat/send", "webhook/send")]
    assert len(groups) >= 8
    print(f"access drill: {len(groups)} group messages scanned for personal data")
    for m in groups:
        content = m["body"]["markdown"]["content"]
        for value in PERSONAL:
            assert value not in content, (value, content)


@pytest.fixture
def debug_logging(caplog):
    """Logging as `bot.py run` sets it up with [logging] level = "DEBUG", captured by caplog."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logging.getLogger("aiosqlite").level
    setup_logging("DEBUG", "json")
    root.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.DEBUG)
    yield caplog
    root.handlers[:], level, sqlite_level = saved
    root.setLevel(level)
    logging.getLogger("aiosqlite").setLevel(sqlite_level)


async def test_logs_and_metrics_carry_no_personal_data_and_no_secrets(bot, sim, sim_client, debug_logging):
    caplog = debug_logging
    settings = services(bot).settings
    number = await _new(bot)
    await sim.send_text("liuhong", f"签收 {number}")
    await sim.send_text("zhaolei", f"结案 {number}")  # refused: logged
    await sim.send_text("liuhong", f"查询 {number}")  # full view for her, in the reply only
    sim.revoke_tokens()  # a token refresh is logged
    sim.add_fault("appchat/send", errcode=86001, times=1)
    await _new_failing(bot)
    secrets = [settings.wecom.corp_secret, settings.wecom.token, settings.wecom.encoding_aes_key,
               *settings.api.tokens, *[t for t in sim.tokens._expiry]]
    formatter = JsonFormatter()
    lines = [formatter.format(r) for r in caplog.records
             if not r.name.startswith(("wecom_sim", "aiohttp.access"))]  # the bot's own lines
    assert any("refused" in line for line in lines) and any("token" in line for line in lines)
    print(f"access drill: {len(lines)} log lines at DEBUG scanned for {len(PERSONAL) + len(secrets)} values")
    for line in lines:
        for value in [*PERSONAL, *secrets]:
            assert value not in line, (value, line)
    metrics = (await (await bot.get("/metrics")).read()).decode()
    assert "quanzu_messages_sent_total" in metrics
    for value in [*PERSONAL, *secrets, "liuhong", "wangqiang"]:
        assert value not in metrics


async def _new_failing(bot) -> None:
    resp = await bot.post("/api/v1/instructions", json=instruction(), headers=AUTH)
    number = (await resp.json())["id"]

    async def failed():
        detail = await (await bot.get(f"/api/v1/instructions/{number}", headers=AUTH)).json()
        return detail["delivery_failed"]

    await eventually(failed, bool, what="a failed delivery")


def test_staff_notes_are_redacted_for_group_chats():
    from domain.masking import redact
    from domain.models import Target

    target = Target("唐小明", "13812348000", "500101195901011234", "东门社区", 67)
    note = "唐小明（13812348000，500101195901011234）已醒悟；其子唐大明 13900001111 在场，身份证 11010519491231002X"
    shown = redact(note, target)
    for value in ("唐小明", "13812348000", "500101195901011234", "13900001111", "11010519491231002X"):
        assert value not in shown
    assert "唐某" in shown and "138****8000" in shown and "139****1111" in shown and "挽损" not in shown
    assert redact("挽损10万 老人已醒悟", target) == "挽损10万 老人已醒悟"
