"""The simulator is as strict as WeCom, no more and no less: each rule through its real HTTP API.

Every test names the WeCom doc page the rule comes from (https://developer.work.weixin.qq.com/document/
path/<N>); docs/wecom-simulator.md lists them all.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest

from wecom_sim import SimClock, Simulator, SimulatorConfig, create_simulator_app

START = 1_700_000_000.0
CALLBACK = "http://bot.example.test:8443/wecom/callback"
CORP = "wwdemo0000000001"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


@pytest.fixture
def simulator() -> Simulator:
    # A freshly created app: no 客户联系 permission, trusted domain = the callback URL's host.
    sim = Simulator(SimulatorConfig(callback_url=CALLBACK), clock=SimClock(START, frozen=True))
    sim.add_user("zhangsan", "张三")
    sim.add_user("lisi", "李四")
    sim.add_appchat("station01", "东门派出所", ["zhangsan", "lisi"])
    sim.add_robot("robot-key-1", "宣防机器人", ["zhangsan", "lisi"])
    sim.add_customer_group("wrElders0001", "东门老年人防骗群", "zhangsan")
    sim.add_customer_group("wrShops0001", "东门商户群", "lisi")
    return sim


@pytest.fixture
async def client(aiohttp_client, simulator):
    return await aiohttp_client(create_simulator_app(simulator))


async def token_of(client) -> str:
    body = await (await client.get("/cgi-bin/gettoken", params={"corpid": CORP, "corpsecret": "demo-secret"})).json()
    return body["access_token"]


async def call(client, api: str, body: Any, token: str | None = None, **params: str) -> dict[str, Any]:
    if token is not None:
        params["access_token"] = token
    resp = await client.post(f"/cgi-bin/{api}", params=params, data=json.dumps(body, ensure_ascii=False))
    assert resp.status == 200  # WeCom answers every outcome with HTTP 200 and an errcode
    return await resp.json()


async def grant(client, **settings: Any) -> dict[str, Any]:
    resp = await client.post("/_sim/app", json=settings)
    assert resp.status == 200
    return await resp.json()


async def recorded(client, **filters: str) -> list[dict[str, Any]]:
    return (await (await client.get("/_sim/messages", params=filters)).json())["messages"]


GROUP_PUSH = {"chat_type": "group", "sender": "zhangsan", "chat_id_list": ["wrElders0001"],
              "text": {"content": "警惕冒充公检法诈骗"}}


# --- 客户联系: 48002 without the permission (全局错误码 90313 item 4; 92135, 92120) ---------------------------


@pytest.mark.parametrize(("api", "body"), [
    ("externalcontact/add_msg_template", GROUP_PUSH),
    ("externalcontact/get_groupmsg_send_result", {"msgid": "msgx"}),
    ("externalcontact/groupchat/list", {"limit": 10}),
])
async def test_customer_contact_apis_answer_48002_until_the_app_is_granted(client, api, body):
    token = await token_of(client)
    refused = await call(client, api, body, token)
    assert refused["errcode"] == 48002 and "query?e=48002" in refused["errmsg"]
    assert (await call(client, api, body))["errcode"] == 41001  # the token is checked first, as everywhere
    assert await grant(client, customer_contact=True) == {
        "customer_contact": True, "trusted_domain": None, "oauth_domain": "bot.example.test:8443"}
    assert (await call(client, api, body, token))["errcode"] != 48002
    await grant(client, customer_contact=False)  # the admin takes the app off 可调用应用 again
    assert (await call(client, api, body, token))["errcode"] == 48002


async def test_a_refused_push_creates_no_task_and_a_chunked_body_is_read_whole(client):
    token = await token_of(client)
    assert (await call(client, "externalcontact/add_msg_template", GROUP_PUSH, token))["errcode"] == 48002
    assert await recorded(client, api="externalcontact/add_msg_template") == []
    assert (await (await client.get("/_sim/groupmsg")).json())["tasks"] == []
    await grant(client, customer_contact=True)

    async def in_pieces():  # chunked transfer encoding, split inside a multi-byte character
        raw = json.dumps(GROUP_PUSH, ensure_ascii=False).encode()
        for start in range(0, len(raw), 7):
            yield raw[start:start + 7]

    resp = await client.post("/cgi-bin/externalcontact/add_msg_template", params={"access_token": token},
                             data=in_pieces())
    body = await resp.json()
    assert body["errcode"] == 0 and body["fail_list"] == []
    (task,) = (await (await client.get("/_sim/groupmsg")).json())["tasks"]
    assert task["chat_ids"] == ["wrElders0001"] and task["text"] == "警惕冒充公检法诈骗"


@pytest.mark.parametrize("settings", [
    {"customer_contact": "yes"}, {"customer_contact": 1}, {"trusted_domain": ""}, {"trusted_domain": "a.test/x"},
    {"trusted_domain": 5}, {"granted": True},
])
async def test_app_settings_endpoint_refuses_nonsense(client, simulator, settings):
    resp = await client.post("/_sim/app", json=settings)
    assert resp.status == 400 and "error" in await resp.json()
    assert simulator.config.customer_contact is False and simulator.config.trusted_domain is None
    assert (await client.post("/_sim/app", data=b"[1,")).status == 400


# --- accepts what WeCom accepts ----------------------------------------------------------------------------


async def test_chat_type_single_is_accepted_and_unknown_customers_come_back_in_fail_list(client):
    # 创建企业群发 (92135): chat_type single (the default) sends to customers by external_userid.
    token = await token_of(client)
    await grant(client, customer_contact=True)
    single = {"external_userid": ["wmAAAA0001", "wmAAAA0002", "wmAAAA0001"], "sender": "ZhangSan",
              "text": {"content": "提醒"}}
    body = await call(client, "externalcontact/add_msg_template", single, token)
    assert body["errcode"] == 0 and body["msgid"]
    assert body["fail_list"] == ["wmAAAA0001", "wmAAAA0002"]  # the simulated corp has no customers
    assert (await call(client, "externalcontact/add_msg_template", {**single, "chat_type": "single"},
                       token))["errcode"] == 0
    for bad, errcode in [({**single, "chat_type": "groups"}, 40058), ({**single, "external_userid": "wm1"}, 40058),
                         ({**single, "sender": "nobody"}, 40003), ({**single, "text": {"content": ""}}, 44004),
                         ({**single, "external_userid": ["wm"] * 10_001}, 40058)]:
        assert (await call(client, "externalcontact/add_msg_template", bad, token))["errcode"] == errcode


async def test_send_result_limit_over_1000_falls_back_to_the_default_500(client, simulator):
    # 获取群发记录列表 (93338): limit "最大值1000，默认值500，超过最大值时取默认值".
    for n in range(620):
        simulator.add_customer_group(f"wrMany{n:04d}", f"群{n}", "lisi")
    token = await token_of(client)
    await grant(client, customer_contact=True)
    push = {**GROUP_PUSH, "sender": "lisi", "chat_id_list": [f"wrMany{n:04d}" for n in range(620)]}
    msgid = (await call(client, "externalcontact/add_msg_template", push, token))["msgid"]
    for limit, size, cursor in [(5000, 500, "500"), (1001, 500, "500"), (0, 500, "500"), (1000, 620, ""),
                                (7, 7, "7")]:
        page = await call(client, "externalcontact/get_groupmsg_send_result", {"msgid": msgid, "limit": limit}, token)
        assert page["errcode"] == 0 and (len(page["send_list"]), page["next_cursor"]) == (size, cursor), limit
    rest = await call(client, "externalcontact/get_groupmsg_send_result",
                      {"msgid": msgid, "cursor": "500"}, token)
    assert len(rest["send_list"]) == 120 and rest["next_cursor"] == ""
    assert (await call(client, "externalcontact/get_groupmsg_send_result",
                       {"msgid": msgid, "limit": "10"}, token))["errcode"] == 40058


async def test_groupchat_list_filters_by_owner_and_pages_within_its_documented_range(client, simulator):
    # 获取客户群列表 (92120): limit 1..1000, owner_filter.userid_list ≤ 100, status 0 跟进人正常.
    token = await token_of(client)
    await grant(client, customer_contact=True)
    everything = await call(client, "externalcontact/groupchat/list", {"status_filter": 0, "limit": 1000}, token)
    assert everything["group_chat_list"] == [{"chat_id": "wrElders0001", "status": 0},
                                             {"chat_id": "wrShops0001", "status": 0}]
    first = await call(client, "externalcontact/groupchat/list", {"limit": 1}, token)
    assert first["group_chat_list"] == [{"chat_id": "wrElders0001", "status": 0}] and first["next_cursor"]
    second = await call(client, "externalcontact/groupchat/list", {"limit": 1, "cursor": first["next_cursor"]}, token)
    assert second["group_chat_list"] == [{"chat_id": "wrShops0001", "status": 0}] and second["next_cursor"] == ""
    mine = await call(client, "externalcontact/groupchat/list",
                      {"limit": 10, "owner_filter": {"userid_list": ["LISI"]}}, token)
    assert mine["group_chat_list"] == [{"chat_id": "wrShops0001", "status": 0}]
    left = await call(client, "externalcontact/groupchat/list", {"limit": 10, "status_filter": 1}, token)
    assert left["group_chat_list"] == []  # nobody has left the simulated corp
    for bad in [{}, {"limit": 0}, {"limit": 1001}, {"limit": 10, "status_filter": 4},
                {"limit": 10, "owner_filter": {"userid_list": ["u"] * 101}}, {"limit": 10, "cursor": "x"}]:
        assert (await call(client, "externalcontact/groupchat/list", bad, token))["errcode"] == 40058, bad


async def test_groupchat_list_without_owner_filter_answers_81017_beyond_1000_members(client, simulator):
    token = await token_of(client)
    await grant(client, customer_contact=True)
    for n in range(1000):
        simulator.add_user(f"u{n:04d}", f"成员{n}")
    assert (await call(client, "externalcontact/groupchat/list", {"limit": 10}, token))["errcode"] == 81017
    scoped = await call(client, "externalcontact/groupchat/list",
                        {"limit": 10, "owner_filter": {"userid_list": ["zhangsan"]}}, token)
    assert scoped["errcode"] == 0 and len(scoped["group_chat_list"]) == 1


# --- web OAuth: state and trusted domain (91022; 全局错误码 50001) ----------------------------------------------


def authorize_url(redirect_uri: str, state: str, **extra: str) -> str:
    query = {"appid": CORP, "redirect_uri": redirect_uri, "response_type": "code", "scope": "snsapi_base",
             "state": state, "agentid": "1000002", "sim_user": "zhangsan", **extra}
    return "/connect/oauth2/authorize?" + urlencode(query)


@pytest.mark.parametrize("state", ["a-b", "a_b", "ab=", "状态", "a b", "x" * 129, "A1" * 65])
async def test_oauth_refuses_a_state_that_is_not_alphanumeric_or_over_128_bytes(client, state):
    resp = await client.get(authorize_url("http://bot.example.test:8443/dashboard/oauth/callback", state),
                            allow_redirects=False)
    assert resp.status == 400 and "state 只能包含" in await resp.text()


@pytest.mark.parametrize("state", ["", "0", "Ab9" * 42 + "xy"])
async def test_oauth_redirects_with_an_alphanumeric_state_of_up_to_128_bytes(client, state):
    resp = await client.get(authorize_url("http://bot.example.test:8443/dashboard/oauth/callback?next=%2F", state),
                            allow_redirects=False)
    assert resp.status == 302
    target = urlsplit(resp.headers["Location"])
    assert (target.netloc, target.path) == ("bot.example.test:8443", "/dashboard/oauth/callback")
    query = parse_qs(target.query, keep_blank_values=True)
    assert query["state"] == [state] and query["next"] == ["/"] and query["code"][0]


@pytest.mark.parametrize("redirect_uri", [
    "http://bot.example.test/dashboard/oauth/callback",  # the port is part of the trusted domain
    "http://bot.example.test:8444/dashboard/oauth/callback",
    "http://www.bot.example.test:8443/dashboard/oauth/callback",  # a subdomain is another domain
    "http://evil.example/dashboard/oauth/callback?x=bot.example.test:8443",
    "https://bot.example.test:8443@evil.example/dashboard/oauth/callback",
])
async def test_oauth_refuses_a_redirect_off_the_trusted_domain_with_50001(client, redirect_uri):
    resp = await client.get(authorize_url(redirect_uri, "abc"), allow_redirects=False)
    page = await resp.text()
    assert resp.status == 400 and "50001" in page and "可信域名" in page and "Location" not in resp.headers


async def test_the_trusted_domain_is_configurable_and_follows_the_callback_url_by_default(client, simulator):
    elsewhere = "https://quanzu.city.example/dashboard/oauth/callback"
    assert (await client.get(authorize_url(elsewhere, "abc"), allow_redirects=False)).status == 400
    assert (await grant(client, trusted_domain="Quanzu.City.Example"))["oauth_domain"] == "quanzu.city.example"
    assert (await client.get(authorize_url(elsewhere, "abc"), allow_redirects=False)).status == 302
    await grant(client, trusted_domain=None)
    simulator.config.callback_url = "https://quanzu.city.example/wecom/callback"  # the bot moved
    assert (await client.get(authorize_url(elsewhere, "abc"), allow_redirects=False)).status == 302


# --- message length: refused, not cut (90236, 90248, 91770) ------------------------------------------------


async def test_markdown_over_its_limit_is_refused_on_every_channel_and_nothing_is_delivered(client):
    token = await token_of(client)
    app = {"touser": "zhangsan", "msgtype": "markdown", "agentid": 1000002}
    chat = {"chatid": "station01", "msgtype": "markdown"}
    robot = {"msgtype": "markdown"}
    at_limit = [("message/send", app, 2048, {"access_token": token}), ("appchat/send", chat, 2048,
                {"access_token": token}), ("webhook/send", robot, 4096, {"key": "robot-key-1"})]
    for api, base, limit, params in at_limit:
        fits = "劝" * (limit // 3) + "x" * (limit % 3)  # exactly `limit` bytes of UTF-8
        over = fits + "x"
        assert (await call(client, api, {**base, "markdown": {"content": fits}}, **params))["errcode"] == 0, api
        refused = await call(client, api, {**base, "markdown": {"content": over}}, **params)
        assert refused["errcode"] == 40058 and f"max length {limit}" in refused["errmsg"], api
    delivered = await recorded(client)
    assert [m["api"] for m in delivered] == ["message/send", "appchat/send", "webhook/send"]
    assert all(not m["truncated"] and len(m["body"]["markdown"]["content"].encode()) in (2048, 4096)
               for m in delivered)


async def test_app_text_over_2048_bytes_is_cut_as_the_doc_says_and_robot_text_is_refused(client):
    token = await token_of(client)
    long = "劝" * 683  # 2049 bytes
    sent = await call(client, "message/send", {"touser": "zhangsan", "msgtype": "text", "agentid": 1000002,
                                                 "text": {"content": long}}, token)
    assert sent["errcode"] == 0
    (record,) = await recorded(client, api="message/send")
    assert record["truncated"] is True
    robot = await call(client, "webhook/send", {"msgtype": "text", "text": {"content": long}}, key="robot-key-1")
    assert robot["errcode"] == 45002


# --- response_code: single use, 72 hours, then 60140 (94888; 全局错误码 60140) -----------------------------------


async def test_expired_and_used_response_codes_both_answer_60140(client, simulator):
    token = await token_of(client)
    card = {"card_type": "button_interaction", "task_id": "t-72h", "main_title": {"title": "预警指令"},
            "button_list": [{"text": "签收", "key": "ack"}]}
    sent = await call(client, "message/send", {"touser": "zhangsan|lisi", "msgtype": "template_card",
                                                "agentid": 1000002, "template_card": card}, token)
    update = {"atall": 1, "agentid": 1000002, "response_code": sent["response_code"],
              "button": {"replace_name": "已签收"}}
    simulator.clock.advance(72 * 3600 - 1)
    token = await token_of(client)
    assert (await call(client, "message/update_template_card", update, token))["errcode"] == 0
    used = await call(client, "message/update_template_card", update, token)
    assert used["errcode"] == 60140
    second = await call(client, "message/send", {"touser": "zhangsan", "msgtype": "template_card",
                                                  "agentid": 1000002,
                                                  "template_card": {**card, "task_id": "t-72h-2"}}, token)
    simulator.clock.advance(72 * 3600)
    token = await token_of(client)
    expired = await call(client, "message/update_template_card",
                         {**update, "response_code": second["response_code"]}, token)
    assert expired["errcode"] == 60140 and "72 hours" in expired["errmsg"]
    assert simulator.card("zhangsan", "t-72h-2") == {**card, "task_id": "t-72h-2"}  # unchanged


# --- media/upload: 40005 bad type, 40004 wrong format, 44001 empty (90253; 全局错误码) ------------------------------


async def upload(client, token: str, kind: str, content: bytes | None, filename: str = "f.png") -> dict[str, Any]:
    form = aiohttp.FormData()
    if content is not None:
        form.add_field("media", content, filename=filename, content_type="application/octet-stream")
    else:
        form.add_field("other", b"x", filename=filename)
    resp = await client.post("/cgi-bin/media/upload", params={"access_token": token, "type": kind}, data=form)
    assert resp.status == 200
    return await resp.json()


@pytest.mark.parametrize(("kind", "content", "errcode"), [
    ("picture", PNG, 40005),  # not one of image, voice, video, file: 不合法的type参数
    ("", PNG, 40005),
    ("image", b"GIF89a" + bytes(64), 40004),  # not JPG/PNG: 不合法的媒体文件类型
    ("voice", b"ID3\x03" + bytes(64), 40004),  # not AMR
    ("video", b"RIFF" + bytes(64), 40004),  # not MP4
    ("image", b"", 44001),  # 多媒体文件为空
    ("file", b"", 44001),
    ("file", b"12345", 40006),  # every file must be larger than 5 bytes
    ("image", PNG[:5], 40009),
    ("image", None, 41005),  # no `media` part at all
])
async def test_media_upload_errcodes_are_wecoms(client, kind, content, errcode):
    token = await token_of(client)
    assert (await upload(client, token, kind, content))["errcode"] == errcode


@pytest.mark.parametrize(("kind", "content"), [
    ("image", PNG), ("image", b"\xff\xd8\xff\xe0" + bytes(64)), ("voice", b"#!AMR\n" + bytes(64)),
    ("video", b"\x00\x00\x00\x18ftypmp42" + bytes(64)), ("file", b"123456"),
])
async def test_media_upload_accepts_each_documented_format(client, kind, content):
    token = await token_of(client)
    body = await upload(client, token, kind, content)
    assert body["errcode"] == 0 and body["type"] == kind and body["media_id"]
