"""Intake latency under a sustained anonymous flood of dashboard password logins, side by side.

    .venv/bin/python -m bench.login_flood                    # three 20 s runs at 50 instructions/s (~2 min)
    .venv/bin/python -m bench.login_flood --flood-rate 0     # the flood as fast as the bot answers it
    .venv/bin/python -m bench.login_flood --quick            # a few seconds: checks that the harness works

Starts `bot.py simulator` and `bot.py run` (SQLite, synchronous=FULL, a local admin account) as real
processes and drives intake from bench/loadgen.py (its own process) at a fixed rate, three times:
  1. no flood;
  2. a flood from one address: clients posting wrong passwords for changing account names on
     keep-alive connections, each again as soon as it is answered (the per-address throttle answers
     most of them 429 without any scrypt, before reading the form);
  3. a flood from many addresses: the same from a new loopback source address (127.1.x.y) every 10
     attempts, so no per-address or per-account limit holds it and every attempt asks for a scrypt
     (the bounded checker runs one at a time and refuses with 429 when 16 wait).
Each flood client holds a valid login-form token (one GET of the form), as a real attacker would.
Reports intake p50/p99 (from when each request was due) per run, the flood's attempts and answers,
and the bot's CPU. Writes login_flood.json and login_flood.md to --out (default bench/results).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import secrets
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlencode

import aiohttp

from bench.pipeline import RESULTS, Pipeline, instruction, pipeline
from bench.run import _quiet, cpu_seconds, drive, post, step
from handlers.dashboard.session import hash_password


@dataclass(frozen=True)
class Plan:
    rate: float = 50.0  # instructions per second
    seconds: float = 20.0
    flood_rate: float = 200.0  # login attempts per second, all clients together; 0: each as fast as answered
    one_address_clients: int = 16
    many_address_clients: int = 32
    stations: int = 50
    grids: int = 4


REQUESTS_PER_ADDRESS = 10  # many-address flood: attempts per source address (the limit is 20)
QUICK = Plan(rate=20, seconds=2, flood_rate=100, one_address_clients=4, many_address_clients=8, stations=5, grids=2)


class Flood:
    """Clients posting the login form with wrong passwords until stopped; what they were answered."""

    def __init__(self, port: int, clients: int, many_addresses: bool, rate: float) -> None:
        self.port = port
        self.clients = clients
        self.many_addresses = many_addresses
        self.interval = clients / rate if rate else 0.0  # each client's pace
        self.answers: Counter[int] = Counter()
        self._numbers = itertools.count()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        token = await self._form_token()
        self._tasks = [asyncio.create_task(self._client(token)) for _ in range(self.clients)]

    async def stop(self) -> dict:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        addresses = f"a new one every {REQUESTS_PER_ADDRESS} attempts" if self.many_addresses else "one"
        return {"clients": self.clients, "addresses": addresses,
                "attempts": sum(self.answers.values()), "answers": dict(sorted(self.answers.items())),
                "throttled_429": self.answers.get(429, 0)}

    async def _form_token(self) -> str:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{self.port}/dashboard/login") as resp:
            return resp.cookies["qz_login_csrf"].value

    async def _client(self, token: str) -> None:
        """Keep-alive requests on one connection; with many addresses a new connection (and source
        address, 127.1.x.y) every REQUESTS_PER_ADDRESS attempts, below the per-address limit."""
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        sent_on_conn = 0
        loop = asyncio.get_running_loop()
        due = loop.time() + self.interval * secrets.randbelow(1000) / 1000  # the clients spread over an interval
        while not self._stop.is_set():
            if self.interval:
                due += self.interval
                await asyncio.sleep(max(0.0, due - loop.time()))
            n = next(self._numbers)
            if conn is None or (self.many_addresses and sent_on_conn >= REQUESTS_PER_ADDRESS):
                if conn is not None:
                    conn[1].close()
                address = n // REQUESTS_PER_ADDRESS
                source = f"127.1.{address // 250 % 256}.{address % 250 + 1}" if self.many_addresses else "127.0.0.1"
                try:
                    conn = await asyncio.open_connection("127.0.0.1", self.port, local_addr=(source, 0))
                except OSError:
                    self.answers[0] += 1
                    conn = None
                    await asyncio.sleep(0.01)
                    continue
                sent_on_conn = 0
            body = urlencode({"csrf": token, "user": f"user{n % 5000}", "password": secrets.token_hex(8),
                              "next": "/dashboard"}).encode()
            head = (f"POST /dashboard/login HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                    f"Cookie: qz_login_csrf={token}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            try:
                status = await _exchange(conn, head + body)
                sent_on_conn += 1
            except (OSError, asyncio.IncompleteReadError, ValueError):
                status, conn = 0, None
            self.answers[status] += 1
        if conn is not None:
            conn[1].close()


async def _exchange(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes) -> int:
    """Send one request and read its whole answer (Content-Length framed); its status."""
    reader, writer = conn
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    await reader.readexactly(length)
    return int(head[9:12])


async def intake(p: Pipeline, plan: Plan, name: str, counter: itertools.count, seconds: float) -> dict:
    requests = [post("/api/v1/instructions", instruction(next(counter), plan.stations, plan.grids, "FLOOD"))
                for _ in range(int(plan.rate * seconds))]
    raw = await drive(p.work, name, requests, p.bot_port, plan.rate)
    return step(raw, {202})


async def run(plan: Plan) -> dict:
    # A local account exists (its password is never guessed): every attempt that gets through is a full scrypt.
    extra = f'[dashboard]\nadmin_password_hash = "{hash_password(secrets.token_urlsafe(16))}"\n'
    counter = itertools.count()
    runs = []
    async with pipeline(plan.stations, plan.grids, extra_config=extra) as p, aiohttp.ClientSession() as http:
        await intake(p, plan, "warm-up", counter, 1.0)
        for name, flood in (("no flood", None),
                            ("flood from one address", Flood(p.bot_port, plan.one_address_clients, False,
                                                             plan.flood_rate)),
                            ("flood from many addresses", Flood(p.bot_port, plan.many_address_clients, True,
                                                                plan.flood_rate))):
            await _quiet(http, p)
            cpu = cpu_seconds(p.bot.pid)
            started = time.monotonic()
            if flood:
                await flood.start()
            result = {"run": name, "intake": await intake(p, plan, name.replace(" ", "-"), counter, plan.seconds)}
            if flood:
                result["flood"] = await flood.stop()
                result["flood"]["per_s"] = round(result["flood"]["attempts"] / (time.monotonic() - started), 1)
            result["bot_cpu_s"] = round(cpu_seconds(p.bot.pid) - cpu, 1)
            result["load_average_1m"] = round(os.getloadavg()[0], 1)  # the machine is shared: how busy it was
            runs.append(result)
    return {"plan": plan.__dict__, "runs": runs}


def markdown(r: dict) -> str:
    plan = r["plan"]
    lines = [
        "# Intake under a dashboard login flood",
        "",
        f"`{r['command']}` on {r['machine']}, {r['date']}: intake at {plan['rate']:g}/s for {plan['seconds']:g} s "
        "per run (latency from when each request was due), bot and simulator as their own processes, SQLite "
        "(synchronous=FULL). Flood: wrong passwords for changing account names, "
        + (f"{plan['flood_rate']:g} attempts/s offered by all clients together (each client paced, on keep-alive "
           "connections)." if plan["flood_rate"] else "each client posting again as soon as it is answered."),
        "",
        "| run | intake p50 | intake p99 | intake max | 202s | flood clients | flood attempts/s | flood answers "
        "| flood 429s | bot CPU | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in r["runs"]:
        i, f = run["intake"], run.get("flood")
        lat = i["latency_ms"]
        answers = ", ".join(f"{code}: {n}" for code, n in f["answers"].items()) if f else "—"
        lines.append(
            f"| {run['run']} | {lat['p50']} ms | {lat['p99']} ms | {lat['max']} ms | {i['succeeded']}/{i['requests']} "
            f"| {f['clients'] if f else '—'} | {f['per_s'] if f else '—'} | {answers} "
            f"| {f['throttled_429'] if f else '—'} | {run['bot_cpu_s']} s | {run['load_average_1m']} |")
    lines += ["", "302 = a wrong password answered after a full scrypt check (off the event loop); "
              "429 = throttled (per address or account) or the checker's queue full, answered at once.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds: checks the harness only")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where login_flood.json and .md go")
    parser.add_argument("--flood-rate", type=float, help="login attempts/s of the flood (0: as fast as answered)")
    args = parser.parse_args()
    plan = QUICK if args.quick else Plan()
    if args.flood_rate is not None:
        plan = replace(plan, flood_rate=args.flood_rate)
    result = asyncio.run(run(plan))
    result.update({
        "command": "python -m bench.login_flood" + (" --quick" if args.quick else "")
                   + (f" --flood-rate {args.flood_rate:g}" if args.flood_rate is not None else ""),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M"),
    })
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "login_flood.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n",
                                               encoding="utf-8")
    (args.out / "login_flood.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))


if __name__ == "__main__":
    main()
