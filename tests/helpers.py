"""Shared test helpers: sample instructions and waiting for what the simulator receives."""

from __future__ import annotations

import asyncio
import copy
import itertools
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DISTRICT = ROOT / "demo" / "district.toml"
TOKEN = "test-intake-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
_numbers = itertools.count(1)

BASE_INSTRUCTION: dict[str, Any] = {
    "issued_at": "2026-11-22T14:03:05+08:00",
    "warning_type": "涉诈来电",
    "fraud_type": "冒充公检法",
    "risk_level": "high",
    "target": {"name": "唐小明", "phone": "13812348000", "age": 67, "address": "东门社区3栋2单元501",
               "id_number": "500101195901011234"},
    "jurisdiction": {"station": "DM", "grid": "DM-01"},
    "summary": "居民正与冒充公安的号码通话，对方要求转账到安全账户。",
    "amount_at_risk": 100000,
}


def instruction(**overrides: Any) -> dict[str, Any]:
    """A valid instruction with a fresh instruction_no; keyword arguments replace top-level fields."""
    body = copy.deepcopy(BASE_INSTRUCTION)
    body["instruction_no"] = f"YJ-TEST-{next(_numbers):06d}"
    body.update(overrides)
    return body


async def wait_until(predicate, timeout: float = 5.0, interval: float = 0.01):
    """Poll predicate() until it is truthy (returning its value) or fail after timeout seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def sim_messages(sim_client, **filters: str) -> list[dict[str, Any]]:
    """What the simulator recorded, through its inspection endpoint GET /_sim/messages."""
    resp = await sim_client.get("/_sim/messages", params=filters)
    assert resp.status == 200
    return (await resp.json())["messages"]


async def wait_for_messages(sim_client, count: int, timeout: float = 5.0, **filters: str) -> list[dict[str, Any]]:
    """Wait until the simulator has recorded at least count messages matching filters."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        messages = await sim_messages(sim_client, **filters)
        if len(messages) >= count:
            return messages
        if loop.time() > deadline:
            raise AssertionError(f"expected {count} messages for {filters}, got {len(messages)}: {messages}")
        await asyncio.sleep(0.01)


async def wait_state(bot, number: int, state: str, timeout: float = 5.0) -> dict[str, Any]:
    """Poll GET /api/v1/instructions/{number} until the instruction is in state; returns its detail."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        detail = await (await bot.get(f"/api/v1/instructions/{number}", headers=AUTH)).json()
        if detail.get("state") == state:
            return detail
        if loop.time() > deadline:
            raise AssertionError(f"instruction {number} never reached {state}: {detail}")
        await asyncio.sleep(0.01)
