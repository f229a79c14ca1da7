"""Awareness campaigns end to end: the real app, the simulator over HTTP, a real SQLite file, and the
simulator's clock (which is the bot's) moved instead of waiting."""

from __future__ import annotations

import pytest

from bot.awareness.library import load_library
from bot.awareness.settings import DEFAULT_LIBRARY
from tests.awareness_helpers import (
    T0,
    advance,
    at,
    campaign,
    progress,
    run_log,
    run_now,
    wait_run,
    wait_runs,
)
from tests.helpers import AUTH, DISTRICT, eventually, instruction, sim_messages, wait_for_messages

DM_TREND = {"name": "dm-trend", "title": "东门每日精准宣防", "schedule": "0 10 * * *", "selection": "trend",
            "audience": {"stations": ["DM"]}}
LIBRARY = load_library(DEFAULT_LIBRARY)
pytestmark = pytest.mark.sim_start(T0)






async def _instructions(bot, station: str, fraud_type: str, count: int) -> None:
    for _ in range(count):
        body = instruction(fraud_type=fraud_type, jurisdiction={"station": station}, risk_level="low")
        resp = await bot.post("/api/v1/instructions", json=body, headers=AUTH)
        assert resp.status == 202


async def test_scheduled_trend_campaign_reaches_every_channel_once_and_says_why(start_bot, sim_client):
    bot = await start_bot(DM_TREND)
    await _instructions(bot, "DM", "刷单返利", 4)
    await _instructions(bot, "DM", "冒充公检法", 1)
    await _instructions(bot, "LH", "虚假投资理财", 3)  # another station's trend does not count
    before = await campaign(bot, "dm-trend")
    assert before["runs"] == [] and before["campaign"]["next_run"] == at("2026-11-23 10:00")

    await advance(sim_client, 15)  # 10:00:05
    (run,) = await wait_runs(bot, "dm-trend", 1)
    assert run["trigger"] == "schedule" and run["slot"] == at("2026-11-23 10:00")
    body = await wait_run(bot, "dm-trend", run["id"], lambda b: b["run"]["progress"]["pending"] == 0)
    assert body["run"]["progress"] == progress(sent=2, awaiting_confirmation=3)
    log = {e["group"]: e for e in body["log"]}
    assert set(log) == {"dm-elders", "dm-parents", "dm-youth", "dm-shops", "dm-grid-staff"}
    for entry in log.values():
        assert entry["fraud_type"] == "刷单返利"
        assert entry["reason"].startswith("近7天本所预警5起，刷单返利4起（占80%，第1位）")
    assert log["dm-elders"]["state_label"] == "待员工确认群发"

    # Each channel, as WeCom received it.
    (robot,) = await sim_messages(sim_client, robot="demo-robot-dm-shops-0001")
    assert robot["msgtype"] == "markdown" and "96110" in robot["body"]["markdown"]["content"]
    app = [m for m in await sim_messages(sim_client, api="message/send") if m["msgtype"] == "markdown"]
    assert [sorted(m["delivered_to"]) for m in app] == [["liuhong", "zhangwei"]]
    tasks = await sim_messages(sim_client, api="externalcontact/add_msg_template")
    assert sorted((t["body"]["sender"], len(t["body"]["chat_id_list"])) for t in tasks) == [
        ("liuhong", 1), ("liuhong", 1), ("zhangwei", 1)]  # 长者群 and 青年群 get different tips
    assert all(t["body"]["chat_type"] == "group" and "东门派出所" in t["body"]["text"]["content"] for t in tasks)
    assert await sim_messages(sim_client, api="externalcontact/groupmsg") == []  # nothing until staff confirm

    resp = await sim_client.post("/_sim/groupmsg/confirm", json={"sender": "liuhong"})
    assert len((await resp.json())["confirmed"]) == 2
    body = await wait_run(bot, "dm-trend", run["id"], lambda b: b["run"]["progress"]["sent"] == 4)
    await sim_client.post("/_sim/groupmsg/confirm", json={})
    body = await wait_run(bot, "dm-trend", run["id"], lambda b: b["run"]["finished_at"] is not None)
    assert body["run"]["progress"] == progress(sent=5)
    (elders,) = await sim_messages(sim_client, api="externalcontact/groupmsg", chatid="wrDMelders0000000000000001")
    assert LIBRARY.by_id[log["dm-elders"]["item"]].title in elders["body"]["text"]["content"]

    await advance(sim_client, 3600)  # later the same day: the 10:00 slot is not run again
    after = await eventually(lambda: campaign(bot, "dm-trend"),
                             lambda b: b["campaign"]["next_run"] == at("2026-11-24 10:00"), what="next run")
    assert len(after["runs"]) == 1


async def test_a_restart_runs_the_latest_missed_slot_once_and_skips_older_ones(start_bot, sim_client):
    every_ten = {"name": "ten", "schedule": "*/10 * * * *", "selection": "rotation",
                 "audience": {"groups": ["dm-shops"]}}
    bot = await start_bot(every_ten, grace=600)
    await advance(sim_client, 15)  # 10:00:05
    await wait_runs(bot, "ten", 1)
    await bot.close()

    await advance(sim_client, 35 * 60)  # 10:35:05: 10:10, 10:20 and 10:30 passed while down
    bot = await start_bot(every_ten, grace=600)
    runs = await wait_runs(bot, "ten", 2)
    assert [r["slot"] for r in runs] == [at("2026-11-23 10:00"), at("2026-11-23 10:30")]
    body = await eventually(lambda: campaign(bot, "ten"),
                            lambda b: b["campaign"]["next_run"] == at("2026-11-23 10:40"), what="next slot")
    assert len(body["runs"]) == 2
    await wait_for_messages(sim_client, 2, robot="demo-robot-dm-shops-0001")


async def test_quiet_hours_hold_pushes_until_morning_unless_urgent(start_bot, sim_client):
    quiet = {"name": "quiet", "selection": "rotation", "audience": {"groups": ["dm-shops"]}}
    urgent = {"name": "urgent", "selection": "fixed", "item": "gjf-02", "urgent": True,
              "audience": {"groups": ["lh-campus"]}}
    bot = await start_bot(quiet, urgent, quiet_hours="21:30-08:00")
    await advance(sim_client, 12 * 3600)  # 21:59:50
    held = await run_now(bot, "quiet")
    sent = await run_now(bot, "urgent")
    await wait_run(bot, "urgent", sent, lambda b: b["run"]["progress"] == progress(sent=1))
    body = await wait_run(bot, "quiet", held, lambda b: b["log"][0]["next_attempt_at"] == at("2026-11-24 08:00"))
    assert body["run"]["progress"] == progress(pending=1)
    assert await sim_messages(sim_client, robot="demo-robot-dm-shops-0001") == []

    await advance(sim_client, 10 * 3600 + 15)  # 08:00:05
    await wait_run(bot, "quiet", held, lambda b: b["run"]["progress"] == progress(sent=1))
    (message,) = await sim_messages(sim_client, robot="demo-robot-dm-shops-0001")
    assert message["at"] >= T0 + 22 * 3600 + 10


async def test_rotation_never_repeats_to_a_group_until_its_pool_is_used_up(start_bot, sim_client):
    bot = await start_bot({"name": "campus", "selection": "rotation", "audience": {"groups": ["lh-campus"]}})
    pool = LIBRARY.pool(["学生"])
    items = []
    for _ in range(len(pool) + 1):
        run_id = await run_now(bot, "campus")
        (entry,) = (await run_log(bot, "campus", run_id))["log"]
        items.append((entry["item"], entry["reason"]))
    assert len({item for item, _ in items[:-1]}) == len(pool) == 17
    assert items[-1][0] == items[0][0]
    assert f"内容池{len(pool)}条已全部推送过，开始第2轮" in items[-1][1]
    await wait_for_messages(sim_client, len(pool) + 1, robot="demo-robot-lh-campus-0001")


async def test_a_robot_over_20_a_minute_queues_and_loses_nothing(start_bot, sim_client, sim):
    bot = await start_bot({"name": "campus", "selection": "rotation", "audience": {"groups": ["lh-campus"]}})
    runs = [await run_now(bot, "campus") for _ in range(25)]
    await wait_for_messages(sim_client, 20, robot="demo-robot-lh-campus-0001")
    waiting = await wait_run(bot, "campus", runs[-1], lambda b: b["log"][0]["next_attempt_at"] is not None)
    assert waiting["log"][0]["state"] == "pending"
    assert len(await sim_messages(sim_client, robot="demo-robot-lh-campus-0001")) == 20
    await advance(sim_client, 62)
    await wait_for_messages(sim_client, 25, robot="demo-robot-lh-campus-0001")
    assert sim.stats.errors[45009] == 0


async def test_fan_out_to_many_groups_within_the_limits_loses_nothing(start_bot, sim_client, sim, tmp_path):
    owners = ["liuhong", "zhangwei", "sunli", "wujun", "wangqiang", "zhaolei"]
    lines = [DISTRICT.read_text(encoding="utf-8")]
    for n in range(600):
        station = "DM" if n % 2 else "LH"
        if n < 200:
            key = f"fanout-robot-{n:04d}"
            sim.add_robot(key, f"群{n}")
            where = f'channel = "webhook"\nwebhook_key = "{key}"'
        else:
            owner = owners[n % len(owners)]
            sim.add_customer_group(f"wrFan{n:06d}", f"群{n}", owner)
            where = f'channel = "customer_group"\nowner = "{owner}"\nchat_id = "wrFan{n:06d}"'
        lines.append(f'[[resident_groups]]\ncode = "fan-{n:04d}"\nname = "群{n}"\nstation = "{station}"\n'
                     f'community = "扇出社区"\n{where}\n')
    directory = tmp_path / "district.toml"
    directory.write_text("\n".join(lines), encoding="utf-8")
    bot = await start_bot({"name": "all", "selection": "rotation", "audience": {"communities": ["扇出社区"]}},
                          directory=str(directory))
    run_id = await run_now(bot, "all")
    body = await wait_run(bot, "all", run_id, lambda b: b["run"]["progress"]["pending"] == 0, within=60)
    assert body["run"]["progress"] == progress(sent=200, awaiting_confirmation=400)
    tasks = await sim_messages(sim_client, api="externalcontact/add_msg_template")
    # One task per staff member: the text is the same for all their groups.
    assert sorted(len(t["body"]["chat_id_list"]) for t in tasks) == [66, 66, 67, 67, 67, 67]
    await sim_client.post("/_sim/groupmsg/confirm", json={})
    body = await wait_run(bot, "all", run_id, lambda b: b["run"]["finished_at"] is not None, within=60)
    assert body["run"]["progress"] == progress(sent=600)
    assert len(await sim_messages(sim_client, api="externalcontact/groupmsg")) == 400
    assert len(await sim_messages(sim_client, api="webhook/send")) == 200
    assert sim.stats.errors[45009] == 0


async def test_failed_pushes_are_retried_then_reported_once_per_run(start_bot, sim_client, sim):
    bot = await start_bot({"name": "mixed", "selection": "fixed", "item": "gp-01",
                           "audience": {"groups": ["dm-shops", "lh-campus", "dm-grid-staff"]}})
    sim.add_fault("webhook/send", errcode=-1, times=2)  # after start: its self-check probes the robots too
    first = await run_now(bot, "mixed")
    body = await wait_run(bot, "mixed", first, lambda b: b["run"]["finished_at"] is not None)
    assert body["run"]["progress"] == progress(sent=3)
    assert sorted(e["attempts"] for e in body["log"]) == [1, 2, 2]  # each robot: busy once, then delivered

    del sim.directory.robots["demo-robot-dm-shops-0001"]  # the robot was removed from its group
    del sim.directory.robots["demo-robot-lh-campus-0001"]
    second = await run_now(bot, "mixed")
    body = await wait_run(bot, "mixed", second, lambda b: b["run"]["finished_at"] is not None)
    assert body["run"]["progress"] == progress(sent=1, failed=2)
    failed = [e for e in body["log"] if e["state"] == "failed"]
    assert all("93000" in e["error"] for e in failed)
    (report,) = await wait_for_messages(sim_client, 1, chatid="centercmd")
    content = report["body"]["markdown"]["content"]
    assert "失败：2 个群 / 共 3 个群" in content and "东门商圈商户警民群" in content and "龙湖职校师生警民群" in content
    await run_now(bot, "mixed")  # the next run is reported by itself, the earlier one never again
    await wait_for_messages(sim_client, 2, chatid="centercmd")
    assert len(await sim_messages(sim_client, chatid="centercmd")) == 2


async def test_customer_groups_get_one_push_a_day_and_unconfirmed_tasks_are_reported(start_bot, sim_client):
    elders = {"name": "elders", "selection": "rotation", "audience": {"groups": ["dm-elders"]}}
    bot = await start_bot(elders, confirm_timeout=7200)
    first = await run_now(bot, "elders")
    second = await run_now(bot, "elders")
    await wait_for_messages(sim_client, 1, api="externalcontact/add_msg_template")
    body = await wait_run(bot, "elders", second, lambda b: b["log"][0]["next_attempt_at"] is not None)
    assert body["log"][0]["state"] == "pending"  # WeCom allows one 群发 per group a day: it waits
    await sim_client.post("/_sim/groupmsg/confirm", json={})
    await wait_run(bot, "elders", first, lambda b: b["run"]["progress"] == progress(sent=1))

    await advance(sim_client, 86400 + 5)
    body = await wait_run(bot, "elders", second, lambda b: b["run"]["progress"]["awaiting_confirmation"] == 1)
    assert body["log"][0]["task_created_at"] is not None
    await advance(sim_client, 7200 + 5)  # 刘红 never taps send
    body = await wait_run(bot, "elders", second, lambda b: b["run"]["finished_at"] is not None)
    assert body["log"][0]["state"] == "failed" and "未在企业微信确认群发" in body["log"][0]["error"]
    (report,) = await wait_for_messages(sim_client, 1, chatid="centercmd")
    assert "东门社区长者警民群" in report["body"]["markdown"]["content"]
