"""Bulletin and board queries on a large history: a year of a big city's instructions (4 million by default).

Generates N instructions with realistic distributions (bot/reports/synthetic.py: 200 stations, a
daytime-heavy day, log-normal signing times, the public reports' outcome shares) with their deadlines,
assignments and audit events into a SQLite file carrying the real schema and triggers, then times what
the running bot does, through the same code: the daily bulletin's figures, the weekly review's, the
open-instructions board (all stations, and one station), the overdue list and a 30-day statistics page.
Each is run --runs times; p50 and max are reported with the DB size and the process's peak RSS, in
bench/results/reports_scale.json and .md.

    .venv/bin/python bench/reports_scale.py                 # 4,000,000 rows (generation takes a while)
    .venv/bin/python bench/reports_scale.py --rows 200000   # a quick run

The database is kept (data/bench/) and reused when it already holds --rows instructions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sqlite3
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.config import DatabaseSettings  # noqa: E402
from bot.reports.figures import compute_figures  # noqa: E402
from bot.reports.periods import daily_period, weekly_period  # noqa: E402
from bot.reports.synthetic import big_city, generate  # noqa: E402
from domain.lifecycle import OPEN_STATES  # noqa: E402
from domain.reports import ReportFilter, day_number  # noqa: E402
from storage import open_storage  # noqa: E402
from storage.reports_sql import insert_history_sync  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4_000_000, help="instructions to generate (default 4,000,000)")
    parser.add_argument("--days", type=int, default=365, help="days of history they span (default 365)")
    parser.add_argument("--stations", type=int, default=200, help="stations in the synthetic city (default 200)")
    parser.add_argument("--runs", type=int, default=15, help="timed runs of each query (default 15)")
    parser.add_argument("--db", type=Path, default=None,
                        help="database file (default: data/bench/reports_<rows>.sqlite3)")
    parser.add_argument("--fresh", action="store_true", help="generate again even if the file exists")
    parser.add_argument("--generate-only", action="store_true")
    parser.add_argument("--cache-mib", type=int, default=0,
                        help="give the timed connection this much SQLite page cache (default: SQLite's 2 MiB, as the "
                             "bot runs today)")
    args = parser.parse_args()
    db = args.db or ROOT / "data" / "bench" / f"reports_{args.rows}.sqlite3"
    generated = _ensure_history(db, args.rows, args.days, args.stations, args.fresh)
    if args.generate_only:
        return 0
    results = asyncio.run(_time_queries(db, generated["end"], args.runs, args.cache_mib))
    report = {
        "rows": args.rows, "days": args.days, "stations": args.stations, "runs": args.runs,
        "cache_mib": args.cache_mib, "load_average": os.getloadavg(),
        "db_bytes": _db_bytes(db), "generation_seconds": generated.get("seconds"),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version, "cpus": os.cpu_count(),
        "queries": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "reports_scale.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (RESULTS / "reports_scale.md").write_text(_markdown(report))
    print(_markdown(report))
    return 0


def _ensure_history(db: Path, rows: int, days: int, stations: int, fresh: bool) -> dict:
    meta_file = db.with_suffix(".json")
    if db.exists() and meta_file.exists() and not fresh:
        meta = json.loads(meta_file.read_text())
        if meta.get("rows") == rows:
            print(f"reusing {db} ({rows:,} instructions, generated in {meta['seconds']:.0f} s)", flush=True)
            return meta
    for leftover in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"), meta_file):
        leftover.unlink(missing_ok=True)
    db.parent.mkdir(parents=True, exist_ok=True)

    async def migrate() -> None:
        await (await open_storage(DatabaseSettings(path=db, synchronous="OFF"))).close()

    asyncio.run(migrate())
    started = time.monotonic()
    end = time.time()
    conn = sqlite3.connect(db, isolation_level=None)
    # Generation only: no durability needed, a big page cache, one big transaction per batch.
    for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-4000000", "temp_store=MEMORY"):
        conn.execute(f"PRAGMA {pragma}")
    done = 0
    for batch in generate(big_city(stations), rows, end, days, batch=50_000):
        conn.execute("BEGIN")
        insert_history_sync(conn, batch)
        conn.execute("COMMIT")
        done += len(batch)
        rate = done / (time.monotonic() - started)
        print(f"generated {done:,} / {rows:,} ({rate:,.0f}/s)", flush=True)
    conn.execute("ANALYZE")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    meta = {"rows": rows, "days": days, "stations": stations, "end": end, "seconds": time.monotonic() - started}
    meta_file.write_text(json.dumps(meta))
    return meta


async def _time_queries(db: Path, now: float, runs: int, cache_mib: int) -> list[dict]:
    storage = await open_storage(DatabaseSettings(path=db, synchronous="NORMAL"))
    if cache_mib:
        await storage.engine._reader.execute(f"PRAGMA cache_size=-{cache_mib * 1024}")
    station = "S007"
    today = day_number(now)
    cases = [
        ("daily bulletin (yesterday, all stations)", lambda: compute_figures(storage, daily_period(today - 1), now)),
        ("weekly review (last 7 days, all stations)",
         lambda: compute_figures(storage, weekly_period(today - 7), now)),
        ("board: open instructions, all stations (newest 200)",
         lambda: storage.board(ReportFilter(states=OPEN_STATES), now, 200)),
        (f"board: open instructions of one station ({station})",
         lambda: storage.board(ReportFilter(states=OPEN_STATES, stations=(station,)), now, 200)),
        ("board: closed ones of one station, one day",
         lambda: storage.board(ReportFilter(states=("closed",), stations=(station,), first_day=today - 3,
                                            last_day=today - 3), now, 200)),
        ("overdue list (all stations)", lambda: storage.overdue_items(now, ReportFilter(), 50)),
        ("fraud-type filter choices (30 days; cached 10 min by the dashboard)",
         lambda: storage.fraud_types(today - 30)),
        ("statistics page, 30 days, all stations",
         lambda: compute_figures(storage, weekly_period(today - 30, days=30), now)),
    ]
    results = []
    try:
        for name, run in cases:
            await run()  # warm the page cache once, as a running bot's would be
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                await run()
                times.append((time.perf_counter() - started) * 1000)
            results.append({"query": name, "p50_ms": round(statistics.median(times), 1),
                            "max_ms": round(max(times), 1)})
            print(f"{name}: p50 {results[-1]['p50_ms']} ms, max {results[-1]['max_ms']} ms", flush=True)
    finally:
        await storage.close()
    return results


def _db_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in (db, db.with_name(db.name + "-wal")) if p.exists())


def _markdown(report: dict) -> str:
    lines = [
        f"# Report queries on {report['rows']:,} instructions ({report['days']} days, {report['stations']} stations)",
        "",
        f"DB {report['db_bytes'] / 2**30:.2f} GiB · peak RSS {report['peak_rss_bytes'] / 2**20:.0f} MiB · "
        f"{report['runs']} runs each after one warm-up · Python {report['python']}, SQLite {report['sqlite']}, "
        f"{report['cpus']} CPUs · SQLite page cache {report['cache_mib'] or 2} MiB · load average during the run "
        f"{report['load_average'][0]:.1f}",
        "",
        "| query | p50 | max |",
        "|---|---|---|",
    ]
    lines += [f"| {q['query']} | {q['p50_ms']} ms | {q['max_ms']} ms |" for q in report["queries"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
