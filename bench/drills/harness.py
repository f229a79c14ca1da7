"""What the drills share: the WeCom simulator and the bot as real processes over loopback, and the accounting.

`Cluster` starts `bot.py simulator` and `bot.py run` (like bench/pipeline.py, on its synthetic city) so
that the simulator outlives a SIGKILL of the bot. `tally` reads the simulator's record of what WeCom
displayed and counts, per instruction and target, how often each person or group saw it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
import signal
import sqlite3
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

# The benchmark's synthetic city (S000…, grids S000-000…) and its helpers.
from bench.pipeline import create_app_chats, free_port, wait_http, write_directory

ROOT = Path(__file__).resolve().parent.parent.parent
RESULTS = ROOT / "bench" / "results"
AES_KEY = "QuanzuDemoEncodingAesKey0123456789abcdefgh0"
API_TOKEN = "drill-token-0001"
CORP_SECRET = "drill-corp-secret-0001"
_NOTICE_NUMBER = re.compile(r"预警劝阻指令 #(\d+)")


def station_code(s: int) -> str:
    return f"S{s:03d}"


def grid_code(s: int, g: int) -> str:
    return f"{station_code(s)}-{g:03d}"


@dataclass(frozen=True)
class Targets:
    """Who must see instruction n: the station's chat, the grid worker's card and the duty officer's card."""

    chat: str
    cards: tuple[str, ...]


def drill_instruction(n: int, stations: int, grids: int, prefix: str = "DRILL", risk: str = "high",
                      **overrides: Any) -> tuple[dict[str, Any], Targets]:
    """The n-th instruction of a drill, each to its own grid so that per-member limits never bind."""
    s, g = n % stations, (n // stations) % grids
    st, grid = station_code(s), grid_code(s, g)
    body = {"instruction_no": f"{prefix}-{n:07d}", "issued_at": "2026-11-22T14:03:05+08:00",
            "warning_type": "涉诈来电", "fraud_type": "冒充公检法", "risk_level": risk,
            "target": {"name": "演练对象", "phone": "13800138000"},
            "jurisdiction": {"station": st, "grid": grid}, "summary": "演练", **overrides}
    return body, Targets(f"chat{st}", (f"w{grid}", f"o{st}"))


@dataclass
class Cluster:
    """The simulator and the bot as separate processes on loopback ports, in a work folder."""

    work: Path
    stations: int = 20
    grids: int = 20
    bot_settings: str = ""
    sim_port: int = field(default_factory=free_port)
    bot_port: int = field(default_factory=free_port)
    wecom_port: int | None = None  # where the bot looks for WeCom; the simulator unless a proxy sits between
    sim: asyncio.subprocess.Process | None = None
    bot: asyncio.subprocess.Process | None = None
    bot_starts: int = 0

    @property
    def db_path(self) -> Path:
        return self.work / "quanzu.sqlite3"

    @property
    def bot_url(self) -> str:
        return f"http://127.0.0.1:{self.bot_port}"

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    @property
    def config_path(self) -> Path:
        return self.work / "config.toml"

    @property
    def log_path(self) -> Path:
        return self.work / "bot.log"

    def write_files(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        write_directory(self.work / "directory.toml", self.stations, self.grids)
        wecom_port = self.wecom_port or self.sim_port
        self.config_path.write_text(
            f'[server]\nport = {self.bot_port}\n[database]\npath = "quanzu.sqlite3"\n'
            f'[wecom]\ncorp_id = "wwdrill"\ncorp_secret = "{CORP_SECRET}"\nagent_id = 1000002\n'
            f'token = "DrillToken"\nencoding_aes_key = "{AES_KEY}"\n'
            f'api_base = "http://127.0.0.1:{wecom_port}/cgi-bin/"\nrequest_timeout = 3.0\n'
            f'[api]\ntokens = ["{API_TOKEN}"]\n[directory]\npath = "directory.toml"\n'
            f'[logging]\nlevel = "INFO"\n{self.bot_settings}',
            encoding="utf-8",
        )

    async def start(self) -> None:
        self.write_files()
        self.sim = await asyncio.create_subprocess_exec(
            sys.executable, "bot.py", "simulator", "--port", str(self.sim_port), "--corp-id", "wwdrill",
            "--corp-secret", CORP_SECRET, "--token", "DrillToken", "--encoding-aes-key", AES_KEY,
            "--directory", str(self.work / "directory.toml"),
            "--callback-url", f"{self.bot_url}/wecom/callback",
            cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await wait_http(f"{self.sim_url}/_sim/stats")
        await create_app_chats(self.work / "directory.toml", self.sim_url, "wwdrill", CORP_SECRET, 1000002)
        for attempt in range(3):
            try:
                await self.start_bot()
                return
            except RuntimeError:
                # The free port was taken by someone else meanwhile (loopback is shared): take another.
                if attempt == 2 or "already in use" not in self.log_path.read_text(errors="replace"):
                    raise
                self.bot_port = free_port()
                self.write_files()

    async def start_bot(self) -> None:
        with self.log_path.open("ab") as log:
            self.bot = await asyncio.create_subprocess_exec(
                sys.executable, "bot.py", "run", "--config", str(self.config_path), cwd=ROOT,
                stdout=asyncio.subprocess.DEVNULL, stderr=log)
        await wait_http(f"{self.bot_url}/healthz", process=self.bot)
        self.bot_starts += 1

    async def kill_bot(self) -> None:
        """SIGKILL: no shutdown handler runs, nothing is flushed."""
        assert self.bot is not None
        with contextlib.suppress(ProcessLookupError):
            self.bot.send_signal(signal.SIGKILL)
        await self.bot.wait()

    async def stop(self) -> None:
        for proc in (self.bot, self.sim):
            if proc is not None and proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()

    async def __aenter__(self) -> Cluster:
        try:
            await self.start()
        except BaseException:
            await self.stop()  # a simulator started before the bot failed must not outlive the drill
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_drained(self, session: aiohttp.ClientSession, within: float = 120.0) -> dict[str, int]:
        """Wait until the bot's outbox has nothing pending or in flight; its counts by state."""
        deadline = time.monotonic() + within
        while True:
            async with session.get(f"{self.bot_url}/healthz") as resp:
                counts = (await resp.json())["outbox"]
            if not counts.get("pending") and not counts.get("sending"):
                return counts
            if time.monotonic() > deadline:
                raise RuntimeError(f"outbox not drained within {within}s: {counts}")
            await asyncio.sleep(0.2)

    async def sim_json(self, session: aiohttp.ClientSession, path: str, **params: str) -> Any:
        async with session.get(f"{self.sim_url}{path}", params=params) as resp:
            return await resp.json()

    async def sim_post(self, session: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> Any:
        async with session.post(f"{self.sim_url}{path}", json=body) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def messages(self, session: aiohttp.ClientSession) -> list[dict[str, Any]]:
        return (await self.sim_json(session, "/_sim/messages"))["messages"]


async def post_instruction(session: aiohttp.ClientSession, url: str, body: dict[str, Any],
                           wait_s: float = 10.0) -> tuple[int | None, dict[str, Any]]:
    """POST one instruction; (status, json) or (None, {}) when no answer came (refused, reset, timed out).

    The time out counts from the request leaving, not from waiting for a free connection of the pool.
    """
    try:
        async with session.post(f"{url}/api/v1/instructions", json=body,
                                headers={"Authorization": f"Bearer {API_TOKEN}"},
                                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=wait_s)) as resp:
            return resp.status, await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None, {}


@dataclass
class Tally:
    """What WeCom showed, as the simulator recorded it (after its duplicate check and silent drops)."""

    shown: Counter = field(default_factory=Counter)  # (instruction id, target) → times displayed
    calls: Counter = field(default_factory=Counter)  # (instruction id, target) → calls that reached WeCom
    dropped: list[dict[str, Any]] = field(default_factory=list)  # records with silently dropped members
    other: list[dict[str, Any]] = field(default_factory=list)  # messages that are no instruction's

    def duplicates(self, channel: str) -> int:
        """Extra displays of the same message to the same target, on one channel ('card' or 'chat')."""
        return sum(n - 1 for (_, target), n in self.shown.items() if n > 1 and _channel(target) == channel)

    def resent(self, channel: str) -> int:
        return sum(n - 1 for (_, target), n in self.calls.items() if n > 1 and _channel(target) == channel)


def _channel(target: str) -> str:
    return "chat" if target.startswith("chat:") else "card"


def tally(messages: list[dict[str, Any]]) -> Tally:
    t = Tally()
    for m in messages:
        if m["dropped_for"]:
            t.dropped.append(m)
        key = _message_key(m)
        if key is None:
            t.other.append(m)
            continue
        t.calls[key] += 1
        if not m["duplicate"] and m["delivered_to"]:
            t.shown[key] += 1
    return t


def _message_key(m: dict[str, Any]) -> tuple[int, str] | None:
    if m["api"] == "message/send" and m.get("task_id"):
        # task_id is "<prefix>-<instruction id>-<userid>" (bot/dispatch.py)
        _, number, userid = m["task_id"].split("-", 2)
        return int(number), f"card:{userid}"
    if m["api"] == "appchat/send":
        match = _NOTICE_NUMBER.search((m["body"].get("markdown") or {}).get("content", ""))
        if match:
            return int(match.group(1)), f"chat:{m['chatid']}"
    return None


def expected_keys(number: int, targets: Targets) -> list[tuple[int, str]]:
    return [(number, f"chat:{targets.chat}")] + [(number, f"card:{u}") for u in targets.cards]


def database_consistency(db_path: Path) -> dict[str, Any]:
    """Every stored instruction is whole: its received event, its three outbox rows and its assignments."""
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT i.id, i.instruction_no,"
            " (SELECT COUNT(*) FROM events e WHERE e.instruction_id = i.id AND e.action = 'received'),"
            " (SELECT COUNT(*) FROM outbox o WHERE o.instruction_id = i.id AND o.purpose IN"
            "  ('station_notice', 'assignee_card')),"
            " (SELECT COUNT(*) FROM assignments a WHERE a.instruction_id = i.id)"
            " FROM instructions i"
        ).fetchall()
        states = dict(db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall())
        journal = db.execute("PRAGMA journal_mode").fetchone()[0]
    partial = [r[1] for r in rows if (r[2], r[3], r[4]) != (1, 3, 2)]
    return {"instructions": len(rows), "numbers": {r[1]: r[0] for r in rows}, "partial": partial,
            "outbox_states": states, "journal_mode": journal}


def record_window(log_path: Path, messages: list[dict[str, Any]]) -> dict[str, float]:
    """How long after WeCom answered the bot's `delivered` log line came (written once the mark is committed).

    A SIGKILL inside this window makes the message go out again: the window is what the duplicates measure.
    """
    answered: dict[tuple[int, str], float] = {}
    for m in messages:
        key = _message_key(m)
        if key is not None:
            answered[key] = m["at"]  # the last call, in case of a re-send
    gaps = []
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if '"msg": "delivered"' not in line:
            continue
        entry = json.loads(line)
        target = f"card:{entry['to']}" if entry["purpose"] == "assignee_card" else f"chat:chat{entry['to'][1:]}"
        at = answered.get((entry.get("instruction_id"), target))
        if at is not None:
            logged = datetime.fromisoformat(entry["ts"]).timestamp()
            gaps.append(max(0.0, logged - at) * 1000)
    if not gaps:
        return {}
    gaps.sort()
    return {"count": len(gaps), "p50_ms": round(gaps[len(gaps) // 2], 1),
            "p90_ms": round(gaps[int(len(gaps) * 0.9)], 1), "p99_ms": round(gaps[int(len(gaps) * 0.99)], 1),
            "max_ms": round(gaps[-1], 1)}


def log_leaks(log_path: Path, personal: list[str]) -> list[str]:
    """Lines of the bot's log that carry a secret of the drill's config or the residents' personal data."""
    secrets = [API_TOKEN, CORP_SECRET, AES_KEY, "DrillToken"]
    if not log_path.exists():
        return []
    return [line for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines()
            if any(value in line for value in [*secrets, *personal])]


class Relay:
    """A TCP relay between the bot and the simulator that can refuse connections like a dead host."""

    def __init__(self, upstream_port: int, port: int = 0) -> None:
        self._upstream = upstream_port
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = port

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        """Close the port (connections are refused) and cut every open connection."""
        assert self._server is not None
        self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._pipes.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(OSError):
            writer.close()


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_result(name: str, result: dict[str, Any], line: str) -> None:
    """bench/results/drill_<name>.json, and the drill's row in bench/results/drills.md."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {**result, "machine": machine(), "date": time.strftime("%Y-%m-%d")}
    (RESULTS / f"drill_{name}.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n",
                                                encoding="utf-8")
    print(line)
