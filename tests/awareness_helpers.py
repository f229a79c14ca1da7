"""Helpers for the awareness tests: a bot with campaigns, on a simulator clock that starts at a known time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.scheduler import SHANGHAI
from tests.helpers import AUTH, eventually

# Monday 2026-11-23, ten seconds before 10:00 in Beijing.
T0 = datetime(2026, 11, 23, 9, 59, 50, tzinfo=SHANGHAI).timestamp()


def at(text: str) -> str:
    """'2026-11-23 10:00' as the API writes it."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=SHANGHAI).isoformat(timespec="seconds")


async def api(bot, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    resp = await bot.request(method, path, headers=AUTH, **kwargs)
    return resp.status, await resp.json()


async def campaign(bot, name: str) -> dict[str, Any]:
    status, body = await api(bot, "GET", f"/api/v1/campaigns/{name}")
    assert status == 200, body
    return body


async def run_log(bot, name: str, run_id: int) -> dict[str, Any]:
    status, body = await api(bot, "GET", f"/api/v1/campaigns/{name}/runs/{run_id}")
    assert status == 200, body
    return body


async def run_now(bot, name: str) -> int:
    status, body = await api(bot, "POST", f"/api/v1/campaigns/{name}/run")
    assert status == 202, body
    return body["run"]["id"]


async def wait_run(bot, name: str, run_id: int, predicate, within: float = 15.0) -> dict[str, Any]:
    """Poll a run's delivery log until predicate(body) holds."""
    return await eventually(lambda: run_log(bot, name, run_id), predicate, within, f"run {run_id} of {name}")


async def wait_runs(bot, name: str, count: int, within: float = 15.0) -> list[dict[str, Any]]:
    body = await eventually(lambda: campaign(bot, name), lambda b: len(b["runs"]) >= count, within,
                            f"{count} runs of {name}")
    return list(reversed(body["runs"]))


def progress(**counts: int) -> dict[str, int]:
    return {"sent": 0, "awaiting_confirmation": 0, "pending": 0, "failed": 0, **counts}


async def advance(sim_client, seconds: float) -> None:
    resp = await sim_client.post("/_sim/clock", json={"advance": seconds})
    assert resp.status == 200
