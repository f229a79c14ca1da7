"""The campaigns API and the `campaign` command line."""

from __future__ import annotations

import asyncio
import sys

import pytest

from tests.awareness_helpers import T0, api, at, campaign, progress, run_now, wait_run
from tests.helpers import DISTRICT, ROOT, TOKEN, sim_messages

CONFIG_CAMPAIGN = {"name": "weekly", "title": "每周宣防", "schedule": "30 9 * * 1", "selection": "rotation",
                   "audience": {"tags": ["老年人"]}}
pytestmark = pytest.mark.sim_start(T0)






async def test_the_api_needs_a_token(start_bot):
    bot = await start_bot(CONFIG_CAMPAIGN)
    for method, path in [("GET", "/api/v1/campaigns"), ("POST", "/api/v1/campaigns"),
                         ("GET", "/api/v1/campaigns/weekly/preview"), ("POST", "/api/v1/campaigns/weekly/run")]:
        resp = await bot.request(method, path, headers={"Authorization": "Bearer wrong-token"})
        assert resp.status == 401, path


async def test_create_update_disable_and_api_changes_outlive_a_restart(start_bot, sim_client):
    bot = await start_bot(CONFIG_CAMPAIGN)
    status, body = await api(bot, "GET", "/api/v1/campaigns")
    assert [(c["name"], c["source"], c["next_run"]) for c in body["campaigns"]] == [
        ("weekly", "config", at("2026-11-30 09:30"))]

    new = {"name": "shops", "title": "商户防骗", "schedule": "0 15 * * 5", "selection": "fixed", "item": "jj-01",
           "audience": {"groups": ["dm-shops"]}, "channels": ["webhook"]}
    status, body = await api(bot, "POST", "/api/v1/campaigns", json=new)
    assert status == 201 and body["campaign"]["source"] == "api" and body["campaign"]["quiet_hours"] == "21:30-08:00"
    assert (await api(bot, "POST", "/api/v1/campaigns", json=new))[0] == 409
    bad = [{**new, "name": "x1", "schedule": "61 * * * *"}, {**new, "name": "x2", "selection": "random"},
           {**new, "name": "x3", "item": "no-such-item"}, {**new, "name": "x4", "channels": ["sms"]},
           {"name": "Bad Name"}, ["not", "an", "object"]]
    for body in bad:
        status, answer = await api(bot, "POST", "/api/v1/campaigns", json=body)
        assert status == 400 and answer["error"].startswith(("活动定义有误", "内容库中没有")), body

    # The API's version of a config campaign wins, also after a restart.
    status, body = await api(bot, "PUT", "/api/v1/campaigns/weekly", json={**CONFIG_CAMPAIGN, "title": "长者周报"})
    assert status == 200 and body["campaign"]["source"] == "api"
    assert (await api(bot, "PUT", "/api/v1/campaigns/weekly", json={**CONFIG_CAMPAIGN, "name": "other"}))[0] == 400
    assert (await api(bot, "PUT", "/api/v1/campaigns/nope", json={**CONFIG_CAMPAIGN, "name": "nope"}))[0] == 404
    status, body = await api(bot, "POST", "/api/v1/campaigns/shops/disable")
    assert status == 200 and body["campaign"]["enabled"] is False and body["campaign"]["next_run"] is None
    await bot.close()

    bot = await start_bot(CONFIG_CAMPAIGN)
    status, body = await api(bot, "GET", "/api/v1/campaigns")
    by_name = {c["name"]: c for c in body["campaigns"]}
    assert by_name["weekly"]["title"] == "长者周报" and by_name["weekly"]["source"] == "api"
    assert by_name["shops"]["enabled"] is False
    assert (await api(bot, "GET", "/api/v1/campaigns/nope"))[0] == 404


async def test_preview_is_a_dry_run_and_show_has_the_delivery_log(start_bot, sim_client):
    bot = await start_bot(CONFIG_CAMPAIGN)
    status, preview = await api(bot, "GET", "/api/v1/campaigns/weekly/preview")
    assert status == 200 and preview["dry_run"] is True
    assert [(t["group"], t["channel"]) for t in preview["targets"]] == [
        ("dm-elders", "customer_group"), ("lh-oldstreet", "customer_group")]
    assert all("96110" in t["content"] and t["reason"].startswith("轮换选取") for t in preview["targets"])
    assert (await campaign(bot, "weekly"))["runs"] == []
    assert await sim_messages(sim_client, api="externalcontact/add_msg_template") == []

    run_id = await run_now(bot, "weekly")
    await wait_run(bot, "weekly", run_id, lambda b: b["run"]["progress"] == progress(awaiting_confirmation=2))
    body = await campaign(bot, "weekly")
    assert body["runs"][0]["trigger"] == "manual"
    assert {e["item"] for e in body["latest_log"]} == {t["item"] for t in preview["targets"]}
    assert {e["reason"] for e in body["latest_log"]} == {t["reason"] for t in preview["targets"]}
    assert (await api(bot, "GET", f"/api/v1/campaigns/other/runs/{run_id}"))[0] == 404
    assert (await api(bot, "POST", "/api/v1/campaigns/nope/run"))[0] == 404


async def _cli(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "bot.py", "campaign", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    return process.returncode, out.decode()


async def test_campaign_command_lists_previews_and_runs(tmp_path, db_toml):
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[database]
{db_toml}
[wecom]
corp_id = "wwcli"
corp_secret = "cli-secret"
agent_id = 1000009
encoding_aes_key = "QuanzuDemoEncodingAesKey0123456789abcdefgh0"
[api]
tokens = ["{TOKEN}"]
[directory]
path = "{DISTRICT}"
[[awareness.campaigns]]
name = "campus"
title = "校园反诈"
schedule = "0 16 * * 3"
selection = "rotation"
audience = {{ tags = ["学生"] }}
""",
        encoding="utf-8",
    )
    code, out = await _cli("list", "--config", str(config))
    assert code == 0 and "campus" in out and "0 16 * * 3" in out and "校园反诈" in out
    code, out = await _cli("preview", "campus", "--config", str(config))
    assert code == 0 and "dry run of campus: 2 groups" in out and "龙湖职校师生警民群" in out and "96110" in out
    code, out = await _cli("run", "campus", "--config", str(config))
    assert code == 0 and out.startswith("run #1 of campus: 2 groups queued")
    code, out = await _cli("run", "nope", "--config", str(config))
    assert code == 1 and "no campaign named 'nope'" in out
