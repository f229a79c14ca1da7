"""Synthetic instruction history with realistic distributions: the demo's past weeks and the scale benchmark.

Pure: yields rows for storage.reports_sqlite.insert_history. Times follow a daytime-heavy day, signing
and contact times are log-normal per risk level (a few late ones), outcomes follow the public reports'
shares (most dissuaded, a few defrauded, a fifth unreachable or refusing and so sent to the door).
The last `open_hours` hours keep open instructions, a few of them past their deadlines.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from domain.policy import DEFAULT_POLICIES, Policy
from domain.reports import History

FRAUD_TYPES = (("冒充公检法", 18), ("刷单返利", 22), ("虚假投资理财", 16), ("虚假网络贷款", 10),
               ("冒充电商物流客服", 9), ("网络游戏虚假交易", 5), ("虚假征信", 6),
               ("冒充领导熟人", 7), ("网络婚恋交友", 4), ("其他", 3))
WARNING_TYPES = ("涉诈来电", "资金预警", "涉诈APP", "涉诈短信", "涉诈网址")
RISKS = (("high", 15), ("medium", 45), ("low", 40))
OUTCOMES = (("劝阻成功", 70), ("误报", 8), ("已被骗", 2), ("无法联系", 10), ("拒绝配合", 10))
# The share of instructions arriving in each hour of the day (Asia/Shanghai), busiest mid-morning to evening.
HOURLY = (1, 1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 7, 7, 8, 8, 7, 6, 6, 6, 5, 4, 3, 2)
# Median seconds to sign and to phone the resident, per risk level.
_SIGN_MEDIAN = {"high": 100.0, "medium": 600.0, "low": 2400.0}
_CONTACT_AFTER = {"high": 150.0, "medium": 900.0, "low": 3600.0}
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = ("小明", "建国", "秀英", "桂兰", "志强", "丽华", "海燕", "国庆", "玉梅", "德明")


@dataclass(frozen=True)
class Station:
    code: str
    grids: Sequence[str]
    officers: Sequence[str]
    workers: Sequence[str]


def big_city(stations: int = 200, grids_per_station: int = 12) -> list[Station]:
    """A synthetic big city: `stations` stations of `grids_per_station` grids, each grid with its worker."""
    return [
        Station(f"S{s:03d}", [f"S{s:03d}-{g:02d}" for g in range(grids_per_station)],
                [f"off{s:03d}a", f"off{s:03d}b"], [f"gw{s:03d}{g:02d}" for g in range(grids_per_station)])
        for s in range(stations)
    ]


def generate(stations: Sequence[Station], count: int, end: float, days: int, *, first_id: int = 1,
             batch: int = 20_000, open_hours: float = 6.0, seed: int = 7, events: bool = True,
             policies: dict[str, Policy] | None = None, prefix: str = "SIM") -> Iterator[History]:
    """`count` instructions received over the `days` days before `end`, in batches, oldest first."""
    rng = random.Random(seed)
    policies = policies or DEFAULT_POLICIES
    start = end - days * 86400
    weights = [HOURLY[int((start + t * 1800 + 8 * 3600) // 3600) % 24] for t in range(days * 48)]
    slots = sorted(rng.choices(range(days * 48), weights=weights, k=count))  # half-hour slots, oldest first
    history = History()
    for n, slot in enumerate(slots):
        received = start + slot * 1800 + rng.random() * 1800
        if received >= end:
            received = end - rng.random() * 60
        _one(history, rng, policies, rng.choice(stations), first_id + n, received, end, open_hours, events, prefix)
        if len(history) >= batch:
            yield history
            history = History()
    if history:
        yield history


def _one(h: History, rng: random.Random, policies: dict[str, Policy], station: Station, iid: int,
         received: float, now: float, open_hours: float, events: bool, prefix: str) -> None:
    risk = _weighted(rng, RISKS)
    policy = policies[risk]
    fraud = _weighted(rng, FRAUD_TYPES)
    grid_index = rng.randrange(len(station.grids))
    grid, worker, officer = station.grids[grid_index], station.workers[grid_index], rng.choice(station.officers)
    age = now - received
    # Most are signed in time; one in twelve is late, by up to a few times the allowance.
    late = rng.random() < 0.08
    to_sign = (policy.ack_within * (1.05 + rng.random() * 3) if late
               else min(rng.lognormvariate(math.log(_SIGN_MEDIAN[risk]), 0.6), policy.ack_within * 0.98))
    to_contact = to_sign + rng.lognormvariate(math.log(_CONTACT_AFTER[risk]), 0.5)
    outcome = _weighted(rng, OUTCOMES)
    stuck = (age < open_hours * 3600 and rng.random() < 0.35) or rng.random() < 0.00005
    signed = age >= to_sign and not (stuck and rng.random() < 0.5)
    contacted = signed and age >= to_contact and not stuck
    # A failed phone call (unreachable, refused) sends someone to the door, who then reports the outcome.
    from_start = policy.visit_from_start
    visit = from_start or (contacted and outcome in policy.visit_on)
    ordered = received if from_start else received + to_contact
    visit_acked = (received + to_sign if from_start
                   else ordered + rng.uniform(30, policy.visit_ack_within * 0.9))
    to_report = (visit_acked - received + rng.lognormvariate(math.log(1500), 0.5) if visit
                 else to_contact + rng.uniform(60, 600))
    final = _weighted(rng, OUTCOMES[:3]) if outcome in policy.visit_on else outcome
    reported = contacted and age >= to_report
    closed = reported and age >= to_report + 3600
    method = ("上门" if visit else rng.choice(("电话", "电话", "电话", "见面"))) if reported else None
    amount = rng.choice((5000, 20000, 50000, 100000, 300000))
    loss_avoided = amount if final == "劝阻成功" and rng.random() < 0.6 else None
    amount_lost = amount * rng.uniform(0.1, 1) if final == "已被骗" else None
    if closed:
        state = "closed"
    elif reported:
        state = "resolved"
    elif visit and not from_start:
        state = "visiting" if age >= visit_acked - received else "visit_required"
    elif contacted:
        state = "contacting"
    elif signed:
        state = "acknowledged"
    else:
        state = "dispatched"
    name = rng.choice(_SURNAMES) + rng.choice(_GIVEN)
    phone = f"1{rng.choice('3578')}{rng.randrange(10**9):09d}"
    raw = json.dumps({"instruction_no": f"{prefix}{iid:09d}", "fraud_type": fraud, "risk_level": risk,
                      "target": {"name": name, "phone": phone}, "jurisdiction": {"station": station.code,
                                                                                "grid": grid}},
                     ensure_ascii=False)
    acked_at = received + to_sign if signed else None
    h.instructions.append((
        iid, f"{prefix}{iid:09d}", received - rng.uniform(5, 60), received, rng.choice(WARNING_TYPES), fraud, risk,
        name, phone, None, f"{station.code}辖区{grid_index + 1}号楼", rng.randrange(18, 90), station.code, grid,
        station.code, grid, f"{fraud}预警", amount, state, acked_at, officer if signed else None,
        method, final if reported else None, loss_avoided if reported else None,
        amount_lost if reported else None, received + to_report if reported else None,
        officer if reported else None, received + to_report + 3600 if closed else None, raw,
    ))

    def deadline(stage: str, milestone: str, due: float, done: bool, at: float | None) -> None:
        if done:
            h.deadlines.append((iid, stage, milestone, due, "met", at))
        elif state in ("resolved", "closed"):
            h.deadlines.append((iid, stage, milestone, due, "moot", received + to_report))
        else:
            h.deadlines.append((iid, stage, milestone, due, "open", None))

    deadline("phone", "ack", received + policy.ack_within, signed, acked_at)
    deadline("phone", "contact", received + policy.contact_within, contacted, received + to_contact)
    h.assignments.append((iid, officer, "值班民警", received, acked_at, "phone"))
    if visit:
        visit_signed = signed and age >= visit_acked - received
        deadline("visit", "ack", ordered + policy.visit_ack_within, visit_signed, visit_acked)
        deadline("visit", "report", ordered + policy.visit_report_within, reported, received + to_report)
        h.assignments.append((iid, worker, "网格员", ordered, visit_acked if visit_signed else None, "visit"))
        if not from_start:
            h.deadlines.append((iid, "phone", "report", received + policy.report_within, "superseded", ordered))
            if events:
                h.events.append((iid, ordered, officer, "command", "visit_ordered", "contacting", "visit_required"))
    else:
        deadline("phone", "report", received + policy.report_within, reported, received + to_report)
    if events:
        h.events.append((iid, received, "center", "api", "received", None, "received"))
        if signed:
            h.events.append((iid, acked_at, officer, "card", "ack", "dispatched", "acknowledged"))
        if reported:
            h.events.append((iid, received + to_report, officer, "card", "report", "acknowledged", "resolved"))
        if closed:
            h.events.append((iid, received + to_report + 3600, officer, "command", "close", "resolved", "closed"))


def _weighted(rng: random.Random, choices: Sequence[tuple[str, int]]) -> str:
    total = sum(w for _, w in choices)
    pick = rng.random() * total
    for value, weight in choices:
        pick -= weight
        if pick < 0:
            return value
    return choices[-1][0]
