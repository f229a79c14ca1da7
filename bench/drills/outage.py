"""Outage drill with real processes and real minutes: WeCom refuses connections, answers HTTP 503, or
errcode -1, while instructions keep arriving; then it recovers.

    .venv/bin/python -m bench.drills.outage --mode refused --seconds 120 --instructions 1500

The bot reaches the simulator through a relay in this process, so "refused" is a closed port (a dead
host); "http_503" and "errcode_-1" are injected through the simulator's /_sim/faults. Checks: nothing
fails or is lost during the outage, every instruction reaches its three targets once after the recovery,
the backlog goes out most urgent risk first then oldest, and the center's group gets one notice.
Writes bench/results/drill_outage_<mode>.json and prints a Markdown row for bench/results/drills.md.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp

from bench.drills.harness import (
    Cluster,
    Relay,
    drill_instruction,
    expected_keys,
    free_port,
    post_instruction,
    tally,
    write_result,
)

RISKS = ("low", "medium", "high")
_RANK = {"high": 0, "medium": 1, "low": 2}


async def run_outage(mode: str, seconds: float, count: int, work: Path, stations: int = 250,
                     grids: int = 20) -> dict[str, Any]:
    sim_port = free_port()
    relay = Relay(sim_port)
    await relay.up()
    cluster = Cluster(work, stations, grids, sim_port=sim_port, wecom_port=relay.port)
    risk: dict[int, str] = {}
    ids: dict[int, int] = {}
    targets = {}
    async with cluster, aiohttp.ClientSession() as session:
        # Warm-up: the bot has a token and WeCom works.
        body, targets[-1] = drill_instruction(count, stations, grids, prefix="WARM")
        status, payload = await post_instruction(session, cluster.bot_url, body)
        assert status == 202, payload
        await cluster.wait_drained(session)
        warm_messages = len(await cluster.messages(session))

        started = time.monotonic()
        if mode == "refused":
            await relay.down()
        else:
            fault = {"http_status": 503} if mode == "http_503" else {"errcode": -1}
            await cluster.sim_post(session, "/_sim/faults", {"api": "*", "times": 10**8, **fault})
        # Instructions keep arriving during the first half of the outage, in mixed risk order.
        spread = seconds / 2
        for n in range(count):
            await asyncio.sleep(max(0.0, started + n * spread / count - time.monotonic()))
            risk[n] = RISKS[(n * 7) % 3]
            body, targets[n] = drill_instruction(n, stations, grids, risk=risk[n])
            status, payload = await post_instruction(session, cluster.bot_url, body)
            assert status == 202, (status, payload)
            ids[n] = payload["id"]
        await asyncio.sleep(max(0.0, started + seconds - time.monotonic()))
        async with session.get(f"{cluster.bot_url}/healthz") as resp:
            during = (await resp.json())["outbox"]
        sim_stats_during = await cluster.sim_json(session, "/_sim/stats")
        calls_during = sum(sim_stats_during["calls"].values())

        recovered_at = time.monotonic()
        if mode == "refused":
            await relay.up()
        else:
            async with session.delete(f"{cluster.sim_url}/_sim/faults") as resp:
                assert resp.status == 200
        outbox = await cluster.wait_drained(session, within=300)
        drained_s = time.monotonic() - recovered_at
        messages = (await cluster.messages(session))[warm_messages:]
    await relay.down()

    t = tally(messages)
    lost = [key for n, number in ids.items() for key in expected_keys(number, targets[n]) if t.shown[key] == 0]
    # Queue order after the recovery: when each instruction's first message reached WeCom.
    first_seq: dict[int, int] = {}
    for m in messages:
        if m["task_id"]:
            number = int(m["task_id"].split("-")[1])
            first_seq.setdefault(number, m["seq"])
    by_id = {number: n for n, number in ids.items()}
    delivered = sorted(first_seq, key=first_seq.get)
    ranks = [_RANK[risk[by_id[number]]] for number in delivered if number in by_id]
    risk_inversions = sum(1 for a, b in pairwise(ranks) if a > b)
    notices = [m for m in t.other if m.get("chatid") == "center"]
    outage_notices = [m for m in notices if "企业微信中断已恢复" in m["body"]["markdown"]["content"]]
    failure_notices = [m for m in notices if "推送失败" in m["body"]["markdown"]["content"]]
    return {
        "drill": f"outage_{mode}",
        "mode": mode,
        "outage_s": seconds,
        "instructions_during_outage": count,
        "answered_202": len(ids),
        "outbox_during_outage": during,
        "wecom_calls_during_outage_incl_warmup": calls_during,
        "drain_after_recovery_s": round(drained_s, 1),
        "expected_displays": 3 * len(ids),
        "lost_displays": len(lost),
        "duplicate_card_displays": t.duplicates("card"),
        "duplicate_chat_displays": t.duplicates("chat"),
        "adjacent_risk_order_inversions": risk_inversions,
        "first_delivered_risks": [risk[by_id[number]] for number in delivered[:5] if number in by_id],
        "outage_notices": len(outage_notices),
        "outage_notice_text": outage_notices[0]["body"]["markdown"]["content"] if outage_notices else None,
        "failure_notices": len(failure_notices),
        "outbox_states": outbox,
    }


def summary_line(r: dict[str, Any], command: str) -> str:
    what = {"refused": "refuses connections", "http_503": "answers HTTP 503", "errcode_-1": "answers errcode -1"}
    return (
        f"| outage ({r['mode']}) | WeCom {what[r['mode']]} for {r['outage_s']:.0f} s while "
        f"{r['instructions_during_outage']} instructions of mixed risk arrive | "
        f"{r['expected_displays'] - r['lost_displays']}/{r['expected_displays']} messages delivered after the "
        f"recovery (in {r['drain_after_recovery_s']} s), 0 failed during the outage "
        f"(outbox then: {r['outbox_during_outage']}), {r['adjacent_risk_order_inversions']} risk-order "
        f"inversions, {r['outage_notices']} outage notice and {r['failure_notices']} failure notices to the center "
        f"| `{command}` |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("refused", "http_503", "errcode_-1"), default="refused")
    parser.add_argument("--seconds", type=float, default=120.0, help="how long WeCom is down (default 120)")
    parser.add_argument("--instructions", type=int, default=1500)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="quanzu-drill-outage-"))
    result = asyncio.run(run_outage(args.mode, args.seconds, args.instructions, work))
    command = (f".venv/bin/python -m bench.drills.outage --mode {args.mode} --seconds {args.seconds:.0f} "
               f"--instructions {args.instructions}")
    write_result(f"outage_{args.mode}", {**result, "command": command, "work": str(work)},
                 summary_line(result, command))


if __name__ == "__main__":
    main()
