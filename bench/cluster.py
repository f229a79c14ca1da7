"""Peak durable intake of a PostgreSQL-backed cluster beside one SQLite instance, in one run.

    .venv/bin/python bench/cluster.py            # the full run (about 4 minutes on 2 cores)
    .venv/bin/python bench/cluster.py --quick    # tiny sizes, well under a minute: checks the harness works

Starts `bot.py simulator` and `bot.py run` as real processes (bench/pipeline.py) and runs bench/run.py's
peak durable intake ladder (the highest offered rate answered 202, i.e. committed, with p99 under 100 ms
and no error; bench/loadgen.py in its own process, open loop) against
  1. one instance on SQLite (synchronous=FULL, the default),
  2. one instance on PostgreSQL,
  3. two instances on the same PostgreSQL database, the load generator spreading the requests
     round-robin over both ports (the load balancer's role).
Each configuration gets a fresh simulator and a fresh database (the PostgreSQL one is dropped and
created again: --database, default quanzu_bench, on --pg-server); the two instances start at the same
moment. A warm-up of 200
instructions, not measured, precedes each ladder. After the ladder the outbox is left to drain, then the
simulator's log is checked: every instruction answered 202 (warm-up included) was stored and got its
first WeCom call, and no instruction's personal card was shown twice. CPU seconds of the bots, the
simulator, the load generator and the PostgreSQL server (its backends on the benchmark's database, plus
its shared background processes) come from /proc, and so does how busy the whole machine was (other
users of a shared machine show there). Writes cluster.json and cluster.md to --out (default bench/results).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sqlite3
import sys
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pipeline import SQLITE, Pipeline, instruction, instruction_of, pipeline  # noqa: E402
from bench.run import P99_LIMIT_MS, QUICK, Plan, SimLog, cpu_seconds, drive, intake_ladder, post  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
FORBIDDEN = {"quanzu_test", "postgres", "template0", "template1"}  # never dropped by this script

# Finer rungs at the bottom than run.py's (10 s each, as there): one instance peaks below 100/s on 2 cores.
FULL_PLAN = replace(Plan(), intake_steps=(20, 30, 40, 50, 60, 75, 100, 125, 150, 200, 300, 400, 600, 800))
QUICK_PLAN = replace(QUICK, intake_steps=(20, 40))
# Before each ladder, not counted: this many instructions at this rate, so that the first rung does not
# pay for the PostgreSQL pool opening its connections and preparing its statements (SQLite gets the same).
WARM_UP = (200, 100.0)
QUICK_WARM_UP = (20, 20.0)

# name, label, backend, instances
SETUPS = (("sqlite", "1 instance, SQLite (synchronous=FULL)", "sqlite", 1),
          ("postgresql", "1 instance, PostgreSQL", "postgresql", 1),
          ("postgresql_x2", "2 instances, one PostgreSQL database, round-robin", "postgresql", 2))


# -- PostgreSQL ---------------------------------------------------------------------------------

class PgBench:
    """The benchmark's own database on the local server: created afresh for each configuration."""

    def __init__(self, server: str, name: str) -> None:
        if name in FORBIDDEN:
            raise SystemExit(f"refusing to drop and recreate the database {name!r}: choose another --database")
        self.server = server.rstrip("/")
        self.name = name

    @property
    def url(self) -> str:
        return f"{self.server}/{self.name}"

    async def recreate(self) -> None:
        admin = await asyncpg.connect(f"{self.server}/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            await admin.close()

    async def drop(self) -> None:
        admin = await asyncpg.connect(f"{self.server}/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await admin.close()

    async def settings(self) -> dict:
        conn = await asyncpg.connect(f"{self.server}/postgres")
        try:
            rows = await conn.fetch(
                "SELECT name, setting, unit FROM pg_settings WHERE name IN ('server_version', 'fsync',"
                " 'synchronous_commit', 'wal_sync_method', 'shared_buffers', 'commit_delay', 'max_connections')")
        finally:
            await conn.close()
        return {r["name"]: r["setting"] + (f" × {r['unit']}" if r["unit"] else "") for r in rows}

    async def figures(self) -> dict:
        """What the database holds after a run: instructions, outbox rows by state and by sending instance."""
        conn = await asyncpg.connect(self.url)
        try:
            instructions = await conn.fetchval("SELECT COUNT(*) FROM instructions")
            states = {r[0]: r[1] for r in await conn.fetch("SELECT state, COUNT(*) FROM outbox GROUP BY state")}
            senders = [r[1] for r in await conn.fetch(
                "SELECT claimed_by, COUNT(*) FROM outbox WHERE state = 'sent' GROUP BY claimed_by ORDER BY 2 DESC")]
            # Where the server's work went (the database is new, so its counters start at this run).
            database = dict(await conn.fetchrow(
                "SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, tup_inserted, tup_updated,"
                " tup_deleted, deadlocks FROM pg_stat_database WHERE datname = current_database()"))
            scans = [dict(r) for r in await conn.fetch(
                "SELECT relname AS table, seq_scan, seq_tup_read, idx_scan, n_live_tup FROM pg_stat_user_tables"
                " ORDER BY seq_tup_read DESC LIMIT 5")]
        finally:
            await conn.close()
        return {"instructions_stored": instructions, "outbox_states": states, "sent_by_instance": senders,
                "server_counters": database, "most_scanned_tables": scans}


def sqlite_figures(path: Path) -> dict:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        instructions = db.execute("SELECT COUNT(*) FROM instructions").fetchone()[0]
        states = dict(db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall())
    return {"instructions_stored": instructions, "outbox_states": states, "sent_by_instance": [states.get("sent", 0)]}


# -- CPU from /proc -----------------------------------------------------------------------------

def postgres_cpu(database: str) -> dict[int, tuple[str, float]]:
    """CPU seconds so far of every PostgreSQL server process: pid → ('db' for a backend on `database`,
    'shared' for the postmaster and its background processes, 'other' for backends on other databases)."""
    found: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace").split()
            cpu = cpu_seconds(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        if database in title:
            kind = "db"
        elif title[0].endswith("/postgres") or (  # the postmaster (/usr/lib/postgresql/15/bin/postgres -D …)
                len(title) > 2 and title[2] in {"checkpointer", "background", "walwriter", "autovacuum", "logical"}):
            kind = "shared"
        else:
            kind = "other"
        found[int(entry.name)] = (kind, cpu)
    return found


def postgres_cpu_used(before: dict, after: dict) -> dict:
    used: Counter = Counter()
    for pid, (kind, cpu) in after.items():
        used[kind] += cpu - before.get(pid, (kind, 0.0))[1]  # a process started meanwhile counts from 0
    return {"database_backends_s": round(used["db"], 2), "background_s": round(used["shared"], 2),
            "other_databases_s": round(used["other"], 2)}


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def children_cpu() -> float:
    """CPU seconds of this process's children already waited for: here, the load generator runs."""
    t = os.times()
    return t.children_user + t.children_system


# -- one configuration ---------------------------------------------------------------------------

async def outbox(http: aiohttp.ClientSession, p: Pipeline) -> dict:
    async with http.get(f"{p.bot_url}/healthz") as resp:
        return (await resp.json())["outbox"]


async def drain(http: aiohttp.ClientSession, p: Pipeline, within: float) -> float:
    """Wait until no outbox row is pending or being sent (all instances share the database); seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        counts = await outbox(http, p)
        if counts.get("pending", 0) + counts.get("sending", 0) == 0:
            break
        await asyncio.sleep(1.0)
    return round(time.monotonic() - started, 1)


def deliveries(records: list[dict], accepted: set[int]) -> dict:
    """What the simulator's log says about the accepted instructions: reached WeCom at all, and personal
    cards (and station notices) shown more than once to the same person (chat)."""
    reached: set[int] = set()
    cards: Counter = Counter()
    notices: Counter = Counter()
    calls = 0
    for m in records:
        number = instruction_of(m)
        if number is None or number not in accepted:
            continue
        calls += 1
        reached.add(number)
        if m["duplicate"] or not m["delivered_to"]:
            continue  # WeCom's duplicate check held it back: nobody saw it again
        if m.get("task_id"):
            cards[(number, m["task_id"].split("-", 2)[2])] += 1
        elif m.get("chatid"):
            notices[(number, m["chatid"])] += 1
    return {"accepted": len(accepted), "reached_wecom": len(reached), "wecom_calls": calls,
            "cards_shown": sum(cards.values()), "cards_shown_twice": sum(n - 1 for n in cards.values() if n > 1),
            "notices_shown": sum(notices.values()),
            "notices_shown_twice": sum(n - 1 for n in notices.values() if n > 1),
            "instructions_never_reached": sorted(accepted - reached)[:20]}


def bot_log(work: Path) -> dict:
    """What the bots logged (WARNING and up): lines per level, and the error lines and distinct warnings."""
    levels: Counter = Counter()
    errors: list[str] = []
    warnings: set[str] = set()
    for log in sorted(work.glob("bot*.log")):
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:  # not one of the bot's JSON lines: a crash's traceback on stderr
                levels["stderr"] += 1
                errors.append(f"{log.name}: {line[:300]}")
                continue
            levels[entry.get("level", "?")] += 1
            if entry.get("level") in {"error", "critical"}:
                errors.append(f"{log.name}: {entry.get('msg', '')[:200]} {entry.get('exc', '')[-300:]}".rstrip())
            elif entry.get("level") == "warning":
                warnings.add(f"{entry.get('logger')}: {entry.get('msg', '')[:200]}")
    return {"lines": dict(levels), "errors": errors[:20], "warnings": sorted(warnings)[:20]}


async def warm_up(http: aiohttp.ClientSession, p: Pipeline, plan: Plan, count: int, rate: float,
                  accepted: set[int], within: float) -> dict:
    """Instructions before the ladder (accepted ones join the delivery check); then wait for the outbox."""
    requests = [post("/api/v1/instructions", instruction(n, plan.stations, plan.grids, "WARM")) for n in range(count)]
    raw = await drive(p.work, "warm-up", requests, p.bot_ports, rate, keep_bodies=True)
    accepted.update(json.loads(b)["id"] for b, s in zip(raw["bodies"], raw["status"], strict=True) if s == 202)
    await drain(http, p, within)
    return {"requests": count, "rate_per_s": rate, "accepted": sum(s == 202 for s in raw["status"])}


async def measure(http: aiohttp.ClientSession, plan: Plan, backend: str, instances: int, pg: PgBench | None,
                  drain_within: float, warm: tuple[int, float]) -> dict:
    if backend == "postgresql":
        assert pg is not None
        await pg.recreate()
        database = f'url = "{pg.url}"'
    else:
        database = SQLITE
    async with pipeline(plan.stations, plan.grids, database=database, instances=instances) as p:
        log = SimLog(http, p.sim_url)
        warmed: set[int] = set()
        warm_up_result = await warm_up(http, p, plan, *warm, warmed, drain_within)
        bots = [cpu_seconds(b.pid) for b in p.bots]
        sim, loadgen, machine = cpu_seconds(p.sim.pid), children_cpu(), machine_jiffies()
        server = postgres_cpu(pg.name) if pg and backend == "postgresql" else None
        started = time.monotonic()
        accepted: set[int] = set()
        ladder = await intake_ladder(p, plan, http, accepted)
        ladder_s = time.monotonic() - started
        drained_s = await drain(http, p, drain_within)
        records = await log.new()  # the whole log: every configuration has a simulator of its own
        busy, total = (a - b for a, b in zip(machine_jiffies(), machine, strict=True))
        cpu = {"bots_s": [round(cpu_seconds(b.pid) - c, 2) for b, c in zip(p.bots, bots, strict=True)],
               "simulator_s": round(cpu_seconds(p.sim.pid) - sim, 2),
               "load_generator_s": round(children_cpu() - loadgen, 2),
               "machine_busy_cores": round(busy / total * os.cpu_count(), 2) if total else 0.0}
        if server is not None:
            cpu["postgresql"] = postgres_cpu_used(server, postgres_cpu(pg.name))
        ours = sum(cpu["bots_s"]) + cpu["simulator_s"] + cpu["load_generator_s"] + sum(
            cpu.get("postgresql", {}).get(k, 0.0) for k in ("database_backends_s", "background_s"))
        wall = time.monotonic() - started
        # What the rest of the machine (other users, other databases of the server) took meanwhile.
        cpu["other_processes_busy_cores"] = round(max(0.0, cpu["machine_busy_cores"] - ours / wall), 2)
        stored = await pg.figures() if backend == "postgresql" else sqlite_figures(p.work / "quanzu.sqlite3")
        logged = bot_log(p.work)
        work = str(p.work)
    delivered = deliveries(records, accepted | warmed)  # the warm-up's instructions must arrive too
    states = stored["outbox_states"]
    n = max(1, len(accepted))
    cpu["bots_ms_per_instruction"] = round(sum(cpu["bots_s"]) * 1000 / n, 2)
    pg_s = 0.0
    if "postgresql" in cpu:
        pgs = cpu["postgresql"]
        pg_s = pgs["database_backends_s"] + pgs["background_s"]
        cpu["postgresql_ms_per_instruction"] = round(pg_s * 1000 / n, 2)
    # Everything this benchmark ran, per instruction of the ladder: what 2 idle cores could sustain at most.
    everything = sum(cpu["bots_s"]) + pg_s + cpu["simulator_s"] + cpu["load_generator_s"]
    cpu["all_ms_per_instruction"] = round(everything * 1000 / n, 2)
    cpu["cpu_bound_per_s"] = round(os.cpu_count() * n / everything) if everything else 0
    top = [s for s in ladder["steps"] if s["offered_per_s"] == ladder["peak_per_s"]]
    return {
        "backend": backend, "instances": instances, "peak_per_s": ladder["peak_per_s"],
        "ceiling_not_reached": ladder["ceiling_not_reached"],
        "latency_at_peak_ms": top[0]["latency_ms"] if top else {},
        "ladder": ladder, "ladder_seconds": round(ladder_s, 1), "drain_seconds": drained_s,
        "delivery": delivered, "stored": stored,
        "warm_up": warm_up_result, "ladder_accepted": len(accepted),
        "every_accepted_stored": stored["instructions_stored"] == delivered["accepted"],
        "every_accepted_reached_wecom": delivered["reached_wecom"] == delivered["accepted"] > 0,
        "no_card_shown_twice": delivered["cards_shown_twice"] == 0,
        "outbox_settled": not any(states.get(s, 0) for s in ("pending", "sending", "failed")),
        "delivered_everything": (delivered["reached_wecom"] == delivered["accepted"] > 0
                                 and stored["instructions_stored"] == delivered["accepted"]
                                 and delivered["cards_shown_twice"] == 0
                                 and not any(states.get(s, 0) for s in ("pending", "sending", "failed"))),
        "cpu": cpu, "bot_log": logged, "work": work,
    }


async def run(plan: Plan, pg: PgBench, drain_within: float, warm: tuple[int, float], only: tuple[str, ...]) -> dict:
    result: dict = {"plan": asdict(plan), "p99_limit_ms": P99_LIMIT_MS, "postgresql": await pg.settings(),
                    "load_average_before": os.getloadavg(), "runs": {}}
    async with aiohttp.ClientSession() as http:
        for name, label, backend, instances in SETUPS:
            if name not in only:
                continue
            print(f"{label} ...", flush=True)
            try:
                r = {"label": label, **await measure(http, plan, backend, instances, pg, drain_within, warm)}
            except Exception as err:  # recorded, and the other configurations still run
                r = {"label": label, "backend": backend, "instances": instances, "error": repr(err)}
                print(f"  failed: {err!r}", flush=True)
            finally:
                if backend == "postgresql":
                    await pg.drop()
            result["runs"][name] = r
            if "error" not in r:
                print(f"  peak {r['peak_per_s']:g}/s, delivered everything: {r['delivered_everything']}", flush=True)
    result["load_average_after"] = os.getloadavg()
    return result


# -- the report -----------------------------------------------------------------------------------

def markdown(r: dict) -> str:
    rows = ["| setup | peak durable intake | p50 / p99 at the peak | accepted → stored / reached WeCom | "
            "cards shown twice | outbox after the run | errors logged | CPU ms per instruction: bots / PostgreSQL |",
            "|---|---|---|---|---|---|---|---|"]
    for run_ in r["runs"].values():
        if "error" in run_:
            rows.append(f"| {run_['label']} | **the run failed**: {run_['error']} | | | | | | |")
            continue
        lat = run_["latency_at_peak_ms"]
        d, s, cpu = run_["delivery"], run_["stored"], run_["cpu"]
        peak = f"{run_['peak_per_s']:g}/s" + ("+ (the ladder's top)" if run_["ceiling_not_reached"] else "")
        states = ", ".join(f"{n} {k}" for k, n in sorted(s["outbox_states"].items()))
        split = f" ({' + '.join(str(n) for n in s['sent_by_instance'])} sent)" if run_["instances"] > 1 else ""
        pg_ms = cpu.get("postgresql_ms_per_instruction", "—")
        rows.append(
            f"| {run_['label']} | {peak} | {lat.get('p50', '—')} / {lat.get('p99', '—')} ms | "
            f"{d['accepted']} → {s['instructions_stored']} / {d['reached_wecom']} | {d['cards_shown_twice']} | "
            f"{states}{split} | {len(run_['bot_log']['errors'])} | {cpu['bots_ms_per_instruction']} / {pg_ms} |")
    before, after = r["load_average_before"], r["load_average_after"]
    pg = r["postgresql"]
    notes = [
        "",
        f"`{r['command']}` on {r['machine']}, {r['date']}, {r['duration_s']} s; load average {before[0]:.1f} "
        f"before, {after[0]:.1f} after (1 min). PostgreSQL {pg.get('server_version', '?')} on the same machine, "
        f"fsync={pg.get('fsync')}, synchronous_commit={pg.get('synchronous_commit')}. Peak: the highest offered "
        f"rate answered 202 (committed) with p99 < {r['p99_limit_ms']:g} ms from the request's due time and no "
        "error; rungs of " + ", ".join(f"{x:g}" for x in r["plan"]["intake_steps"])
        + f"/s, {r['plan']['step_seconds']:g} s each, then one halfway. Accepted: answered 202, the warm-up's "
        "included; stored: rows in `instructions`; reached WeCom: got a first call in the simulator's log. "
        "CPU counts intake and delivery (the outbox drained before the count stopped).",
        "",
        *r.get("bounds", []),
    ]
    return "\n".join([*rows, *notes]).rstrip() + "\n"


def bounds(r: dict) -> list[str]:
    """What bounds the figures, from this run's own measurements."""
    cores = os.cpu_count()
    lines = [f"- Everything shares the machine's {cores} cores: the load generator, the simulator, the instances and "
             "PostgreSQL (same disk too); a second instance adds a process, not a core. A bot's Python event loop "
             "uses one core at most (aiosqlite's thread adds a little). CPU per instruction, averaged over the "
             "ladder, covers intake and the delivery of its 3 WeCom messages:"]
    for run_ in r["runs"].values():
        if "error" in run_:
            continue
        cpu = run_["cpu"]
        parts = [f"bots {cpu['bots_ms_per_instruction']:g}"]
        if "postgresql_ms_per_instruction" in cpu:
            counters = run_["stored"].get("server_counters", {})
            xacts = counters.get("xact_commit", 0) / max(1, run_["stored"]["instructions_stored"])
            parts.append(f"PostgreSQL {cpu['postgresql_ms_per_instruction']:g} in {xacts:.0f} transactions")
        failed = [s["offered_per_s"] for s in run_["ladder"]["steps"] if not s["passed"]]
        at = ""
        if failed:
            rate = min(failed)
            per_bot = rate * cpu["bots_ms_per_instruction"] / 1000 / run_["instances"]
            at = (f" At the lowest rung that failed ({rate:g}/s) that is about {per_bot:.2f} cores per bot and "
                  f"{rate * cpu['all_ms_per_instruction'] / 1000:.2f} cores in all.")
        lines.append(
            f"- {run_['label']}: {cpu['all_ms_per_instruction']:g} ms ({', '.join(parts)}; the rest simulator and "
            f"load generator).{at} Processes outside the benchmark took {cpu['other_processes_busy_cores']:g} "
            "cores on average meanwhile.")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, well under a minute: checks the harness")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where cluster.json and cluster.md go")
    parser.add_argument("--pg-server", default=PG_SERVER, help=f"the PostgreSQL server (default {PG_SERVER})")
    parser.add_argument("--database", default="quanzu_bench",
                        help="the benchmark's database, dropped and created again for each configuration")
    parser.add_argument("--only", default=",".join(s[0] for s in SETUPS), help="a subset of the configurations")
    parser.add_argument("--step-seconds", type=float, help="override the plan (for trying things out)")
    args = parser.parse_args()
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    if args.step_seconds:
        plan = replace(plan, step_seconds=args.step_seconds)
    started = time.time()
    pg = PgBench(args.pg_server, args.database)
    result = asyncio.run(run(plan, pg, 30.0 if args.quick else 180.0, QUICK_WARM_UP if args.quick else WARM_UP,
                             tuple(args.only.split(","))))
    result.update({
        "command": "bench/cluster.py" + (" --quick" if args.quick else ""),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M"), "duration_s": round(time.time() - started),
    })
    result["bounds"] = bounds(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cluster.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (args.out / "cluster.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))
    if any("error" in r for r in result["runs"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
