"""Exactly-once escalation across a SIGKILL: the bot is a real process, killed in the middle of a ladder.

The policy is shrunk to seconds so the ladder climbs in real time: sign within 3 s, then the
assignee, the officer on duty, the station leader and the center at 0, 1, 2 and 3 s after. The bot
is killed once the officer-on-duty step has been delivered (and recorded), stays down while the last
two steps fall due, and is started again on the same database.
"""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp

from tests.helpers import (
    AUTH,
    eventually,
    free_port,
    instruction,
    ladder_bot_config,
    markdown_text,
    sim_messages,
    start_bot_process,
)


def _config(tmp_path, sim, sim_url: str, port: int, db_toml: str):
    return ladder_bot_config(tmp_path / "config.toml", sim, sim_url, port, db_toml)


async def _start(config, tmp_path, port: int) -> asyncio.subprocess.Process:
    return await start_bot_process(config, tmp_path / "bot.log", port)


_text = markdown_text


def _count(messages: list[dict], marker: str) -> int:
    return sum(marker in _text(m) for m in messages)


async def test_sigkill_mid_ladder_each_step_fires_exactly_once(tmp_path, sim, sim_server, sim_client, db_toml):
    sim_url = str(sim_server.make_url("")).rstrip("/")
    port = free_port()
    config = _config(tmp_path, sim, sim_url, port, db_toml)
    bot = await _start(config, tmp_path, port)
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", headers=AUTH) as http:
            resp = await http.post("/api/v1/instructions", json=instruction())
            assert resp.status == 202
            number = (await resp.json())["id"]
            received = time.time()

            async def step_two_recorded() -> dict:
                return await (await http.get(f"/api/v1/instructions/{number}")).json()

            # The officer-on-duty step (both sign-for deadlines, one group message) is delivered and
            # recorded; then the kill.
            # (Killed between WeCom's answer and the record, a group message would be sent again: app
            # chats have no duplicate check in WeCom. That window is the outbox's, not the timers'.)
            await eventually(step_two_recorded, lambda d: len([
                x for x in d["deliveries"] if x["purpose"] == "escalation" and x["label"] == "dm-station"
            ]) == 1 and all(x["state"] == "sent" for x in d["deliveries"]), within=15, what="step 2 delivered")
            bot.send_signal(signal.SIGKILL)
            await bot.wait()
            assert _count(await sim_messages(sim_client, chatid="centercmd"), "【超时上报】") == 0
            # Down while the station-leader and center steps (5 s and 6 s after receipt) fall due.
            await asyncio.sleep(max(0.0, received + 6.5 - time.time()))

        bot = await _start(config, tmp_path, port)
        group = await eventually(lambda: sim_messages(sim_client, chatid="centercmd"),
                                 lambda m: _count(m, "【超时上报】") >= 1, within=15)
        await eventually(lambda: sim_messages(sim_client, chatid="dmstation"),
                         lambda m: _count(m, "已上报反诈中心") >= 1, within=15)
        station = await sim_messages(sim_client, chatid="dmstation")
        personal = await sim_messages(sim_client, user="liuhong", api="message/send")
        counts = {"reminder": _count(personal, "【提醒】"), "assignee": _count(personal, "【超时】"),
                  "duty_officer": _count(station, "已提醒值班民警"), "station_leader": _count(station, "已报所领导"),
                  "center": _count(station, "已上报反诈中心"), "center_group": _count(group, "【超时上报】")}
        # Each step once: to liuhong about her own deadline; to the groups about both, in one message.
        expected = {"reminder": 1, "assignee": 1, "duty_officer": 1, "station_leader": 1, "center": 1,
                    "center_group": 1}
        assert counts == expected, [(m["seq"], round(m["at"] - received, 2), _text(m)[-30:]) for m in station]
    finally:
        if bot.returncode is None:
            bot.terminate()
            await asyncio.wait_for(bot.wait(), 10)
