"""Bulletin figures against seeded data with known answers, splitting to WeCom's limits, and the scheduled push."""

from __future__ import annotations

from datetime import date

import pytest

from bot.app import create_app
from bot.config import BulletinSettings, DatabaseSettings
from bot.render import Renderer
from bot.reports.bulletin import bulletin_parts
from bot.reports.figures import compute_figures
from bot.reports.periods import daily_period, due_daily, due_weekly, weekly_period
from domain.reports import History, date_day, day_number, day_start
from storage import open_storage
from tests.conftest import services
from tests.helpers import AUTH, eventually, instruction, sim_messages, wait_state

DAY = date_day(date(2026, 11, 20))  # a Friday
MIDNIGHT = day_start(DAY)  # 2026-11-20 00:00 Asia/Shanghai


def _instruction(iid: int, received: float, station: str = "DM", *, state: str = "closed", signed: float | None = None,
                 outcome: str | None = None, method: str | None = None, loss: float | None = None,
                 lost: float | None = None, risk: str = "high") -> tuple:
    acked = received + signed if signed is not None else None
    return (iid, f"T{iid}", received, received, "涉诈来电", "冒充公检法", risk, "唐小明", "13812348000", None, "地址",
            60, station, None, station, None, "", 100000, state, acked, "wangqiang" if acked else None, method, outcome,
            loss, lost, None, None, None, "{}")


def _seed(h: History, iid: int, received: float, *, sign: float | None, contact: float | None = None,
          ack_within: float = 300, open_deadline: bool = False, visit: bool = False, **kw) -> None:
    h.instructions.append(_instruction(iid, received, signed=sign, **kw))
    state = "open" if open_deadline else ("met" if sign is not None else "moot")
    h.deadlines.append((iid, "phone", "ack", received + ack_within, state, received + sign if sign else None))
    if contact is not None:
        h.deadlines.append((iid, "phone", "contact", received + 600, "met", received + contact))
    if visit:
        h.assignments.append((iid, "liuhong", "网格员", received, None, "visit"))


@pytest.fixture
async def store(database):
    storage = await open_storage(DatabaseSettings(**database))
    yield storage
    await storage.close()


async def test_daily_figures_match_known_answers_and_respect_midnight(store):
    h = History()
    # Four on the day: signed after 60, 120, 180 and 600 s (the last one late against a 300 s deadline).
    _seed(h, 1, MIDNIGHT, sign=60, contact=100, outcome="劝阻成功", method="电话", loss=50000)  # 00:00:00 exactly
    _seed(h, 2, MIDNIGHT + 3600, sign=120, contact=300, outcome="劝阻成功", method="上门", loss=20000)
    _seed(h, 3, MIDNIGHT + 7200, sign=180, outcome="已被骗", method="电话", lost=8000, visit=True)
    _seed(h, 4, MIDNIGHT + 86399, sign=600, state="acknowledged")  # 23:59:59, still open, signed late
    # Either side of the day: not counted.
    _seed(h, 5, MIDNIGHT - 1, sign=30, outcome="劝阻成功")  # 23:59:59 the day before
    _seed(h, 6, MIDNIGHT + 86400, sign=30, outcome="劝阻成功")  # 00:00:00 the day after
    await store.insert_history(h)

    f = await compute_figures(store, daily_period(DAY), MIDNIGHT + 86400 + 8 * 3600, stations=["DM", "LH"])

    c = f.counts
    assert (c.received, c.signed, c.ack_ontime, c.contacted, c.visits) == (4, 4, 3, 2, 2)
    assert c.ontime_rate == 0.75
    assert (c.loss_avoided, c.amount_lost) == (70000, 8000)
    assert f.speed.sign_p50 == pytest.approx(150)  # between 120 and 180
    assert f.speed.sign_p90 == pytest.approx(180 + (600 - 180) * 0.7)
    assert (f.speed.contact_p50, f.speed.contact_p90) == (pytest.approx(200), pytest.approx(280))
    assert f.outcomes == {"劝阻成功": 2, "已被骗": 1, "无法联系": 0, "拒绝配合": 0, "误报": 0, "未反馈": 1}
    assert [(s.station, s.rank, s.counts.received) for s in f.stations] == [("DM", 1, 4), ("LH", 2, 0)]
    assert [d.received for d in f.trend] == [0, 0, 0, 0, 0, 1, 4]  # the week up to the day; #5 the day before


async def test_no_instructions_gives_an_empty_bulletin_that_still_fits(store):
    f = await compute_figures(store, daily_period(DAY), MIDNIGHT + 86400 + 8 * 3600, stations=["DM"])
    assert f.empty and f.counts.ontime_rate is None and f.speed.sign_p50 is None and f.overdue_total == 0
    from bot.directory import load_directory_file
    from tests.helpers import DISTRICT

    parts = bulletin_parts(Renderer(), f, load_directory_file(DISTRICT), 2048, 4, "http://x/dashboard", 10)
    assert len(parts) == 1
    assert "【日通报】2026年11月20日" in parts[0] and "本期未接收预警指令" in parts[0] and "超时未办 0 条" in parts[0]


async def test_all_overdue_lists_every_instruction_and_counts_none_in_time(store):
    h = History()
    for n in range(1, 6):
        _seed(h, n, MIDNIGHT + n * 600, sign=None, open_deadline=True, state="dispatched")
    await store.insert_history(h)
    now = MIDNIGHT + 86400
    f = await compute_figures(store, daily_period(DAY), now, stations=["DM"])
    assert (f.counts.received, f.counts.ack_ontime, f.counts.ontime_rate) == (5, 0, 0.0)
    assert f.overdue_total == 5 and [o.instruction_id for o in f.overdue] == [1, 2, 3, 4, 5]  # longest overdue first
    assert f.stations[0].overdue == 5 and f.outcomes["未反馈"] == 5


async def test_a_long_bulletin_is_split_within_the_byte_limit_and_links_to_the_dashboard(store):
    h = History()
    for n in range(1, 121):
        _seed(h, n, MIDNIGHT + n * 300, sign=None, open_deadline=True, state="dispatched")
    await store.insert_history(h)
    from domain.directory import Directory, Station

    directory = Directory(stations={f"S{n:03d}": Station(f"S{n:03d}", f"第{n}派出所", None, None, None)
                                    for n in range(150)})
    f = await compute_figures(store, daily_period(DAY), MIDNIGHT + 86400, stations=directory.stations,
                              overdue_limit=50)
    parts = bulletin_parts(Renderer(), f, directory, 2048, 4, "http://bot/dashboard/bulletin", 40)
    n = len(parts)
    assert 2 <= n <= 4
    assert all(len(p.encode("utf-8")) <= 2048 for p in parts)
    assert [p.split("\n", 1)[0][-5:] for p in parts] == [f"（{k}/{n}）" for k in range(1, n + 1)]
    text = "".join(parts)
    assert "超时未办 120 条" in text and "#40</font>" in text and "#41</font>" not in text
    assert "1. 第" in text and "151. 第" in text and "11. 第" not in text  # the best ten and the last five
    assert parts[-1].endswith("(http://bot/dashboard/bulletin)")
    assert "唐小明" not in "".join(parts) and "13812348000" not in "".join(parts)


@pytest.mark.parametrize(
    ("now", "first_day", "due"),
    [
        (MIDNIGHT + 8 * 3600 + 30 * 60, DAY - 1, MIDNIGHT + 8 * 3600 + 30 * 60),  # exactly 08:30: yesterday's
        (MIDNIGHT + 8 * 3600 + 30 * 60 - 1, DAY - 2, MIDNIGHT - 86400 + 8 * 3600 + 30 * 60),  # a second before
        (MIDNIGHT - 1, DAY - 2, MIDNIGHT - 86400 + 8 * 3600 + 30 * 60),  # 23:59:59
    ],
)
def test_the_daily_bulletin_due_is_decided_by_the_clock(now, first_day, due):
    period, at = due_daily(now, 8 * 3600 + 30 * 60)
    assert (period.first_day, period.last_day, at) == (first_day, first_day, due)


def test_the_weekly_review_covers_the_previous_monday_to_sunday():
    monday = DAY + 3  # 2026-11-23
    period, at = due_weekly(day_start(monday) + 9 * 3600, 0, 9 * 3600)
    assert (period.first_day, period.last_day, at) == (monday - 7, monday - 1, day_start(monday) + 9 * 3600)
    assert period.label == "2026年11月16日至11月22日"
    earlier, _ = due_weekly(day_start(monday) + 9 * 3600 - 1, 0, 9 * 3600)
    assert earlier.first_day == monday - 14


@pytest.fixture
def bulletin_settings(sim_server, make_settings):
    url = str(sim_server.make_url("")).rstrip("/")
    return make_settings(url, bulletin={"enabled": True})


async def test_the_bulletin_is_pushed_once_with_its_chart_even_across_a_restart(
        aiohttp_client, sim, sim_client, bulletin_settings):
    bot = await aiohttp_client(create_app(bulletin_settings, clock=sim.clock.now))
    sim.config.callback_url = str(bot.make_url("/wecom/callback"))
    resp = await bot.post("/api/v1/instructions", json=instruction(), headers=AUTH)
    number = (await resp.json())["id"]
    await wait_state(bot, number, "dispatched")
    bulletins = services(bot).bulletins
    assert await bulletins.tick() == []  # a new database does not open with a bulletin for a day it never saw
    # Move to tomorrow 08:30 (and on); the instruction was received, never signed: it is overdue.
    received = sim.clock.now()
    sim.clock.advance(day_start(day_number(sim.clock.now()) + 1) + 8 * 3600 + 30 * 60 + 5 - received)
    sent = await bulletins.tick()
    assert [p.kind for p in sent][:1] == ["daily"]

    label = f"【日通报】{sent[0].label}"

    def complete(m: list) -> bool:  # its parts went out in order, the chart last
        return any(label in x["body"].get("markdown", {}).get("content", "") for x in m) and m[-1]["msgtype"] == "image"

    messages = await eventually(lambda: sim_messages(sim_client, chatid="centercmd"), complete, what="the bulletin")
    texts = [m["body"]["markdown"]["content"] for m in messages if m["msgtype"] == "markdown"]
    daily = [t for t in texts if label in t]
    assert daily and "接收预警指令 **1** 条，按时签收 **0** 条（<font color=\"warning\">0.0%</font>）" in daily[0]
    assert f"#{number}</font> 东门派出所 高风险 冒充公检法 未签收" in "".join(daily)
    assert all(len(t.encode()) <= 2048 for t in texts) and "唐小明" not in "".join(texts)
    image = next(m for m in messages if m["msgtype"] == "image")
    assert sim.media.get(image["body"]["image"]["media_id"], sim.clock.now()).content.startswith(b"\x89PNG")

    count = len(await sim_messages(sim_client, chatid="centercmd"))
    assert await bulletins.tick() == []  # the same period again: nothing
    await bot.close()
    restarted = await aiohttp_client(create_app(bulletin_settings, clock=sim.clock.now))  # ticks at start
    assert await services(restarted).bulletins.tick() == []
    assert len(await sim_messages(sim_client, chatid="centercmd")) == count


def test_bulletin_settings_default_to_the_command_group_at_half_past_eight():
    s = BulletinSettings()
    assert (s.daily_time, s.weekly_day, s.weekly_time, s.recipients) == (8 * 3600 + 1800, 0, 9 * 3600, ())


async def test_live_actions_reach_the_figures_through_the_triggers(bot, sim, sim_client):
    resp = await bot.post("/api/v1/instructions", json=instruction(), headers=AUTH)
    number = (await resp.json())["id"]
    await wait_state(bot, number, "dispatched")
    await sim.send_text("liuhong", f"反馈 {number} 上门 劝阻成功 挽损10万")
    await wait_state(bot, number, "resolved")
    storage = services(bot).storage
    today = day_number(sim.clock.now())
    f = await compute_figures(storage, weekly_period(today - 1, days=3), sim.clock.now())
    assert (f.counts.received, f.counts.signed, f.counts.ack_ontime, f.counts.visits) == (1, 1, 1, 1)
    assert (f.outcomes["劝阻成功"], f.counts.loss_avoided) == (1, 100000)
