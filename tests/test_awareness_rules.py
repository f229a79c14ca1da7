"""Awareness rules without a server: schedule slots, quiet hours, selection, the library, config checks."""

from __future__ import annotations

from datetime import datetime

import pytest

from bot.awareness.library import FRAUD_TYPES, MAX_BODY, load_library
from bot.awareness.planning import choose
from bot.awareness.schedule import due
from bot.awareness.settings import DEFAULT_LIBRARY, AwarenessConfigError, crontab_trigger, parse_campaign
from bot.config import ConfigError, parse_settings
from bot.directory import DirectoryError, parse_directory
from bot.ratelimit import SendLimiter, quiet_until
from bot.scheduler import SHANGHAI
from domain.awareness import AUDIENCES, GroupHistory, Item, Library
from domain.directory import ResidentGroup

LIBRARY = load_library(DEFAULT_LIBRARY)


def bj(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI).timestamp()


# -- schedule -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("now", "expected"), [
    ("2026-11-23 09:59:59", None),  # not yet
    ("2026-11-23 10:00:00", ("2026-11-23 10:00:00", 0)),
    ("2026-11-23 10:59:00", ("2026-11-23 10:00:00", 0)),  # a late tick still runs it, within the grace
    ("2026-11-26 10:30:00", ("2026-11-26 10:00:00", 3)),  # down for days: the latest runs, 3 are skipped
])
def test_due_runs_the_latest_slot_within_the_grace(now, expected):
    decision = due(crontab_trigger("0 10 * * *"), bj("2026-11-23 09:00:00"), bj(now), grace=3600)
    if expected is None:
        assert decision is None
    else:
        assert (decision.run, decision.last, decision.skipped) == (bj(expected[0]), bj(expected[0]), expected[1])


def test_due_skips_slots_older_than_the_grace_without_running():
    decision = due(crontab_trigger("0 10 * * *"), bj("2026-11-23 09:00:00"), bj("2026-11-24 12:00:00"), 3600)
    assert decision.run is None and decision.last == bj("2026-11-24 10:00:00") and decision.skipped == 2


@pytest.mark.parametrize(("weekday", "first"), [
    ("1", "2026-11-23"), ("0", "2026-11-29"), ("7", "2026-11-29"), ("6", "2026-11-28"), ("2-4", "2026-11-24"),
    ("sat,sun", "2026-11-28"),
])
def test_weekdays_count_from_sunday_as_in_crontab(weekday, first):
    # From Sunday 2026-11-22 noon, the latest slot by `first` 10:00 is that very day: it matches.
    after_first = due(crontab_trigger(f"0 10 * * {weekday}"), bj("2026-11-22 12:00:00"), bj(first + " 10:00:00"),
                      grace=10**7)
    assert after_first.run == bj(first + " 10:00:00")


# -- quiet hours and limits -----------------------------------------------------------------------


@pytest.mark.parametrize(("now", "until"), [
    ("2026-11-23 21:29:59", "2026-11-23 21:29:59"),
    ("2026-11-23 21:30:00", "2026-11-24 08:00:00"),
    ("2026-11-24 03:00:00", "2026-11-24 08:00:00"),
    ("2026-11-24 08:00:00", "2026-11-24 08:00:00"),
])
def test_quiet_hours_over_midnight(now, until):
    assert quiet_until("21:30-08:00", bj(now)) == bj(until)


def test_the_limiter_holds_quiet_messages_and_one_groupmsg_a_day():
    limiter = SendLimiter()
    assert limiter.earliest(["quiet:12:00-14:00", "robot:x"], bj("2026-11-23 13:00:00")) == bj("2026-11-23 14:00:00")
    limiter.record(["groupmsg:wr1", "quiet:12:00-14:00"], bj("2026-11-23 10:00:00"))
    assert limiter.earliest(["groupmsg:wr1"], bj("2026-11-23 23:00:00")) == bj("2026-11-24 10:00:01")
    assert limiter.earliest(["groupmsg:wr2"], bj("2026-11-23 23:00:00")) == bj("2026-11-23 23:00:00")


# -- selection ------------------------------------------------------------------------------------

GROUP = ResidentGroup("g1", "长者群", "DM", "webhook", "key", tags=("老年人",))
TREND = parse_campaign({"name": "t", "selection": "trend"})


def test_trend_picks_the_most_frequent_fraud_type_and_says_why():
    item, reason = choose(TREND, GROUP, LIBRARY, GroupHistory(), [("冒充公检法", 6), ("刷单返利", 3), ("其他", 1)])
    assert item.fraud_type == "冒充公检法" and item.id == "gjf-01"  # written for 老年人
    assert reason == "近7天本所预警10起，冒充公检法6起（占60%，第1位）"


def test_trend_moves_down_the_ranking_when_the_top_type_is_used_up_this_round():
    history = GroupHistory({"gjf-01": (1, 1.0), "gjf-02": (1, 2.0)})
    item, reason = choose(TREND, GROUP, LIBRARY, history, [("冒充公检法", 6), ("刷单返利", 3)])
    assert item.fraud_type == "刷单返利" and "第2位" in reason and "冒充公检法的内容本轮已推过" in reason
    both = ("冒充公检法", "刷单返利")
    history = GroupHistory({i.id: (1, n) for n, i in enumerate(LIBRARY.items) if i.fraud_type in both})
    item, _ = choose(TREND, GROUP, LIBRARY, history, [("冒充公检法", 6), ("刷单返利", 3)])
    assert item.id == "gjf-01"  # both types used up: a new round, the top type first again


def test_trend_without_matching_instructions_falls_back_to_rotation():
    item, reason = choose(TREND, GROUP, LIBRARY, GroupHistory(), [("其他", 4)])
    assert item == LIBRARY.pool(["老年人"])[0] and "按轮换选取" in reason


def test_fixed_and_an_empty_pool_say_why():
    fixed = parse_campaign({"name": "f", "selection": "fixed", "item": "ty-01"})
    expected = (LIBRARY.by_id["ty-01"], "固定内容「装上“国家反诈中心”APP」")
    assert choose(fixed, GROUP, LIBRARY, GroupHistory(), []) == expected
    narrow = parse_campaign({"name": "n", "selection": "rotation", "fraud_types": ["冒充军警购物"]})
    tiny = Library([Item("a", "冒充军警购物", ("个体商户",), "t", "b")])
    assert choose(narrow, GROUP, tiny, GroupHistory(), []) == "内容库中没有适合该群受众的内容"


# -- the library ----------------------------------------------------------------------------------


def test_the_library_covers_every_fraud_type_for_several_audiences():
    assert len(LIBRARY.items) >= 24
    for fraud_type in FRAUD_TYPES:
        assert len([i for i in LIBRARY.items if i.fraud_type == fraud_type]) >= 2, fraud_type
    for audience in AUDIENCES:
        assert len(LIBRARY.pool([audience])) >= 8, audience
    for item in LIBRARY.items:
        assert len(item.body) <= MAX_BODY and item.body.endswith("。")
        assert item.footer or ("96110" in item.body and "国家反诈中心" in item.body)


def test_library_errors_name_the_item(tmp_path):
    path = tmp_path / "lib.toml"
    path.write_text('[[items]]\nid = "a"\nfraud_type = "中奖"\naudiences = ["全体"]\ntitle = "t"\nbody = "b"\n',
                    encoding="utf-8")
    with pytest.raises(ValueError, match=r"items\[0\]\.fraud_type '中奖'"):
        load_library(path)


# -- config and directory -------------------------------------------------------------------------

BASE = {"wecom": {"corp_id": "c", "corp_secret": "s", "agent_id": 1, "encoding_aes_key": "a" * 43},
        "api": {"tokens": ["12345678"]}, "directory": {"path": "d.toml"}}


@pytest.mark.parametrize(("awareness", "message"), [
    ({"campaigns": [{"name": "a", "schedule": "0 25 * * *"}]}, r"campaigns\[0\]\.schedule"),
    ({"campaigns": [{"name": "a", "selection": "fixed"}]}, r"campaigns\[0\]\.item is required"),
    ({"campaigns": [{"name": "a"}, {"name": "a"}]}, "names must be unique"),
    ({"campaigns": [{"name": "a", "quiet_hours": "22-7"}]}, "quiet hours"),
    ({"campaigns": [{"name": "a", "audience": {"station": ["DM"]}}]}, "unknown key 'station'"),
    ({"check_interval": 0}, "check_interval"),
    ({"grace": "1h"}, "grace"),
])
def test_config_errors_name_the_key(awareness, message):
    with pytest.raises(ConfigError, match=message):
        parse_settings({**BASE, "awareness": awareness})


def test_config_defaults_and_campaign_inherit_section_defaults():
    settings = parse_settings({**BASE, "awareness": {"quiet_hours": "22:00-07:00", "trend_days": 14,
                                                      "campaigns": [{"name": "a", "schedule": "0 10 * * 1"}]}})
    (c,) = settings.awareness.campaigns
    assert (c.quiet_hours, c.trend_days, c.selection, c.channels) == (
        "22:00-07:00", 14, "rotation", ("customer_group", "webhook", "app"))
    assert parse_settings(BASE).awareness.campaigns == ()
    with pytest.raises(AwarenessConfigError):
        parse_campaign({"name": "UPPER"})


@pytest.mark.parametrize(("group", "message"), [
    ({"channel": "sms"}, "channel must be one of"),
    ({"channel": "customer_group", "owner": "nobody", "chat_id": "wr1"}, "owner 'nobody'"),
    ({"channel": "customer_group", "owner": "u1"}, "chat_id is required"),
    ({"channel": "app", "users": ["u1", "ghost"]}, "users must list"),
    ({"channel": "webhook", "webhook_key": "k", "station": "XX"}, "station 'XX'"),
])
def test_directory_resident_group_errors(group, message):
    raw = {"stations": [{"code": "DM", "name": "东门"}], "people": [{"userid": "u1", "name": "甲", "role": "officer"}],
           "resident_groups": [{"code": "r1", "name": "群", "station": "DM", **group}]}
    with pytest.raises(DirectoryError, match=message):
        parse_directory(raw)
