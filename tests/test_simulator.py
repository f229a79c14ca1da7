"""The WeCom simulator over real HTTP: tokens, sends, limits, faults, cards and encrypted callbacks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from defusedxml.ElementTree import fromstring
from wechatpy.enterprise.crypto import WeChatCrypto

from wecom_sim import SIMULATOR_KEY, SimClock, Simulator, SimulatorConfig, create_simulator_app
from wecom_sim.callback_xml import template_card_from_xml

START = 1_700_000_000.0
PLACEHOLDER_CALLBACK = "http://127.0.0.1:9/wecom/callback"


@pytest.fixture
def simulator() -> Simulator:
    sim = Simulator(SimulatorConfig(callback_url=PLACEHOLDER_CALLBACK), clock=SimClock(START, frozen=True))
    sim.add_user("zhangsan", "张三")
    sim.add_user("lisi", "李四")
    sim.add_user("ZhaoLiu", "赵六")
    sim.add_appchat("station01", "东门派出所", ["zhangsan", "lisi"])
    sim.add_robot("robot-key-1", "宣防机器人", ["zhangsan", "lisi", "ZhaoLiu"])
    return sim


@pytest.fixture
async def client(aiohttp_client, simulator):
    return await aiohttp_client(create_simulator_app(simulator))


async def get_token(client) -> str:
    resp = await client.get("/cgi-bin/gettoken", params={"corpid": "wwdemo0000000001", "corpsecret": "demo-secret"})
    body = await resp.json()
    assert body["errcode"] == 0, body
    return body["access_token"]


async def post(client, api: str, body: Any, token: str | None = None, **params: str) -> dict[str, Any]:
    if token is not None:
        params["access_token"] = token
    resp = await client.post(f"/cgi-bin/{api}", params=params, data=json.dumps(body, ensure_ascii=False))
    assert resp.status == 200
    return await resp.json()


def text(touser: str, content: str = "你好", **extra: Any) -> dict[str, Any]:
    return {"touser": touser, "msgtype": "text", "agentid": 1000002, "text": {"content": content}, **extra}


def button_card(task_id: str, touser: str = "zhangsan", **extra: Any) -> dict[str, Any]:
    card = {
        "card_type": "button_interaction",
        "task_id": task_id,
        "main_title": {"title": "预警指令 12"},
        "button_list": [{"text": "签收", "style": 1, "key": "ack"}, {"text": "无法处置", "style": 2, "key": "nack"}],
    }
    return {"touser": touser, "msgtype": "template_card", "agentid": 1000002, "template_card": card, **extra}


async def messages(client, **filters: str) -> list[dict[str, Any]]:
    resp = await client.get("/_sim/messages", params=filters)
    assert resp.status == 200
    return (await resp.json())["messages"]


# --- tokens -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "errcode"),
    [
        ({"corpsecret": "demo-secret"}, 41002),
        ({"corpid": "wwdemo0000000001"}, 41004),
        ({"corpid": "wwother", "corpsecret": "demo-secret"}, 40013),
        ({"corpid": "wwdemo0000000001", "corpsecret": "wrong"}, 40001),
    ],
)
async def test_gettoken_rejects_bad_credentials_with_http_200(client, params, errcode):
    resp = await client.get("/cgi-bin/gettoken", params=params)
    body = await resp.json()
    assert resp.status == 200
    assert body["errcode"] == errcode
    assert "access_token" not in body
    assert f"query?e={errcode}" in body["errmsg"]


async def test_gettoken_issues_coexisting_tokens_and_counts_calls(client, simulator):
    resp = await client.get("/cgi-bin/gettoken", params={"corpid": "wwdemo0000000001", "corpsecret": "demo-secret"})
    first = await resp.json()
    assert first["errcode"] == 0 and first["expires_in"] == 7200 and len(first["access_token"]) <= 512
    second = await get_token(client)
    assert second != first["access_token"]
    for token in (first["access_token"], second):
        assert (await post(client, "message/send", text("zhangsan"), token))["errcode"] == 0
    stats = await (await client.get("/_sim/stats")).json()
    assert stats["calls"]["gettoken"] == 2 == simulator.gettoken_calls
    assert stats["calls"]["message/send"] == 2


async def test_missing_unknown_and_expired_tokens(client, simulator):
    token = await get_token(client)
    assert (await post(client, "message/send", text("zhangsan")))["errcode"] == 41001
    assert (await post(client, "message/send", text("zhangsan"), "not-a-token"))["errcode"] == 40014
    simulator.clock.advance(7199)
    assert (await post(client, "message/send", text("zhangsan"), token))["errcode"] == 0
    resp = await client.post("/_sim/clock", json={"advance": 1})
    assert (await resp.json())["now"] == START + 7200
    assert (await post(client, "message/send", text("zhangsan"), token))["errcode"] == 42001
    stats = await (await client.get("/_sim/stats")).json()
    assert stats["errors"] == {"41001": 1, "40014": 1, "42001": 1}


async def test_revocation_invalidates_every_token_early(client):
    old = await get_token(client)
    resp = await client.post("/_sim/tokens/revoke")
    assert resp.status == 200
    assert (await post(client, "message/send", text("zhangsan"), old))["errcode"] == 40014
    assert (await post(client, "message/send", text("zhangsan"), await get_token(client)))["errcode"] == 0


# --- message/send -------------------------------------------------------------------------------------


async def test_text_send_reports_invalid_users_lower_cased_and_records_delivery(client):
    token = await get_token(client)
    body = text("ZHANGSAN|Ghost|zhaoliu|NoBody", "签收提醒")
    answer = await post(client, "message/send", body, token)
    assert answer["errcode"] == 0 and answer["errmsg"] == "ok"
    assert answer["invaliduser"] == "ghost|nobody"
    assert answer["msgid"] and "response_code" not in answer
    (record,) = await messages(client, api="message/send")
    assert record["seq"] == 1 and record["at"] == START
    assert record["delivered_to"] == ["zhangsan", "ZhaoLiu"]
    assert record["to_users"] == ["ZHANGSAN", "Ghost", "zhaoliu", "NoBody"]
    assert record["body"] == body and record["msgid"] == answer["msgid"]
    assert record["dropped_for"] == [] and not record["duplicate"] and not record["truncated"]
    assert await messages(client, user="zhaoliu") == [record]
    assert await messages(client, user="lisi") == []


async def test_at_all_reaches_every_member(client):
    answer = await post(client, "message/send", text("@all"), await get_token(client))
    assert answer["errcode"] == 0 and answer["invaliduser"] == ""
    (record,) = await messages(client)
    assert record["delivered_to"] == ["zhangsan", "lisi", "ZhaoLiu"] and record["to_users"] == ["@all"]


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        (text("ghost|nobody"), 81013),
        (text(""), 82001),
        ({**text("zhangsan"), "agentid": 1000003}, 301002),
        ({**text("zhangsan"), "msgtype": "miniprogram_notice"}, 40008),
        (text("zhangsan", ""), 44004),
        ({**text("zhangsan"), "touser": ["zhangsan"]}, 40058),
        ({"touser": "zhangsan", "msgtype": "textcard", "agentid": 1000002, "textcard": {"title": "t"}}, 41033),
    ],
)
async def test_send_errors_are_not_recorded(client, body, errcode):
    answer = await post(client, "message/send", body, await get_token(client))
    assert answer["errcode"] == errcode
    assert await messages(client) == []


async def test_app_text_over_2048_bytes_is_truncated_and_markdown_over_2048_is_refused(client):
    # 发送应用消息 (document/path/90236): text "超过将截断", markdown "最长不超过2048个字节".
    token = await get_token(client)
    long_text = "劝" * 700  # 2100 bytes
    assert (await post(client, "message/send", text("lisi", long_text), token))["errcode"] == 0
    markdown = {"touser": "lisi", "msgtype": "markdown", "agentid": 1000002, "markdown": {"content": "**劝阻**"}}
    assert (await post(client, "message/send", markdown, token))["errcode"] == 0
    too_long = {**markdown, "markdown": {"content": "劝" * 683}}  # 2049 bytes
    assert (await post(client, "message/send", too_long, token))["errcode"] == 40058
    first, second = await messages(client, user="lisi")
    assert first["truncated"] is True and first["delivered_to"] == ["lisi"]
    assert second["truncated"] is False and second["msgtype"] == "markdown"


async def test_interaction_card_gets_response_code_and_notice_card_does_not(client):
    token = await get_token(client)
    answer = await post(client, "message/send", button_card("task-1"), token)
    assert answer["errcode"] == 0 and answer["response_code"]
    notice = {
        "touser": "zhangsan",
        "msgtype": "template_card",
        "agentid": 1000002,
        "template_card": {
            "card_type": "text_notice",
            "main_title": {"title": "宣防提示"},
            "card_action": {"type": 1, "url": "https://example.org/tips"},
        },
    }
    plain = await post(client, "message/send", notice, token)
    assert plain["errcode"] == 0 and "response_code" not in plain
    card_record, notice_record = await messages(client)
    assert card_record["task_id"] == "task-1" and card_record["response_code"] == answer["response_code"]
    assert notice_record["task_id"] is None and notice_record["response_code"] is None


def _card_with(**changes: Any) -> dict[str, Any]:
    body = button_card("task-x")
    body["template_card"].update(changes)
    return body


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        (_card_with(card_type="fancy_card"), 42031),
        (_card_with(task_id=""), 42014),
        (_card_with(task_id="bad task id"), 42014),
        (_card_with(button_list=[{"text": "a", "key": "k"}, {"text": "b", "key": "k"}]), 42039),
        (_card_with(button_list=[{"text": "a"}]), 42039),
        (_card_with(button_list=[{"text": str(i), "key": str(i)} for i in range(7)]), 40058),
        (_card_with(main_title={}), 42033),
    ],
)
async def test_card_validation_errors(client, body, errcode):
    answer = await post(client, "message/send", body, await get_token(client))
    assert answer["errcode"] == errcode


async def test_interaction_card_needs_a_callback_url(client, simulator):
    simulator.config.callback_url = None
    answer = await post(client, "message/send", button_card("task-1"), await get_token(client))
    assert answer["errcode"] == 43012


async def test_duplicate_check_swallows_identical_body_but_not_a_reused_task_id(client, simulator):
    token = await get_token(client)
    card = button_card("task-dup", enable_duplicate_check=1, duplicate_check_interval=600)
    first = await post(client, "message/send", card, token)
    # Same JSON with another key order: still the identical request.
    again = await post(client, "message/send", json.loads(json.dumps(card, sort_keys=True)), token)
    assert first["errcode"] == again["errcode"] == 0
    assert again["msgid"] != first["msgid"] and again["response_code"] != first["response_code"]
    other = button_card("task-dup", touser="lisi", enable_duplicate_check=1, duplicate_check_interval=600)
    assert (await post(client, "message/send", other, token))["errcode"] == 42014
    original, duplicate = await messages(client)
    assert original["delivered_to"] == ["zhangsan"] and not original["duplicate"]
    assert duplicate["delivered_to"] == [] and duplicate["duplicate"] is True

    plain = text("lisi", "同一内容", enable_duplicate_check=1, duplicate_check_interval=600)
    await post(client, "message/send", plain, token)
    simulator.clock.advance(599)
    await post(client, "message/send", plain, token)
    simulator.clock.advance(1)
    await post(client, "message/send", plain, token)
    assert [m["duplicate"] for m in await messages(client, api="message/send", since="2")] == [False, True, False]
    assert len(await messages(client, user="lisi")) == 2


async def test_per_member_30_per_minute_excess_is_dropped_silently_then_recovers(client, simulator):
    token = await get_token(client)
    answers = [
        await post(client, "message/send", text("zhangsan|lisi" if i == 29 else "zhangsan"), token) for i in range(31)
    ]
    assert all(answer["errcode"] == 0 for answer in answers)
    records = await messages(client)
    assert records[29]["delivered_to"] == ["zhangsan", "lisi"]
    assert records[30]["delivered_to"] == [] and records[30]["dropped_for"] == ["zhangsan"]
    simulator.clock.advance(59)
    dropped = await post(client, "message/send", text("zhangsan|lisi"), token)
    assert dropped["errcode"] == 0
    assert (await messages(client, since="31"))[0]["dropped_for"] == ["zhangsan"]
    simulator.clock.advance(1)
    await post(client, "message/send", text("zhangsan"), token)
    assert (await messages(client))[-1]["delivered_to"] == ["zhangsan"]


async def test_per_member_1000_per_hour(simulator):
    token = simulator.tokens.issue()
    raw = json.dumps(text("zhangsan")).encode()
    delivered = 0
    for minute in range(34):
        for _ in range(30):
            answer = simulator.call("message/send", {"access_token": token}, raw)
            assert answer.payload["errcode"] == 0
        simulator.clock.advance(60)
        delivered = sum(1 for record in simulator.messages if record["delivered_to"])
        if minute < 33:
            assert delivered == 30 * (minute + 1)
    assert delivered == 1000
    assert simulator.messages[-1]["dropped_for"] == ["zhangsan"]


# --- app chats ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"name": "群", "userlist": ["zhangsan"]}, 86006),
        ({"name": "群", "userlist": ["zhangsan", "ghost"]}, 86007),
        ({"name": "群", "userlist": ["zhangsan", "lisi"], "chatid": "station01"}, 86215),
        ({"name": "群", "userlist": ["zhangsan", "lisi"], "owner": "ZhaoLiu"}, 86207),
        ({"name": "", "userlist": ["zhangsan", "lisi"]}, 86004),
    ],
)
async def test_appchat_create_errors(client, body, errcode):
    assert (await post(client, "appchat/create", body, await get_token(client)))["errcode"] == errcode


async def test_appchat_create_get_and_send(client):
    token = await get_token(client)
    created = await post(client, "appchat/create", {"name": "网格群", "userlist": ["lisi", "zhaoliu"]}, token)
    assert created["errcode"] == 0
    resp = await client.get("/cgi-bin/appchat/get", params={"access_token": token, "chatid": created["chatid"]})
    info = (await resp.json())["chat_info"]
    assert info["userlist"] == ["lisi", "ZhaoLiu"] and info["owner"] == "lisi" and info["name"] == "网格群"
    send = {"chatid": created["chatid"], "msgtype": "markdown", "markdown": {"content": "**预警**"}, "safe": 0}
    answer = await post(client, "appchat/send", send, token)
    assert answer == {"errcode": 0, "errmsg": "ok"}
    (record,) = await messages(client, chatid=created["chatid"])
    assert record["api"] == "appchat/send" and record["delivered_to"] == ["lisi", "ZhaoLiu"]
    assert await messages(client, user="ZHAOLIU") == [record]
    card = {"chatid": "station01", "msgtype": "template_card", "template_card": {"card_type": "text_notice"}}
    assert (await post(client, "appchat/send", card, token))["errcode"] == 86220
    unknown = {"chatid": "nochat", "msgtype": "text", "text": {"content": "hi"}}
    assert (await post(client, "appchat/send", unknown, token))["errcode"] == 86003
    directory = await (await client.get("/_sim/directory")).json()
    assert {chat["chatid"] for chat in directory["appchats"]} == {"station01", created["chatid"]}


async def test_appchat_200_per_member_per_minute_is_dropped_silently(client, simulator):
    token = await get_token(client)
    simulator.add_appchat("grid01", "网格", ["zhangsan", "ZhaoLiu"])
    # zhangsan also gets messages in station01: the limit counts across all the app's chats.
    for i in range(200):
        chatid = "station01" if i % 2 else "grid01"
        body = {"chatid": chatid, "msgtype": "text", "text": {"content": str(i)}}
        assert (await post(client, "appchat/send", body, token))["errcode"] == 0
    body = {"chatid": "station01", "msgtype": "text", "text": {"content": "over"}}
    assert (await post(client, "appchat/send", body, token))["errcode"] == 0
    last = (await messages(client))[-1]
    assert last["dropped_for"] == ["zhangsan"] and last["delivered_to"] == ["lisi"]
    simulator.clock.advance(60)
    await post(client, "appchat/send", body, token)
    assert (await messages(client))[-1]["delivered_to"] == ["zhangsan", "lisi"]


async def test_appchat_10000_per_member_per_natural_day_in_shanghai(simulator):
    token = {"access_token": simulator.tokens.issue()}
    raw = json.dumps({"chatid": "station01", "msgtype": "text", "text": {"content": "宣防"}}).encode()
    for _ in range(50):
        for _ in range(200):
            assert simulator.call("appchat/send", token, raw).payload["errcode"] == 0
        simulator.clock.advance(60)
    assert sum(1 for record in simulator.messages if record["delivered_to"]) == 10_000
    simulator.call("appchat/send", token, raw)
    assert simulator.messages[-1]["dropped_for"] == ["zhangsan", "lisi"]
    now = simulator.clock.now()
    shanghai_midnight = ((now + 8 * 3600) // 86400 + 1) * 86400 - 8 * 3600
    simulator.clock.advance(shanghai_midnight - now - 1)
    token = {"access_token": simulator.tokens.issue()}
    assert simulator.call("appchat/send", token, raw).payload["errcode"] == 0
    assert simulator.messages[-1]["delivered_to"] == []
    simulator.clock.advance(1)
    assert simulator.call("appchat/send", token, raw).payload["errcode"] == 0
    assert simulator.messages[-1]["delivered_to"] == ["zhangsan", "lisi"]


# --- group robots -------------------------------------------------------------------------------------


async def test_webhook_sends_and_refuses_the_21st_message_in_a_minute(client, simulator):
    body = {"msgtype": "text", "text": {"content": "不轻信、不转账", "mentioned_list": ["@all"]}}
    for _ in range(20):
        assert (await post(client, "webhook/send", body, key="robot-key-1"))["errcode"] == 0
    assert (await post(client, "webhook/send", body, key="robot-key-1"))["errcode"] == 45009
    assert len(await messages(client, robot="robot-key-1")) == 20
    simulator.clock.advance(60)
    assert (await post(client, "webhook/send", body, key="robot-key-1"))["errcode"] == 0
    record = (await messages(client, robot="robot-key-1"))[-1]
    assert record["delivered_to"] == ["zhangsan", "lisi", "ZhaoLiu"] and record["api"] == "webhook/send"


@pytest.mark.parametrize(
    ("body", "key", "errcode"),
    [
        ({"msgtype": "text", "text": {"content": "hi"}}, "unknown-key", 93000),
        ({"msgtype": "markdown", "markdown": {"content": "x" * 4097}}, "robot-key-1", 40058),
        ({"msgtype": "text", "text": {"content": "x" * 2049}}, "robot-key-1", 45002),
        ({"msgtype": "template_card", "template_card": button_card("t")["template_card"]}, "robot-key-1", 42031),
        ({"msgtype": "textcard", "textcard": {}}, "robot-key-1", 40008),
    ],
)
async def test_webhook_errors(client, body, key, errcode):
    assert (await post(client, "webhook/send", body, key=key))["errcode"] == errcode
    assert await messages(client) == []


async def test_webhook_markdown_up_to_4096_bytes_is_accepted(client):
    body = {"msgtype": "markdown", "markdown": {"content": "x" * 4096}}
    assert (await post(client, "webhook/send", body, key="robot-key-1"))["errcode"] == 0


# --- faults -------------------------------------------------------------------------------------------


async def test_errcode_fault_hits_n_calls_without_side_effects(client):
    token = await get_token(client)
    resp = await client.post("/_sim/faults", json={"api": "message/send", "errcode": -1, "times": 2})
    assert resp.status == 200 and len((await resp.json())["faults"]) == 1
    assert (await post(client, "message/send", text("zhangsan"), token))["errcode"] == -1
    assert (
        await post(client, "appchat/send", {"chatid": "station01", "msgtype": "text", "text": {"content": "x"}}, token)
    )["errcode"] == 0
    assert (await post(client, "message/send", text("zhangsan"), token))["errcode"] == -1
    assert (await post(client, "message/send", text("zhangsan"), token))["errcode"] == 0
    assert [m["api"] for m in await messages(client)] == ["appchat/send", "message/send"]
    stats = await (await client.get("/_sim/stats")).json()
    assert stats["errors_by_api"]["message/send"] == {"-1": 2}


async def test_http_status_fault_and_wildcard_fault(client, simulator):
    simulator.add_fault("gettoken", http_status=503)
    resp = await client.get("/cgi-bin/gettoken", params={"corpid": "wwdemo0000000001", "corpsecret": "demo-secret"})
    assert resp.status == 503 and "503" in await resp.text()
    token = await get_token(client)
    simulator.add_fault("*", errcode=45033, times=3)
    assert (await post(client, "webhook/send", {"msgtype": "text", "text": {"content": "x"}}, key="robot-key-1"))[
        "errcode"
    ] == 45033
    resp = await client.delete("/_sim/faults")
    assert resp.status == 200
    assert (await post(client, "message/send", text("zhangsan"), token))["errcode"] == 0
    assert (await (await client.get("/_sim/stats")).json())["http_errors"] == {"503": 1}


async def test_fault_endpoint_rejects_nonsense(client):
    resp = await client.post("/_sim/faults", json={"api": "message/sned", "errcode": 1})
    assert resp.status == 400
    resp = await client.post("/_sim/faults", json={"api": "message/send", "errcode": 1, "http_status": 500})
    assert resp.status == 400


# --- update_template_card -----------------------------------------------------------------------------


async def test_update_template_card_with_single_use_response_code(client, simulator):
    token = await get_token(client)
    sent = await post(client, "message/send", button_card("task-up", touser="zhangsan|lisi"), token)
    update = {"userids": ["zhangsan", "ghost"], "agentid": 1000002, "response_code": sent["response_code"]}
    answer = await post(client, "message/update_template_card", {**update, "button": {"replace_name": "已签收"}}, token)
    assert answer["errcode"] == 0 and answer["invaliduser"] == ["ghost"]
    assert simulator.card("zhangsan", "task-up")["replace_text"] == "已签收"
    assert "replace_text" not in simulator.card("lisi", "task-up")
    again = await post(client, "message/update_template_card", {**update, "button": {"replace_name": "x"}}, token)
    assert again["errcode"] == 60140
    record = (await messages(client, api="message/update_template_card"))[0]
    assert record["delivered_to"] == ["zhangsan"] and record["task_id"] == "task-up"

    resp = await client.get("/_sim/cards", params={"task_id": "task-up", "user": "lisi"})
    (view,) = (await resp.json())["cards"]
    assert view["source"] == "send" and view["card"]["main_title"]["title"] == "预警指令 12"


async def test_update_template_card_replaces_whole_card_for_everyone_and_codes_expire(client, simulator):
    token = await get_token(client)
    first = await post(client, "message/send", button_card("task-all", touser="zhangsan|lisi"), token)
    second = await post(client, "message/send", button_card("task-all2"), token)
    new_card = {
        "card_type": "button_interaction",
        "main_title": {"title": "已处置"},
        "button_list": [{"text": "已签收", "key": "ack"}],
        "replace_text": "已签收",
    }
    body = {"atall": 1, "agentid": 1000002, "response_code": first["response_code"], "template_card": new_card}
    assert (await post(client, "message/update_template_card", body, token))["errcode"] == 0
    assert simulator.card("zhangsan", "task-all") == simulator.card("lisi", "task-all") == new_card
    simulator.clock.advance(72 * 3600)
    token = await get_token(client)
    body["response_code"] = second["response_code"]  # unused, but 72 hours old: 60140 (not 42052, a recall's)
    assert (await post(client, "message/update_template_card", body, token))["errcode"] == 60140
    body["response_code"] = "never-issued"
    assert (await post(client, "message/update_template_card", body, token))["errcode"] == 60140
    both = {**body, "response_code": second["response_code"], "button": {"replace_name": "x"}}
    assert (await post(client, "message/update_template_card", both, token))["errcode"] == 40058


# --- callbacks ----------------------------------------------------------------------------------------


class FakeBot:
    """A tiny callback receiver that decrypts with wechatpy, as the real bot would."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.crypto = WeChatCrypto(config.token, config.encoding_aes_key, config.corp_id)
        self.corp_id = config.corp_id
        self.received: list[str] = []
        self.envelopes: list[str] = []
        self.statuses: list[int] = []
        self.reply: Callable[[dict[str, str]], str] | None = None
        self.release: asyncio.Event | None = None
        self.raw_reply: str | None = None
        self.echo_suffix = ""
        self.raw_queries: list[str] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/wecom/callback", self.on_post)
        app.router.add_get("/wecom/callback", self.on_get)
        return app

    async def on_post(self, request: web.Request) -> web.Response:
        envelope = await request.text()
        q = request.query
        plaintext = self.crypto.decrypt_message(envelope, q["msg_signature"], q["timestamp"], q["nonce"])
        self.envelopes.append(envelope)
        self.received.append(plaintext)
        if self.release is not None:
            await self.release.wait()
        status = self.statuses.pop(0) if self.statuses else 200
        if self.raw_reply is not None:
            return web.Response(status=status, text=self.raw_reply)
        if status != 200 or self.reply is None:
            return web.Response(status=status, text="")
        reply = self.crypto.encrypt_message(self.reply(xml_fields(plaintext)), "424242", q["timestamp"])
        return web.Response(text=reply, content_type="text/xml")

    async def on_get(self, request: web.Request) -> web.Response:
        q = request.query
        self.raw_queries.append(request.rel_url.raw_query_string)
        echo = self.crypto.check_signature(q["msg_signature"], q["timestamp"], q["nonce"], q["echostr"])
        return web.Response(text=echo + self.echo_suffix)


def xml_fields(xml: str) -> dict[str, str]:
    return {child.tag: child.text or "" for child in fromstring(xml)}


@pytest.fixture
async def fake_bot(aiohttp_server, simulator):
    bot = FakeBot(simulator.config)
    server = await aiohttp_server(bot.app())
    simulator.config.callback_url = str(server.make_url("/wecom/callback"))
    return bot


async def test_text_callback_is_signed_encrypted_and_shaped_like_wecom(client, fake_bot):
    resp = await client.post("/_sim/callback", json={"type": "text", "from": "lisi", "content": "签收 12"})
    result = await resp.json()
    assert resp.status == 200
    assert result["status"] == 200 and result["attempts"] == 1 and result["reply"] is None
    (plaintext,) = fake_bot.received
    sent = xml_fields(plaintext)
    assert sent["ToUserName"] == "wwdemo0000000001" and sent["FromUserName"] == "lisi"
    assert sent["MsgType"] == "text" and sent["Content"] == "签收 12"
    assert int(sent["MsgId"]) == result["msg_id"] and sent["CreateTime"] == str(int(START))
    assert sent["AgentID"] == "1000002"
    envelope = xml_fields(fake_bot.envelopes[0])
    assert set(envelope) == {"ToUserName", "Encrypt", "AgentID"} and envelope["AgentID"] == "1000002"


async def test_card_event_callback_and_passive_update_button(client, simulator, fake_bot):
    token = await get_token(client)
    sent = await post(client, "message/send", button_card("task-cb", touser="zhangsan|lisi"), token)
    fake_bot.reply = lambda event: (
        f"<xml><ToUserName><![CDATA[{event['FromUserName']}]]></ToUserName>"
        f"<FromUserName><![CDATA[{event['ToUserName']}]]></FromUserName><CreateTime>{event['CreateTime']}</CreateTime>"
        "<MsgType><![CDATA[update_button]]></MsgType><Button><ReplaceName><![CDATA[已签收]]></ReplaceName></Button></xml>"
    )
    click = {
        "type": "template_card_event",
        "from": "zhangsan",
        "task_id": "task-cb",
        "event_key": "ack",
        "selected_items": [{"question_key": "q1", "option_ids": ["a", "b"]}],
    }
    result = await (await client.post("/_sim/callback", json=click)).json()
    assert result["status"] == 200 and result["card_updated"] is True
    assert "update_button" in result["reply"]
    event = xml_fields(fake_bot.received[0])
    assert event["MsgType"] == "event" and event["Event"] == "template_card_event"
    assert event["EventKey"] == "ack" and event["TaskId"] == "task-cb"
    assert event["CardType"] == "button_interaction" and event["ResponseCode"] == result["response_code"]
    options = [o.text for o in fromstring(fake_bot.received[0]).iter("OptionId")]
    assert options == ["a", "b"]
    assert simulator.card("zhangsan", "task-cb")["replace_text"] == "已签收"
    assert "replace_text" not in simulator.card("lisi", "task-cb")
    # The click's response_code is a fresh single-use code, distinct from the send's.
    assert result["response_code"] != sent["response_code"]
    update = {
        "atall": 1,
        "agentid": 1000002,
        "response_code": result["response_code"],
        "button": {"replace_name": "已处置"},
    }
    assert (await post(client, "message/update_template_card", update, token))["errcode"] == 0
    assert (await post(client, "message/update_template_card", update, token))["errcode"] == 60140


async def test_passive_update_template_card_reply_becomes_the_users_card(simulator, fake_bot):
    token = simulator.tokens.issue()
    answer = simulator.call("message/send", {"access_token": token}, json.dumps(button_card("task-xml")).encode())
    assert answer.payload["errcode"] == 0
    fake_bot.reply = lambda event: (
        "<xml><ToUserName><![CDATA[zhangsan]]></ToUserName><FromUserName><![CDATA[corp]]></FromUserName>"
        "<CreateTime>1</CreateTime><MsgType><![CDATA[update_template_card]]></MsgType><TemplateCard>"
        "<CardType><![CDATA[button_interaction]]></CardType><MainTitle><Title><![CDATA[已签收]]></Title></MainTitle>"
        "<ButtonList><Text><![CDATA[签收]]></Text><Style>1</Style><Key><![CDATA[ack]]></Key></ButtonList>"
        "<ButtonList><Text><![CDATA[退回]]></Text><Style>2</Style><Key><![CDATA[back]]></Key></ButtonList>"
        "<ReplaceText><![CDATA[已签收]]></ReplaceText></TemplateCard></xml>"
    )
    result = await simulator.click_card("zhangsan", "task-xml", "ack")
    assert result["card_updated"] is True
    assert simulator.card("zhangsan", "task-xml") == {
        "card_type": "button_interaction",
        "main_title": {"title": "已签收"},
        "button_list": [{"text": "签收", "style": 1, "key": "ack"}, {"text": "退回", "style": 2, "key": "back"}],
        "replace_text": "已签收",
    }


async def test_non_200_is_retried_three_times(client, fake_bot):
    fake_bot.statuses = [500, 502, 200]
    result = await (await client.post("/_sim/callback", json={"type": "text", "from": "lisi", "content": "1"})).json()
    assert result["status"] == 200 and result["attempts"] == 3
    fake_bot.statuses = [500] * 10
    result = await (await client.post("/_sim/callback", json={"type": "text", "from": "lisi", "content": "2"})).json()
    assert result["status"] == 500 and result["attempts"] == 4  # the first try plus 3 retries
    # Every retry resends the very same payload.
    assert len(set(fake_bot.envelopes[3:])) == 1 and len(fake_bot.received) == 7


async def test_timeout_is_retried(simulator, fake_bot):
    simulator.config.callback_timeout = 0.05
    simulator.config.callback_retries = 1
    fake_bot.release = asyncio.Event()
    result = await simulator.send_text("lisi", "超时")
    fake_bot.release.set()
    assert result["status"] is None and result["attempts"] == 2 and len(fake_bot.received) == 2


async def test_unreadable_passive_reply_is_reported_not_applied(simulator, fake_bot):
    stranger = WeChatCrypto("OtherToken", simulator.config.encoding_aes_key, simulator.config.corp_id)
    fake_bot.raw_reply = stranger.encrypt_message("<xml><MsgType>update_button</MsgType></xml>", "1", "2")
    result = await simulator.send_text("lisi", "hi")
    assert result["status"] == 200 and result["reply"] is None and "InvalidSignature" in result["reply_error"]
    fake_bot.raw_reply = "success"
    result = await simulator.send_text("lisi", "hi")
    assert result["reply"] is None and result["reply_error"] and result["card_updated"] is False


async def test_typed_texts_and_passive_text_replies_are_kept_for_the_1to1_chat(client, simulator, fake_bot):
    fake_bot.reply = lambda event: (
        f"<xml><ToUserName><![CDATA[{event['FromUserName']}]]></ToUserName><FromUserName><![CDATA[corp]]>"
        f"</FromUserName><CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[收到：{event['Content']}]]></Content></xml>"
    )
    await post(client, "message/send", text("lisi", "先到的应用消息"), await get_token(client))
    result = await (
        await client.post("/_sim/callback", json={"type": "text", "from": "lisi", "content": "签收 12"})
    ).json()
    assert result["status"] == 200 and result["card_updated"] is False
    typed, reply = (await (await client.get("/_sim/texts", params={"user": "LISI"})).json())["texts"]
    assert typed["api"] == "callback/text" and typed["content"] == "签收 12" and typed["userid"] == "lisi"
    assert typed["msg_id"] == result["msg_id"] and typed["state"] == "delivered" and typed["status"] == 200
    assert reply["api"] == "reply/text" and reply["content"] == "收到：签收 12" and reply["msg_id"] == result["msg_id"]
    # Both come after the app message that was already there; /_sim/messages itself is unchanged.
    assert typed["after_message_seq"] == reply["after_message_seq"] == 1 and typed["seq"] < reply["seq"]
    assert [m["api"] for m in await messages(client)] == ["message/send"]
    assert (await (await client.get("/_sim/texts", params={"since": str(typed["seq"])})).json())["texts"] == [reply]
    assert (await (await client.get("/_sim/texts", params={"user": "zhangsan"})).json())["texts"] == []

    fake_bot.reply = None
    fake_bot.statuses = [500] * 4
    await simulator.send_text("lisi", "没人接")
    (failed,) = simulator.texts.query(user="lisi", since=reply["seq"])
    assert failed["state"] == "failed" and failed["status"] == 500
    revision = simulator.revision
    await client.delete("/_sim/messages")
    assert simulator.texts.records == [] and simulator.revision > revision


async def test_url_verification(client, fake_bot):
    result = await (await client.post("/_sim/verify-callback")).json()
    assert result["ok"] is True and result["body"] == result["expected"]
    raw_echostr = fake_bot.raw_queries[0].split("echostr=")[1].split("&")[0]
    assert not set(raw_echostr) & set("+/=")
    fake_bot.echo_suffix = "\n"
    result = await (await client.post("/_sim/verify-callback")).json()
    assert result["ok"] is False and result["status"] == 200


async def test_callback_needs_url_and_valid_body(client, simulator):
    simulator.config.callback_url = None
    resp = await client.post("/_sim/callback", json={"type": "text", "from": "lisi", "content": "x"})
    assert resp.status == 409
    simulator.config.callback_url = PLACEHOLDER_CALLBACK
    resp = await client.post("/_sim/callback", json={"type": "template_card_event", "from": "lisi", "event_key": "k"})
    assert resp.status == 400
    resp = await client.post("/_sim/callback", json={"type": "voice", "from": "lisi"})
    assert resp.status == 400


# --- inspection ---------------------------------------------------------------------------------------


async def test_message_filters_and_clearing_keep_sequence(client, simulator):
    token = await get_token(client)
    await post(client, "message/send", text("zhangsan"), token)
    await post(client, "appchat/send", {"chatid": "station01", "msgtype": "text", "text": {"content": "x"}}, token)
    await post(client, "webhook/send", {"msgtype": "text", "text": {"content": "y"}}, key="robot-key-1")
    assert [m["seq"] for m in await messages(client, user="lisi")] == [2, 3]
    assert [m["api"] for m in await messages(client, since="1")] == ["appchat/send", "webhook/send"]
    assert [m["seq"] for m in await messages(client, chatid="station01")] == [2]
    resp = await client.delete("/_sim/messages")
    assert (await resp.json())["cleared"] == 3 and await messages(client) == []
    await post(client, "message/send", text("lisi"), token)
    assert [m["seq"] for m in await messages(client)] == [4]
    assert client.server.app[SIMULATOR_KEY] is simulator
    assert (await client.get("/_sim/messages", params={"since": "abc"})).status == 400


def test_template_card_xml_maps_to_json_shape():
    card = template_card_from_xml(
        fromstring(
            "<TemplateCard><CardType>multiple_interaction</CardType><SelectList><QuestionKey>q1</QuestionKey>"
            "<OptionList><Id>a</Id><Text>A</Text></OptionList><OptionList><Id>b</Id><Text>B</Text></OptionList>"
            "<Disable>true</Disable></SelectList><CheckBox><Mode>1</Mode></CheckBox></TemplateCard>"
        )
    )
    assert card == {
        "card_type": "multiple_interaction",
        "select_list": [
            {"question_key": "q1", "option_list": [{"id": "a", "text": "A"}, {"id": "b", "text": "B"}], "disable": True}
        ],
        "checkbox": {"mode": 1},
    }
