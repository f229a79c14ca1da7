"""Delivery to WeCom through the simulator: routing, tokens, errcodes, limits, restarts."""

from __future__ import annotations

from bot.app import create_app
from storage import open_storage
from tests.conftest import services
from tests.helpers import (
    AUTH,
    instruction,
    instruction_detail,
    sim_messages,
    submit,
    wait_detail,
    wait_for_messages,
    wait_state,
)

_submit = submit


# -- routing ---------------------------------------------------------------------------------------


async def test_station_with_a_group_robot_gets_its_notice_through_the_webhook(bot, sim_client):
    number = await _submit(bot, jurisdiction={"station": "LH", "grid": "LH-02"})
    (notice,) = await wait_for_messages(sim_client, 1, robot="demo-robot-lh-0001")
    assert notice["api"] == "webhook/send"
    assert f"#{number}" in notice["body"]["markdown"]["content"]
    await wait_for_messages(sim_client, 1, user="wujun")
    await wait_for_messages(sim_client, 1, user="zhaolei")
    assert await sim_messages(sim_client, user="sunli", api="message/send") == []  # other grid: no card
    await wait_state(bot, number, "dispatched")


async def test_unknown_grid_goes_to_the_station_and_to_the_center_for_assignment(bot, sim_client):
    number = await _submit(bot, jurisdiction={"station": "DM", "grid": "DM-99"})
    (station,) = await wait_for_messages(sim_client, 1, chatid="dmstation")
    assert "DM-99 未登记" in station["body"]["markdown"]["content"]
    (center,) = await wait_for_messages(sim_client, 1, chatid="centercmd")
    assert "需人工指派" in center["body"]["markdown"]["content"]
    assert "网格编码 DM-99 未在派出所 DM 登记" in center["body"]["markdown"]["content"]
    await wait_for_messages(sim_client, 1, user="wangqiang")
    detail = await wait_state(bot, number, "dispatched")
    assert detail["needs_assignment"] is True
    assert detail["routed"] == {"station": "DM", "grid": None}
    assert await sim_messages(sim_client, user="liuhong", api="message/send") == []  # no card: not her grid


async def test_unknown_station_is_not_lost_but_sent_to_the_center_fallback_group(bot, sim_client):
    number = await _submit(bot, jurisdiction={"station": "XX", "grid": "XX-01"})
    (center,) = await wait_for_messages(sim_client, 1, chatid="centercmd")
    content = center["body"]["markdown"]["content"]
    assert "派出所编码 XX 未在通讯录中登记" in content and f"#{number}" in content
    assert "唐小明" not in content
    detail = await instruction_detail(bot, number)
    assert detail["needs_assignment"] is True
    assert detail["state"] == "received"
    assert [e["action"] for e in detail["timeline"]][:2] == ["received", "needs_assignment"]


async def test_station_without_grid_gets_notice_and_officer_card_only(bot, sim_client):
    number = await _submit(bot, jurisdiction={"station": "DM"})
    await wait_state(bot, number, "dispatched")
    messages = await sim_messages(sim_client)
    assert sorted(m.get("chatid") or m["to_users"][0] for m in messages) == ["dmstation", "wangqiang"]


async def test_markdown_and_mentions_from_the_center_are_shown_literally(bot, sim_client):
    number = await _submit(bot, summary="<@all> **紧急** [点我](http://evil.example) `x` {{ 7*7 }}")
    (notice,) = await wait_for_messages(sim_client, 1, chatid="dmstation")
    content = notice["body"]["markdown"]["content"]
    assert "<@all>" not in content and "**紧急**" not in content and "](http" not in content
    assert "＜@all＞" in content and "{{ 7＊7 }}" in content  # no template evaluation either
    await wait_state(bot, number, "dispatched")


# -- tokens and errcodes ---------------------------------------------------------------------------


async def test_revoked_token_is_replaced_at_once(bot, sim, sim_client):
    await _submit(bot)
    await wait_for_messages(sim_client, 3)
    sim.revoke_tokens()
    number = await _submit(bot)
    await wait_state(bot, number, "dispatched")
    assert len(await sim_messages(sim_client)) == 6
    stats = await (await sim_client.get("/_sim/stats")).json()
    assert stats["calls"]["gettoken"] == 2


async def test_token_is_refreshed_before_it_expires(bot, sim, sim_client):
    await _submit(bot)
    await wait_for_messages(sim_client, 3)
    sim.clock.advance(7000)  # inside the refresh margin: the bot must not use the old token any more
    number = await _submit(bot)
    await wait_state(bot, number, "dispatched")
    stats = await (await sim_client.get("/_sim/stats")).json()
    assert stats["calls"]["gettoken"] == 2
    assert stats["errors"].get("42001", 0) == 0


async def test_concurrent_sends_share_one_token_refresh(bot, sim_client):
    resp = await bot.post("/api/v1/instructions", json=[instruction() for _ in range(10)], headers=AUTH)
    assert (await resp.json())["accepted"] == 10
    await wait_for_messages(sim_client, 30)
    stats = await (await sim_client.get("/_sim/stats")).json()
    assert stats["calls"]["gettoken"] == 1


async def test_retryable_errcodes_are_retried_until_delivered(bot, sim, sim_client):
    sim.add_fault("message/send", errcode=-1, times=2)
    sim.add_fault("appchat/send", errcode=45033, times=1)
    number = await _submit(bot)
    detail = await wait_state(bot, number, "dispatched")
    attempts = {d["label"]: d["attempts"] for d in detail["deliveries"]}
    assert attempts["dm-station"] == 2
    assert sum(attempts[u] for u in ("liuhong", "wangqiang")) == 4  # two cards, two failures between them
    assert len(await sim_messages(sim_client)) == 3


async def test_http_errors_from_wecom_are_retried(bot, sim, sim_client):
    sim.add_fault("*", http_status=503, times=3)
    number = await _submit(bot)
    await wait_state(bot, number, "dispatched")
    assert len(await sim_messages(sim_client)) == 3


async def test_fatal_errcode_fails_visibly_and_tells_the_center(bot, sim, sim_client):
    sim.add_fault("message/send", errcode=81013, times=1)
    number = await _submit(bot, jurisdiction={"station": "DM"})  # one card: the duty officer's
    (alert,) = await wait_for_messages(sim_client, 1, chatid="centercmd")
    content = alert["body"]["markdown"]["content"]
    assert "推送失败" in content and f"#{number}" in content and "81013" in content and "wangqiang" in content
    detail = await instruction_detail(bot, number)
    assert detail["delivery_failed"] is True
    card = next(d for d in detail["deliveries"] if d["label"] == "wangqiang")
    assert card["state"] == "failed" and card["attempts"] == 1
    assert "delivery_failed" in [e["action"] for e in detail["timeline"]]


async def test_retries_are_bounded(bot, sim, sim_client):
    sim.add_fault("appchat/send", errcode=-1, times=50)
    number = await _submit(bot, jurisdiction={"station": "DM"})
    await wait_for_messages(sim_client, 1, user="wangqiang")
    detail = await wait_detail(bot, number, lambda d: d["delivery_failed"])
    notice = next(d for d in detail["deliveries"] if d["label"] == "dm-station")
    assert notice["state"] == "failed" and notice["attempts"] == 4  # max_attempts in the test settings
    assert "-1" in notice["last_error"]


async def test_unknown_user_is_reported_not_retried(bot, sim_client, sim):
    sim.directory.users.pop("wangqiang")
    number = await _submit(bot, jurisdiction={"station": "DM"})
    (alert,) = await wait_for_messages(sim_client, 1, chatid="centercmd")
    assert "wangqiang" in alert["body"]["markdown"]["content"]
    card = next(d for d in (await instruction_detail(bot, number))["deliveries"] if d["label"] == "wangqiang")
    assert card["state"] == "failed"


# -- limits ----------------------------------------------------------------------------------------


async def test_burst_to_one_officer_is_queued_not_dropped(bot, sim, sim_client):
    batch = [instruction(risk_level="low") for _ in range(100)]
    resp = await bot.post("/api/v1/instructions", json=batch, headers=AUTH)
    assert (await resp.json())["accepted"] == 100

    got = []
    for minute in range(4):
        expected = min(30 * (minute + 1), 100)
        # Low risk: the officer on duty phones first, so every card goes to him.
        await wait_for_messages(sim_client, expected, user="wangqiang", api="message/send")
        got = await sim_messages(sim_client, user="wangqiang", api="message/send")
        assert len(got) == expected  # never more than WeCom allows per minute
        sim.clock.advance(61)
        services(bot).worker.wake()
    assert len(got) == 100
    dropped = [(m["seq"], m["api"], m["to_users"], m.get("chatid"), m["dropped_for"], m["at"])
               for m in await sim_messages(sim_client) if m["dropped_for"]]
    assert dropped == []
    task_ids = {m["body"]["template_card"]["task_id"] for m in got}
    assert len(task_ids) == 100


async def test_rate_limit_errcode_waits_for_the_window(bot, sim, sim_client):
    sim.add_fault("webhook/send", errcode=45009, times=1)
    number = await _submit(bot, jurisdiction={"station": "LH", "grid": "LH-01"})
    await wait_for_messages(sim_client, 2, api="message/send")
    detail = await instruction_detail(bot, number)
    assert next(d for d in detail["deliveries"] if d["label"] == "lh-station")["state"] == "pending"
    sim.clock.advance(61)
    services(bot).worker.wake()
    await wait_state(bot, number, "dispatched")


# -- restarts --------------------------------------------------------------------------------------


async def test_pending_rows_are_sent_after_a_restart(aiohttp_client, sim, sim_server, sim_client, make_settings):
    url = str(sim_server.make_url("")).rstrip("/")
    settings = make_settings(url)
    sim.add_fault("*", http_status=503, times=1000)
    first = await aiohttp_client(create_app(settings, clock=sim.clock.now))
    number = await _submit(first)
    await first.close()  # the bot stops with its messages still queued
    assert await sim_messages(sim_client) == []

    sim.clear_faults()
    second = await aiohttp_client(create_app(settings, clock=sim.clock.now))
    await wait_state(second, number, "dispatched")
    assert len(await sim_messages(sim_client)) == 3


async def test_card_claimed_when_the_bot_died_is_not_shown_twice(
    aiohttp_client, sim, sim_server, sim_client, make_settings
):
    settings = make_settings(str(sim_server.make_url("")).rstrip("/"))
    first = await aiohttp_client(create_app(settings, clock=sim.clock.now))
    number = await _submit(first)
    await wait_state(first, number, "dispatched")
    await first.close()
    # The state a crash right after WeCom accepted the cards leaves behind: claimed, not marked sent.
    storage = await open_storage(settings.database)
    async with storage.engine.transaction() as db:
        await db.execute("UPDATE outbox SET state = 'sending', claimed_by = 'gone' WHERE purpose = 'assignee_card'")
    await storage.close()

    second = await aiohttp_client(create_app(settings, clock=sim.clock.now))
    await wait_detail(second, number, lambda d: all(
        d["state"] == "sent" and d["attempts"] == 2 for d in d["deliveries"] if d["purpose"] == "assignee_card"
    ))
    for userid in ("liuhong", "wangqiang"):
        delivered = await sim_messages(sim_client, user=userid, api="message/send")
        assert len([m for m in delivered if not m["duplicate"]]) == 1
