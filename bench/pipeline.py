"""Pipeline benchmark: intake latency and alert-to-WeCom latency, over loopback, with real processes.

Starts `bot.py simulator` and `bot.py run` (SQLite, synchronous=FULL) on a synthetic city directory,
sends instructions at a steady rate from this process, and measures
  - intake: from sending the POST to the 202 (the instruction is durably stored), and
  - alert-to-WeCom: from sending the POST to the simulator receiving the first WeCom call for it.
Every instruction goes to a different grid, so WeCom's per-member limits do not delay anything.

    .venv/bin/python bench/pipeline.py --rate 50 --seconds 20

Writes bench/results/pipeline.json and bench/results/pipeline.md (the table docs/benchmarks.md shows).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
AES_KEY = "QuanzuDemoEncodingAesKey0123456789abcdefgh0"
CORP_ID, CORP_SECRET, AGENT_ID, CALLBACK_TOKEN = "wwbench", "bench-secret", 1000002, "BenchToken"
API_TOKEN = "bench-token-1"


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports on loopback. Every socket stays bound until all are picked: asked one
    at a time, the system may hand out the same port twice."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def free_port() -> int:
    return free_ports(1)[0]


def write_directory(path: Path, stations: int, grids_per_station: int) -> None:
    """A synthetic city: each station an app group chat of leader + officer, each grid one worker."""
    lines = ['[center]\nname = "压测市反诈中心"\nfallback_group = "center"\n',
             '[[groups]]\ncode = "center"\nname = "中心"\nkind = "appchat"\nchatid = "center"\n'
             'members = ["c1", "c2"]\n',
             '[[people]]\nuserid = "c1"\nname = "中心值班"\nrole = "center"\n',
             '[[people]]\nuserid = "c2"\nname = "中心领导"\nrole = "center"\n']
    for s in range(stations):
        st = f"S{s:03d}"
        lines.append(f'[[groups]]\ncode = "g{st}"\nname = "{st}群"\nkind = "appchat"\nchatid = "chat{st}"\n'
                     f'members = ["l{st}", "o{st}"]\n')
        lines.append(f'[[stations]]\ncode = "{st}"\nname = "{st}派出所"\ngroup = "g{st}"\nleader = "l{st}"\n'
                     f'duty_officer = "o{st}"\n')
        lines.append(f'[[people]]\nuserid = "l{st}"\nname = "所长{st}"\nrole = "station_leader"\nstation = "{st}"\n')
        lines.append(f'[[people]]\nuserid = "o{st}"\nname = "民警{st}"\nrole = "officer"\nstation = "{st}"\n')
        for g in range(grids_per_station):
            grid = f"{st}-{g:03d}"
            lines.append(f'[[grids]]\ncode = "{grid}"\nname = "{grid}网格"\nstation = "{st}"\n')
            lines.append(f'[[people]]\nuserid = "w{grid}"\nname = "网格员{grid}"\nrole = "grid_worker"\n'
                         f'station = "{st}"\ngrid = "{grid}"\n')
    path.write_text("\n".join(lines), encoding="utf-8")


async def create_app_chats(directory: Path, sim_url: str, corp_id: str, secret: str, agent_id: int) -> None:
    """The app creates its group chats, as an operator does with `bot.py wecom create-chat` (WeCom, and the
    simulator, refuse an app the chats it did not create)."""
    from bot.config import WeComSettings
    from bot.directory import load_directory_file
    from bot.wecom.chats import set_up_chats

    settings = WeComSettings(corp_id=corp_id, corp_secret=secret, agent_id=agent_id, api_base=f"{sim_url}/cgi-bin/")
    await set_up_chats(settings, load_directory_file(directory))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def wait_http(url: str, within: float = 30.0, process: asyncio.subprocess.Process | None = None) -> None:
    """Wait until a server answers url (any status below 500); fail early if `process` exits first."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as resp:
                    if resp.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            if process is not None and process.returncode is not None:
                raise RuntimeError(f"process exited with {process.returncode} before {url} came up")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up within {within}s")
            await asyncio.sleep(0.05)


@dataclass
class Pipeline:
    """A running simulator and bot (real processes) and where to reach them."""

    work: Path
    sim_port: int
    bot_port: int
    bot: asyncio.subprocess.Process
    sim: asyncio.subprocess.Process
    # More instances on the same (PostgreSQL) database, beside the first: their ports and processes.
    more_ports: list[int] = field(default_factory=list)
    more_bots: list[asyncio.subprocess.Process] = field(default_factory=list)

    @property
    def bot_ports(self) -> list[int]:
        return [self.bot_port, *self.more_ports]

    @property
    def bots(self) -> list[asyncio.subprocess.Process]:
        return [self.bot, *self.more_bots]

    @property
    def bot_url(self) -> str:
        return f"http://127.0.0.1:{self.bot_port}"

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"


SQLITE = 'path = "quanzu.sqlite3"'


@asynccontextmanager
async def pipeline(stations: int, grids: int, work: Path | None = None, database: str = SQLITE,
                   instances: int = 1, extra_config: str = "") -> AsyncIterator[Pipeline]:
    """`bot.py simulator` and `bot.py run` on a synthetic city, stopped on exit.

    `database`: the lines of the bots' [database] section (default: the SQLite file, synchronous=FULL).
    `instances` > 1 (PostgreSQL only): that many `bot.py run` on the same database, each on its own
    port with its own config (config.toml, config-2.toml, …) and log (bot.log, bot-2.log, …); the
    simulator's callback URL points at the first. `extra_config`: more TOML appended to each config.
    """
    work = work or Path(tempfile.mkdtemp(prefix="quanzu-bench-"))
    write_directory(work / "directory.toml", stations, grids)
    sim_port, *ports = free_ports(1 + instances)
    names = ["" if i == 0 else f"-{i + 1}" for i in range(instances)]
    for name, port in zip(names, ports, strict=True):
        (work / f"config{name}.toml").write_text(
            f'[server]\nport = {port}\n[database]\n{database}\n'
            f'[wecom]\ncorp_id = "{CORP_ID}"\ncorp_secret = "{CORP_SECRET}"\nagent_id = {AGENT_ID}\n'
            f'token = "{CALLBACK_TOKEN}"\nencoding_aes_key = "{AES_KEY}"\n'
            f'api_base = "http://127.0.0.1:{sim_port}/cgi-bin/"\n'
            f'[api]\ntokens = ["{API_TOKEN}"]\n[directory]\npath = "directory.toml"\n[logging]\nlevel = "WARNING"\n'
            # Deadlines in hours: every deadline and timer is still written, but no reminder or escalation
            # for the thousands of instructions nobody signs falls due while a benchmark runs.
            '[policy.high]\nack_within = "2h"\ncontact_within = "3h"\nreport_within = "6h"\nremind_before = "30m"\n'
            'visit_ack_within = "2h"\nvisit_report_within = "6h"\n' + extra_config,
            encoding="utf-8",
        )
    python = sys.executable
    sim = await asyncio.create_subprocess_exec(
        python, "bot.py", "simulator", "--port", str(sim_port), "--corp-id", CORP_ID, "--corp-secret",
        CORP_SECRET, "--token", CALLBACK_TOKEN, "--encoding-aes-key", AES_KEY, "--directory",
        str(work / "directory.toml"), "--callback-url", f"http://127.0.0.1:{ports[0]}/wecom/callback",
        cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    bots: list[asyncio.subprocess.Process] = []
    try:
        await wait_http(f"http://127.0.0.1:{sim_port}/_sim/stats")
        await create_app_chats(work / "directory.toml", f"http://127.0.0.1:{sim_port}", CORP_ID, CORP_SECRET, AGENT_ID)
        # All at once, as a cluster restarting together does (they take turns in the start-up import).
        for name in names:
            log = os.open(work / f"bot{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                bots.append(await asyncio.create_subprocess_exec(
                    python, "bot.py", "run", "--config", str(work / f"config{name}.toml"),
                    cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=log))
            finally:
                os.close(log)
        for bot, port in zip(bots, ports, strict=True):
            await wait_http(f"http://127.0.0.1:{port}/healthz", process=bot)
        yield Pipeline(work, sim_port, ports[0], bots[0], sim, ports[1:], bots[1:])
    finally:
        for proc in (*bots, sim):
            await stop(proc)


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
    await proc.wait()


def instruction(n: int, stations: int, grids: int, prefix: str = "BENCH") -> dict:
    """Instruction n of a run: high risk, each to another grid of the synthetic city."""
    st, grid = f"S{n % stations:03d}", (n // stations) % grids
    return {"instruction_no": f"{prefix}-{n:07d}", "issued_at": "2026-11-22T14:03:05+08:00",
            "warning_type": "涉诈来电", "fraud_type": "刷单返利", "risk_level": "high",
            "target": {"name": "测试对象", "phone": "13800000000"},
            "jurisdiction": {"station": st, "grid": f"{st}-{grid:03d}"}, "summary": "压测"}


async def run(rate: float, seconds: float, stations: int, grids: int) -> dict:
    async with pipeline(stations, grids) as p:
        return await _load(p.bot_port, p.sim_port, rate, seconds, stations, grids)


async def _load(bot_port: int, sim_port: int, rate: float, seconds: float, stations: int, grids: int) -> dict:
    total = int(rate * seconds)
    sent_at: dict[int, float] = {}
    intake_ms: list[float] = []
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    url = f"http://127.0.0.1:{bot_port}/api/v1/instructions"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=500)) as session:

        async def one(n: int) -> None:
            body = instruction(n, stations, grids)
            start = time.time()
            async with session.post(url, json=body, headers=headers) as resp:
                payload = await resp.json()
                assert resp.status == 202, payload
            intake_ms.append((time.time() - start) * 1000)
            sent_at[payload["id"]] = start

        started = time.perf_counter()
        tasks = []
        for n in range(total):
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
        achieved = total / (time.perf_counter() - started)

        first_call: dict[int, float] = {}
        deadline = time.time() + 60
        while len(first_call) < total and time.time() < deadline:
            async with session.get(f"http://127.0.0.1:{sim_port}/_sim/messages") as resp:
                messages = (await resp.json())["messages"]
            for m in messages:
                number = instruction_of(m)
                if number is not None:
                    first_call[number] = min(first_call.get(number, m["at"]), m["at"])
            await asyncio.sleep(0.5)
    to_wecom = [(first_call[n] - sent_at[n]) * 1000 for n in sent_at if n in first_call]
    return {
        "instructions": total, "rate_target": rate, "rate_achieved": round(achieved, 1),
        "intake_ms": summary(intake_ms), "alert_to_wecom_ms": summary(to_wecom),
        "reached_wecom": len(to_wecom),
    }


def instruction_of(message: dict) -> int | None:
    if message.get("task_id"):
        return int(message["task_id"].split("-")[1])
    content = (message.get("body", {}).get("markdown") or {}).get("content", "")
    marker = content.find("预警劝阻指令 #")
    if marker < 0:
        return None
    digits = content[marker + len("预警劝阻指令 #"):].split("\n", 1)[0]
    return int(digits) if digits.isdigit() else None


def summary(values: list[float]) -> dict:
    if not values:
        return {}
    return {"p50": round(statistics.median(values), 1), "p99": round(percentile(values, 99), 1),
            "max": round(max(values), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=50.0, help="instructions per second (default 50)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to send (default 20)")
    parser.add_argument("--stations", type=int, default=20)
    parser.add_argument("--grids", type=int, default=100, help="grids per station (default 100)")
    args = parser.parse_args()
    result = asyncio.run(run(args.rate, args.seconds, args.stations, args.grids))
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    result["date"] = time.strftime("%Y-%m-%d")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pipeline.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    i, w = result["intake_ms"], result["alert_to_wecom_ms"]
    table = (
        f"| measure ({result['instructions']} instructions at {result['rate_achieved']}/s) | p50 | p99 | max |\n"
        f"|---|---|---|---|\n"
        f"| intake: POST → 202 (durably stored) | {i['p50']} ms | {i['p99']} ms | {i['max']} ms |\n"
        f"| alert → first WeCom call received by the simulator | {w['p50']} ms | {w['p99']} ms | {w['max']} ms |\n"
        f"\n{result['machine']}, {result['date']}; {result['reached_wecom']}/{result['instructions']} reached WeCom.\n"
    )
    (RESULTS / "pipeline.md").write_text(table, encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
