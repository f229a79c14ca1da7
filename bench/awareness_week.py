"""A week of one station's trend-driven awareness pushes, as the WeCom simulator recorded them.

The bot and the simulator run in this process on the demo district; the simulator's clock (the
bot's clock) starts on Monday 2026-11-23 and is moved forward day by day, so the week takes seconds.
Each day the center sends 东门派出所 (DM) some instructions with a changing mix of fraud types;
the campaign "dm-daily" (trend-driven, 10:00 every day, all of DM's residents' groups) picks tips
for the types most frequent in the last 7 days. Staff confirm their 群发 tasks at 10:30.

    .venv/bin/python bench/awareness_week.py      # writes bench/results/awareness_week.md
"""

from __future__ import annotations

import asyncio
import copy
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.awareness_harness import bot_settings, wait  # noqa: E402
from bench.pipeline import create_app_chats  # noqa: E402
from bot.app import create_app  # noqa: E402
from bot.demo import seed_simulator  # noqa: E402
from bot.directory import load_directory_file  # noqa: E402
from bot.scheduler import SHANGHAI  # noqa: E402
from wecom_sim import Simulator, SimulatorConfig, create_simulator_app  # noqa: E402
from wecom_sim.clock import SimClock  # noqa: E402

DISTRICT = ROOT / "demo" / "district.toml"
TOKEN = "week-demo-token"
START = datetime(2026, 11, 23, 9, 0, tzinfo=SHANGHAI).timestamp()  # Monday 09:00
# Instructions for DM received each day (before that day's 10:00 push), by fraud type.
DAILY = [
    {"刷单返利": 5, "冒充公检法": 1},
    {"刷单返利": 3, "虚假投资理财": 1},
    {"冒充公检法": 4},
    {"冒充公检法": 4, "共享屏幕": 2},
    {"共享屏幕": 3},
    {"虚假网络贷款": 1},
    {"刷单返利": 2},
]
CAMPAIGN = {"name": "dm-daily", "title": "东门每日精准宣防", "schedule": "0 10 * * *", "selection": "trend",
            "audience": {"stations": ["DM"]}}
WEEKDAYS = "一二三四五六日"


async def main() -> None:
    sim = Simulator(SimulatorConfig(callback_url="http://127.0.0.1:9/wecom/callback", customer_contact=True),
                    clock=SimClock(START))
    seed_simulator(sim, load_directory_file(DISTRICT))
    sim_server = TestServer(create_simulator_app(sim))
    await sim_server.start_server()
    c = sim.config  # the app creates its group chats, as an operator does (bot.py wecom create-chat)
    await create_app_chats(DISTRICT, str(sim_server.make_url('')).rstrip('/'), c.corp_id, c.corp_secret, c.agent_id)
    with tempfile.TemporaryDirectory() as tmp:
        settings = bot_settings(sim, str(sim_server.make_url("/cgi-bin/")), f"{tmp}/week.sqlite3", str(DISTRICT),
                                TOKEN, {"check_interval": 0.05, "campaigns": [CAMPAIGN]}, synchronous="NORMAL")
        bot_server = TestServer(create_app(settings, clock=sim.clock.now))
        await bot_server.start_server()
        try:
            async with ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
                runs = await _week(sim, http, str(bot_server.make_url("")).rstrip("/"))
        finally:
            await bot_server.close()
            await sim_server.close()
    report = _report(sim, runs)
    out = ROOT / "bench" / "results" / "awareness_week.md"
    out.write_text(report, encoding="utf-8")
    print(report)


async def _week(sim: Simulator, http: ClientSession, bot: str) -> list[dict]:
    runs = []
    number = 0
    for day, mix in enumerate(DAILY):
        for fraud_type, count in mix.items():
            for _ in range(count):
                number += 1
                body = copy.deepcopy(_INSTRUCTION)
                body.update(instruction_no=f"YJ-WEEK-{number:04d}", fraud_type=fraud_type)
                async with http.post(f"{bot}/api/v1/instructions", json=body) as resp:
                    assert resp.status == 202, await resp.text()
        _advance_to(sim, START + day * 86400 + 3600 + 5)  # 10:00:05
        run = await wait(http, f"{bot}/api/v1/campaigns/dm-daily", lambda b, d=day: len(b["runs"]) == d + 1)
        run_id = run["runs"][0]["id"]
        url = f"{bot}/api/v1/campaigns/dm-daily/runs/{run_id}"
        await wait(http, url, lambda b: b["run"]["progress"]["pending"] == 0)
        _advance_to(sim, START + day * 86400 + 5400)  # 10:30: staff tap send
        sim.confirm_groupmsg()
        runs.append(await wait(http, url, lambda b: b["run"]["finished_at"] is not None))
    return runs


def _advance_to(sim: Simulator, at: float) -> None:
    sim.clock.advance(max(0.0, at - sim.clock.now()))




def _when(epoch: float) -> str:
    t = datetime.fromtimestamp(epoch, SHANGHAI)
    return f"{t:%m-%d} 周{WEEKDAYS[t.weekday()]} {t:%H:%M}"


def _report(sim: Simulator, runs: list[dict]) -> str:
    directory = load_directory_file(DISTRICT)
    names = {g.address: g.name for g in directory.resident_groups.values()}
    lines = [
        "# A week of 东门派出所's trend-driven awareness pushes, as the WeCom simulator recorded them",
        "",
        "Produced by `bench/awareness_week.py` (campaign `dm-daily`: trend-driven, `0 10 * * *`, all of DM's",
        "residents' groups; staff confirm 群发 tasks at 10:30). Instructions received for DM per day:",
        "",
        "| day | instructions for DM that day |",
        "|---|---|",
    ]
    for day, mix in enumerate(DAILY):
        lines.append(f"| {_when(START + day * 86400)[:9]} | {'、'.join(f'{k}×{v}' for k, v in mix.items())} |")
    lines += ["", "## What WeCom delivered (simulator log: robot, app message, confirmed 客户群群发)", "",
              "| delivered at | group | API | first line |", "|---|---|---|---|"]
    for record in sim.log.records:
        if record["api"] == "webhook/send" and record["robot_key"] in names:
            group = names[record["robot_key"]]
        elif record["api"] == "externalcontact/groupmsg":
            group = names[record["chatid"]]
        elif record["api"] == "message/send" and record["msgtype"] == "markdown":
            group = "东门网格员（转发宣传）→ " + "、".join(record["delivered_to"])
        else:
            continue
        body = record["body"]
        content = (body.get("markdown") or body.get("text"))["content"]
        lines.append(f"| {_when(record['at'])} | {group} | {record['api']} | {content.splitlines()[0]} |")
    lines += ["", "## Why each item was chosen (the bot's delivery log per run)", ""]
    for body in runs:
        run = body["run"]
        lines.append(f"### Run {run['id']} — {run['slot'][:16].replace('T', ' ')} — {run['progress']}")
        lines.append("")
        for e in body["log"]:
            lines.append(f"- {e['group_name']}: `{e['item']}` {e['fraud_type']} — {e['reason']} ({e['state_label']})")
        lines.append("")
    return "\n".join(lines)


_INSTRUCTION = {
    "issued_at": "2026-11-23T08:00:00+08:00",
    "warning_type": "涉诈来电",
    "risk_level": "low",
    "target": {"name": "王小明", "phone": "13900001111", "age": 45},
    "jurisdiction": {"station": "DM", "grid": "DM-01"},
    "summary": "居民可能正在被骗。",
}

if __name__ == "__main__":
    asyncio.run(main())
