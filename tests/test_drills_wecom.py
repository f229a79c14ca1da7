"""WeCom outage and limit drills: minutes of refused connections, 5xx or errcode -1; rate-limit errcodes,
silent per-member drops and early token revocation. Minutes pass on the simulator's clock, which the bot
shares, so the drills take seconds.
"""

from __future__ import annotations

import asyncio

import pytest

from bench.drills.harness import Relay
from bot.app import create_app
from tests.conftest import services
from tests.helpers import AUTH, eventually, instruction, instruction_detail, sim_messages, wait_for_messages

RISKS = ["low", "high", "medium", "high", "low", "medium", "high", "low", "medium", "high"]


# Messages one instruction of grid DM-01 makes: the station notice and a card for the officer on duty,
# and for high risk also the grid worker's (sent to the door at once).
_SHOWN = {"high": 3, "medium": 2, "low": 2}


async def _outage_drill(aiohttp_client, sim, sim_server, sim_client, make_settings, kind: str) -> dict:
    outage = Relay(sim_server.port)
    await outage.up()
    settings = make_settings(f"http://127.0.0.1:{outage.port}", delivery={"concurrency": 1})
    bot = await aiohttp_client(create_app(settings, clock=sim.clock.now))
    worker = services(bot).worker
    if kind == "refused":
        await outage.down()
    elif kind == "http_503":
        sim.add_fault("*", http_status=503, times=10**6)
    else:
        sim.add_fault("*", errcode=-1, times=10**6)

    numbers = []
    for risk in RISKS:  # one at a time, so that age order is the order of the list
        resp = await bot.post("/api/v1/instructions", json=instruction(risk_level=risk), headers=AUTH)
        assert resp.status == 202
        numbers.append((await resp.json())["id"])
    await eventually(lambda: asyncio.sleep(0, worker.outage_since), lambda since: since is not None,
                     what="the worker to see the outage")
    for _ in range(36):  # three minutes of outage, five seconds at a time
        sim.clock.advance(5)
        worker.wake()
        await asyncio.sleep(0.02)
    failed = [n for n in numbers if (await instruction_detail(bot, n))["delivery_failed"]]
    assert failed == []  # an outage is not the messages' fault: none is given up on

    if kind == "refused":
        await outage.up()
    sim.clear_faults()
    sim.clock.advance(15)
    worker.wake()
    await wait_for_messages(sim_client, sum(_SHOWN[r] for r in RISKS) + 1, within=15)
    assert worker.outage_since is None
    messages = await sim_messages(sim_client)
    notices = [m for m in messages if m.get("chatid") == "centercmd"]
    cards = [m for m in messages if m["api"] == "message/send"]
    order = []
    for m in cards:
        number = int(m["task_id"].split("-")[1])
        if number not in order:
            order.append(number)
    await outage.down()
    return {"numbers": numbers, "notices": notices, "order": order, "messages": messages}


@pytest.mark.parametrize("kind", ["refused", "http_503", "errcode_-1"])
async def test_minutes_of_wecom_outage_lose_nothing_and_are_announced_once(
    kind, aiohttp_client, sim, sim_server, sim_client, make_settings
):
    result = await _outage_drill(aiohttp_client, sim, sim_server, sim_client, make_settings, kind)
    numbers = result["numbers"]
    # Every instruction reached its station chat and its cards, once.
    for n, risk in zip(numbers, RISKS, strict=True):
        shown = [m for m in result["messages"] if f"#{n}\n" in str((m["body"].get("markdown") or {}).get("content"))
                 or (m.get("task_id") or "").split("-")[1:2] == [str(n)]]
        assert len([m for m in shown if not m["duplicate"]]) == _SHOWN[risk], (n, shown)
    # The backlog went out most urgent first, then oldest: high, high, …, medium, …, low.
    rank = {"high": 0, "medium": 1, "low": 2}
    expected = sorted(numbers, key=lambda n: (rank[RISKS[numbers.index(n)]], n))
    assert result["order"] == expected
    # The center's group learned of the outage once, not once per message, and saw no failure report.
    (notice,) = result["notices"]
    content = notice["body"]["markdown"]["content"]
    waited = sum(_SHOWN[r] for r in RISKS)
    assert "企业微信中断已恢复" in content and f"{waited} 条" in content and "推送失败" not in content


async def test_a_short_blip_is_retried_without_a_notice(bot, sim, sim_client):
    sim.add_fault("*", http_status=502, times=4)
    resp = await bot.post("/api/v1/instructions", json=instruction(), headers=AUTH)
    number = (await resp.json())["id"]
    await eventually(lambda: instruction_detail(bot, number), lambda d: d["state"] == "dispatched")
    assert [m for m in await sim_messages(sim_client) if m.get("chatid") == "centercmd"] == []


async def test_one_message_failing_while_wecom_works_is_still_given_up_on(bot, sim, sim_client):
    sim.add_fault("appchat/send", errcode=-1, times=4)  # the station notice only; the cards go through
    resp = await bot.post("/api/v1/instructions", json=instruction(jurisdiction={"station": "DM"}), headers=AUTH)
    number = (await resp.json())["id"]
    detail = await eventually(lambda: instruction_detail(bot, number), lambda d: d["delivery_failed"])
    notice = next(d for d in detail["deliveries"] if d["purpose"] == "station_notice")
    assert notice["state"] == "failed" and notice["attempts"] == 4


# -- limits ------------------------------------------------------------------------------------------


async def test_rate_limit_errcodes_for_longer_than_max_attempts_lose_nothing(bot, sim, sim_client):
    # 45009 on every API, more times than max_attempts (4), then 45033 (concurrency) as often.
    sim.add_fault("*", errcode=45009, times=6)
    sim.add_fault("*", errcode=45033, times=6)
    numbers = []
    for _ in range(3):
        resp = await bot.post("/api/v1/instructions", json=instruction(), headers=AUTH)
        numbers.append((await resp.json())["id"])
    worker = services(bot).worker
    for _ in range(12):  # each 45009 waits for its minute window
        await asyncio.sleep(0.05)
        sim.clock.advance(61)
        worker.wake()
    await wait_for_messages(sim_client, 9, within=10)
    for n in numbers:
        detail = await instruction_detail(bot, n)
        assert detail["state"] == "dispatched" and not detail["delivery_failed"]
    stats = await (await sim_client.get("/_sim/stats")).json()
    assert stats["errors"]["45009"] == 6 and stats["errors"]["45033"] == 6


async def test_silent_per_member_drops_never_happen_across_a_restart(
    aiohttp_client, sim, sim_server, sim_client, make_settings
):
    # 45 cards for the officer on duty in a burst: WeCom would drop the 31st onwards silently within a minute.
    settings = make_settings(str(sim_server.make_url("")).rstrip("/"))
    first = await aiohttp_client(create_app(settings, clock=sim.clock.now))
    resp = await first.post("/api/v1/instructions", json=[instruction(risk_level="low") for _ in range(45)],
                            headers=AUTH)
    assert (await resp.json())["accepted"] == 45
    await wait_for_messages(sim_client, 30, user="wangqiang", api="message/send")
    await first.close()  # a restart in the middle of the minute: the windows are rebuilt from the database
    second = await aiohttp_client(create_app(settings, clock=sim.clock.now))
    await asyncio.sleep(0.2)
    assert len(await sim_messages(sim_client, user="wangqiang", api="message/send")) == 30
    sim.clock.advance(61)
    services(second).worker.wake()
    got = await wait_for_messages(sim_client, 45, user="wangqiang", api="message/send")
    assert len(got) == 45
    assert [m for m in await sim_messages(sim_client) if m["dropped_for"]] == []


async def test_token_revoked_during_a_burst_is_replaced_at_once(bot, sim, sim_client):
    resp = await bot.post("/api/v1/instructions", json=[instruction() for _ in range(5)], headers=AUTH)
    assert (await resp.json())["accepted"] == 5
    await wait_for_messages(sim_client, 15)
    sim.revoke_tokens()  # WeCom invalidates the token early, long before its 7200 s
    batch = [instruction(jurisdiction={"station": "LH", "grid": "LH-01"}) for _ in range(5)]
    resp = await bot.post("/api/v1/instructions", json=batch, headers=AUTH)
    assert (await resp.json())["accepted"] == 5
    await wait_for_messages(sim_client, 25, within=10)  # robot notices need no token; cards do
    stats = await (await sim_client.get("/_sim/stats")).json()
    assert stats["calls"]["gettoken"] == 2  # one refresh shared by every call that saw 40014
    assert stats["errors"]["40014"] >= 1
    await eventually(services(bot).storage.outbox_counts, lambda c: c == {"sent": 30}, what="all 30 recorded sent")
