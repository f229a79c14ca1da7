"""Deadlines, reminders, the escalation ladder and the two-stage playbook, against the running bot.

The bot's clock is the simulator's: a test moves it past a deadline and the bot's own APScheduler
sweep (every 50 ms here) finds what fell due. Nothing sleeps for a fixed time.
"""

from __future__ import annotations

import re

import pytest

from bot.app import create_app
from tests.conftest import services
from tests.helpers import eventually, instruction_detail, sim_messages, submit, wait_detail, wait_state

MINUTE = 60


@pytest.fixture
def fast_settings(sim_server, make_settings):
    return make_settings(str(sim_server.make_url("")).rstrip("/"), escalation={"sweep_interval": 0.05})


@pytest.fixture
async def bot(aiohttp_client, sim, fast_settings):
    client = await aiohttp_client(create_app(fast_settings, clock=sim.clock.now))
    sim.config.callback_url = str(client.make_url("/wecom/callback"))
    return client


async def _submit(bot, **overrides) -> int:
    number = await submit(bot, **overrides)
    await wait_state(bot, number, "dispatched")
    return number


def _text(message: dict) -> str:
    body = message["body"]
    return body.get("markdown", body.get("text", {})).get("content", "")


async def _texts(sim_client, marker: str, **filters: str) -> list[str]:
    return [t for t in (_text(m) for m in await sim_messages(sim_client, **filters)) if marker in t]


async def _wait_texts(sim_client, marker: str, count: int, **filters: str) -> list[str]:
    return await eventually(lambda: _texts(sim_client, marker, **filters), lambda t: len(t) >= count,
                            what=f"{count} messages with {marker!r} for {filters}")


def _at(sim, seconds_after: float, start: float) -> None:
    """Move the shared clock to `seconds_after` the instruction arrived."""
    sim.clock.advance(start + seconds_after - sim.clock.now())


async def test_high_risk_ladder_climbs_step_by_step_and_each_step_fires_once(bot, sim, sim_client):
    number = await _submit(bot)
    start = sim.clock.now() - 0.5  # received moments ago; the steps below are minutes apart

    _at(sim, 3 * MINUTE + 1, start)  # 2 minutes before the 5-minute sign-for deadline
    reminders = await _wait_texts(sim_client, "【提醒】", 1, user="liuhong")
    assert f"#{number}" in reminders[0] and "内签收上门任务" in reminders[0]
    assert "内签收" in (await _wait_texts(sim_client, "【提醒】", 1, user="wangqiang"))[0]

    _at(sim, 5 * MINUTE + 1, start)  # step 1: the assignees again
    overdue = await _wait_texts(sim_client, "【超时】", 1, user="liuhong")
    assert "你未签收上门任务" in overdue[0]

    _at(sim, 8 * MINUTE + 1, start)  # step 2: the officer on duty, and the station group
    # Both sign-for deadlines fell due together: one message names everyone late and how late.
    (group,) = await _wait_texts(sim_client, "【超时督办】", 1, chatid="dmstation")
    assert "网格员〈刘红〉未签收上门任务，已超时" in group and "值班民警〈王强〉未签收，已超时" in group
    assert "已提醒值班民警〈王强〉" in group
    assert "唐小明" not in group and "13812348000" not in group  # groups never show personal data
    # 王强 hears personally about 刘红; about himself he was told at step 1.
    (boss,) = await _wait_texts(sim_client, "【督办】", 1, user="wangqiang")
    assert "网格员〈刘红〉" in boss and "值班民警〈王强〉" not in boss

    _at(sim, 13 * MINUTE + 1, start)  # step 3: the station leader
    await _wait_texts(sim_client, "已报所领导〈陈龙〉", 1, chatid="dmstation")
    (leader,) = await _wait_texts(sim_client, "【督办】", 1, user="chenlong")
    assert "网格员〈刘红〉" in leader and "值班民警〈王强〉" in leader

    _at(sim, 20 * MINUTE + 1, start)  # step 4: the center's command group
    (center,) = await _wait_texts(sim_client, "【超时上报】", 1, chatid="centercmd")
    assert "东门派出所" in center and "已超时 <font color=\"warning\">15分" in center
    await _wait_texts(sim_client, "已上报反诈中心", 1, chatid="dmstation")

    # A few more sweeps: nothing fires twice.
    sweeps = services(bot).escalations
    await sweeps.sweep()
    assert len(await _texts(sim_client, "【提醒】", user="liuhong")) == 1
    assert len(await _texts(sim_client, "【超时】", user="liuhong")) == 1
    assert len(await _texts(sim_client, "【超时督办】", chatid="dmstation")) == 3
    assert len(await _texts(sim_client, "【超时上报】", chatid="centercmd")) == 1

    detail = await instruction_detail(bot, number)
    ack = next(d for d in detail["deadlines"] if (d["stage"], d["milestone"]) == ("visit", "ack"))
    assert ack["state"] == "open" and ack["overdue"] is True and ack["late_seconds"] == pytest.approx(15 * 60, abs=5)
    ladder = [e for e in detail["escalations"] if (e["stage"], e["milestone"]) == ("visit", "ack")]
    assert [(e["notify"], e["state"]) for e in ladder] == [
        ("remind", "fired"), ("assignee", "fired"), ("duty_officer", "fired"), ("station_leader", "fired"),
        ("center", "fired")]
    assert [round(e["late_seconds"] / 60) for e in ladder] == [0, 0, 3, 8, 15]
    # While nobody has signed, the phone call's own deadline waits instead of starting a second ladder.
    contact = [e for e in detail["escalations"] if e["milestone"] == "contact" and e["state"] != "pending"]
    assert contact and {e["state"] for e in contact} == {"folded"}
    timeline = [(e["action"], e["detail"].get("notify")) for e in detail["timeline"] if e["channel"] == "timer"]
    assert timeline.count(("escalate", "center")) == 2 and timeline.count(("remind", "remind")) == 2


async def test_late_sign_for_is_accepted_recorded_as_late_and_stops_that_ladder(bot, sim, sim_client):
    number = await _submit(bot)
    start = sim.clock.now() - 0.5
    _at(sim, 9 * MINUTE + 1, start)  # past the sign-for deadline and the first two steps
    await _wait_texts(sim_client, "【超时督办】", 1, chatid="dmstation")

    reply = await sim.send_text("liuhong", f"签收 {number}")
    assert reply["status"] == 200
    notice = (await _wait_texts(sim_client, "已签收", 1, chatid="dmstation"))[0]
    assert "超时签收（超 4分" in notice
    detail = await instruction_detail(bot, number)
    ack_event = next(e for e in detail["timeline"] if e["action"] == "ack")
    assert ack_event["detail"]["late"] is True and ack_event["detail"]["late_by"] == pytest.approx(240, abs=5)
    visit_ack = next(d for d in detail["deadlines"] if (d["stage"], d["milestone"]) == ("visit", "ack"))
    assert visit_ack["state"] == "met" and visit_ack["settled_by"] == "liuhong"
    assert visit_ack["late_seconds"] == pytest.approx(240, abs=5)

    _at(sim, 30 * MINUTE, start)  # the rest of liuhong's sign-for ladder would have fired by now
    await services(bot).escalations.sweep()
    assert not [t for t in await _texts(sim_client, "刘红〉未签收", chatid="dmstation") if "已报所领导" in t]
    ladder = [e for e in (await instruction_detail(bot, number))["escalations"]
              if (e["stage"], e["milestone"]) == ("visit", "ack")]
    assert [e["state"] for e in ladder] == ["fired", "fired", "fired", "cancelled", "cancelled"]


async def test_resolving_stops_every_escalation(bot, sim, sim_client):
    number = await _submit(bot)
    start = sim.clock.now() - 0.5
    _at(sim, 3 * MINUTE + 1, start)
    await _wait_texts(sim_client, "【提醒】", 1, user="liuhong")
    result = await sim.send_text("liuhong", f"反馈 {number} 见面 劝阻成功 挽损5万")
    assert result["status"] == 200
    await wait_state(bot, number, "resolved")
    before = len(await sim_messages(sim_client))

    _at(sim, 3 * 3600, start)  # every deadline and ladder step of this instruction lies before this
    await services(bot).escalations.sweep()
    await services(bot).escalations.sweep()
    escalations = (await instruction_detail(bot, number))["escalations"]
    assert {e["state"] for e in escalations if e["fired_at"] is None} == {"cancelled"}
    later = (await sim_messages(sim_client))[before:]
    assert [m for m in later if "【" in _text(m) and ("超时" in _text(m) or "提醒" in _text(m))] == []
    deadlines = {(d["stage"], d["milestone"]): d["state"] for d in (await instruction_detail(bot, number))["deadlines"]}
    assert deadlines == {("phone", "ack"): "moot", ("phone", "contact"): "moot", ("visit", "ack"): "met",
                         ("visit", "report"): "met"}


@pytest.mark.parametrize("result", ["无法联系", "拒绝配合"])
async def test_two_stage_playbook_failed_phone_call_sends_the_grid_worker(bot, sim, sim_client, result):
    number = await _submit(bot, risk_level="medium")
    # Medium risk: the officer on duty phones first; the grid worker is not sent yet.
    assert await sim_messages(sim_client, user="liuhong", api="message/send") == []
    assert len(await sim_messages(sim_client, user="wangqiang", api="message/send")) == 1
    sim.clock.advance(6 * MINUTE)

    reply = await sim.send_text("wangqiang", f"反馈 {number} 电话 {result} 对方挂断")
    assert "【转上门】已派网格员〈刘红〉上门劝阻" in reply["reply"]
    detail = await wait_state(bot, number, "visit_required")
    card = (await eventually(lambda: sim_messages(sim_client, user="liuhong", api="message/send"), bool))[0]
    template = card["body"]["template_card"]
    assert template["sub_title_text"].startswith("任务：上门劝阻 · 请于 ")
    assert re.fullmatch(rf"qz\w+-{number}@[0-9a-f]{{16}}", template["task_id"])  # a card made later (bot/dispatch.py)
    group = await _wait_texts(sim_client, "【转上门】", 1, chatid="dmstation")
    assert f"{result}" in group[0] and "唐某" in group[0] and "唐小明" not in group[0]

    deadlines = {(d["stage"], d["milestone"]): d for d in detail["deadlines"]}
    assert deadlines[("phone", "contact")]["state"] == "met"
    assert deadlines[("phone", "report")]["state"] == "superseded"
    assert deadlines[("visit", "ack")]["state"] == "open" and deadlines[("visit", "report")]["state"] == "open"
    ordered = next(e for e in detail["timeline"] if e["action"] == "visit_ordered")
    assert ordered["detail"]["visitors"] == ["liuhong"] and ordered["detail"]["after_report_by"] == "wangqiang"
    visit = next(a for a in detail["assignments"] if a["userid"] == "liuhong")
    assert visit["stage"] == "visit" and visit["active"] is True

    # The officer's own sign-for was his report; signing again changes nothing.
    again = await sim.send_text("wangqiang", f"签收 {number}")
    assert f"指令 #{number} 已签收（当前：待上门）" in again["reply"]
    # The visit has its own deadlines: 30 minutes to sign, from when it was ordered.
    sim.clock.advance(20 * MINUTE + 1)
    assert "内签收上门任务" in (await _wait_texts(sim_client, "【提醒】", 1, user="liuhong"))[0]
    signed = await sim.send_text("liuhong", f"签收 {number}")
    assert f"已签收 #{number} 上门任务" in signed["reply"] and "请立即上门见到唐小明" in signed["reply"]
    await wait_state(bot, number, "visiting")
    notice = (await _wait_texts(sim_client, "上门任务", 1, chatid="dmstation"))[-1]
    assert f"网格员〈刘红〉已签收 #{number} 上门任务" in notice
    await sim.send_text("liuhong", f"反馈 {number} 上门 劝阻成功 挽损2万")
    detail = await wait_state(bot, number, "resolved")
    assert detail["outcome"]["method"] == "上门" and detail["outcome"]["loss_avoided"] == 20000


async def test_failed_visit_keeps_the_visit_going(bot, sim, sim_client):
    number = await _submit(bot)  # high risk: the grid worker is sent at once
    await sim.send_text("liuhong", f"签收 {number}")
    result = await sim.send_text("liuhong", f"反馈 {number} 上门 无法联系 家中无人")
    assert "请继续联系或上门劝阻" in result["reply"]
    detail = await wait_state(bot, number, "visiting")
    visit_report = next(d for d in detail["deadlines"] if (d["stage"], d["milestone"]) == ("visit", "report"))
    assert visit_report["state"] == "open"  # still has to reach the resident


async def test_without_a_grid_worker_the_officer_on_duty_makes_the_visit(bot, sim, sim_client):
    number = await _submit(bot, risk_level="low", jurisdiction={"station": "DM"})
    await sim.send_text("wangqiang", f"反馈 {number} 电话 无法联系")
    detail = await wait_state(bot, number, "visit_required")
    stages = {(a["userid"], a["stage"]) for a in detail["assignments"] if a["active"]}
    assert ("wangqiang", "visit") in stages
    cards = await eventually(lambda: sim_messages(sim_client, user="wangqiang", api="message/send"),
                             lambda m: len(m) >= 2)
    assert cards[-1]["body"]["template_card"]["sub_title_text"].startswith("任务：上门劝阻")


async def test_deadlines_survive_a_restart_and_overdue_steps_fire_exactly_once(
        aiohttp_client, sim, sim_client, fast_settings):
    first = await aiohttp_client(create_app(fast_settings, clock=sim.clock.now))
    sim.config.callback_url = str(first.make_url("/wecom/callback"))
    number = await _submit(first)
    start = sim.clock.now() - 0.5
    _at(sim, 8 * MINUTE + 1, start)  # reminder, step 1 and step 2 fire while the bot runs
    await _wait_texts(sim_client, "【超时督办】", 1, chatid="dmstation")
    await first.close()  # the bot stops in the middle of the ladder ...

    _at(sim, 25 * MINUTE, start)  # ... and is down while steps 3 and 4 fall due
    assert await _texts(sim_client, "【超时上报】", chatid="centercmd") == []
    second = await aiohttp_client(create_app(fast_settings, clock=sim.clock.now))
    sim.config.callback_url = str(second.make_url("/wecom/callback"))
    await _wait_texts(sim_client, "【超时上报】", 1, chatid="centercmd")
    await _wait_texts(sim_client, "已报所领导", 1, chatid="dmstation")
    await services(second).escalations.sweep()

    assert len(await _texts(sim_client, "【提醒】", user="liuhong")) == 1
    assert len(await _texts(sim_client, "【超时】", user="liuhong")) == 1
    assert len(await _texts(sim_client, "已提醒值班民警", chatid="dmstation")) == 1
    assert len(await _texts(sim_client, "已报所领导", chatid="dmstation")) == 1
    assert len(await _texts(sim_client, "【超时上报】", chatid="centercmd")) == 1
    detail = await wait_detail(second, number, lambda d: d["state"] == "dispatched")
    fired = [e for e in detail["escalations"] if e["milestone"] == "ack" and e["state"] == "fired"]
    assert len(fired) == 10  # five steps for each of the two sign-for deadlines, once each
    late_steps = [e for e in fired if e["notify"] in ("station_leader", "center")]
    assert all(e["late_seconds"] >= 20 * MINUTE - 5 * MINUTE - 1 for e in late_steps)  # fired late, at the start
