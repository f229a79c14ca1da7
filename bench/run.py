"""The benchmarks of Quanzu, each side by side with what it is compared with, in one run.

    .venv/bin/python bench/run.py            # the full run (about 10 minutes on 2 cores)
    .venv/bin/python bench/run.py --quick    # a few seconds, tiny sizes: checks that the harness works

Starts `bot.py simulator` and `bot.py run` (SQLite, synchronous=FULL, the real config code) as real
processes, and drives them from bench/loadgen.py, an open-loop generator in its own process, over
loopback. Measures
  1. alert → first WeCom call at a steady rate, for Quanzu and for Prometheus Alertmanager (Debian
     package, installed when missing) whose wechat receiver points at the same simulator;
  2. peak durable intake: the highest offered rate that Quanzu answers with 202 (committed) with p99
     under 100 ms and no error, against a bare aiohttp handler that only answers 202;
  3. callbacks: signed, encrypted sign-for events per second, each verified, decrypted, deduplicated,
     stored and acted on (the passive "已签收" reply is what counts as done);
  4. scale: bench/reports_scale.py if present (4 million instructions), else "not measured";
  5. broadcast fan-out of one campaign to 5,000 groups (bench/awareness_fanout.py) against the lower
     bound WeCom's limits allow;
and the bot's memory (peak RSS over the run). Writes bench.json and bench.md to --out (default
bench/results); docs/benchmarks.md shows bench.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import sqlite3
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import aiohttp
from wechatpy.enterprise.crypto import WeChatCrypto

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import alertmanager, profiling  # noqa: E402
from bench.pipeline import (  # noqa: E402
    AES_KEY,
    AGENT_ID,
    API_TOKEN,
    CALLBACK_TOKEN,
    CORP_ID,
    CORP_SECRET,
    Pipeline,
    free_port,
    instruction,
    instruction_of,
    percentile,
    pipeline,
    stop,
    summary,
    wait_http,
)
from wecom_sim.callback_xml import card_event, fields, request_envelope  # noqa: E402

RESULTS = ROOT / "bench" / "results"
P99_LIMIT_MS = 100.0
AUTH = {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"}


@dataclass(frozen=True)
class Plan:
    """The sizes of one run."""

    latency_rate: float = 200.0
    latency_seconds: float = 60.0
    intake_steps: tuple[float, ...] = (50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 4000, 6000)
    step_seconds: float = 10.0
    callback_steps: tuple[float, ...] = (100, 250, 500, 1000, 1500, 2000, 3000)
    callback_seconds: float = 3.0
    stations: int = 500  # 500 stations of 4 grids: at 200/s for 60 s nobody exceeds WeCom's 30 cards/min
    grids: int = 4
    fanout_groups: int = 5000
    scale_rows: int = 4_000_000


QUICK = Plan(latency_rate=20, latency_seconds=1, intake_steps=(50, 100), step_seconds=1, callback_steps=(20,),
             callback_seconds=1, stations=10, grids=3, fanout_groups=60, scale_rows=10_000)


# -- driving load ---------------------------------------------------------------------------

async def drive(work: Path, name: str, requests: list[dict], port: int | list[int], rate: float,
                keep_bodies: bool = False) -> dict:
    """Run bench/loadgen.py (its own process) over `requests` at `rate`; its raw per-request result.
    Several ports: the requests go to them round-robin."""
    source, out = work / f"{name}.jsonl", work / f"{name}.result.json"
    await asyncio.to_thread(_write_lines, source, requests)
    targets = [a for n in ([port] if isinstance(port, int) else port) for a in ("--port", str(n))]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / "loadgen.py"), str(source), *targets, "--rate", str(rate),
        "--out", str(out), *(["--keep-bodies"] if keep_bodies else []))
    if await proc.wait() != 0:
        raise RuntimeError(f"load generator failed for {name} (exit code {proc.returncode})")
    return json.loads(await asyncio.to_thread(out.read_text, encoding="utf-8"))


def _write_lines(path: Path, requests: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for r in requests:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def post(path: str, body: object, headers: dict | None = None) -> dict:
    return {"method": "POST", "path": path, "headers": headers or AUTH, "body": json.dumps(body, ensure_ascii=False)}


def step(raw: dict, ok: set[int], done: list[bool] | None = None) -> dict:
    """One load step's figures; passed when every request succeeded with p99 under the limit.

    Latency counts from the moment the request was due, so a server (or generator) that falls behind
    cannot hide it; the generator's own lateness is reported beside it.
    """
    n = raw["count"]
    good = [s in ok and (done is None or done[i]) for i, s in enumerate(raw["status"])]
    from_due = [lag + lat for lag, lat in zip(raw["lag_ms"], raw["latency_ms"], strict=True)]
    ends = [t + lat / 1000 for t, lat in zip(raw["sent_at"], raw["latency_ms"], strict=True) if t]
    elapsed = max(ends) - min(t for t in raw["sent_at"] if t) if ends else 0.0
    p99 = percentile(from_due, 99) if from_due else float("inf")
    return {
        "offered_per_s": raw["rate"], "requests": n, "succeeded": sum(good),
        "succeeded_per_s": round(sum(good) / elapsed, 1) if elapsed else 0.0,
        "latency_ms": summary(from_due), "generator_lag_ms": summary(raw["lag_ms"]),
        "connections": raw["connections"], "passed": all(good) and p99 < P99_LIMIT_MS,
    }


async def ladder(run_step, rates: tuple[float, ...]) -> dict:
    """Offer each rate in turn until one fails; then one step halfway between the last pass and that failure."""
    steps = []
    for rate in rates:
        steps.append(await run_step(rate))
        if not steps[-1]["passed"]:
            break
    passed = [s["offered_per_s"] for s in steps if s["passed"]]
    failed = [s["offered_per_s"] for s in steps if not s["passed"]]
    if passed and failed and failed[0] - passed[-1] > passed[-1] * 0.2:
        steps.append(await run_step(round((passed[-1] + failed[0]) / 2)))
        passed = [s["offered_per_s"] for s in steps if s["passed"]]
    return {"peak_per_s": max(passed) if passed else 0.0, "ceiling_not_reached": not failed, "steps": steps}


# -- the simulator's log --------------------------------------------------------------------

class SimLog:
    """Reads the simulator's message log incrementally (since=<seq>)."""

    def __init__(self, http: aiohttp.ClientSession, sim_url: str) -> None:
        self._http = http
        self._url = sim_url
        self.seq = 0

    async def new(self) -> list[dict]:
        async with self._http.get(f"{self._url}/_sim/messages", params={"since": str(self.seq)}) as resp:
            records = (await resp.json())["messages"]
        if records:
            self.seq = records[-1]["seq"]
        return records

    async def first_calls(self, key, wanted: set, within: float = 180.0) -> dict:
        """The time of the first recorded call for each wanted key (key(record) → key or None)."""
        first: dict = {}
        deadline = time.monotonic() + within
        while True:
            for record in await self.new():
                k = key(record)
                if k in wanted and k not in first:
                    first[k] = record["at"]
            if len(first) >= len(wanted) or time.monotonic() > deadline:
                return first
            await asyncio.sleep(0.5)


# -- 1. alert → first WeCom call ------------------------------------------------------------

def grid_worker(n: int, stations: int, grids: int) -> str:
    """Who gets the first card of instruction(n): its grid's worker."""
    st = f"S{n % stations:03d}"
    return f"w{st}-{(n // stations) % grids:03d}"


async def quanzu_latency(p: Pipeline, log: SimLog, plan: Plan) -> dict:
    total = int(plan.latency_rate * plan.latency_seconds)
    await log.new()
    requests = [post("/api/v1/instructions", instruction(n, plan.stations, plan.grids, "LAT"))
                for n in range(total)]
    cpu, sim_cpu = cpu_seconds(p.bot.pid), cpu_seconds(p.sim.pid)
    raw = await drive(p.work, "latency-quanzu", requests, p.bot_port, plan.latency_rate, keep_bodies=True)
    sent = {json.loads(b)["id"]: raw["sent_at"][i] for i, b in enumerate(raw["bodies"]) if raw["status"][i] == 202}
    first = await log.first_calls(instruction_of, set(sent))
    result = _latency(raw, sent, first, {202}, cpu_seconds(p.bot.pid) - cpu)
    # The simulator answers every WeCom call on the same two cores: three per instruction here.
    result["simulator_cpu_ms_per_alert"] = round((cpu_seconds(p.sim.pid) - sim_cpu) * 1000 / max(1, len(sent)), 2)
    return result


async def alertmanager_latency(p: Pipeline, log: SimLog, plan: Plan, binary: str) -> dict:
    port = free_port()
    alertmanager.write_config(p.work / "alertmanager.yml", p.sim_port, CORP_ID, CORP_SECRET, AGENT_ID)
    proc = await alertmanager.start(binary, p.work, port)
    try:
        await wait_http(f"http://127.0.0.1:{port}/-/ready")
        total = int(plan.latency_rate * plan.latency_seconds)
        await log.new()
        starts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        requests = [post("/api/v2/alerts", [alertmanager.alert(n, grid_worker(n, plan.stations, plan.grids), starts)],
                         {"Content-Type": "application/json"}) for n in range(total)]
        cpu, sim_cpu = cpu_seconds(proc.pid), cpu_seconds(p.sim.pid)
        raw = await drive(p.work, "latency-alertmanager", requests, port, plan.latency_rate)
        sent = {f"AM-{n:07d}": raw["sent_at"][n] for n in range(total) if raw["status"][n] == 200}
        first = await log.first_calls(_alert_of, set(sent))
        used = cpu_seconds(proc.pid) - cpu
        sim_used = cpu_seconds(p.sim.pid) - sim_cpu
        return {**_latency(raw, sent, first, {200}, used), "version": alertmanager.version(binary),
                "simulator_cpu_ms_per_alert": round(sim_used * 1000 / max(1, len(sent)), 2)}
    finally:
        await stop(proc)


def _alert_of(record: dict) -> str | None:
    content = ((record.get("body") or {}).get("text") or {}).get("content", "")
    return content.strip() if content.startswith("AM-") else None


def _latency(raw: dict, sent: dict, first: dict, ok: set[int], cpu: float) -> dict:
    to_wecom = [(first[k] - sent[k]) * 1000 for k in sent if k in first]
    return {"sent": raw["count"], "accepted": len(sent), "reached_wecom": len(to_wecom),
            # CPU time of the server process per alert, all its work included: a figure the other
            # processes on the machine do not change the way they change latency.
            "cpu_ms_per_alert": round(cpu * 1000 / max(1, len(sent)), 2),
            "rate_per_s": raw["rate"], "seconds": raw["send_seconds"],
            "alert_to_wecom_ms": summary(to_wecom), "intake": step(raw, ok)}


# -- 2. peak durable intake -----------------------------------------------------------------

async def intake_ladder(p: Pipeline, plan: Plan, http: aiohttp.ClientSession, accepted: set[int] | None = None) -> dict:
    """The ladder against every instance of `p` (round-robin); `accepted` collects the ids answered 202."""
    counter = iter(range(10**7))

    async def run_step(rate: float) -> dict:
        await _quiet(http, p)
        n = int(rate * plan.step_seconds)
        requests = [post("/api/v1/instructions", instruction(next(counter), plan.stations, plan.grids, "PEAK"))
                    for _ in range(n)]
        raw = await drive(p.work, f"intake-{rate:g}", requests, p.bot_ports, rate, keep_bodies=accepted is not None)
        if accepted is not None:
            accepted.update(json.loads(b)["id"] for b, s in zip(raw["bodies"], raw["status"], strict=True) if s == 202)
        return step(raw, {202})

    return await ladder(run_step, plan.intake_steps)


async def bare_ladder(work: Path, plan: Plan) -> dict:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(sys.executable, str(ROOT / "bench" / "bare.py"), "--port", str(port))
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz")

        async def run_step(rate: float) -> dict:
            n = int(rate * plan.step_seconds)
            requests = [post("/api/v1/instructions", instruction(i, plan.stations, plan.grids, "BARE"))
                        for i in range(n)]
            return step(await drive(work, f"bare-{rate:g}", requests, port, rate), {202})

        return await ladder(run_step, plan.intake_steps)
    finally:
        await stop(proc)


async def _quiet(http: aiohttp.ClientSession, p: Pipeline, within: float = 60.0) -> None:
    """Wait until the bot's outbox stops draining: what is left waits for WeCom's limits, not for CPU."""
    last, deadline = None, time.monotonic() + within
    while time.monotonic() < deadline:
        async with http.get(f"{p.bot_url}/healthz") as resp:
            outbox = (await resp.json())["outbox"]
        pending = outbox.get("pending", 0) + outbox.get("sending", 0)
        if pending == 0 or pending == last:
            return
        last = pending
        await asyncio.sleep(1.0)


# -- 3. callbacks ---------------------------------------------------------------------------

async def callback_ladder(p: Pipeline, plan: Plan, http: aiohttp.ClientSession, log: SimLog) -> dict:
    crypto = WeChatCrypto(CALLBACK_TOKEN, AES_KEY, CORP_ID)
    counter = iter(range(10**7))

    async def run_step(rate: float) -> dict:
        n = int(rate * plan.callback_seconds)
        cards = await _instructions_with_cards(p, plan, http, log, [next(counter) for _ in range(n)])
        requests = [_signed_ack(crypto, *card) for card in cards]
        await _quiet(http, p)
        before, cpu = _acks(p), cpu_seconds(p.bot.pid)
        raw = await drive(p.work, f"callbacks-{rate:g}", requests, p.bot_port, rate, keep_bodies=True)
        # Done = a passive reply came back: verified, decrypted, stored, deduplicated and signed for.
        result = step(raw, {200}, [bool(b.strip()) for b in raw["bodies"]])
        await _quiet(http, p)  # the group notices and feedback cards each sign-for queued: its work too
        used = cpu_seconds(p.bot.pid) - cpu
        return {**result, "acks_recorded": _acks(p) - before,
                "cpu_ms_per_callback": round(used * 1000 / max(1, raw["count"]), 2)}

    return await ladder(run_step, plan.callback_steps)


async def _instructions_with_cards(p: Pipeline, plan: Plan, http: aiohttp.ClientSession, log: SimLog,
                                   numbers: list[int]) -> list[tuple[int, str, dict]]:
    """Create instructions (batches of 100) and wait for their grid workers' cards: (id, user, card record)."""
    await log.new()
    ids: dict[int, str] = {}
    for start in range(0, len(numbers), 100):
        batch = [instruction(n, plan.stations, plan.grids, "CB") for n in numbers[start:start + 100]]
        async with http.post(f"{p.bot_url}/api/v1/instructions", json=batch, headers=AUTH) as resp:
            results = (await resp.json())["results"]
        for n, r in zip(numbers[start:start + 100], results, strict=True):
            ids[r["id"]] = grid_worker(n, plan.stations, plan.grids)
    cards: dict[int, dict] = {}
    deadline = time.monotonic() + 120
    while len(cards) < len(ids) and time.monotonic() < deadline:
        for record in await log.new():
            number = instruction_of(record) if record.get("task_id") else None
            if number in ids and ids[number] in record["to_users"]:
                cards[number] = record
        await asyncio.sleep(0.5)
    return [(i, ids[i], cards[i]) for i in ids if i in cards]


def _signed_ack(crypto: WeChatCrypto, instruction_id: int, user: str, card: dict) -> dict:
    """The 签收 click on a card as WeCom would POST it: encrypted, signed, in its envelope."""
    now = str(int(time.time()))
    plaintext = card_event(corp_id=CORP_ID, from_user=user, create_time=int(now), event="template_card_event",
                           event_key=f"ack:{instruction_id}", task_id=card["task_id"],
                           card_type=card["body"]["template_card"]["card_type"],
                           response_code=card["response_code"] or "", agent_id=AGENT_ID)
    nonce = str(secrets.randbelow(10**10))
    sealed = fields(crypto.encrypt_message(plaintext, nonce, now))
    query = f"msg_signature={quote(sealed['MsgSignature'], safe='')}&timestamp={now}&nonce={nonce}"
    return {"method": "POST", "path": f"/wecom/callback?{query}", "headers": {"Content-Type": "text/xml"},
            "body": request_envelope(corp_id=CORP_ID, encrypt=sealed["Encrypt"], agent_id=AGENT_ID)}


def _acks(p: Pipeline) -> int:
    with sqlite3.connect(f"file:{p.work / 'quanzu.sqlite3'}?mode=ro", uri=True) as db:
        return db.execute("SELECT COUNT(*) FROM callbacks WHERE outcome = 'ok'").fetchone()[0]


# -- 4. scale and 5. fan-out: their own scripts ---------------------------------------------

async def scale(plan: Plan, quick: bool) -> dict:
    """bench/reports_scale.py (the dashboard's issue) when this tree has it: `--rows N` writes
    bench/results/reports_scale.json with rows, db_bytes, peak_rss_bytes and queries [{query, p50_ms,
    max_ms}]; it keeps its generated database under data/bench/ and reuses it."""
    script = ROOT / "bench" / "reports_scale.py"
    if not script.exists():
        return {"measured": False, "why": "bench/reports_scale.py is not in this tree (the dashboard branch builds it)"}
    if quick:
        return {"measured": False, "why": "--quick does not generate a history"}
    proc = await asyncio.create_subprocess_exec(sys.executable, str(script), "--rows", str(plan.scale_rows),
                                                cwd=ROOT, stdout=asyncio.subprocess.DEVNULL)
    if await proc.wait() != 0:
        raise RuntimeError(f"reports_scale.py failed with exit code {proc.returncode}")
    report = json.loads((RESULTS / "reports_scale.json").read_text(encoding="utf-8"))
    return {"measured": True, **report}


async def fanout(plan: Plan) -> dict:
    return await _json_of(ROOT / "bench" / "awareness_fanout.py", "--groups", str(plan.fanout_groups),
                          "--skip-pressure", "--json")


async def _json_of(script: Path, *args: str) -> dict:
    proc = await asyncio.create_subprocess_exec(sys.executable, str(script), *args, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} failed with exit code {proc.returncode}")
    return json.loads(out.decode().strip().splitlines()[-1])


# -- the run --------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> dict:
    """The bot's resident memory now and at its peak, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    value = {line.split(":")[0]: int(line.split()[1]) for line in status if line.startswith(("VmRSS", "VmHWM"))}
    return {"now_mb": round(value["VmRSS"] / 1024, 1), "peak_mb": round(value["VmHWM"] / 1024, 1)}


PHASES = ("latency", "intake", "callbacks", "scale", "fanout")


async def run(plan: Plan, quick: bool, phases: tuple[str, ...] = PHASES, profile: bool = False) -> dict:
    binary = None
    if "latency" in phases:
        binary = _installed_alertmanager() if quick else alertmanager.ensure_installed()
    result: dict = {"plan": asdict(plan), "quick": quick, "phases": list(phases),
                    "load_average_before": os.getloadavg()}
    rss: list[dict] = []
    profiles: dict[str, Path] = {}
    # Each phase gets a bot of its own on a fresh database, so no backlog of one phase runs into the next.
    async with aiohttp.ClientSession() as http:
        if "latency" in phases:
            async with pipeline(plan.stations, plan.grids) as p:
                log = SimLog(http, p.sim_url)
                print("1. alert → WeCom: Quanzu ...", flush=True)
                profiles["latency"] = p.work / "profile.txt"
                async with profiling.recording(p.bot.pid if profile else None, profiles["latency"]):
                    result["latency_quanzu"] = await quanzu_latency(p, log, plan)
                rss.append(rss_mb(p.bot.pid))
                if binary:
                    print("1. alert → WeCom: Alertmanager ...", flush=True)
                    result["latency_alertmanager"] = await alertmanager_latency(p, log, plan, binary)
                else:
                    result["latency_alertmanager"] = {"skipped": "prometheus-alertmanager is not installed "
                                                                 "(--quick does not install it)"}
        if "intake" in phases:
            async with pipeline(plan.stations, plan.grids) as p:
                print("2. peak intake: bare aiohttp ...", flush=True)
                result["intake_bare"] = await bare_ladder(p.work, plan)
                print("2. peak intake: Quanzu ...", flush=True)
                profiles["intake"] = p.work / "profile.txt"
                async with profiling.recording(p.bot.pid if profile else None, profiles["intake"]):
                    result["intake_quanzu"] = await intake_ladder(p, plan, http)
                rss.append(rss_mb(p.bot.pid))
                result["database_mb_after_intake"] = round((p.work / "quanzu.sqlite3").stat().st_size / 2**20, 1)
        if "callbacks" in phases:
            async with pipeline(plan.stations, plan.grids) as p:
                print("3. callbacks ...", flush=True)
                profiles["callbacks"] = p.work / "profile.txt"
                async with profiling.recording(p.bot.pid if profile else None, profiles["callbacks"]):
                    result["callbacks"] = await callback_ladder(p, plan, http, SimLog(http, p.sim_url))
                rss.append(rss_mb(p.bot.pid))
    if rss:
        result["rss"] = {"peak_mb": max(r["peak_mb"] for r in rss), "per_phase": rss}
    if profile:
        result["profile"] = {name: profiling.top_frames(f.read_text(encoding="utf-8"))
                             for name, f in profiles.items() if f.exists()}
        result["profile_stacks"] = {name: f.read_text(encoding="utf-8") for name, f in profiles.items() if f.exists()}
    if "scale" in phases:
        print("4. scale ...", flush=True)
        result["scale"] = await scale(plan, quick)
    if "fanout" in phases:
        print("5. fan-out ...", flush=True)
        result["fanout"] = await fanout(plan)
    result["load_average_after"] = os.getloadavg()
    return result


def _installed_alertmanager() -> str | None:
    return shutil.which(alertmanager.BINARY)


def markdown(r: dict) -> str:
    """The table docs/benchmarks.md shows: each figure beside its comparison and its target."""
    rows = ["| measure | Quanzu | compared with | ratio | target | reached |", "|---|---|---|---|---|---|"]
    rows += _latency_rows(r) + _intake_rows(r) + _callback_rows(r) + _scale_rows(r) + _fanout_rows(r)
    if "rss" in r:
        rss = r["rss"]["peak_mb"]
        rows.append(f"| bot memory, peak RSS over this run | {rss} MB | | | < 200 MB | {_yes(rss < 200)} |")
    before, after = r["load_average_before"], r["load_average_after"]
    return "\n".join([
        *rows, "",
        f"`{r['command']}` on {r['machine']}, {r['date']}, {r['duration_s']} s; load average "
        f"{before[0]:.1f} before, {after[0]:.1f} after (1 min). Bot, simulator, Alertmanager and load generator "
        "share the machine; SQLite synchronous=FULL.",
    ]) + "\n"


def _ms(s: dict) -> str:
    return f"{s['p50']} / {s['p99']} / {s['max']} ms" if s else "—"


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _latency_rows(r: dict) -> list[str]:
    if "latency_quanzu" not in r:
        return []
    q, a = r["latency_quanzu"], r["latency_alertmanager"]
    qs = q["alert_to_wecom_ms"]
    label = (f"alert → first WeCom call, {q['rate_per_s']:g}/s for {q['seconds']:.0f} s, p50 / p99 / max "
             f"({q['reached_wecom']}/{q['sent']} reached WeCom)")
    if "skipped" in a or not a["alert_to_wecom_ms"]:
        return [f"| {label} | {_ms(qs)} | Alertmanager: {a.get('skipped', 'no call reached WeCom')} | | | |"]
    am = a["alert_to_wecom_ms"]
    ok = bool(qs) and qs["p50"] <= am["p50"] and qs["p99"] <= 25
    return [f"| {label} | {_ms(qs)} (durable) | Alertmanager {a['version'].split()[2].rstrip(',')}: "
            f"{_ms(am)} (in memory; {a['reached_wecom']}/{a['sent']}) | p50 {_ratio(qs['p50'], am['p50'])}, "
            f"p99 {_ratio(qs['p99'], am['p99'])} | p50 ≤ Alertmanager's, p99 ≤ 25 ms | {_yes(ok)} |"]


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "—"


def _peak(ladder: dict) -> str:
    top = [s for s in ladder["steps"] if s["offered_per_s"] == ladder["peak_per_s"]]
    if not top:
        return "none passed"
    more = "+ (the ladder's top)" if ladder["ceiling_not_reached"] else ""
    return f"{ladder['peak_per_s']:g}/s{more} (p99 {top[0]['latency_ms']['p99']} ms)"


def _intake_rows(r: dict) -> list[str]:
    if "intake_quanzu" not in r:
        return []
    q, b = r["intake_quanzu"], r["intake_bare"]
    ratio = q["peak_per_s"] / b["peak_per_s"] if b["peak_per_s"] else 0.0
    return [f"| peak durable intake: 202 after COMMIT, p99 < {P99_LIMIT_MS:g} ms, no error | {_peak(q)} | "
            f"bare aiohttp handler answering 202: {_peak(b)} | {ratio:.2f} | ≥ 0.5 | {_yes(ratio >= 0.5)} |"]


def _callback_rows(r: dict) -> list[str]:
    if "callbacks" not in r:
        return []
    c = r["callbacks"]
    return [f"| signed + encrypted sign-for callbacks: verified, decrypted, deduplicated, stored, acted on | "
            f"{_peak(c)} | | | ≥ 1,500/s | {_yes(c['peak_per_s'] >= 1500)} |"]


def _scale_rows(r: dict) -> list[str]:
    s = r.get("scale")
    if not s:
        return []
    if not s["measured"]:
        return [f"| scale: bulletin and board queries at 4 M instructions | not measured in this run ({s['why']}) "
                "| | | < 500 ms | — |"]
    rows = []
    for q in s["queries"]:
        rows.append(f"| {q['query']}, {s['rows']:,} instructions: p50 / max | {q['p50_ms']} / {q['max_ms']} ms | "
                    f"| | < 500 ms | {_yes(q['max_ms'] < 500)} |")
    rss = s["peak_rss_bytes"] / 2**20
    rows.append(f"| scale: database size / peak RSS of the query process | {s['db_bytes'] / 2**30:.2f} GiB / "
                f"{rss:.0f} MB | | | RSS < 200 MB | {_yes(rss < 200)} |")
    return rows


def _fanout_rows(r: dict) -> list[str]:
    if "fanout" not in r:
        return []
    f = r["fanout"]["fanout"]
    calls = ", ".join(f"{n} {api}" for api, n in f["wecom_calls"].items())
    return [f"| broadcast: one campaign to {f['groups']} groups ({calls}) | every call made after "
            f"{f['all_calls_made_s']} s | lower bound WeCom's limits allow: {f['lower_bound_s']:g} s | | "
            f"| {f['progress']['failed']} failed, {f['errors_45009']} answered 45009 |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds: checks the harness only")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where bench.json and bench.md go")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"a subset of {','.join(PHASES)} (default all)")
    parser.add_argument("--profile", action="store_true", help="py-spy the bot; write profile.md beside bench.md")
    parser.add_argument("--latency-seconds", type=float, help="override the plan (for trying things out)")
    parser.add_argument("--step-seconds", type=float, help="override the plan (for trying things out)")
    args = parser.parse_args()
    plan = QUICK if args.quick else Plan()
    if args.latency_seconds:
        plan = replace(plan, latency_seconds=args.latency_seconds)
    if args.step_seconds:
        plan = replace(plan, step_seconds=args.step_seconds, callback_seconds=args.step_seconds)
    started = time.time()
    phases = tuple(p for p in args.phases.split(",") if p in PHASES)
    result = asyncio.run(run(plan, args.quick, phases, args.profile))
    result.update({
        "command": "bench/run.py" + (" --quick" if args.quick else ""),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M"), "duration_s": round(time.time() - started),
    })
    stacks = result.pop("profile_stacks", {})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (args.out / "bench.md").write_text(markdown(result), encoding="utf-8")
    if "profile" in result:
        (args.out / "profile.md").write_text(profiling.markdown(result["profile"]), encoding="utf-8")
    for name, raw in stacks.items():  # py-spy's collapsed stacks, for a closer look
        (args.out / f"profile-{name}.txt").write_text(raw, encoding="utf-8")
    print(markdown(result))


if __name__ == "__main__":
    main()
