"""The loop back from WeCom: signed, encrypted callbacks sent by the simulator to the running bot."""

from __future__ import annotations

import time

import pytest
from wechatpy.enterprise.crypto import WeChatCrypto

from tests.helpers import (
    AUTH,
    eventually,
    instruction,
    instruction_detail,
    sim_messages,
    wait_for_messages,
    wait_state,
)


async def _dispatched(bot, sim_client, **overrides) -> int:
    resp = await bot.post("/api/v1/instructions", json=instruction(**overrides), headers=AUTH)
    assert resp.status == 202
    number = (await resp.json())["id"]
    await wait_state(bot, number, "dispatched")
    return number


async def _card_task(sim_client, userid: str, number: int) -> str:
    cards = await sim_messages(sim_client, user=userid, api="message/send")
    return next(m["task_id"] for m in cards if m["body"]["template_card"]["main_title"]["title"].endswith(f"#{number}"))


def _reply_text(result: dict) -> str:
    reply = result["reply"] or ""
    start = reply.index("<Content><![CDATA[") + len("<Content><![CDATA[")
    return reply[start:reply.index("]]></Content>")]


# -- sign-for by card --------------------------------------------------------------------------


async def test_grid_worker_signs_by_card_and_the_station_group_reads_it(bot, sim, sim_client):
    number = await _dispatched(bot, sim_client)
    task_id = await _card_task(sim_client, "liuhong", number)
    sim.clock.advance(192)  # 3 min 12 s after the instruction arrived

    result = await sim.click_card("liuhong", task_id, f"ack:{number}", card_type="button_interaction")
    assert result["status"] == 200
    assert result["card_updated"] is True
    card = sim.card("liuhong", task_id)
    assert card["replace_text"] == "已签收"

    notices = await wait_for_messages(sim_client, 2, chatid="dmstation")
    assert f"网格员〈刘红〉已签收 #{number} 上门任务（用时 3分12秒）" in notices[-1]["body"]["markdown"]["content"]
    detail = await instruction_detail(bot, number)
    assert detail["state"] == "acknowledged"
    ack = next(e for e in detail["timeline"] if e["action"] == "ack")
    assert ack["actor"] == "liuhong" and ack["channel"] == "card"
    assert ack["from_state"] == "dispatched" and ack["to_state"] == "acknowledged"
    assert ack["detail"]["seconds_since_received"] >= 192

    # and the outcome card arrives for her
    feedback = await wait_for_messages(sim_client, 2, user="liuhong", api="message/send")
    assert feedback[-1]["body"]["template_card"]["card_type"] == "multiple_interaction"


async def test_retried_callback_is_processed_once(bot, sim, sim_client):
    number = await _dispatched(bot, sim_client)
    task_id = await _card_task(sim_client, "liuhong", number)
    plaintext = (
        f"<xml><ToUserName><![CDATA[{sim.config.corp_id}]]></ToUserName><FromUserName><![CDATA[liuhong]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[template_card_event]]></Event><EventKey><![CDATA[ack:{number}]]></EventKey>"
        f"<TaskId><![CDATA[{task_id}]]></TaskId><CardType><![CDATA[button_interaction]]></CardType>"
        f"<ResponseCode><![CDATA[rc-1]]></ResponseCode><AgentID>{sim.config.agent_id}</AgentID></xml>"
    )
    first = await sim.send_callback(plaintext)
    second = await sim.send_callback(plaintext)  # WeCom retrying the same event
    assert first["status"] == second["status"] == 200
    detail = await instruction_detail(bot, number)
    assert [e["action"] for e in detail["timeline"]].count("ack") == 1
    await wait_for_messages(sim_client, 2, chatid="dmstation")
    assert len(await sim_messages(sim_client, chatid="dmstation")) == 2


# -- outcome -----------------------------------------------------------------------------------


async def test_outcome_card_resolves_the_instruction(bot, sim, sim_client):
    number = await _dispatched(bot, sim_client)
    await sim.click_card("liuhong", await _card_task(sim_client, "liuhong", number), f"ack:{number}",
                         card_type="button_interaction")
    feedback = (await wait_for_messages(sim_client, 2, user="liuhong", api="message/send"))[-1]
    result = await sim.click_card(
        "liuhong", feedback["task_id"], f"report:{number}", card_type="multiple_interaction",
        selected_items=[{"question_key": "method", "option_ids": ["home"]},
                        {"question_key": "outcome", "option_ids": ["success"]}],
    )
    assert result["status"] == 200
    assert sim.card("liuhong", feedback["task_id"])["replace_text"] == "已反馈"
    detail = await wait_state(bot, number, "resolved")
    report = next(e for e in reversed(detail["timeline"]) if e["action"] == "report")
    assert (report["detail"]["method"], report["detail"]["outcome"]) == ("上门", "劝阻成功")
    notices = await wait_for_messages(sim_client, 3, chatid="dmstation")
    assert "【反馈】" in notices[-1]["body"]["markdown"]["content"]


async def test_report_command_with_amount_and_note_counts_as_signing(bot, sim, sim_client):
    number = await _dispatched(bot, sim_client)
    result = await sim.send_text("liuhong", f"反馈 {number} 见面 劝阻成功 挽损十万 老人已醒悟")
    assert "已记录反馈" in _reply_text(result) and "挽损 10万元" in _reply_text(result)
    detail = await instruction_detail(bot, number)
    assert detail["state"] == "resolved"
    # What people did, in order (the outbox's "delivered" events interleave as WeCom answers).
    done = [e for e in detail["timeline"] if e["action"] not in ("delivered", "dispatched")]
    assert [e["action"] for e in done][-2:] == ["ack", "report"]
    assert done[-2]["detail"]["implicit"] is True
    report = done[-1]["detail"]
    assert report == {"method": "见面", "outcome": "劝阻成功", "loss_avoided": 100000.0, "amount_lost": None,
                      "note": "老人已醒悟", "stage": "visit"}


async def test_unreachable_keeps_the_instruction_open(bot, sim, sim_client):
    number = await _dispatched(bot, sim_client)  # high risk: the grid worker was sent to the door at once
    result = await sim.send_text("wangqiang", f"反馈 {number} 电话 无法联系")
    assert "请继续联系或上门劝阻" in _reply_text(result)
    assert (await instruction_detail(bot, number))["state"] == "visit_required"
    result = await sim.send_text("liuhong", f"反馈 {number} 上门 劝阻成功")
    assert (await instruction_detail(bot, number))["state"] == "resolved"


# -- closing and state machine -----------------------------------------------------------------


async def test_officer_closes_and_the_group_gets_a_summary(bot, sim, sim_client):
    number = await _dispatched(bot, sim_client)
    refused = await sim.send_text("wangqiang", f"结案 {number}")
    assert "尚未反馈劝阻结果，不能结案" in _reply_text(refused)
    await sim.send_text("liuhong", f"反馈 {number} 见面 劝阻成功 挽损3.5万元")
    by_worker = await sim.send_text("liuhong", f"结案 {number}")
    assert "只有指令" in _reply_text(by_worker) and "民警或所领导" in _reply_text(by_worker)
    closed = await sim.send_text("wangqiang", f"结案 {number}")
    assert f"已结案 #{number}" in _reply_text(closed)
    detail = await instruction_detail(bot, number)
    assert detail["state"] == "closed"
    assert [e["action"] for e in detail["timeline"]].count("refused") == 1
    summary = (await wait_for_messages(sim_client, 3, chatid="dmstation"))[-1]["body"]["markdown"]["content"]
    assert summary.startswith(f"【结案】#{number}") and "挽损 3.5万元" in summary
    again = await sim.send_text("liuhong", f"反馈 {number} 见面 劝阻成功")
    assert "不能反馈" in _reply_text(again)


async def test_second_assignee_signing_is_recorded_without_changing_state(bot, sim, sim_client):
    number = await _dispatched(bot, sim_client)
    await sim.send_text("wangqiang", f"签收 {number}")
    result = await sim.send_text("liuhong", f"签收 {number}")
    assert "此前已由 王强 签收" in _reply_text(result)
    again = await sim.send_text("liuhong", f"签收 {number}")
    assert "已签收" in _reply_text(again)
    detail = await instruction_detail(bot, number)
    assert [e["action"] for e in detail["timeline"]].count("ack") == 2
    assert detail["state"] == "acknowledged"


# -- authorisation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("userid", "command", "allowed"),
    [
        ("liuhong", "签收", True),  # the grid's worker
        ("wangqiang", "签收", True),  # the station's on-duty officer
        ("lina", "签收", True),  # another officer of the station
        ("chenlong", "签收", True),  # the station leader
        ("zhengjie", "签收", True),  # the center
        ("zhangwei", "签收", False),  # grid worker of another grid of the same station
        ("zhaolei", "签收", False),  # officer of another station
        ("sunli", "签收", False),  # grid worker of another station
        ("liuhong", "转派 {n} zhangwei", False),
        ("zhaolei", "转派 {n} zhangwei", False),
        ("lina", "转派 {n} zhangwei", True),
    ],
)
async def test_authorisation_matrix(bot, sim, sim_client, userid, command, allowed):
    number = await _dispatched(bot, sim_client)
    text = command.format(n=number) if "{n}" in command else f"{command} {number}"
    result = await sim.send_text(userid, text)
    detail = await instruction_detail(bot, number)
    actions = [e for e in detail["timeline"] if e["actor"] == userid]
    if allowed:
        assert actions and actions[-1]["action"] in ("ack", "reassign")
        assert "抱歉" not in _reply_text(result)
    else:
        assert "抱歉" in _reply_text(result)
        assert [e["action"] for e in actions] == ["refused"]


async def test_stranger_is_told_they_are_not_in_the_directory(bot, sim, sim_client):
    sim.add_user("visitor", "访客")
    number = await _dispatched(bot, sim_client)
    result = await sim.send_text("visitor", f"签收 {number}")
    assert "不在反诈处置通讯录中" in _reply_text(result)


async def test_reassign_sends_a_card_to_the_new_assignee(bot, sim, sim_client):
    number = await _dispatched(bot, sim_client)
    result = await sim.send_text("wangqiang", f"转派 {number} zhangwei")
    assert "已将" in _reply_text(result) and "张伟" in _reply_text(result)
    card = (await wait_for_messages(sim_client, 1, user="zhangwei", api="message/send"))[0]
    assert card["body"]["template_card"]["button_list"][0]["key"] == f"ack:{number}"
    tasks = await sim.send_text("zhangwei", "我的任务")
    assert f"#{number}" in _reply_text(tasks)
    released = await sim.send_text("liuhong", "我的任务")
    assert "没有未办结" in _reply_text(released)
    unknown = await sim.send_text("wangqiang", f"转派 {number} nobody")
    assert "通讯录中没有用户 nobody" in _reply_text(unknown)


# -- commands ----------------------------------------------------------------------------------


async def test_my_tasks_lists_open_tasks_oldest_first(bot, sim, sim_client):
    first = await _dispatched(bot, sim_client)
    second = await _dispatched(bot, sim_client, risk_level="low")  # the on-duty officer's alone: a phone task
    text = _reply_text(await sim.send_text("wangqiang", "我的任务"))
    assert text.index(f"#{first}") < text.index(f"#{second}")
    assert "2 条未办结" in text
    assert text.count("时限：签收 ") == 2 and "还剩 4分" in text  # high risk: 5 minutes to sign
    await sim.send_text("wangqiang", f"反馈 {first} 电话 误报")
    text = _reply_text(await sim.send_text("wangqiang", "我的任务"))
    assert f"#{first} " not in text and f"#{second}" in text


async def test_query_shows_state_and_masks_for_people_not_assigned(bot, sim, sim_client):
    number = await _dispatched(bot, sim_client)
    mine = _reply_text(await sim.send_text("liuhong", f"查询 {number}"))
    assert "唐小明" in mine and "已推送" in mine
    leader_view = _reply_text(await sim.send_text("chenlong", f"查询 {number}"))
    assert "唐小明" in leader_view
    assert "不存在" in _reply_text(await sim.send_text("liuhong", "查询 99999"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("帮助", "可用指令"),
        ("你好", "没有“你好”这个指令"),
        ("", "可用指令"),
        ("签收", "请写明指令编号，例如：签收 123"),
        ("签收 abc", "请写明指令编号"),
        ("反馈 {n} 见面", "请写明劝阻结果"),
        ("反馈 {n} 见面 劝阻成功 挽损很多", "无法识别金额"),
        ("转派 {n}", "请写明转派给谁"),
    ],
)
async def test_commands_with_bad_arguments_get_a_clear_answer(bot, sim, sim_client, text, expected):
    number = await _dispatched(bot, sim_client)
    result = await sim.send_text("wangqiang", text.format(n=number))
    assert expected in _reply_text(result)
    assert (await instruction_detail(bot, number))["state"] == "dispatched"


# -- the callback endpoint itself --------------------------------------------------------------


async def test_url_verification(bot, sim):
    result = await sim.verify_callback()
    assert result["ok"] is True


async def test_forged_and_malformed_callbacks_are_refused(bot, sim):
    crypto = WeChatCrypto(sim.config.token, sim.config.encoding_aes_key, sim.config.corp_id)
    xml = "<xml><FromUserName>liuhong</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType>" \
          "<Content>签收 1</Content><MsgId>1</MsgId></xml>"
    envelope = crypto.encrypt_message(xml, "nonce1", 1700000000)
    encrypt = envelope.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    signature = envelope.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
    body = f"<xml><ToUserName>x</ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    params = {"msg_signature": signature, "timestamp": "1700000000", "nonce": "nonce1"}

    ok = await bot.post("/wecom/callback", params=params, data=body)
    assert ok.status == 200
    forged = await bot.post("/wecom/callback", params={**params, "msg_signature": "0" * 40}, data=body)
    assert forged.status == 403
    tampered = await bot.post("/wecom/callback", params=params, data=body.replace(encrypt[:8], "AAAAAAAA"))
    assert tampered.status == 403  # the signature covers the ciphertext
    other_corp = WeChatCrypto(sim.config.token, sim.config.encoding_aes_key, "wwsomeoneelse")
    envelope = other_corp.encrypt_message(xml, "nonce2", 1700000000)
    foreign = {"msg_signature": envelope.split("<MsgSignature><![CDATA[")[1].split("]]>")[0],
               "timestamp": "1700000000", "nonce": "nonce2"}
    foreign_body = "<xml><Encrypt><![CDATA[" + envelope.split("<Encrypt><![CDATA[")[1].split("]]>")[0] + \
        "]]></Encrypt></xml>"
    assert (await bot.post("/wecom/callback", params=foreign, data=foreign_body)).status == 403
    assert (await bot.post("/wecom/callback", params=params, data="not xml")).status == 400
    bomb = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><xml>&b;</xml>'
    assert (await bot.post("/wecom/callback", params=params, data=bomb)).status == 400
    assert (await bot.post("/wecom/callback", params=params, data="x" * 70000)).status == 413


async def test_stale_callbacks_are_refused_when_a_freshness_window_is_set(aiohttp_client, sim, sim_server,
                                                                          make_settings):
    from bot.app import create_app

    settings = make_settings(str(sim_server.make_url("")).rstrip("/"), wecom={"callback_max_age": 300})
    client = await aiohttp_client(create_app(settings, clock=sim.clock.now))
    sim.config.callback_url = str(client.make_url("/wecom/callback"))
    fresh = await sim.send_text("liuhong", "帮助")
    assert fresh["status"] == 200
    sim.clock.advance(3600)  # the simulator now stamps callbacks an hour ahead of the bot's wall clock
    stale = await sim.send_text("liuhong", "帮助")
    assert stale["status"] == 403


async def test_api_shows_assignments_and_outcome(bot, sim, sim_client):
    number = await _dispatched(bot, sim_client)
    await sim.send_text("liuhong", f"反馈 {number} 见面 劝阻成功 挽损10万 老人已醒悟")
    detail = await instruction_detail(bot, number)
    assert detail["outcome"]["result"] == "劝阻成功" and detail["outcome"]["loss_avoided"] == 100000
    assert detail["outcome"]["by"] == "liuhong" and detail["acknowledged"]["by"] == "liuhong"
    roles = {a["userid"]: (a["role"], a["acked_at"] is not None) for a in detail["assignments"]}
    assert roles == {"liuhong": ("网格员", True), "wangqiang": ("值班民警", False)}


async def test_callback_stored_before_a_crash_is_finished_at_start(aiohttp_client, sim, sim_server, sim_client,
                                                                   make_settings):
    from bot.app import create_app
    from storage import open_storage

    settings = make_settings(str(sim_server.make_url("")).rstrip("/"))
    first = await aiohttp_client(create_app(settings, clock=sim.clock.now))
    number = await _dispatched(first, sim_client)
    await first.close()
    # What a crash right after storing a callback leaves behind: stored, not acted on.
    storage = await open_storage(settings.database)
    plaintext = (f"<xml><ToUserName>{sim.config.corp_id}</ToUserName><FromUserName>liuhong</FromUserName>"
                 f"<CreateTime>1</CreateTime><MsgType>text</MsgType><Content>签收 {number}</Content>"
                 f"<MsgId>42</MsgId></xml>")
    assert await storage.record_callback("msg:42", "liuhong", "TextMessage", plaintext, sim.clock.now())
    await storage.close()

    second = await aiohttp_client(create_app(settings, clock=sim.clock.now))
    assert (await instruction_detail(second, number))["state"] == "acknowledged"
    # the answer cannot be a passive reply any more: it comes as an app message
    texts = await eventually(
        lambda: sim_messages(sim_client, user="liuhong", api="message/send"),
        lambda messages: any(m["msgtype"] == "text" for m in messages),
    )
    assert any(f"已签收 #{number}" in m["body"]["text"]["content"] for m in texts if m["msgtype"] == "text")


async def test_a_photo_to_the_app_gets_the_help_text(bot, sim):
    plaintext = (f"<xml><ToUserName>{sim.config.corp_id}</ToUserName><FromUserName>liuhong</FromUserName>"
                 "<CreateTime>1700000001</CreateTime><MsgType>image</MsgType><PicUrl>http://x/p.jpg</PicUrl>"
                 f"<MediaId>m1</MediaId><MsgId>777</MsgId><AgentID>{sim.config.agent_id}</AgentID></xml>")
    result = await sim.send_callback(plaintext)
    assert "只能识别文字指令" in _reply_text(result) and "可用指令" in _reply_text(result)
