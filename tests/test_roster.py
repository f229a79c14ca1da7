"""Duty rosters: the CSV a station keeps, lookups across shifts and midnight, gaps, and routing by duty."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime, timedelta

import pytest

from bot.app import create_app
from bot.directory import load_directory_file, parse_directory
from bot.render import SHANGHAI
from bot.roster import RosterError, parse_roster_csv
from domain.roster import RosterBook
from tests.conftest import services
from tests.helpers import AUTH, DISTRICT, ROOT, eventually, instruction, sim_messages, wait_state

DIRECTORY = load_directory_file(DISTRICT)
WEEK = """日期,派出所,班次,开始,结束,值班民警,带班领导
2026-11-27,DM,白班,08:00,20:00,王强,陈龙
2026-11-27,DM,夜班,20:00,08:00,lina,陈龙
2026-11-28,东门派出所,白班,8:00,20:00,李娜,
2026-11-27,LH,全天,08:00,08:00,赵磊,周敏
"""


def _t(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI).timestamp()


@pytest.fixture
def book() -> RosterBook:
    return RosterBook(parse_roster_csv(WEEK.encode(), DIRECTORY), DIRECTORY)


@pytest.mark.parametrize(("at", "station", "officer", "source"), [
    ("2026-11-27 07:59:59", "DM", "wangqiang", "fallback"),  # before the roster starts: the directory's officer
    ("2026-11-27 08:00:00", "DM", "wangqiang", "roster"),
    ("2026-11-27 19:59:59", "DM", "wangqiang", "roster"),
    ("2026-11-27 20:00:00", "DM", "lina", "roster"),  # the night shift takes over at 20:00
    ("2026-11-27 23:59:59", "DM", "lina", "roster"),
    ("2026-11-28 00:00:00", "DM", "lina", "roster"),  # across midnight, still the 27th's night shift
    ("2026-11-28 07:59:59", "DM", "lina", "roster"),
    ("2026-11-28 08:00:00", "DM", "lina", "roster"),  # the 28th's day shift (listed by name of the station)
    ("2026-11-28 20:00:00", "DM", "wangqiang", "fallback"),  # nobody rostered for the 28th's night
    ("2026-11-27 08:00:00", "LH", "zhaolei", "roster"),  # a 24-hour shift
    ("2026-11-28 07:59:59", "LH", "zhaolei", "roster"),
    ("2026-11-28 08:00:00", "LH", "zhaolei", "fallback"),  # the roster ran out; zhaolei is also the default
])
def test_on_duty_across_shift_boundaries_and_midnight(book, at, station, officer, source):
    duty = book.on_duty(station, _t(at))
    assert (duty.officer, duty.source) == (officer, source)
    assert (duty.gap is not None) == (source == "fallback")


def test_leader_in_charge_defaults_to_the_station_leader(book):
    assert book.on_duty("DM", _t("2026-11-28 09:00:00")).leader == "chenlong"  # the row left it empty
    assert book.on_duty("LH", _t("2026-11-27 09:00:00")).leader == "zhoumin"


def test_gaps_are_the_stretches_nobody_is_rostered(book):
    gaps = book.gaps("DM", _t("2026-11-27 00:00:00"), _t("2026-11-29 00:00:00"))
    assert [(g.start, g.end) for g in gaps] == [(None, _t("2026-11-27 08:00:00")), (_t("2026-11-28 20:00:00"), None)]
    assert book.gaps("DM", _t("2026-11-27 09:00:00"), _t("2026-11-28 19:00:00")) == []
    assert book.on_duty("DM", _t("2026-11-28 21:00:00")).gap == gaps[1]


def test_overlapping_hand_over_goes_to_the_incoming_shift():
    csv = ("日期,派出所,班次,开始,结束,值班民警\n"
           "2026-11-27,DM,白班,08:00,20:30,王强\n2026-11-27,DM,夜班,20:00,08:00,李娜\n")
    book = RosterBook(parse_roster_csv(csv.encode(), DIRECTORY), DIRECTORY)
    assert book.on_duty("DM", _t("2026-11-27 20:15:00")).officer == "lina"
    assert book.gaps("DM", _t("2026-11-27 09:00:00"), _t("2026-11-28 07:00:00")) == []


def test_a_gbk_file_from_excel_reads_the_same():
    shifts = parse_roster_csv(WEEK.encode("gbk"), DIRECTORY)
    assert shifts == parse_roster_csv(WEEK.encode("utf-8-sig"), DIRECTORY)


def test_every_bad_row_is_reported_and_nothing_is_taken():
    csv = ("日期,派出所,班次,开始,结束,值班民警,带班领导\n"
           "2026-11-31,DM,白班,08:00,20:00,王强,陈龙\n"
           "2026-11-27,XX,白班,08:00,20:00,王强,陈龙\n"
           "2026-11-27,DM,白班,8点,20:00,王强,陈龙\n"
           "2026-11-27,DM,白班,08:00,20:00,刘红,陈龙\n"
           "2026-11-27,DM,白班,08:00,20:00,赵磊,陈龙\n"
           "2026-11-27,DM,白班,08:00,20:00,王强,陈龙\n")
    with pytest.raises(RosterError) as caught:
        parse_roster_csv(csv.encode(), DIRECTORY)
    assert caught.value.problems == [
        "第2行：日期“2026-11-31”不存在",
        "第3行：派出所“XX”不在通讯录中（填派出所编码或全称）",
        "第4行：开始时间“8点”无法识别（例：08:00）",
        "第5行：值班民警“刘红”不是该派出所的民警或所领导",
        "第6行：值班民警“赵磊”不是该派出所的民警或所领导",
    ]
    with pytest.raises(RosterError, match="表头缺少列：值班民警"):
        parse_roster_csv("日期,派出所,开始,结束\n".encode(), DIRECTORY)


def test_a_name_shared_by_two_officers_must_be_given_as_userid():
    raw = {"stations": [{"code": "S", "name": "所"}],
           "people": [{"userid": "a", "name": "王伟", "role": "officer", "station": "S"},
                      {"userid": "b", "name": "王伟", "role": "officer", "station": "S"}]}
    directory = parse_directory(raw)
    with pytest.raises(RosterError, match="重名，请改填企业微信用户ID"):
        parse_roster_csv("日期,派出所,开始,结束,值班民警\n2026-11-27,S,08:00,20:00,王伟\n".encode(), directory)
    shift = parse_roster_csv("日期,派出所,开始,结束,值班民警\n2026-11-27,S,08:00,20:00,b\n".encode(), directory)[0]
    assert shift.officer == "b"


# -- the running bot ----------------------------------------------------------------------------


def _shift_row(officer: str, start: datetime, hours: float) -> str:
    end = start + timedelta(hours=hours)
    return f"{start:%Y-%m-%d},DM,值班,{start:%H:%M},{end:%H:%M},{officer},陈龙"


def _roster(*rows: str) -> bytes:
    return ("日期,派出所,班次,开始,结束,值班民警,带班领导\n" + "\n".join(rows) + "\n").encode()


@pytest.fixture
async def bot(aiohttp_client, sim, sim_server, make_settings):
    settings = make_settings(str(sim_server.make_url("")).rstrip("/"), escalation={"sweep_interval": 0.05})
    client = await aiohttp_client(create_app(settings, clock=sim.clock.now))
    sim.config.callback_url = str(client.make_url("/wecom/callback"))
    return client


def _now(sim) -> datetime:
    return datetime.fromtimestamp(sim.clock.now(), SHANGHAI).replace(second=0, microsecond=0)


async def test_cards_and_escalations_go_to_whoever_is_on_duty_at_that_moment(bot, sim, sim_client):
    now = _now(sim)
    handover = now + timedelta(hours=2)
    roster = _roster(_shift_row("李娜", now - timedelta(hours=12), 14), _shift_row("王强", handover, 24))
    resp = await bot.post("/api/v1/rosters", data=roster, headers=AUTH)
    assert resp.status == 200
    assert (await resp.json())["gaps"] == []

    # Low risk: only the officer on duty gets a card (a phone task), and it is 李娜, not the directory's 王强.
    resp = await bot.post("/api/v1/instructions", json=instruction(risk_level="low"), headers=AUTH)
    number = (await resp.json())["id"]
    await wait_state(bot, number, "dispatched")
    assert len(await sim_messages(sim_client, user="lina", api="message/send")) == 1
    assert await sim_messages(sim_client, user="wangqiang", api="message/send") == []
    notice = (await sim_messages(sim_client, chatid="dmstation"))[0]["body"]["markdown"]["content"]
    assert "值班民警 李娜（电话）" in notice

    # Three hours on (2 h to sign + 1 h): the officer-on-duty step reaches 王强, whose shift began at the hand-over.
    sim.clock.advance(3 * 3600 + 60)
    group = await eventually(lambda: sim_messages(sim_client, chatid="dmstation"),
                             lambda m: any("已提醒值班民警" in x["body"]["markdown"]["content"] for x in m))
    assert "已提醒值班民警〈王强〉" in group[-1]["body"]["markdown"]["content"]
    assert "值班民警〈李娜〉未签收" in group[-1]["body"]["markdown"]["content"]
    personal = await sim_messages(sim_client, user="wangqiang", api="message/send")
    assert any("【督办】" in m["body"]["markdown"]["content"] for m in personal)


async def test_a_roster_gap_is_covered_by_the_default_and_the_leader_is_warned_once(bot, sim, sim_client):
    now = _now(sim)
    resp = await bot.post("/api/v1/rosters", data=_roster(_shift_row("李娜", now - timedelta(hours=2), 3)),
                          headers=AUTH)
    assert resp.status == 200
    warning = await eventually(lambda: sim_messages(sim_client, user="chenlong", api="message/send"), bool)
    content = warning[0]["body"]["markdown"]["content"]
    assert "【值班空档】东门派出所" in content and "值班表结束后（未排班）" in content and "王强" in content
    assert any("【值班空档】" in m["body"]["markdown"]["content"]
               for m in await sim_messages(sim_client, chatid="dmstation"))

    sim.clock.advance(2 * 3600)  # now inside the gap
    for _ in range(3):
        await services(bot).escalations.sweep()
    warnings = [m for m in await sim_messages(sim_client, user="chenlong", api="message/send")
                if "值班空档" in m["body"]["markdown"]["content"]]
    assert len(warnings) == 1

    on_duty = await (await bot.get("/api/v1/rosters/on-duty", headers=AUTH)).json()
    dm = next(s for s in on_duty["stations"] if s["station"] == "DM")
    assert dm["officer"] == "wangqiang" and dm["source"] == "fallback" and dm["gap"]["to"] is None
    resp = await bot.post("/api/v1/instructions", json=instruction(risk_level="low"), headers=AUTH)
    await wait_state(bot, (await resp.json())["id"], "dispatched")
    assert len(await sim_messages(sim_client, user="wangqiang", api="message/send")) == 1


async def test_a_bad_roster_is_refused_whole_with_reasons(bot, sim):
    now = _now(sim)
    roster = _roster(_shift_row("李娜", now, 8), "2026-02-30,DM,白班,08:00,20:00,王强,陈龙")
    resp = await bot.post("/api/v1/rosters", data=roster, headers=AUTH)
    assert resp.status == 400
    body = await resp.json()
    assert body["error"] == "值班表有误，未导入任何班次" and body["errors"] == ["第3行：日期“2026-02-30”不存在"]
    on_duty = await (await bot.get("/api/v1/rosters/on-duty", headers=AUTH)).json()
    assert {s["source"] for s in on_duty["stations"]} == {"directory"}
    assert (await bot.post("/api/v1/rosters", data=roster)).status == 401


async def test_roster_command_line_imports_and_shows(tmp_path, db_toml):
    config = tmp_path / "config.toml"
    config.write_text(
        (ROOT / "demo" / "config.toml").read_text(encoding="utf-8")
        .replace('path = "../data/demo.sqlite3"', db_toml)
        .replace('"district.toml"', json.dumps(str(DISTRICT))),
        encoding="utf-8",
    )
    today = datetime.now(SHANGHAI) - timedelta(hours=1)
    roster = tmp_path / "值班表.csv"
    roster.write_bytes(_roster(_shift_row("李娜", today, 12)).decode().encode("gbk"))

    async def run(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(sys.executable, str(ROOT / "bot.py"), "roster", *args,
                                                    "--config", str(config), stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT, cwd=ROOT)
        out, _ = await proc.communicate()
        return proc.returncode, out.decode()

    code, out = await run("import", str(roster))
    assert code == 0 and "已导入 1 个班次：DM" in out
    code, out = await run("show", "--json")
    dm = next(r for r in json.loads(out) if r["station"] == "DM")
    assert (dm["officer"], dm["source"]) == ("lina", "roster")
    bad = tmp_path / "bad.csv"
    bad.write_text("日期,派出所,开始,结束,值班民警\n2026-11-27,DM,08:00,20:00,无名氏\n", encoding="utf-8")
    code, out = await run("import", str(bad))
    assert code == 1 and "第2行：值班民警“无名氏”不在通讯录中" in out
