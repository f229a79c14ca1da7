"""Two instances on one PostgreSQL database, one SIGKILLed in the middle of a burst.

Both are real `bot.py run` processes behind no load balancer: the test spreads the burst over both,
as a balancer would, and sends what the killed one can no longer take to the other (the same
instruction number again, as the center's retry would). The one killed is the holder of the scheduler
lease, while three high-risk instructions climb a ladder shrunk to seconds; the survivor must take
the lease and the messages the dead one had claimed, and finish everything: each accepted instruction
delivered, no card shown twice, each escalation step sent once.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections import Counter

import aiohttp
import pytest
from aiohttp import web

from tests.helpers import (
    AUTH,
    create_chats_as_operator,
    eventually,
    free_ports,
    instruction,
    ladder_bot_config,
    markdown_text,
    sim_messages,
    start_bot_process,
)
from wecom_sim import create_simulator_app

pytestmark = pytest.mark.postgresql_only  # several instances need PostgreSQL

# Within WeCom's limits, so that only the takeover is measured: DM's group is an app chat (200 a
# minute; LH's robot takes 20), and its officer, who gets every DM card and the ladders' messages,
# stays under 30 messages a minute.
_GRIDS = (("DM", "DM-01"), ("DM", "DM-02"))
_BURST = 14
_HIGH = 3
# (marker, where) of each ladder step, as in tests/test_escalation_crash.py
_STEPS = {"reminder": "【提醒】", "assignee": "【超时】", "duty_officer": "已提醒值班民警",
          "station_leader": "已报所领导", "center": "已上报反诈中心"}


@pytest.fixture
async def sim_server(aiohttp_server, sim):
    """The simulator, slowed down on request: sends in flight when an instance dies stay claimed."""
    delay = {"seconds": 0.0}

    @web.middleware
    async def slow(request: web.Request, handler):
        if delay["seconds"] and request.path.endswith(("/message/send", "/appchat/send")):
            await asyncio.sleep(delay["seconds"])
        return await handler(request)

    app = create_simulator_app(sim)
    app.middlewares.append(slow)
    server = await aiohttp_server(app)
    server.delay = delay
    await create_chats_as_operator(sim, str(server.make_url("")).rstrip("/"))  # as `bot.py wecom create-chat`
    return server


def _config(tmp_path, sim, sim_url: str, port: int, db_toml: str):
    cluster = "[cluster]\nheartbeat_interval = 0.3\ndead_after = 1.5\npoll_interval = 0.2\n[bulletin]\nenabled = false"
    return ladder_bot_config(tmp_path / f"config-{port}.toml", sim, sim_url, port, db_toml, cluster)


async def _start(config, tmp_path, port: int) -> asyncio.subprocess.Process:
    return await start_bot_process(config, tmp_path / f"bot-{port}.log", port)


async def _health(http: aiohttp.ClientSession, port: int) -> dict:
    return await (await http.get(f"http://127.0.0.1:{port}/healthz")).json()


_text = markdown_text


def _about(message: dict, number: int) -> bool:
    """Whether a group or reminder message is about instruction #number (not #number0 …)."""
    return re.search(rf"#{number}(?!\d)", _text(message)) is not None


async def test_two_instances_one_killed_mid_burst_lose_nothing_and_double_nothing(
    tmp_path, sim, sim_server, sim_client, db_toml
):
    sim_url = str(sim_server.make_url("")).rstrip("/")
    ports = free_ports(2)
    procs = {}
    async with aiohttp.ClientSession(headers=AUTH) as http:
        try:
            procs[ports[0]] = await _start(_config(tmp_path, sim, sim_url, ports[0], db_toml), tmp_path, ports[0])
            procs[ports[1]] = await _start(_config(tmp_path, sim, sim_url, ports[1], db_toml), tmp_path, ports[1])
            healths = {port: await _health(http, port) for port in ports}
            leader = [port for port, h in healths.items() if h["runs_scheduled_work"]]
            assert len(leader) == 1, healths  # exactly one instance runs the scheduled work
            leader = leader[0]
            survivor = next(p for p in ports if p != leader)
            assert len(healths[survivor]["cluster"]["instances"]) == 2

            async def submit(body: dict, port: int) -> int:
                """Post to `port`; if that instance is gone, post the same instruction to the survivor."""
                for target in (port, survivor):
                    try:
                        resp = await http.post(f"http://127.0.0.1:{target}/api/v1/instructions", json=body)
                    except aiohttp.ClientError:
                        continue
                    assert resp.status in (200, 202), await resp.text()
                    return (await resp.json())["id"]
                raise AssertionError("no instance took the instruction")

            # Three high-risk instructions, on the lease holder: their ladders climb while it dies.
            high = [await submit(instruction(), leader) for _ in range(_HIGH)]
            burst = [instruction(risk_level="medium", jurisdiction={"station": s, "grid": g})
                     for s, g in _GRIDS for _ in range(_BURST // len(_GRIDS))]

            sim_server.delay["seconds"] = 0.5  # WeCom slow: both instances have sends in flight at the kill
            semaphore = asyncio.Semaphore(4)
            answered = 0

            async def one(n: int, body: dict) -> int:
                nonlocal answered
                async with semaphore:
                    number = await submit(body, ports[n % 2])
                answered += 1
                if answered == len(burst) // 2:  # half accepted, the rest in flight or waiting: kill
                    procs[leader].send_signal(signal.SIGKILL)
                return number

            ids = await asyncio.gather(*(one(n, body) for n, body in enumerate(burst)))
            await procs[leader].wait()
            sim_server.delay["seconds"] = 0.0
            assert len(set(ids)) == _BURST  # every instruction accepted once, retries included

            # The survivor takes the lease and finishes everything the dead one left.
            await eventually(lambda: _health(http, survivor), lambda h: h["runs_scheduled_work"], within=10,
                             what="the survivor holds the scheduler lease")

            async def detail(number: int) -> dict:
                resp = await http.get(f"http://127.0.0.1:{survivor}/api/v1/instructions/{number}")
                return await resp.json()

            async def undelivered() -> list[tuple]:
                return [(n, x["purpose"], x["label"], x["state"], x["attempts"])
                        for n in ids for x in (await detail(n))["deliveries"] or [{}] if x.get("state") != "sent"]

            await eventually(undelivered, lambda rows: not rows, within=60, what="every burst instruction delivered")
            details = [await detail(n) for n in ids]

            await eventually(lambda: sim_messages(sim_client, chatid="dmstation"), lambda m: all(
                sum(_STEPS["center"] in _text(x) and _about(x, n) for x in m) >= 1 for n in high
            ), within=30, what="every ladder climbed to the center")
            station = await sim_messages(sim_client, chatid="dmstation")
            group = await sim_messages(sim_client, chatid="centercmd")
            personal = await sim_messages(sim_client, user="liuhong", api="message/send")
        finally:
            for proc in procs.values():
                if proc.returncode is None:
                    proc.terminate()
                    await asyncio.wait_for(proc.wait(), 10)

    # The dead instance's claimed, unsent messages were taken over and sent again.
    assert any(x["attempts"] >= 2 for d in details for x in d["deliveries"])

    # No personal card shown twice: WeCom's duplicate check and the card's task id catch a re-send.
    cards = await sim_messages(sim_client, api="message/send")
    shown = Counter((m["task_id"], tuple(m["delivered_to"])) for m in cards if m["task_id"] and not m["duplicate"])
    assert shown and max(shown.values()) == 1, [k for k, v in shown.items() if v > 1]

    # A group notice (app chat or robot) can only repeat where its row was claimed by the killed instance
    # and sent again (WeCom has no duplicate check for groups): never more often than the row's attempts.
    notices = [*await sim_messages(sim_client, api="appchat/send"), *await sim_messages(sim_client, api="webhook/send")]
    for d in details:
        for row in d["deliveries"]:
            if row["purpose"] != "station_notice":
                continue
            seen = sum(_about(m, d["id"]) for m in notices)
            assert 1 <= seen <= row["attempts"], (d["id"], seen, row)

    # Each escalation step of each high-risk instruction once, across the takeover.
    for number in high:
        mine = [m for m in station + personal if _about(m, number)]
        counts = {step: sum(marker in _text(m) for m in mine) for step, marker in _STEPS.items()}
        counts["center_group"] = sum("【超时上报】" in _text(m) and _about(m, number) for m in group)
        assert counts == {step: 1 for step in [*_STEPS, "center_group"]}, (number, counts)


async def test_instances_started_together_both_come_up_on_a_new_and_on_a_used_database(
    tmp_path, sim, sim_server, db_toml
):
    """Each instance imports the directory and the campaigns at start; started at the same moment (a new
    cluster, or both restarted together) they take turns instead of one dying on a duplicate key."""
    sim_url = str(sim_server.make_url("")).rstrip("/")
    ports = free_ports(2)
    configs = [_config(tmp_path, sim, sim_url, port, db_toml) for port in ports]
    for _ in range(2):  # the first time on an empty database, then both restarted together
        procs = await asyncio.gather(*(_start(config, tmp_path, port) for config, port in zip(configs, ports,
                                                                                                strict=True)))
        try:
            async with aiohttp.ClientSession() as http:
                healths = [await _health(http, port) for port in ports]
            assert [h["status"] for h in healths] == ["ok", "ok"]
            assert sum(h["runs_scheduled_work"] for h in healths) == 1
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                assert await asyncio.wait_for(proc.wait(), 10) == 0
