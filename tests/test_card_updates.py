"""Cards that stay true: each person's card is updated in place (message/update_template_card) as its instruction
is signed, reported, re-assigned and closed — each response_code once, within 72 hours — and every card's task_id
is new for ever. Through the running bot, the simulator and real signed callbacks."""

from __future__ import annotations

from bot import inbox
from tests.helpers import (
    eventually,
    instruction_detail,
    sim_messages,
    submit,
    wait_detail,
    wait_for_messages,
    wait_state,
)

UPDATE = "message/update_template_card"


async def _dispatched(bot, **overrides) -> int:
    number = await submit(bot, **overrides)
    await wait_state(bot, number, "dispatched")
    return number


async def _cards(sim_client, userid: str, number: int) -> list[dict]:
    """The cards sent to `userid` for instruction `number`, oldest first, as the simulator logged them."""
    sent = await sim_messages(sim_client, user=userid, api="message/send")
    return [m for m in sent if m["msgtype"] == "template_card"
            and m["body"]["template_card"]["main_title"]["title"].endswith(f"#{number}")]


async def _shows(sim, userid: str, task_id: str, line: str, within: float = 15.0) -> dict:
    """Wait until the card `userid` sees for `task_id` shows the status `line`; the card."""

    async def card():
        return sim.card(userid, task_id)

    return await eventually(card, lambda c: c is not None and c.get("sub_title_text") == f"当前：{line}", within,
                            f"{userid}'s card showing {line}")


async def _updates(sim_client, task_id: str) -> list[dict]:
    return [m for m in await sim_messages(sim_client, api=UPDATE) if m["task_id"] == task_id]


def _text_replies(messages: list[dict]) -> list[str]:
    return [m["body"]["text"]["content"] for m in messages if m["msgtype"] == "text"]


async def test_a_sign_for_shows_on_every_card_and_the_clicked_one_keeps_its_code(bot, sim, sim_client):
    number = await _dispatched(bot)  # high risk: grid worker 刘红 and the officer on duty 王强 get a card each
    (liu,) = await _cards(sim_client, "liuhong", number)
    (wang,) = await _cards(sim_client, "wangqiang", number)
    original = sim.card("liuhong", liu["task_id"])

    click = await sim.click_card("liuhong", liu["task_id"], f"ack:{number}", card_type="button_interaction")
    assert click["status"] == 200 and sim.card("liuhong", liu["task_id"])["replace_text"] == "已签收"  # passive

    theirs = await _shows(sim, "wangqiang", wang["task_id"], "已由 刘红 签收")
    # The card keeps what it carried (the officer needs the resident's phone) and, as his own phone task is
    # not signed for yet, its 签收 button beside 刷新.
    assert theirs["horizontal_content_list"] == sim.card("wangqiang", wang["task_id"])["horizontal_content_list"]
    assert [b["text"] for b in theirs["button_list"]] == ["签收", "刷新"]
    assert theirs["button_list"][1]["key"] == f"refresh:{number}"
    (his_update,) = await _updates(sim_client, wang["task_id"])
    assert his_update["response_code"] == wang["response_code"] and his_update["body"]["userids"] == ["wangqiang"]
    # Hers says 已签收 through the passive reply alone: no call spends her click's code, kept for a later change.
    assert await _updates(sim_client, liu["task_id"]) == []
    mine = sim.card("liuhong", liu["task_id"])
    assert mine["main_title"] == original["main_title"] and mine["replace_text"] == "已签收"
    # He signs for his phone task from the updated card.
    his_click = await sim.click_card("wangqiang", wang["task_id"], f"ack:{number}", card_type="button_interaction")
    assert his_click["status"] == 200 and sim.card("wangqiang", wang["task_id"])["replace_text"] == "已签收"
    detail = await instruction_detail(bot, number)
    assert {a["userid"] for a in detail["assignments"] if a["acked_at"]} == {"liuhong", "wangqiang"}


async def test_report_and_close_reach_the_cards_that_have_codes_and_refresh_brings_the_rest(bot, sim, sim_client):
    number = await _dispatched(bot)
    (liu,) = await _cards(sim_client, "liuhong", number)
    (wang,) = await _cards(sim_client, "wangqiang", number)
    await sim.click_card("liuhong", liu["task_id"], f"ack:{number}", card_type="button_interaction")
    await _shows(sim, "wangqiang", wang["task_id"], "已由 刘红 签收")  # his send code is spent now
    feedback = (await eventually(lambda: _cards(sim_client, "liuhong", number), lambda c: len(c) == 2))[-1]
    assert feedback["body"]["template_card"]["card_type"] == "multiple_interaction"

    await sim.click_card("liuhong", feedback["task_id"], f"report:{number}", card_type="multiple_interaction",
                         selected_items=[{"question_key": "method", "option_ids": ["meet"]},
                                         {"question_key": "outcome", "option_ids": ["success"]}])
    await wait_state(bot, number, "resolved")
    assert sim.card("liuhong", feedback["task_id"])["replace_text"] == "已反馈"  # the passive reply, no call
    await _shows(sim, "liuhong", liu["task_id"], "已反馈：劝阻成功（刘红），待结案")  # with her card's send code

    refused = await sim.send_text("wangqiang", f"结案 {number} 劝阻成功")
    assert refused["status"] == 200
    await wait_state(bot, number, "closed")
    # Her two cards still had codes (the outcome card's send code, the sign-for card's click code); his none.
    await _shows(sim, "liuhong", feedback["task_id"], "已结案：劝阻成功")
    await _shows(sim, "liuhong", liu["task_id"], "已结案：劝阻成功")
    assert sim.card("wangqiang", wang["task_id"])["sub_title_text"] == "当前：已由 刘红 签收"
    assert len(await _updates(sim_client, wang["task_id"])) == 1  # a spent code is never tried again

    # 刷新 brings a fresh code, and with it the card's current state.
    refresh = await sim.click_card("wangqiang", wang["task_id"], f"refresh:{number}", card_type="button_interaction")
    assert refresh["status"] == 200 and not refresh["reply"]
    await _shows(sim, "wangqiang", wang["task_id"], "已结案：劝阻成功")
    assert (await _updates(sim_client, wang["task_id"]))[-1]["response_code"] == refresh["response_code"]
    detail = await instruction_detail(bot, number)
    assert not any(d["state"] == "failed" for d in detail["deliveries"])


async def test_a_stale_card_is_refused_with_a_reply_and_brought_up_to_date(bot, sim, sim_client):
    number = await _dispatched(bot)
    (wang,) = await _cards(sim_client, "wangqiang", number)
    sim.clock.advance(73 * 3600)  # every code of the dispatch has expired: no card can be updated
    await sim.send_text("liuhong", f"反馈 {number} 见面 劝阻成功")
    await wait_state(bot, number, "resolved")
    assert await _updates(sim_client, wang["task_id"]) == []
    assert sim.card("wangqiang", wang["task_id"])["button_list"][0]["text"] == "签收"  # stale

    click = await sim.click_card("wangqiang", wang["task_id"], f"ack:{number}", card_type="button_interaction")
    assert click["status"] == 200 and not click["reply"]
    texts = await eventually(lambda: sim_messages(sim_client, user="wangqiang", api="message/send"),
                             lambda m: _text_replies(m), what="the refusal")
    assert f"指令 #{number} 已签收（当前：已反馈）" in _text_replies(texts)[-1]
    await _shows(sim, "wangqiang", wang["task_id"], "已反馈：劝阻成功（刘红），待结案")
    assert (await _updates(sim_client, wang["task_id"]))[-1]["response_code"] == click["response_code"]


async def test_a_code_spent_elsewhere_is_dropped_without_alarm(bot, sim, sim_client):
    number = await _dispatched(bot)
    (wang,) = await _cards(sim_client, "wangqiang", number)
    # Someone else (another integration, an operator) spends his card's only code first.
    token = (await (await sim_client.get("/cgi-bin/gettoken", params={
        "corpid": sim.config.corp_id, "corpsecret": sim.config.corp_secret})).json())["access_token"]
    spent = await sim_client.post(f"/cgi-bin/{UPDATE}", params={"access_token": token}, json={
        "userids": ["wangqiang"], "agentid": sim.config.agent_id, "response_code": wang["response_code"],
        "button": {"replace_name": "已处理"}})
    assert (await spent.json())["errcode"] == 0

    await sim.send_text("liuhong", f"签收 {number}")
    detail = await wait_detail(bot, number, lambda d: any(
        x["purpose"] == "card_update" and x["state"] == "failed" for x in d["deliveries"]))
    (dropped,) = [x for x in detail["deliveries"] if x["purpose"] == "card_update" and x["label"] == "wangqiang"]
    assert "60140" in dropped["last_error"] and dropped["attempts"] == 1  # not retried
    assert detail["delivery_failed"] is False
    assert sim.card("wangqiang", wang["task_id"])["replace_text"] == "已处理"
    center = await sim_messages(sim_client, chatid="centercmd")
    assert not any("失败" in m["body"]["markdown"]["content"] for m in center)


async def test_re_assigning_the_same_person_twice_sends_two_cards_with_new_task_ids(bot, sim, sim_client):
    number = await _dispatched(bot, risk_level="medium")  # the officer on duty phones first
    for _ in range(2):
        reply = await sim.send_text("wangqiang", f"转派 {number} lina")
        assert reply["status"] == 200
    cards = await eventually(lambda: _cards(sim_client, "lina", number), lambda c: len(c) == 2)
    assert cards[0]["task_id"] != cards[1]["task_id"]
    assert all(c["delivered_to"] == ["lina"] for c in cards)
    # 王强 was released by the first re-assignment: his card says to whom.
    (wang,) = await _cards(sim_client, "wangqiang", number)
    await _shows(sim, "wangqiang", wang["task_id"], "已转派给 李娜")
    detail = await wait_detail(bot, number, lambda d: all(x["state"] == "sent" for x in d["deliveries"]))
    assert not any("42014" in (x["last_error"] or "") for x in detail["deliveries"])

    # An outcome card, a visit card after the phone stage, a second outcome card: each with a task_id of its own.
    await sim.click_card("lina", cards[1]["task_id"], f"ack:{number}", card_type="button_interaction")
    await sim.send_text("lina", f"反馈 {number} 电话 无法联系")  # 刘红 (grid DM-01) goes to the door
    (visit,) = await eventually(lambda: _cards(sim_client, "liuhong", number), lambda c: len(c) == 1)
    await sim.click_card("liuhong", visit["task_id"], f"ack:{number}", card_type="button_interaction")
    await eventually(lambda: _cards(sim_client, "liuhong", number), lambda c: len(c) == 2, what="her outcome card")
    every = [m for m in await sim_messages(sim_client, api="message/send") if m["msgtype"] == "template_card"]
    task_ids = [m["task_id"] for m in every]
    assert len(task_ids) == 6 and len(set(task_ids)) == 6
    assert all(len(t.encode()) <= 128 for t in task_ids)
    detail = await wait_detail(bot, number, lambda d: all(x["state"] == "sent" for x in d["deliveries"]))
    assert detail["state"] == "visiting" and detail["delivery_failed"] is False


async def test_a_click_slower_than_the_reply_window_greys_its_card_with_its_own_code(bot, sim, sim_client,
                                                                                    monkeypatch):
    number = await _dispatched(bot)
    (liu,) = await _cards(sim_client, "liuhong", number)
    monkeypatch.setattr(inbox, "REPLY_WINDOW", 0.0)  # every click now misses the passive reply
    click = await sim.click_card("liuhong", liu["task_id"], f"ack:{number}", card_type="button_interaction")
    assert click["status"] == 200 and not click["reply"] and not click["card_updated"]
    card = await _shows(sim, "liuhong", liu["task_id"], "已由 刘红 签收")
    assert [b["key"] for b in card["button_list"]] == [f"refresh:{number}"]
    (update,) = await _updates(sim_client, liu["task_id"])
    assert update["response_code"] == click["response_code"]
    await wait_for_messages(sim_client, 2, chatid="dmstation")
