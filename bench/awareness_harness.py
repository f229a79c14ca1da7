"""Shared by the awareness benchmarks: the bot's settings against an in-process simulator, and polling."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import ClientSession

from bot.config import Settings, parse_settings
from wecom_sim import Simulator


def bot_settings(sim: Simulator, api_base: str, database: str, directory: str, token: str,
                 awareness: dict[str, Any], synchronous: str = "FULL") -> Settings:
    """A bot that talks to `sim` at `api_base`, with these [awareness] keys; warnings-only logs."""
    return parse_settings({
        "database": {"path": database, "synchronous": synchronous},
        "wecom": {"corp_id": sim.config.corp_id, "corp_secret": sim.config.corp_secret,
                  "agent_id": sim.config.agent_id, "token": sim.config.token,
                  "encoding_aes_key": sim.config.encoding_aes_key, "api_base": api_base},
        "api": {"tokens": [token]},
        "directory": {"path": directory},
        "awareness": awareness,
        "logging": {"level": "WARNING"},
    })


async def wait(http: ClientSession, url: str, predicate, within: float = 120.0) -> dict:
    """GET url until predicate(json) holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        async with http.get(url) as resp:
            body = await resp.json()
        if predicate(body):
            return body
        if loop.time() > deadline:
            raise TimeoutError(f"{url}: {str(body)[:300]}")
        await asyncio.sleep(0.02)
