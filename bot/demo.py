"""The demo: the bot and the built-in WeCom simulator in one process, on the fictional district."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import date, timedelta
from pathlib import Path

from aiohttp import web

from bot import server
from bot.app import SERVICES, create_app
from bot.config import Settings, load_settings
from bot.directory import load_directory_file
from bot.logs import setup_logging
from bot.wecom.chats import set_up_chats
from domain.directory import Directory
from storage import open_storage
from wecom_sim import Simulator, SimulatorConfig, create_simulator_app

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"
DEMO_CONFIG = DEMO_DIR / "config.toml"
DEMO_INSTRUCTION = DEMO_DIR / "instruction.json"
_LOGGER = logging.getLogger(__name__)


def seed_simulator(sim: Simulator, directory: Directory) -> None:
    """Give the simulated corp the people and group robots that the directory names.

    Not its app group chats: as in a real corp, the app creates those itself (`bot.py wecom create-chat`,
    bot/wecom/chats.py), and WeCom refuses the app any chat it did not create.
    """
    for person in directory.people.values():
        sim.add_user(person.userid, person.name)
    for group in directory.groups.values():
        if group.kind == "webhook":
            sim.add_robot(group.address, group.name, list(group.members))
    for resident in directory.resident_groups.values():
        if resident.channel == "customer_group":
            sim.add_customer_group(resident.address, resident.name, resident.owner or "")
        elif resident.channel == "webhook":
            sim.add_robot(resident.address, resident.name, list(resident.members))


def simulator_config_for(settings: Settings, callback_url: str | None) -> SimulatorConfig:
    """A simulator that accepts exactly the credentials the bot is configured with."""
    w = settings.wecom
    return SimulatorConfig(corp_id=w.corp_id, corp_secret=w.corp_secret, agent_id=w.agent_id, token=w.token,
                           encoding_aes_key=w.encoding_aes_key, callback_url=callback_url,
                           customer_contact=True)  # the demo app is on 客户联系 → 可调用应用


def demo_curl(settings: Settings) -> str:
    body = json.dumps(json.loads(DEMO_INSTRUCTION.read_text(encoding="utf-8")), ensure_ascii=False)
    return (
        f"curl -sS -X POST {settings.public_url}/api/v1/instructions \\\n"
        f"  -H 'Authorization: Bearer {settings.api.tokens[0]}' -H 'Content-Type: application/json' \\\n"
        f"  -d '{body}'"
    )


DEMO_ADMIN_PASSWORD = "demo-admin-2026"  # demo/config.toml holds its hash


async def seed_history(storage, directory: Directory, now: float, count: int = 600, days: int = 28) -> int:
    """Fill an empty database with `days` of synthetic instructions for the district (the dashboard's demo)."""
    from bot.reports.bulletin import SINCE_KEY
    from bot.reports.synthetic import Station, generate

    if await storage.max_instruction_id():
        return 0
    await storage.meta_default(SINCE_KEY, repr(now - days * 86400))
    stations = []
    for code in directory.stations:
        grids = [g for g in directory.grids.values() if g.station_code == code]
        officers = [p.userid for p in directory.people.values() if p.station_code == code and p.role == "officer"]
        workers = [(directory.grid_workers(g.code) or [None])[0] for g in grids]
        stations.append(Station(code, [g.code for g in grids], officers or [directory.stations[code].duty_officer],
                                [w.userid if w else officers[0] for w in workers]))
    for batch in generate(stations, count, now - 600, days, prefix="DEMO-", open_hours=24):
        await storage.insert_history(batch)
    return count


def forget_demo() -> None:
    """Delete the demo database and its WAL files, so that a replayed tour's ids start at 1 again."""
    path = load_settings(DEMO_CONFIG).database.path
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def run_demo(sim_host: str = "127.0.0.1", sim_port: int = 8081, history: bool = False) -> None:
    settings = load_settings(DEMO_CONFIG)
    setup_logging(settings.logging.level, settings.logging.format)
    directory = load_directory_file(settings.directory.path)
    sim_url = f"http://{sim_host}:{sim_port}"
    sim = Simulator(simulator_config_for(settings, f"{settings.public_url}/wecom/callback"))
    seed_simulator(sim, directory)

    if history:  # before the bot starts, so that its first look for due bulletins sees the history
        storage = await open_storage(settings.database)
        try:
            await seed_history(storage, directory, time.time())
        finally:
            await storage.close()
    runners = []
    bot_app = create_app(settings)
    try:
        runner = web.AppRunner(create_simulator_app(sim), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, sim_host, sim_port).start()
        runners.append(runner)
        # The app creates its group chats itself, as an operator does with `bot.py wecom create-chat`.
        await set_up_chats(settings.wecom, directory)
        runners.append(await server.start(bot_app, settings.server))
        services = bot_app[SERVICES]
        await services.escalations.import_roster(demo_roster_csv(date.today()).encode())
        on_duty = services.planner.directory.people[services.planner.roster.on_duty("DM", time.time()).officer]
        print(_banner(settings, sim_url, directory, on_duty.name), flush=True)
        await asyncio.Event().wait()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


def demo_roster_csv(today: date) -> str:
    """A week of duty around today, as a station would keep it: day and night shifts at 东门, 24-hour ones at 龙湖."""
    rows = ["日期,派出所,班次,开始,结束,值班民警,带班领导"]
    for n in range(-1, 7):
        day = (today + timedelta(days=n)).isoformat()
        day_officer, night_officer = ("王强", "李娜") if n % 2 == 0 else ("李娜", "王强")
        rows += [f"{day},DM,白班,08:00,20:00,{day_officer},陈龙", f"{day},DM,夜班,20:00,08:00,{night_officer},陈龙",
                 f"{day},LH,全天,08:00,08:00,赵磊,周敏"]
    return "\n".join(rows) + "\n"


def _banner(settings: Settings, sim_url: str, directory: Directory, on_duty: str) -> str:
    stations = "、".join(f"{s.name}({s.code})" for s in directory.stations.values())
    return f"""
================ Quanzu 劝阻 demo ================
Bot (intake API)      {settings.public_url}   token: {settings.api.tokens[0]}
WeCom simulator       {sim_url}/cgi-bin/   (what WeCom received: {sim_url}/_sim/messages)
Database              {settings.database.path}
District              {directory.center_name}: {stations}; {len(directory.grids)} grids, {len(directory.people)} people

Duty roster (值班表) for this week imported: {on_duty} is on duty at 东门派出所 now and gets the phone
task; either officer can type 结案 1 once it is reported. High risk must be signed within 5 minutes:
leave it unsigned to watch the reminder (3 min) and the escalation ladder (5, 8, 13 and 20 min).

Submit the sample instruction (a high-risk 冒充公检法 warning for grid DM-01):

{demo_curl(settings)}

Then open WeCom as each person sees it, and tap 签收 on 刘红's card:

{sim_url}/_sim/chat/liuhong?c=app        (grid worker 刘红)
{sim_url}/_sim/chat/wangqiang?c=app      (officer 王强)
{sim_url}/_sim/chat/lina?c=app           (officer 李娜)
{sim_url}/_sim/chat/chenlong?c=dmstation (the station group)

or read what WeCom received as JSON:

curl -sS '{sim_url}/_sim/messages?chatid=dmstation'
curl -sS '{sim_url}/_sim/messages?user=liuhong'
curl -sS -H 'Authorization: Bearer {settings.api.tokens[0]}' {settings.public_url}/api/v1/instructions/1

The command-center dashboard (board, details, statistics, 日通报/周研判, Excel exports):

{settings.public_url}/dashboard
  企业微信登录 → pick 郑洁 (center: everything), 陈龙 (东门 leader: his station), 刘红 (grid worker: her tasks)
  or the center's local account: admin / {DEMO_ADMIN_PASSWORD}
  (start the demo with --history for four weeks of past instructions on the board and in the bulletins)

Health {settings.public_url}/healthz · metrics {settings.public_url}/metrics · Ctrl+C stops.
==================================================
"""
