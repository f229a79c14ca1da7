"""Shared test helpers: sample instructions and waiting for what the simulator receives."""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.pipeline import free_port, free_ports, wait_http  # noqa: F401 (the tests import them from here)

ROOT = Path(__file__).resolve().parent.parent
DISTRICT = ROOT / "demo" / "district.toml"
TOKEN = "test-intake-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
_numbers = itertools.count(1)
ADMIN_PASSWORD = "correct horse battery staple"
# The dashboard's local admin (scrypt, as `bot.py dashboard hash-password` makes it), computed once.
ADMIN_HASH = "scrypt$16384$8$1$c2FsdHNhbHRzYWx0c2FsdA$PJAV4qWLTjSe3lT4xOIAexIMw5uL3hBCiM6HFiXcgrY"

BASE_INSTRUCTION: dict[str, Any] = {
    "issued_at": "2026-11-22T14:03:05+08:00",
    "warning_type": "涉诈来电",
    "fraud_type": "冒充公检法",
    "risk_level": "high",
    "target": {"name": "唐小明", "phone": "13812348000", "age": 67, "address": "东门社区3栋2单元501",
               "id_number": "500101195901011234"},
    "jurisdiction": {"station": "DM", "grid": "DM-01"},
    "summary": "居民正与冒充公安的号码通话，对方要求转账到安全账户。",
    "amount_at_risk": 100000,
}


def instruction(**overrides: Any) -> dict[str, Any]:
    """A valid instruction with a fresh instruction_no; keyword arguments replace top-level fields."""
    body = copy.deepcopy(BASE_INSTRUCTION)
    body["instruction_no"] = f"YJ-TEST-{next(_numbers):06d}"
    body.update(overrides)
    return body


async def submit(bot, **overrides: Any) -> int:
    """POST one instruction (the sample with `overrides`) as the center does; its id, once accepted (202)."""
    resp = await bot.post("/api/v1/instructions", json=instruction(**overrides), headers=AUTH)
    assert resp.status == 202, await resp.text()
    return (await resp.json())["id"]


async def sim_messages(sim_client, **filters: str) -> list[dict[str, Any]]:
    """What the simulator recorded, through its inspection endpoint GET /_sim/messages."""
    resp = await sim_client.get("/_sim/messages", params=filters)
    assert resp.status == 200
    return (await resp.json())["messages"]


async def eventually(fetch, predicate, within: float = 15.0, what: str = "condition"):
    """Await fetch() until predicate(result) holds, returning the result; fail after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = await fetch()
        if predicate(result):
            return result
        if loop.time() > deadline:
            raise AssertionError(f"{what} not met within {within}s; last value: {str(result)[:600]}")
        await asyncio.sleep(0.01)


async def wait_for_messages(sim_client, count: int, within: float = 15.0, **filters: str) -> list[dict[str, Any]]:
    """Wait until the simulator has recorded at least count messages matching filters."""
    return await eventually(lambda: sim_messages(sim_client, **filters), lambda m: len(m) >= count, within,
                            f"{count} messages for {filters}")


async def instruction_detail(bot, number: int) -> dict[str, Any]:
    return await (await bot.get(f"/api/v1/instructions/{number}", headers=AUTH)).json()


async def wait_detail(bot, number: int, predicate, within: float = 15.0) -> dict[str, Any]:
    """Poll GET /api/v1/instructions/{number} until predicate(detail) holds."""
    return await eventually(lambda: instruction_detail(bot, number), predicate, within, f"instruction {number}")


async def wait_state(bot, number: int, state: str, within: float = 15.0) -> dict[str, Any]:
    return await wait_detail(bot, number, lambda d: d.get("state") == state, within)


def ladder_bot_config(path: Path, sim, sim_url: str, port: int, db_toml: str, extra: str = "") -> Path:
    """A config file for a bot run as its own process (`bot.py run`) against the simulator, with the
    high-risk ladder shrunk to seconds (sign within 3 s; assignee, officer on duty, station leader and
    center at 0, 1, 2 and 3 s after) so that tests watch it climb in real time."""
    c = sim.config
    path.write_text(f"""
[server]
port = {port}
[database]
{db_toml}
[wecom]
corp_id = {json.dumps(c.corp_id)}
corp_secret = {json.dumps(c.corp_secret)}
agent_id = {c.agent_id}
token = {json.dumps(c.token)}
encoding_aes_key = {json.dumps(c.encoding_aes_key)}
api_base = "{sim_url}/cgi-bin/"
[api]
tokens = [{json.dumps(TOKEN)}]
[directory]
path = {json.dumps(str(DISTRICT))}
[escalation]
sweep_interval = 0.1
[policy.high]
ack_within = "3s"
remind_before = "1s"
visit_ack_within = "3s"
ladder = {{ assignee = "0s", duty_officer = "1s", station_leader = "2s", center = "3s" }}
[logging]
format = "text"
{extra}
""", encoding="utf-8")
    return path


async def start_bot_process(config: Path, log_path: Path, port: int) -> asyncio.subprocess.Process:
    """`bot.py run --config config` as a child process logging to log_path; returns once it answers."""
    with log_path.open("ab") as log:  # the child keeps its own handle
        proc = await asyncio.create_subprocess_exec(sys.executable, "bot.py", "run", "--config", str(config),
                                                    cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    await wait_http(f"http://127.0.0.1:{port}/healthz", process=proc)
    return proc


def markdown_text(message: dict[str, Any]) -> str:
    """The markdown content of a message the simulator recorded ('' for other kinds)."""
    return message["body"].get("markdown", {}).get("content", "")


async def create_chats_as_operator(sim, sim_url: str, directory: Path = DISTRICT) -> None:
    """`bot.py wecom create-chat` for every app chat of the directory, through the simulator's HTTP API.

    The simulator's counters then start from zero: tests count what the bot did, not the set-up."""
    from bot.config import WeComSettings
    from bot.directory import load_directory_file
    from bot.wecom.chats import set_up_chats
    from wecom_sim.records import Stats

    c = sim.config
    settings = WeComSettings(corp_id=c.corp_id, corp_secret=c.corp_secret, agent_id=c.agent_id,
                             api_base=f"{sim_url}/cgi-bin/")
    await set_up_chats(settings, load_directory_file(directory))
    sim.stats = Stats()


async def run_cli(*args: str) -> tuple[int, str]:
    """`bot.py ARGS` as a child process: its exit code and what it printed (stdout and stderr)."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "bot.py", *args, cwd=ROOT,
                                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    async with asyncio.timeout(60):
        out, _ = await proc.communicate()
    return proc.returncode, out.decode("utf-8")
