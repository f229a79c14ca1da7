"""The simulator's chat view: what each member sees, driven in headless chromium against a tiny fake bot."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from defusedxml.ElementTree import fromstring
from playwright.async_api import BrowserContext, Page, expect
from wechatpy.enterprise.crypto import WeChatCrypto

from wecom_sim import Simulator, SimulatorConfig, create_simulator_app
from wecom_sim.chatview.markup import plain_markdown, render_markdown, render_text

GROUP = "station01"


# --- a tiny bot: decrypts callbacks with wechatpy and answers like Quanzu would ------------------------


class FakeBot:
    """Answers a card click with a passive update_button and then tells the group; answers texts with text."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.crypto = WeChatCrypto(config.token, config.encoding_aes_key, config.corp_id)
        self.config = config
        self.sim_url = ""
        self.events: list[dict[str, Any]] = []
        self.session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/wecom/callback", self.on_callback)
        return app

    async def on_callback(self, request: web.Request) -> web.Response:
        q = request.query
        plaintext = self.crypto.decrypt_message(await request.text(), q["msg_signature"], q["timestamp"], q["nonce"])
        root = fromstring(plaintext)
        event = {child.tag: child.text or "" for child in root if len(child) == 0}
        event["SelectedItems"] = {
            item.findtext("QuestionKey"): [option.text for option in item.iter("OptionId")]
            for item in root.iter("SelectedItem")
        }
        self.events.append(event)
        if event["MsgType"] == "text":
            return self._reply(
                event, f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[收到：{event['Content']}]]></Content>", q
            )
        if event.get("Event") == "template_card_event":
            if event["CardType"] == "button_interaction":
                # The group hears about it after the clicker got the answer, as the real bot's outbox does.
                task = asyncio.create_task(self._tell_group(f"**{event['FromUserName']}** 已签收 `{event['TaskId']}`"))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            replace = "已签收" if event["CardType"] == "button_interaction" else "已提交"
            return self._reply(
                event,
                "<MsgType><![CDATA[update_button]]></MsgType>"
                f"<Button><ReplaceName><![CDATA[{replace}]]></ReplaceName></Button>",
                q,
            )
        return web.Response(text="")

    def _reply(self, event: dict[str, Any], inner: str, q: Any) -> web.Response:
        xml = (
            f"<xml><ToUserName><![CDATA[{event['FromUserName']}]]></ToUserName>"
            f"<FromUserName><![CDATA[{self.config.corp_id}]]></FromUserName>"
            f"<CreateTime>{event['CreateTime']}</CreateTime>{inner}</xml>"
        )
        return web.Response(text=self.crypto.encrypt_message(xml, "4242", q["timestamp"]), content_type="text/xml")

    async def _tell_group(self, content: str) -> None:
        await asyncio.sleep(0.3)
        assert self.session is not None
        params = {"corpid": self.config.corp_id, "corpsecret": self.config.corp_secret}
        async with self.session.get(f"{self.sim_url}/cgi-bin/gettoken", params=params) as resp:
            token = (await resp.json())["access_token"]
        body = {"chatid": GROUP, "msgtype": "markdown", "markdown": {"content": content}}
        async with self.session.post(
            f"{self.sim_url}/cgi-bin/appchat/send", params={"access_token": token}, json=body
        ) as resp:
            assert (await resp.json())["errcode"] == 0

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()


@dataclass
class Corp:
    sim: Simulator
    bot: FakeBot
    url: str

    def send(self, api: str, body: dict[str, Any], **query: str) -> None:
        """Have the "app" call a WeCom API (as the real bot would over HTTP)."""
        params = {"access_token": self.sim.tokens.issue(), **query}
        answer = self.sim.call(api, params, json.dumps(body, ensure_ascii=False).encode())
        assert answer.payload is not None and answer.payload["errcode"] == 0, answer.payload

    def chat_url(self, userid: str, conversation: str | None = None) -> str:
        return f"{self.url}/_sim/chat/{userid}" + (f"?c={conversation}" if conversation else "")


@pytest.fixture
async def corp(aiohttp_server):
    sim = Simulator(SimulatorConfig(callback_url="http://127.0.0.1:9/unset"))
    sim.add_user("zhangsan", "张三")
    sim.add_user("lisi", "李四")
    sim.add_user("wangwu", "王五")
    sim.add_appchat(GROUP, "东门派出所", ["zhangsan", "lisi"])
    sim.add_robot("robot-1", "宣防机器人", ["zhangsan", "wangwu"])
    sim_server = await aiohttp_server(create_simulator_app(sim))
    bot = FakeBot(sim.config)
    bot_server = await aiohttp_server(bot.app())
    sim.config.callback_url = str(bot_server.make_url("/wecom/callback"))
    bot.sim_url = str(sim_server.make_url("")).rstrip("/")
    bot.session = aiohttp.ClientSession()
    yield Corp(sim, bot, bot.sim_url)
    await bot.close()




async def open_page(context: BrowserContext, url: str) -> Page:
    page = await context.new_page()
    await page.goto(url)
    # Set on this document only: still there later means the page was updated without a reload.
    await page.evaluate("window.__samePage = true")
    return page


def button_card(task_id: str, touser: str = "zhangsan") -> dict[str, Any]:
    return {
        "touser": touser,
        "msgtype": "template_card",
        "agentid": 1000002,
        "template_card": {
            "card_type": "button_interaction",
            "task_id": task_id,
            "source": {"desc": "劝阻 · 预警指令", "desc_color": 2},
            "main_title": {"title": "预警指令 YJ-7", "desc": "请尽快签收"},
            "quote_area": {"quote_text": "居民正与冒充公安的号码通话"},
            "horizontal_content_list": [
                {"keyname": "对象", "value": "唐某"},
                {"keyname": "民警", "type": 3, "userid": "lisi"},
            ],
            "button_selection": {
                "question_key": "who",
                "title": "处置人",
                "selected_id": "self",
                "option_list": [{"id": "self", "text": "本人"}, {"id": "grid", "text": "网格员"}],
            },
            "button_list": [
                {"text": "签收", "style": 1, "key": "ack"},
                {"text": "无法处置", "style": 2, "key": "nack"},
            ],
        },
    }


def outcome_card(task_id: str) -> dict[str, Any]:
    return {
        "touser": "zhangsan",
        "msgtype": "template_card",
        "agentid": 1000002,
        "template_card": {
            "card_type": "multiple_interaction",
            "task_id": task_id,
            "main_title": {"title": "回报处置结果"},
            "select_list": [
                {
                    "question_key": "outcome",
                    "title": "结果",
                    "option_list": [{"id": "dissuaded", "text": "劝阻成功"}, {"id": "defrauded", "text": "已被骗"}],
                },
                {
                    "question_key": "contact",
                    "title": "方式",
                    "selected_id": "phone",
                    "option_list": [{"id": "phone", "text": "电话"}, {"id": "visit", "text": "上门"}],
                },
            ],
            "submit_button": {"text": "提交结果", "key": "report"},
        },
    }


def markdown_to_group(content: str) -> dict[str, Any]:
    return {"chatid": GROUP, "msgtype": "markdown", "markdown": {"content": content}}


# --- in the browser -----------------------------------------------------------------------------------


async def test_member_opens_group_and_sees_markdown_rendered(corp, browser):
    corp.send(
        "appchat/send",
        markdown_to_group(
            "## 预警指令 YJ-7\n**唐某**，138****8000\n> 涉诈来电 · 冒充公检法\n"
            '<font color="warning">高风险</font> [详情](https://example.org/i/7?a=1&b=2)'
        ),
    )
    corp.send("webhook/send", {"msgtype": "text", "text": {"content": "不轻信、不转账"}}, key="robot-1")
    page = await open_page(browser, f"{corp.url}/_sim/chat")
    await page.get_by_test_id("member-zhangsan").click()
    await expect(page.get_by_test_id("conversation-robot-robot-1")).to_contain_text("不轻信、不转账")
    await expect(page.get_by_test_id("conversation-app")).to_be_visible()
    await page.get_by_test_id(f"conversation-{GROUP}").click()

    message = page.get_by_test_id("message")
    await expect(message).to_have_count(1)
    await expect(message.locator("strong")).to_have_text("唐某")
    await expect(message.locator("blockquote")).to_have_text("涉诈来电 · 冒充公检法")
    await expect(message.locator(".md-warning")).to_have_text("高风险")
    await expect(message.locator("a")).to_have_attribute("href", "https://example.org/i/7?a=1&b=2")
    body = await message.get_by_test_id("message-body").inner_text()
    assert "**" not in body.replace("138****8000", "") and "<font" not in body and "138****8000" in body
    await expect(message.get_by_test_id("message-sender")).to_have_text("劝阻")
    await expect(page.get_by_test_id("chat-title")).to_contain_text("东门派出所")
    # 王五 is not in the station group: he has the robot group and the app only.
    await page.goto(corp.chat_url("wangwu"))
    await expect(page.get_by_test_id("conversations").locator("a")).to_have_count(2)
    await expect(page.get_by_test_id(f"conversation-{GROUP}")).to_have_count(0)


async def test_click_sign_button_updates_card_and_group_message_arrives_live(corp, browser):
    corp.send("message/send", button_card("yj-7-grid"))
    mine = await open_page(browser, corp.chat_url("zhangsan", "app"))
    group = await open_page(browser, corp.chat_url("lisi", GROUP))
    await expect(group.get_by_test_id("message")).to_have_count(0)

    card = mine.get_by_test_id("card")
    await expect(card.get_by_test_id("card-title")).to_have_text("预警指令 YJ-7")
    await expect(card.get_by_test_id("card-row")).to_have_text(["对象唐某", "民警李四"])
    await card.get_by_test_id("card-select-who").select_option("grid")
    await card.get_by_test_id("card-button").filter(has_text="签收").click()

    await expect(card.get_by_test_id("card-replace-text")).to_have_text("已签收")
    await expect(card.get_by_test_id("card-button")).to_have_count(0)
    # Greyed out, the card keeps showing what the member chose.
    await expect(card.get_by_test_id("card-select-who")).to_be_disabled()
    await expect(card.get_by_test_id("card-select-who")).to_have_value("grid")
    # The bot posts to the group 0.3 s after answering the click; the other member's open page shows it.
    posted = group.get_by_test_id("message")
    await expect(posted).to_have_count(1)
    await expect(posted.locator("strong")).to_have_text("zhangsan")
    await expect(posted).to_contain_text("已签收 yj-7-grid")
    assert await group.evaluate("window.__samePage") is True
    assert await mine.evaluate("window.__samePage") is True

    (event,) = corp.bot.events
    assert event["Event"] == "template_card_event" and event["FromUserName"] == "zhangsan"
    assert event["EventKey"] == "ack" and event["TaskId"] == "yj-7-grid" and event["CardType"] == "button_interaction"
    assert event["SelectedItems"] == {"who": ["grid"]}
    sent = corp.sim.log.query(api="message/send")[0]
    assert event["ResponseCode"] and event["ResponseCode"] != sent["response_code"]
    assert corp.sim.card("zhangsan", "yj-7-grid")["replace_text"] == "已签收"


async def test_submit_multiple_interaction_sends_chosen_options(corp, browser):
    corp.send("message/send", outcome_card("yj-8-outcome"))
    page = await open_page(browser, corp.chat_url("zhangsan", "app"))
    card = page.get_by_test_id("card")
    outcome = card.get_by_test_id("card-select-outcome")
    # No default answer: the browser does not let the card be submitted without one.
    await expect(outcome).to_have_value("")
    assert await outcome.evaluate("select => select.validity.valid") is False
    await outcome.select_option("dissuaded")
    await card.get_by_test_id("card-select-contact").select_option(label="上门")

    # Something else arrives meanwhile: the live update keeps the untouched card and its choices.
    revision = await page.get_attribute("[data-chat-root]", "data-revision")
    corp.send(
        "message/send", {"touser": "zhangsan", "msgtype": "text", "agentid": 1000002, "text": {"content": "请回报"}}
    )
    await expect(page.get_by_test_id("message")).to_have_count(2)
    assert await page.get_attribute("[data-chat-root]", "data-revision") != revision
    await expect(outcome).to_have_value("dissuaded")

    await card.get_by_test_id("card-submit").click()
    await expect(card.get_by_test_id("card-replace-text")).to_have_text("已提交")
    await expect(card.get_by_test_id("card-submit")).to_have_count(0)
    await expect(card.get_by_test_id("card-select-contact")).to_have_value("visit")
    await expect(outcome).to_be_disabled()
    (event,) = corp.bot.events
    assert event["EventKey"] == "report" and event["CardType"] == "multiple_interaction"
    assert event["SelectedItems"] == {"outcome": ["dissuaded"], "contact": ["visit"]}


async def test_typed_text_reaches_bot_and_reply_appears(corp, browser):
    page = await open_page(browser, corp.chat_url("zhangsan", "app"))
    await page.get_by_test_id("chat-input").fill("签收 7")
    await page.get_by_test_id("chat-send").click()

    messages = page.get_by_test_id("message")
    await expect(messages).to_have_count(2)
    await expect(messages.nth(0)).to_have_class("msg mine")
    await expect(messages.nth(0).get_by_test_id("message-body")).to_have_text("签收 7")
    await expect(messages.nth(1).get_by_test_id("message-body")).to_have_text("收到：签收 7")
    await expect(messages.nth(1).get_by_test_id("message-sender")).to_have_text("劝阻")
    await expect(page.get_by_test_id("chat-input")).to_have_value("")
    assert [e["Content"] for e in corp.bot.events] == ["签收 7"]
    assert [t["api"] for t in corp.sim.texts.query(user="zhangsan")] == ["callback/text", "reply/text"]


async def test_html_in_content_is_shown_as_text_never_run(corp, browser):
    attack = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
    corp.send("appchat/send", markdown_to_group(f"**注意** {attack}\n[点我](javascript:window.__pwned=3)"))
    corp.send(
        "message/send", {"touser": "zhangsan", "msgtype": "text", "agentid": 1000002, "text": {"content": attack}}
    )
    card = button_card("yj-9-xss")
    card["template_card"]["main_title"]["title"] = attack
    corp.send("message/send", card)

    page = await open_page(browser, corp.chat_url("zhangsan", GROUP))
    body = page.get_by_test_id("message-body")
    await expect(body).to_contain_text(attack)
    await expect(body.locator("strong")).to_have_text("注意")
    await expect(body).to_contain_text("[点我](javascript:window.__pwned=3)")
    await page.goto(corp.chat_url("zhangsan", "app"))
    await expect(page.get_by_test_id("message-body")).to_have_text(attack)
    await expect(page.get_by_test_id("card-title")).to_have_text(attack)
    assert await page.locator("#messages script, #messages img, #messages [onerror]").count() == 0
    assert await page.evaluate("window.__pwned") is None


# --- over plain HTTP ----------------------------------------------------------------------------------


async def test_index_lists_members_and_groups(corp, aiohttp_client):
    client = await aiohttp_client(create_simulator_app(corp.sim))
    resp = await client.get("/_sim/chat")
    page = await resp.text()
    assert resp.status == 200 and "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert 'href="/_sim/chat/zhangsan"' in page and 'data-testid="member-wangwu"' in page and "王五" in page
    assert f'href="/_sim/chat/lisi?c={GROUP}"' in page and 'href="/_sim/chat/wangwu?c=robot-robot-1"' in page
    assert (await client.get("/_sim/chat/nobody")).status == 404
    assert (await client.get("/_sim/chat/wangwu", params={"c": GROUP})).status == 404
    assert (await client.get("/_sim/assets/chat.js")).status == 200
    assert (await client.get("/_sim/assets/other.js")).status == 404


async def test_updates_report_changes_by_revision(corp, aiohttp_client):
    client = await aiohttp_client(create_simulator_app(corp.sim))
    url = "/_sim/chat/zhangsan/updates"
    first = await (await client.get(url, params={"c": GROUP})).json()
    assert first["changed"] is True and first["items"] == []
    same = await (await client.get(url, params={"c": GROUP, "since": str(first["revision"])})).json()
    assert same == {"revision": first["revision"], "changed": False}
    corp.send("appchat/send", markdown_to_group("**新消息**"))
    later = await (await client.get(url, params={"c": GROUP, "since": str(first["revision"])})).json()
    assert later["changed"] is True and later["revision"] > first["revision"]
    (item,) = later["items"]
    assert "<strong>新消息</strong>" in item["html"] and item["key"].startswith("m")
    assert "新消息" in later["conversations_html"]


async def test_card_actions_are_checked_against_what_the_member_sees(corp, aiohttp_client):
    client = await aiohttp_client(create_simulator_app(corp.sim))
    corp.send("message/send", button_card("yj-10", touser="zhangsan|lisi"))
    json_accept = {"Accept": "application/json"}

    async def click(userid: str, **form: str) -> aiohttp.ClientResponse:
        return await client.post(f"/_sim/chat/{userid}/card", data=form, headers=json_accept)

    assert (await click("wangwu", task_id="yj-10", event_key="ack")).status == 404
    assert (await click("zhangsan", task_id="yj-10", event_key="nope")).status == 400
    # A plain form post (no script) is answered with a redirect back to the conversation.
    resp = await client.post(
        "/_sim/chat/zhangsan/card", data={"task_id": "yj-10", "event_key": "nack", "c": "app"}, allow_redirects=False
    )
    assert resp.status == 303 and resp.headers["Location"] == "/_sim/chat/zhangsan?c=app"
    assert corp.bot.events[-1]["EventKey"] == "nack" and corp.bot.events[-1]["SelectedItems"] == {"who": ["self"]}
    again = await click("zhangsan", task_id="yj-10", event_key="ack")
    assert again.status == 409 and "已签收" in (await again.json())["error"]
    # lisi's copy of the card is untouched and still takes clicks.
    resp = await click("lisi", task_id="yj-10", event_key="ack", **{"q.who": "grid"})
    assert resp.status == 200 and (await resp.json())["card_updated"] is True
    assert corp.bot.events[-1]["SelectedItems"] == {"who": ["grid"]}
    views = (await (await client.get("/_sim/cards", params={"user": "lisi"})).json())["cards"]
    assert views[0]["selections"] == {"who": ["grid"]} and views[0]["card"]["replace_text"] == "已签收"

    corp.sim.config.callback_url = None
    resp = await client.post("/_sim/chat/zhangsan/text", data={"content": "hi"}, headers=json_accept)
    assert resp.status == 409


async def test_vote_card_menu_and_a_locked_card_update(corp, aiohttp_client):
    client = await aiohttp_client(create_simulator_app(corp.sim))
    vote = {
        "card_type": "vote_interaction",
        "task_id": "vote-1",
        "main_title": {"title": "本周宣防"},
        "action_menu": {"desc": "更多", "action_list": [{"text": "不再提醒", "key": "mute"}]},
        "checkbox": {
            "question_key": "where",
            "mode": 1,
            "option_list": [{"id": "hall", "text": "社区讲座", "is_checked": True}, {"id": "door", "text": "入户走访"}],
        },
        "submit_button": {"text": "投票", "key": "vote"},
    }
    corp.send(
        "message/send", {"touser": "zhangsan", "msgtype": "template_card", "agentid": 1000002, "template_card": vote}
    )
    page = await (await client.get("/_sim/chat/zhangsan", params={"c": "app"})).text()
    assert 'data-testid="card-checkbox-where"' in page and 'value="hall" checked' in page
    assert 'data-testid="card-menu-item"' in page

    json_accept = {"Accept": "application/json"}
    form = aiohttp.FormData([("task_id", "vote-1"), ("event_key", "vote"), ("q.where", "door"), ("q.where", "hall")])
    resp = await client.post("/_sim/chat/zhangsan/card", data=form, headers=json_accept)
    assert resp.status == 200
    event = corp.bot.events[-1]
    assert event["EventKey"] == "vote" and event["CardType"] == "vote_interaction"
    assert event["SelectedItems"] == {"where": ["door", "hall"]}
    menu = {"task_id": "vote-1", "event_key": "mute", "event": "template_card_menu_event"}
    assert (await client.post("/_sim/chat/zhangsan/card", data=menu, headers=json_accept)).status == 200
    assert corp.bot.events[-1]["Event"] == "template_card_menu_event" and corp.bot.events[-1]["SelectedItems"] == {}

    # The app replaces the whole card with a locked outcome form: it shows, disabled, with its own choice.
    outcome = outcome_card("yj-11")["template_card"]
    corp.send("message/send", outcome_card("yj-11"))
    sent = corp.sim.log.query(api="message/send")[-1]
    locked = {
        **outcome,
        "select_list": [
            {**s, "selected_id": s["option_list"][1]["id"], "disable": True} for s in outcome["select_list"]
        ],
    }
    corp.send(
        "message/update_template_card",
        {"userids": ["zhangsan"], "agentid": 1000002, "response_code": sent["response_code"], "template_card": locked},
    )
    items = (await (await client.get("/_sim/chat/zhangsan/updates", params={"c": "app"})).json())["items"]
    html = items[-1]["html"]
    assert 'data-testid="card-select-outcome" disabled' in html and 'value="defrauded" selected' in html
    resp = await client.post(
        "/_sim/chat/zhangsan/card",
        data={"task_id": "yj-11", "event_key": "report", "q.outcome": "dissuaded"},
        headers=json_accept,
    )
    assert resp.status == 200
    assert corp.bot.events[-1]["SelectedItems"] == {"outcome": ["defrauded"], "contact": ["visit"]}


async def test_failed_callback_is_shown_on_the_typed_text(corp, aiohttp_client):
    client = await aiohttp_client(create_simulator_app(corp.sim))
    corp.sim.config.callback_url = str(client.make_url("/no-such-bot"))
    corp.sim.config.callback_retries = 0
    resp = await client.post(
        "/_sim/chat/zhangsan/text", data={"content": "在吗"}, headers={"Accept": "application/json"}
    )
    answer = await resp.json()
    assert answer["ok"] is False and answer["status"] == 404 and "HTTP 404" in answer["notice"]
    page = await (await client.get("/_sim/chat/zhangsan", params={"c": "app"})).text()
    assert "在吗" in page and 'data-testid="message-failed"' in page


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("**唐某** 138****8000", "<strong>唐某</strong> 138****8000"),
        ("# 标题\n正文", '<div class="md-h md-h1">标题</div><div class="md-p">正文</div>'),
        ("> 引用1\n> 引用2", "<blockquote>引用1<br>引用2</blockquote>"),
        ('<font color="comment">灰</font>', '<span class="md-comment">灰</span>'),
        ("[链接](https://a.example/?x=1&y=2)", '<a href="https://a.example/?x=1&amp;y=2" target="_blank"'),
        ("[坏](javascript:alert(1))", "[坏](javascript:alert(1))"),
        ('<font color="info" onclick="x()">绿</font>', "&lt;font color=&quot;info&quot; onclick="),
        ("<b>粗</b>", "&lt;b&gt;粗&lt;/b&gt;"),
        ("`**不加粗**`", '<code class="md-code">**不加粗**</code>'),
    ],
)
def test_markdown_subset_is_rendered_and_the_rest_escaped(source, expected):
    assert expected in render_markdown(source)


def test_text_messages_keep_only_http_links_and_previews_are_plain():
    html = render_text('第一行\n<a href="https://a.example/x">看</a><a href="javascript:x()">坏</a>')
    assert html.startswith('第一行<br><a href="https://a.example/x"')
    assert "&lt;a href=&quot;javascript:x()&quot;&gt;坏&lt;/a&gt;" in html
    assert (
        plain_markdown('## 预警\n**唐某** <font color="warning">高</font>\n> [详情](https://x)') == "预警 唐某 高 详情"
    )
