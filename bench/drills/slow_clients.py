"""Slow and idle clients against the bot as its own process: memory under stalled uploads, intake under
thousands of idle connections.

(a) Slow uploads: hundreds of clients start a body and stall — login forms just under the dashboard's
    8 KiB cap, intakes without a token declaring 1 MiB, and authenticated intakes of 900 KB each — while
    the bot's RSS is read before, at the peak, and after body_timeout has answered them all 408.
(b) Idle connections: thousands of connections opened and left (half with headers begun and never
    finished) while one intake every 50 ms and /healthz are timed, with the bot at the common 1,024 open
    files and at the systemd unit's LimitNOFILE= (docs/deployment.md, capped at this machine's hard
    limit); then the same with each connection the bot closes opened again a second later, a flood of
    new connections at the cap.

    .venv/bin/python -m bench.drills.slow_clients [--idle 5000] [--seconds 20]

Writes bench/results/slow_clients.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.drills.harness import API_TOKEN, RESULTS, ROOT, Cluster, drill_instruction, post_instruction
from bench.pipeline import wait_http
from bot.server import TRIM_INTERVAL

UNIT_NOFILE = 65536  # LimitNOFILE= in docs/deployment.md
COMMON_NOFILE = 1024
REOPENED = ", reopened when closed"


@dataclass
class SlowClientsCluster(Cluster):
    """The harness's cluster, with [server] keys and the bot's open-files limit set as a unit would."""

    server_keys: str = ""
    bot_nofile: int | None = None  # soft = hard = this for the bot; None: the drill's own

    def write_files(self) -> None:
        super().write_files()
        text = self.config_path.read_text(encoding="utf-8")
        head = f"[server]\nport = {self.bot_port}\n"
        self.config_path.write_text(text.replace(head, head + self.server_keys, 1), encoding="utf-8")

    async def start_bot(self) -> None:
        nofile = self.bot_nofile

        def limit_open_files() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        with self.log_path.open("ab") as log:
            self.bot = await asyncio.create_subprocess_exec(
                sys.executable, "bot.py", "run", "--config", str(self.config_path), cwd=ROOT,
                stdout=asyncio.subprocess.DEVNULL, stderr=log, preexec_fn=limit_open_files)
        await wait_http(f"{self.bot_url}/healthz", process=self.bot)
        self.bot_starts += 1


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# -- (a) slow uploads -----------------------------------------------------------------------------------


async def stalled_upload(port: int, head: str, declared: int, send: int, answers: list[int | None]) -> None:
    """Start a body of `declared` bytes, send `send` of them, stall; record the answer's status."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        answers.append(None)
        return
    try:
        writer.write(f"{head}Content-Length: {declared}\r\n\r\n".encode())
        for offset in range(0, send, 64 * 1024):
            writer.write(b"a" * min(64 * 1024, send - offset))
            await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 120)
        answers.append(int(line.split()[1]) if line else None)
    except (OSError, TimeoutError, IndexError, ValueError):
        answers.append(None)
    finally:
        writer.close()


async def slow_uploads(work: Path, logins: int, anonymous: int, authenticated: int,
                       rounds: int = 3) -> dict[str, Any]:
    """`rounds` waves of stalled uploads, one after the other, with the bot's RSS around each."""
    async with SlowClientsCluster(work / "uploads", stations=4, grids=4) as cluster:
        pid = cluster.bot.pid
        await asyncio.sleep(2.0)
        waves = []
        for _ in range(rounds):
            waves.append(await _upload_wave(cluster, pid, logins, anonymous, authenticated))
        async with aiohttp.ClientSession() as session:
            body, _ = drill_instruction(1, cluster.stations, cluster.grids, prefix="SLOW")
            status, _ = await post_instruction(session, cluster.bot_url, body)
    return {
        "clients": {"login_forms_7000_of_8000": logins, "anonymous_intakes_64k_of_1m": anonymous,
                    "authenticated_intakes_900k_of_1m": authenticated},
        "waves": waves,
        "intake_after": status,
    }


async def _upload_wave(cluster: Cluster, pid: int, logins: int, anonymous: int, authenticated: int) -> dict:
    before = rss_mib(pid)
    answers: dict[str, list[int | None]] = {"login": [], "anonymous": [], "authenticated": []}
    form = "POST /dashboard/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    intake = "POST /api/v1/instructions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    authed = f"{intake}Authorization: Bearer {API_TOKEN}\r\n"
    port = cluster.bot_port
    tasks = [asyncio.create_task(stalled_upload(port, form, 8000, 7000, answers["login"])) for _ in range(logins)]
    tasks += [asyncio.create_task(stalled_upload(port, intake, 1 << 20, 64 * 1024, answers["anonymous"]))
              for _ in range(anonymous)]
    tasks += [asyncio.create_task(stalled_upload(port, authed, 1_000_000, 900_000, answers["authenticated"]))
              for _ in range(authenticated)]
    started = time.monotonic()
    peak = before
    while not all(t.done() for t in tasks):
        peak = max(peak, rss_mib(pid))
        await asyncio.sleep(0.2)
    answered_after = time.monotonic() - started
    await asyncio.sleep(5.0)
    after = rss_mib(pid)
    await asyncio.sleep(TRIM_INTERVAL)  # the bot hands freed memory back to the system once a minute
    return {"answers": {kind: _counts(values) for kind, values in answers.items()},
            "rss_mib": {"before": round(before, 1), "peak": round(peak, 1), "after_5s": round(after, 1),
                        "after_a_minute": round(rss_mib(pid), 1)},
            "all_answered_after_s": round(answered_after, 1)}


def _counts(values: list[int | None]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[str(value)] = counts.get(str(value), 0) + 1
    return counts


# -- (b) idle connections -------------------------------------------------------------------------------


@dataclass
class IdleCrowd:
    """`size` connections opened against a port; with `reopen`, each one the server closes is opened again a
    second later (a flood of new connections at the cap), else left closed (idle clients that just sit)."""

    port: int
    size: int
    reopen: bool
    closed_by_server: int = 0
    open_failures: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def hold(self, n: int) -> None:
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                self.open_failures += 1
                await asyncio.sleep(1.0)
                continue
            try:
                if n % 2:
                    writer.write(b"POST /api/v1/instructions HTTP/1.1\r\nHost: x\r\n")
                await reader.read()  # returns when the server closes it
                self.closed_by_server += 1
            except OSError:
                self.closed_by_server += 1
            finally:
                writer.close()
            if not self.reopen:
                return
            await asyncio.sleep(1.0)

    async def start(self) -> None:
        for n in range(self.size):
            self.tasks.append(asyncio.create_task(self.hold(n)))
            if n % 200 == 199:
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def timed_intake(cluster: Cluster, seconds: float, prefix: str) -> dict[str, Any]:
    """One intake every 50 ms and a /healthz every second for `seconds`: latencies and failures."""
    latencies: list[float] = []
    failures = 0
    health: dict[str, int] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end:
            body, _ = drill_instruction(n, cluster.stations, cluster.grids, prefix=prefix)
            t0 = time.perf_counter()
            status, _ = await post_instruction(session, cluster.bot_url, body)
            if status == 202:
                latencies.append((time.perf_counter() - t0) * 1000)
            else:
                failures += 1
            if n % 20 == 0:
                try:
                    async with session.get(f"{cluster.bot_url}/healthz",
                                           timeout=aiohttp.ClientTimeout(total=10)) as resp:
                        key = str(resp.status)
                except (aiohttp.ClientError, TimeoutError):
                    key = "none"
                health[key] = health.get(key, 0) + 1
            n += 1
            await asyncio.sleep(0.05)
    return {"intakes": n, "accepted": len(latencies), "failed": failures, "healthz": health,
            **_percentiles(latencies)}


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(values)
    return {"p50_ms": round(statistics.median(ordered), 1),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
            "max_ms": round(ordered[-1], 1)}


async def idle_connections(work: Path, nofile: int, idle: int, seconds: float, reopen: bool) -> dict[str, Any]:
    name = f"idle-{nofile}-{'reopen' if reopen else 'sit'}"
    async with SlowClientsCluster(work / name, stations=4, grids=4, bot_nofile=nofile) as cluster:
        pid = cluster.bot.pid
        quiet = await timed_intake(cluster, seconds / 2, f"Q{nofile}")
        crowd = IdleCrowd(cluster.bot_port, idle, reopen)
        await crowd.start()
        await asyncio.sleep(2.0)
        fds_during = open_fds(pid)
        loaded = await timed_intake(cluster, seconds, f"L{nofile}")
        fds_end = open_fds(pid)
        await crowd.stop()
        log = cluster.log_path.read_text(errors="replace")
    return {
        "bot_nofile": nofile, "idle_connections": idle, "reopened_when_closed": reopen,
        "bot_open_fds_during": fds_during, "bot_open_fds_end": fds_end,
        "closed_by_bot": crowd.closed_by_server, "client_open_failures": crowd.open_failures,
        "quiet": quiet, "under_idle_crowd": loaded,
        "bot_log_errors": sum('"level": "error"' in line for line in log.splitlines()),
        "bot_log_cap_warning": "open-files limit too low" in log,
    }


async def run(idle: int, seconds: float, logins: int, anonymous: int, authenticated: int) -> dict[str, Any]:
    # The drill holds the idle crowd itself: as many open files as this process may have. Without the
    # privilege to raise the hard limit, the unit's value is capped at it (and the result says so).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    unit = UNIT_NOFILE if hard == resource.RLIM_INFINITY else min(UNIT_NOFILE, hard)
    work = Path(tempfile.mkdtemp(prefix="quanzu-drill-slow-"))
    return {
        "slow_uploads": await slow_uploads(work, logins, anonymous, authenticated),
        "idle": [await idle_connections(work, nofile, idle, seconds, reopen)
                 for reopen in (False, True) for nofile in (COMMON_NOFILE, unit)],
        "work": str(work),
    }


def table(result: dict[str, Any]) -> str:
    up = result["slow_uploads"]
    rows = ["| phase | figures |", "|---|---|"]
    for n, wave in enumerate(up["waves"], 1):
        rss = wave["rss_mib"]
        rows.append(f"| slow uploads, wave {n}: {up['clients']} | answers {wave['answers']}; RSS before "
                    f"{rss['before']} MiB, peak {rss['peak']} MiB, 5 s after {rss['after_5s']} MiB, a minute after "
                    f"{rss['after_a_minute']} MiB; all answered after "
                    f"{wave['all_answered_after_s']} s |")
    for r in result["idle"]:
        q, loaded = r["quiet"], r["under_idle_crowd"]
        rows.append(
            f"| {r['idle_connections']} idle connections{REOPENED if r['reopened_when_closed'] else ''}, "
            f"bot at {r['bot_nofile']} open files | intake quiet p50 "
            f"{q['p50_ms']} / p99 {q['p99_ms']} ms; under the crowd p50 {loaded['p50_ms']} / p99 {loaded['p99_ms']} "
            f"/ max {loaded['max_ms']} ms, {loaded['accepted']}/{loaded['intakes']} accepted, /healthz "
            f"{loaded['healthz']}; bot fds {r['bot_open_fds_during']}; {r['closed_by_bot']} idle closed by the "
            f"bot; {r['bot_log_errors']} ERROR lines |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=5000, help="idle connections held (default 5000)")
    parser.add_argument("--seconds", type=float, default=20.0, help="intake timed under the crowd (default 20)")
    parser.add_argument("--logins", type=int, default=500)
    parser.add_argument("--anonymous", type=int, default=300)
    parser.add_argument("--authenticated", type=int, default=50)
    args = parser.parse_args()
    result = asyncio.run(run(args.idle, args.seconds, args.logins, args.anonymous, args.authenticated))
    result["command"] = (f".venv/bin/python -m bench.drills.slow_clients --idle {args.idle} --seconds "
                         f"{args.seconds:.0f} --logins {args.logins} --anonymous {args.anonymous} "
                         f"--authenticated {args.authenticated}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "slow_clients.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n",
                                               encoding="utf-8")
    print(table(result))


if __name__ == "__main__":
    main()
