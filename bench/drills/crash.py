"""Crash drill: a burst of instructions while the bot is SIGKILLed at random moments and restarted.

    .venv/bin/python -m bench.drills.crash --instructions 5000 --kills 5 --seed 8

The simulator runs as its own process and outlives every kill. Instructions that got no answer (the bot
was dead or died mid-request) are sent again with backoff until answered, as the center's platform would. Then the drill
checks, against the simulator's record of what WeCom displayed (after WeCom's duplicate check):
  - every instruction that got a 202 reached every target: the station chat and both personal cards;
  - how many times each was displayed, per channel (cards: must be once; group chats: see docs/drills.md);
  - the database holds no half-recorded instruction (each has its event, three outbox rows, assignments).
Writes bench/results/drill_crash.json and prints a Markdown row for bench/results/drills.md.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.drills.harness import (
    Cluster,
    database_consistency,
    drill_instruction,
    expected_keys,
    log_leaks,
    post_instruction,
    record_window,
    tally,
    write_result,
)


async def run_crash(count: int, kills: int, seed: int, work: Path, stations: int = 250, grids: int = 20,
                    rate: float = 200.0) -> dict[str, Any]:
    """Run the drill; a dict of what was tried and what survived."""
    rng = random.Random(seed)
    duration = count / rate
    kill_at = sorted(rng.uniform(0.05 * duration, duration) for _ in range(kills))
    answers: dict[int, int | None] = {}
    retry_answers: dict[int, int | None] = {}
    ids: dict[int, int] = {}
    targets = {}
    started = time.monotonic()
    cluster = Cluster(work, stations, grids)
    async with cluster, aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=300)) as session:
        kill_log: list[dict[str, float]] = []

        async def killer() -> None:
            t0 = time.monotonic()
            for at in kill_at:
                await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
                killed = time.monotonic() - t0
                await cluster.kill_bot()
                await cluster.start_bot()
                kill_log.append({"at_s": round(killed, 2), "down_s": round(time.monotonic() - t0 - killed, 2)})

        async def one(n: int) -> None:
            body, targets[n] = drill_instruction(n, stations, grids)
            status, payload = await post_instruction(session, cluster.bot_url, body)
            answers[n] = status
            # Like the center's platform: what got no answer is sent again, backing off, until it is answered.
            for attempt in range(60):
                if status in (200, 202):
                    break
                await asyncio.sleep(min(0.25 * 2**attempt, 4.0) * (0.5 + rng.random()))
                status, payload = await post_instruction(session, cluster.bot_url, body)
                retry_answers[n] = status
            if status in (200, 202):
                ids[n] = payload["id"]

        kill_task = asyncio.create_task(killer())
        tasks = []
        t0 = time.monotonic()
        for n in range(count):
            delay = t0 + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
        await kill_task

        unanswered = [n for n, status in answers.items() if status not in (200, 202)]
        outbox = await cluster.wait_drained(session)
        messages = await cluster.messages(session)
        stats = await cluster.sim_json(session, "/_sim/stats")
    elapsed = time.monotonic() - started

    db = database_consistency(cluster.db_path)
    leaks = log_leaks(cluster.log_path, ["演练对象", "13800138000"])
    window = record_window(cluster.log_path, messages)
    t = tally(messages)
    accepted = [n for n, status in answers.items() if status == 202]
    lost, shown_twice_cards = [], 0
    for n, number in ids.items():
        for key in expected_keys(number, targets[n]):
            if t.shown[key] == 0:
                lost.append({"instruction": n, "id": number, "target": key[1]})
    stored_ids_match = all(db["numbers"].get(f"DRILL-{n:07d}") == number for n, number in ids.items())
    shown_twice_cards = t.duplicates("card")
    return {
        "drill": "crash",
        "seed": seed,
        "instructions": count,
        "rate_per_s": rate,
        "kills": kill_log,
        "bot_starts": cluster.bot_starts,
        "answered_202": len(accepted),
        "answered_200_duplicate_first_try": sum(status == 200 for status in answers.values()),
        "no_answer_first_try": len(unanswered),
        "no_answer_then_202_on_retry": sum(s == 202 for s in retry_answers.values()),
        "no_answer_but_stored_200_on_retry": sum(s == 200 for s in retry_answers.values()),
        "never_answered": count - len(ids),
        "stored_instructions": db["instructions"],
        "stored_ids_match_answers": stored_ids_match,
        "half_recorded": len(db["partial"]),
        "expected_displays": sum(len(expected_keys(0, targets[n])) for n in ids),
        "lost_displays": len(lost),
        "lost_examples": lost[:10],
        "duplicate_card_displays": shown_twice_cards,
        "duplicate_chat_displays": t.duplicates("chat"),
        "card_calls_repeated_but_swallowed_by_wecom": t.resent("card") - shown_twice_cards,
        "answered_to_recorded_ms": window,
        "silently_dropped_records": len(t.dropped),
        "other_messages": len(t.other),
        "outbox_states": outbox,
        "wecom_calls": stats.get("calls", {}),
        "journal_mode": db["journal_mode"],
        "log_lines": len(cluster.log_path.read_text(encoding="utf-8", errors="replace").splitlines()),
        "log_lines_with_secrets_or_personal_data": len(leaks),
        "elapsed_s": round(elapsed, 1),
    }


def summary_line(r: dict[str, Any], command: str) -> str:
    stored = r["answered_202"] + r["no_answer_then_202_on_retry"] + r["no_answer_but_stored_200_on_retry"]
    return (
        f"| crash | {r['instructions']} instructions at {r['rate_per_s']:.0f}/s, bot SIGKILLed {len(r['kills'])}× "
        f"at random moments and restarted; {r['no_answer_first_try']} got no answer and were sent again | "
        f"{stored}/{stored} stored instructions delivered to all {r['expected_displays']} targets, "
        f"{r['lost_displays']} lost, {r['duplicate_card_displays']} duplicate cards, "
        f"{r['duplicate_chat_displays']} duplicate group notices, {r['half_recorded']} half-recorded "
        f"| `{command}` |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instructions", type=int, default=5000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--rate", type=float, default=200.0, help="instructions per second (default 200)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="quanzu-drill-crash-"))
    result = asyncio.run(run_crash(args.instructions, args.kills, args.seed, work, rate=args.rate))
    command = (f".venv/bin/python -m bench.drills.crash --instructions {args.instructions} --kills {args.kills} "
               f"--seed {args.seed}")
    write_result("crash", {**result, "command": command, "work": str(work)}, summary_line(result, command))


if __name__ == "__main__":
    main()
