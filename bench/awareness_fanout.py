"""Fan-out of one awareness run to a few thousand residents' groups, against the WeCom simulator.

The bot and the simulator run in this process (SQLite synchronous=FULL, default delivery settings).
Phase 1: one run of a rotation campaign to 3,000 groups — 1,200 group robots, 1,600 customer groups
of 40 staff members (客户群群发 tasks) and 200 app-message groups — timed until every WeCom call is
made, then until every staff member has confirmed and the run is closed. Phase 2: 25 runs in a row
to 30 robots (750 messages, 25 per robot): the robots' 20/min limit makes 150 wait a minute, in
real time; nothing may be dropped or answered with 45009. Writes bench/results/awareness_fanout.json/.md.

    .venv/bin/python bench/awareness_fanout.py [--skip-pressure]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
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
from wecom_sim import Simulator, SimulatorConfig, create_simulator_app  # noqa: E402

DISTRICT = ROOT / "demo" / "district.toml"
TOKEN = "fanout-bench-token"
OWNERS, PRESSURE_ROBOTS, PRESSURE_RUNS = 40, 30, 25
# Per corp and API: 10,000 calls a minute (WeCom's base frequency limit, 45009 beyond).
_CORP_API_PER_MIN = 10_000


def mix(groups: int) -> tuple[int, int, int]:
    """Robots, customer groups and app groups of a fan-out to `groups` groups: 40 % / 53 % / 7 %."""
    robots, app = groups * 2 // 5, groups // 15
    return robots, groups - robots - app, app


ROBOTS, CUSTOMER, APP = mix(3000)


def lower_bound(robots: int, customer: int, app: int, owners: int) -> dict:
    """The least time WeCom's limits allow for one push to this mix, each group its own robot or member.

    Each limit lets `count` messages through per `window`; a bucket with m messages must wait
    ceil(m / count) - 1 windows. Robots (20/min) and app members (30/min) get one message each here,
    and customer groups share one 群发 task per staff member (≤ 2,000 groups a task), so the only
    limit that can bind is the corp-wide 10,000 calls per minute per API.
    """
    calls = {"webhook/send": robots, "message/send": app,
             "externalcontact/add_msg_template": min(owners, customer) * -(-customer // (owners * 2000))}
    per_bucket = [(1, 20, 60.0), (1, 30, 60.0), (1, 1, 86400.0)]  # per robot, per member, per group a day
    per_api = [(n, _CORP_API_PER_MIN, 60.0) for n in calls.values()]
    wait = max(max(0, -(-m // count) - 1) * window for m, count, window in per_bucket + per_api)
    return {"calls": calls, "lower_bound_s": wait}


def _district(path: Path) -> None:
    parts = [DISTRICT.read_text(encoding="utf-8")]
    for n in range(OWNERS):
        parts.append(f'[[people]]\nuserid = "staff{n:03d}"\nname = "员工{n}"\nrole = "officer"\nstation = "DM"\n')
    for n in range(APP):
        parts.append(f'[[people]]\nuserid = "grid{n:04d}"\nname = "网格{n}"\nrole = "officer"\nstation = "LH"\n')
    for n in range(ROBOTS + CUSTOMER + APP + PRESSURE_ROBOTS):
        station = "DM" if n % 2 else "LH"
        community = "压测社区" if n >= ROBOTS + CUSTOMER + APP else "扇出社区"
        if n < ROBOTS or n >= ROBOTS + CUSTOMER + APP:
            where = f'channel = "webhook"\nwebhook_key = "bench-robot-{n:05d}"'
        elif n < ROBOTS + CUSTOMER:
            where = f'channel = "customer_group"\nowner = "staff{n % OWNERS:03d}"\nchat_id = "wrBench{n:06d}"'
        else:
            where = f'channel = "app"\nusers = ["grid{n - ROBOTS - CUSTOMER:04d}"]'
        parts.append(f'[[resident_groups]]\ncode = "b-{n:05d}"\nname = "群{n}"\nstation = "{station}"\n'
                     f'community = "{community}"\n{where}\n')
    path.write_text("\n".join(parts), encoding="utf-8")


async def main(pressure: bool, as_json: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        district = Path(tmp) / "district.toml"
        _district(district)
        sim = Simulator(SimulatorConfig(callback_url="http://127.0.0.1:9/wecom/callback", customer_contact=True))
        seed_simulator(sim, load_directory_file(district))
        sim_server = TestServer(create_simulator_app(sim))
        await sim_server.start_server()
        c = sim.config  # the app creates its group chats, as an operator does (bot.py wecom create-chat)
        await create_app_chats(district, str(sim_server.make_url('')).rstrip('/'), c.corp_id, c.corp_secret, c.agent_id)
        campaigns = [
            {"name": "fanout", "selection": "rotation", "audience": {"communities": ["扇出社区"]}, "urgent": True},
            {"name": "pressure", "selection": "rotation", "audience": {"communities": ["压测社区"]}, "urgent": True},
        ]
        settings = bot_settings(sim, str(sim_server.make_url("/cgi-bin/")), f"{tmp}/bench.sqlite3", str(district),
                                TOKEN, {"check_interval": 0.2, "campaigns": campaigns})
        bot_server = TestServer(create_app(settings, clock=sim.clock.now))
        await bot_server.start_server()
        base = str(bot_server.make_url("")).rstrip("/")
        try:
            async with ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
                result = {"fanout": await _fanout(sim, http, base)}
                if pressure:
                    result["pressure"] = await _pressure(sim, http, base)
        finally:
            await bot_server.close()
            await sim_server.close()
    result["machine"] = f"{platform.machine()}, Python {platform.python_version()}"
    result["fanout"].update(lower_bound(ROBOTS, CUSTOMER, APP, OWNERS))
    if as_json:  # for bench/run.py: one line of JSON, no files
        print(json.dumps(result, ensure_ascii=False))
        return
    out = ROOT / "bench" / "results"
    (out / "awareness_fanout.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    (out / "awareness_fanout.md").write_text(_markdown(result), encoding="utf-8")
    print(_markdown(result))


async def _fanout(sim: Simulator, http: ClientSession, base: str) -> dict:
    start = time.perf_counter()
    async with http.post(f"{base}/api/v1/campaigns/fanout/run") as resp:
        run = (await resp.json())["run"]
    planned = time.perf_counter() - start
    url = f"{base}/api/v1/campaigns/fanout/runs/{run['id']}"
    body = await wait(http, url, lambda b: b["run"]["progress"]["pending"] == 0)
    calls_done = time.perf_counter() - start
    confirm_at = time.perf_counter()
    sim.confirm_groupmsg()
    body = await wait(http, url, lambda b: b["run"]["finished_at"] is not None)
    return {
        "groups": run["groups"], "run_created_s": round(planned, 2), "all_calls_made_s": round(calls_done, 2),
        "closed_after_confirmation_s": round(time.perf_counter() - confirm_at, 2),
        "progress": body["run"]["progress"],
        "wecom_calls": {api: sim.stats.calls[api] for api in ("webhook/send", "message/send",
                                                              "externalcontact/add_msg_template")},
        "errors_45009": sim.stats.errors[45009],
    }


async def _pressure(sim: Simulator, http: ClientSession, base: str) -> dict:
    before = sim.stats.calls["webhook/send"]
    start = time.perf_counter()
    runs = []
    for _ in range(PRESSURE_RUNS):
        async with http.post(f"{base}/api/v1/campaigns/pressure/run") as resp:
            runs.append((await resp.json())["run"]["id"])
    last = f"{base}/api/v1/campaigns/pressure/runs/{runs[-1]}"
    await wait(http, last, lambda b: b["run"]["finished_at"] is not None, within=180)
    sent = 0
    for run_id in runs:
        async with http.get(f"{base}/api/v1/campaigns/pressure/runs/{run_id}") as resp:
            sent += (await resp.json())["run"]["progress"]["sent"]
    return {"robots": PRESSURE_ROBOTS, "runs": PRESSURE_RUNS, "messages": PRESSURE_ROBOTS * PRESSURE_RUNS,
            "sent": sent, "webhook_calls": sim.stats.calls["webhook/send"] - before,
            "finished_s": round(time.perf_counter() - start, 1), "errors_45009": sim.stats.errors[45009]}




def _markdown(r: dict) -> str:
    f = r["fanout"]
    lines = [
        "# Awareness fan-out benchmark (`bench/awareness_fanout.py`)",
        "",
        f"Machine: {r['machine']}; bot, simulator and driver in one process; SQLite synchronous=FULL.",
        "",
        "| phase | groups / messages | result |",
        "|---|---|---|",
        f"| one run, {ROBOTS} robots + {CUSTOMER} customer groups ({OWNERS} staff) + {APP} app groups | "
        f"{f['groups']} groups | run stored in {f['run_created_s']} s; every WeCom call made after "
        f"{f['all_calls_made_s']} s ({f['wecom_calls']}); closed {f['closed_after_confirmation_s']} s after "
        f"staff confirmed; {f['progress']}; 45009 answers: {f['errors_45009']} |",
    ]
    if "pressure" in r:
        p = r["pressure"]
        lines.append(
            f"| {p['runs']} runs in a row to {p['robots']} robots (20/min each) | {p['messages']} messages | "
            f"{p['sent']} sent with {p['webhook_calls']} calls, finished after {p['finished_s']} s (the limit "
            f"allows 20 a minute per robot); 45009 answers: {p['errors_45009']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-pressure", action="store_true", help="skip the one-minute robot-limit phase")
    parser.add_argument("--groups", type=int, default=3000, help="groups in the fan-out (default 3000)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON; write no files")
    args = parser.parse_args()
    ROBOTS, CUSTOMER, APP = mix(args.groups)
    asyncio.run(main(not args.skip_pressure, args.json))
