"""Personal data never reaches a group, a log or a metric: the full loop against the running bot.

Instructions whose free text (summary, fraud type, staff notes) is full of a resident's personal data
go through delivery, a delivery failure, an unknown station, the escalation ladder, a sign-for by card,
an outcome report, a close and the next day's bulletin. Then every message the simulator's groups
received (app chats and robots), every log line the bot wrote and /metrics are scanned for the
resident's values in every notation used: none may appear. The same scan finds them in the assignee's
personal card, so it can fail. Re-assignment stays within the instruction's station.
"""

from __future__ import annotations

import json
import logging
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.app import create_app
from bot.render import GROUP_TEMPLATES, PERSONAL_TEMPLATES, TEMPLATES_DIR
from domain.masking import redact
from domain.models import Target
from domain.reports import day_number, day_start
from tests.conftest import services
from tests.helpers import AUTH, eventually, instruction, instruction_detail, sim_messages, wait_state

MINUTE = 60
NAME, GIVEN = "唐晓燕", "晓燕"
PHONE = "13912345678"
RELATIVE = "13800138000"
ID_NUMBER = "500101195901011234"
OLD_ID = "110101590101123"
CARD = "6222021234567890123"
LANDLINE = "62345678"
ADDRESS = "东门社区幸福路88号3单元502室"
TARGET = {"name": NAME, "phone": PHONE, "id_number": ID_NUMBER, "address": ADDRESS, "age": 67}
SUMMARY = (f"{NAME}（139 1234 5678，身份证{ID_NUMBER}）正在与冒充公安的人通话，家属电话+86-138-0013-8000，"
           f"座机(023)6234-5678，银行卡 6222 0212 3456 7890 123，旧身份证{OLD_ID}，住{ADDRESS}。"
           f"{GIVEN}称对方自称警官。")
FRAUD_TYPE = f"冒充公检法·{NAME}139-1234-5678"
NOTE = f"{GIVEN}已醒悟 电话+8613912345678 卡号{CARD} 住幸福路88号3单元502室"

# Each value as it was written somewhere above, and digit runs that must not survive any separator.
SPELLINGS = (NAME, GIVEN, PHONE, "139 1234 5678", "139-1234-5678", "+8613912345678", "138-0013-8000", RELATIVE,
             ID_NUMBER, OLD_ID, "6222 0212 3456 7890 123", CARD, "6234-5678", "幸福路88号", "3单元502室", ADDRESS)
DIGIT_RUNS = (PHONE, RELATIVE, ID_NUMBER, OLD_ID, CARD, LANDLINE)


def leaks(text: str) -> list[str]:
    """The resident's values found in text, in any of the notations written, or as digits with separators."""
    found = [v for v in SPELLINGS if v in text]
    digits = re.sub(r"[\s\-+().（）]", "", text)
    return found + [v for v in DIGIT_RUNS if v in digits and v not in found]


@pytest.fixture
async def bot(aiohttp_client, sim, sim_server, make_settings):
    settings = make_settings(str(sim_server.make_url("")).rstrip("/"), escalation={"sweep_interval": 0.05},
                             bulletin={"enabled": True})
    client = await aiohttp_client(create_app(settings, clock=sim.clock.now))
    sim.config.callback_url = str(client.make_url("/wecom/callback"))
    return client


async def _submit(bot, state: str | None = "dispatched", **overrides) -> int:
    body = instruction(target=dict(TARGET), summary=SUMMARY, fraud_type=FRAUD_TYPE, **overrides)
    resp = await bot.post("/api/v1/instructions", json=body, headers=AUTH)
    assert resp.status == 202, await resp.text()
    number = (await resp.json())["id"]
    if state:
        await wait_state(bot, number, state)
    return number


def _content(message: dict) -> str:
    """Everything a message carries, as text (markdown, text, card fields)."""
    return json.dumps(message["body"], ensure_ascii=False)


async def _group_messages(sim_client) -> list[dict]:
    return [m for m in await sim_messages(sim_client) if m["chatid"] or m["robot_key"]]


async def _group_text(sim_client, marker: str, **filters: str) -> str:
    """Wait for a group message containing marker; its content."""
    messages = await eventually(lambda: sim_messages(sim_client, **filters),
                                lambda ms: any(marker in _content(m) for m in ms), what=f"{marker!r} in {filters}")
    return next(_content(m) for m in messages if marker in _content(m))


def _at(sim, seconds_after: float, start: float) -> None:
    sim.clock.advance(start + seconds_after - sim.clock.now())


async def _card(sim_client, userid: str, number: int) -> dict:
    """The personal card (with the 签收 button) that userid received for the instruction."""
    def cards(messages: list[dict]) -> list[dict]:
        return [m for m in messages if m["body"].get("template_card", {}).get("button_list")
                and m["body"]["template_card"]["main_title"]["title"].endswith(f"#{number}")]

    found = await eventually(lambda: sim_messages(sim_client, user=userid, api="message/send"), cards,
                             what=f"{userid}'s card for #{number}")
    return cards(found)[0]


async def test_personal_data_reaches_no_group_log_or_metric(bot, sim, sim_client, caplog):
    caplog.set_level(logging.INFO)  # the production level; DEBUG is for a developer's own machine

    # A card that cannot be delivered: the center's group hears of it (delivery_failed.md.j2).
    sim.add_fault("message/send", errcode=81013, times=1)
    failed = await _submit(bot, state=None, jurisdiction={"station": "DM"})
    await _group_text(sim_client, f"【推送失败】预警指令 #{failed}", chatid="centercmd")
    # An unknown station: the center assigns it by hand (fallback_notice.md.j2).
    unrouted = await _submit(bot, state=None, jurisdiction={"station": "ZZ"})
    await _group_text(sim_client, f"【需人工指派】预警指令 #{unrouted}", chatid="centercmd")
    # A station whose group is a robot (webhook).
    await _submit(bot, jurisdiction={"station": "LH", "grid": "LH-01"})
    await _group_text(sim_client, "预警劝阻指令", robot="demo-robot-lh-0001")

    # The main one: the ladder climbs to the center, then it is signed late by card, reported and closed.
    number = await _submit(bot)
    start = sim.clock.now() - 0.5
    notice = await _group_text(sim_client, f"预警劝阻指令 #{number}", chatid="dmstation")
    assert "唐某" in notice and "139****5678" in notice.replace("＊", "*")  # masked, not dropped
    card = await _card(sim_client, "liuhong", number)
    assert {NAME, PHONE, ID_NUMBER, CARD} <= set(leaks(_content(card)))  # the assignee's card has what she needs
    for minutes, marker, chat in ((5, "【超时】", None), (8, "【超时督办】", "dmstation"),
                                  (13, "已报所领导", "dmstation"), (20, "【超时上报】", "centercmd")):
        _at(sim, minutes * MINUTE + 1, start)
        if chat:
            await _group_text(sim_client, marker, chatid=chat)
    result = await sim.click_card("liuhong", card["task_id"], f"ack:{number}", card_type="button_interaction")
    assert result["status"] == 200
    await _group_text(sim_client, f"已签收 #{number}", chatid="dmstation")
    await sim.send_text("liuhong", f"反馈 {number} 上门 劝阻成功 挽损10万 {NOTE}")
    await wait_state(bot, number, "resolved")
    reported = await _group_text(sim_client, f"【反馈】#{number}", chatid="dmstation")
    assert "某某已醒悟" in reported  # the note is shown, redacted
    await sim.send_text("wangqiang", f"结案 {number} 劝阻成功 {NAME} {PHONE} 已回访")
    await wait_state(bot, number, "closed")
    await _group_text(sim_client, f"【结案】#{number}", chatid="dmstation")

    # Left unsigned: it is in the next morning's bulletin as overdue, with its fraud type.
    overdue = await _submit(bot)
    sim.clock.advance(day_start(day_number(sim.clock.now()) + 1) + 8.5 * 3600 + 5 - sim.clock.now())
    await services(bot).bulletins.tick()
    bulletin = await _group_text(sim_client, f"#{overdue}</font>", chatid="centercmd")
    assert "【日通报】" in bulletin and "冒充公检法·唐某" in bulletin

    groups = await _group_messages(sim_client)
    assert {m["chatid"] or m["robot_key"] for m in groups} == {"dmstation", "centercmd", "demo-robot-lh-0001"}
    assert len(groups) >= 15
    assert [(m["seq"], leaks(_content(m))) for m in groups if leaks(_content(m))] == []

    logged = [json.dumps({"msg": r.getMessage(), **{k: str(v) for k, v in r.__dict__.items()}}, ensure_ascii=False)
              for r in caplog.records if not r.name.startswith("wecom_sim")]
    assert len(logged) >= 20  # the bot did log its work (deliveries, escalations, the bulletin)
    assert [line[:300] for line in logged if leaks(line)] == []

    metrics = await (await bot.get("/metrics")).text()
    assert "quanzu_messages_sent_total" in metrics and leaks(metrics) == []

    # The API (for the center's platform) still has everything, as stored.
    detail = await instruction_detail(bot, number)
    assert NAME in json.dumps(detail, ensure_ascii=False)


@pytest.mark.parametrize(("userid", "to", "allowed"), [
    ("wangqiang", "zhaolei", False),  # officer → an officer of another station
    ("chenlong", "sunli", False),  # station leader → a grid worker of another station
    ("wangqiang", "zhengjie", False),  # officer → the center's staff: outside the station too
    ("wangqiang", "lina", True),  # within the station
    ("zhengjie", "zhaolei", True),  # the center moves it wherever it must
])
async def test_reassignment_stays_within_the_station_unless_the_center_does_it(bot, sim, sim_client, userid, to,
                                                                               allowed):
    number = await _submit(bot)
    before = len(await sim_messages(sim_client, user=to, api="message/send"))
    result = await sim.send_text(userid, f"转派 {number} {to}")
    reply = result["reply"] or ""
    detail = await instruction_detail(bot, number)
    mine = [e for e in detail["timeline"] if e["actor"] == userid]
    if allowed:
        assert "已将" in reply and mine[-1]["action"] == "reassign"
        card = await eventually(lambda: sim_messages(sim_client, user=to, api="message/send"),
                                lambda ms: len(ms) > before, what=f"a card for {to}")
        assert NAME in _content(card[-1])
    else:
        assert "不能转派" in reply and "联系反诈中心" in reply
        assert [(e["action"], e["detail"].get("reason")) for e in mine] == [("refused", "other_station")]
        assert to not in {a["userid"] for a in detail["assignments"]}
        assert to not in {d["label"] for d in detail["deliveries"]}  # nothing was queued for that person
        assert len(await sim_messages(sim_client, user=to, api="message/send")) == before


def test_every_wecom_template_is_declared_for_a_group_or_for_one_person():
    """A new template must say who reads it: group templates are redacted by the renderer, whatever the caller."""
    templates = {str(path.relative_to(TEMPLATES_DIR))
                 for folder in ("wecom", "awareness") for path in (TEMPLATES_DIR / folder).glob("*.j2")}
    assert templates == GROUP_TEMPLATES | PERSONAL_TEMPLATES
    assert not GROUP_TEMPLATES & PERSONAL_TEMPLATES


# -- the redaction itself, over many notations -------------------------------------------------------------

_WORDS = st.text(alphabet="唐晓燕正在通话对方自称警官转账银行卡号电话是住在社区abcXYZ，。：（）", max_size=12)


def _spell(digits: str, groups: tuple[int, ...], separator: str) -> str:
    parts, at = [], 0
    for size in groups:
        parts.append(digits[at:at + size])
        at += size
    return separator.join(p for p in [*parts, digits[at:]] if p)


_SEPARATORS = st.sampled_from(["", " ", "-", "  ", " - ", "."])


@st.composite
def _numbers(draw) -> tuple[str, str]:
    """(the digits, as someone wrote them) for a mobile, an ID number, a bank card or a landline."""
    kind = draw(st.sampled_from(["mobile", "id", "old_id", "card", "landline"]))
    sep = draw(_SEPARATORS)
    if kind == "mobile":
        digits = "1" + draw(st.sampled_from("3456789")) + draw(st.text("0123456789", min_size=9, max_size=9))
        prefix = draw(st.sampled_from(["", "+86", "+86 ", "0086", "86-", "+86-"]))
        return digits, prefix + _spell(digits, (3, 4), sep)
    if kind == "id":
        digits = draw(st.text("0123456789", min_size=17, max_size=17)) + draw(st.sampled_from("0123456789X"))
        return digits, _spell(digits, (6, 8), draw(st.sampled_from(["", " ", "-"])))
    if kind == "old_id":
        digits = draw(st.text("0123456789", min_size=15, max_size=15))
        return digits, digits
    if kind == "card":
        digits = draw(st.text("0123456789", min_size=16, max_size=19))
        return digits, _spell(digits, (4, 4, 4, 4), sep)
    area = draw(st.sampled_from(["010", "021", "023", "0755", "0591"]))
    local = draw(st.sampled_from("23456789")) + draw(st.text("0123456789", min_size=6, max_size=7))
    bracketed = draw(st.booleans())
    return area + local, (f"({area})" if bracketed else area + sep) + _spell(local, (len(local) - 4,), sep)


@settings(max_examples=600, derandomize=True, deadline=None)
@given(before=_WORDS, number=_numbers(), after=_WORDS)
def test_redact_leaves_no_whole_number_in_any_notation(before, number, after):
    digits, written = number
    shown = redact(before + written + after)
    assert digits not in re.sub(r"[^0-9X]", "", shown.upper()), shown


@settings(max_examples=300, derandomize=True, deadline=None)
@given(before=_WORDS, spaced=st.booleans(), after=_WORDS)
def test_redact_removes_the_residents_own_name_and_address(before, spaced, after):
    target = Target(NAME, PHONE, ID_NUMBER, ADDRESS)
    name = " ".join(NAME) if spaced else NAME
    shown = redact(f"{before}{name}{after}{GIVEN}，住{ADDRESS[4:]}", target)
    assert NAME not in "".join(shown.split()) and "幸福路88号" not in shown and "3单元502室" not in shown


def test_errors_that_quote_a_resident_number_are_logged_masked():
    """A database driver's error names the argument it refused; the log line masks the numbers in it."""
    import logging

    from bot.logs import JsonFormatter, TextFormatter

    try:
        raise ValueError("invalid input for query argument $3: '13812348000' (id 500101195901011234)")
    except ValueError:
        import sys

        record = logging.LogRecord("storage", logging.ERROR, __file__, 1, "intake failed for %s", ("13912345678",),
                                   sys.exc_info())
    for formatter in (JsonFormatter(), TextFormatter()):
        line = formatter.format(record)
        for value in ("13812348000", "500101195901011234", "13912345678"):
            assert value not in line
        assert "138****8000" in line and "139****5678" in line
