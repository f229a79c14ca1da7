"""Pure rules of the feedback loop: amounts, report parsing, the state machine, callback parsing."""

from __future__ import annotations

import pytest

from bot.commands import CommandError, parse_report
from bot.wecom.callbacks import CallbackRejected, CardEvent, OtherCallback, TextMessage, parse_callback
from domain.amounts import AmountError, parse_amount
from domain.lifecycle import Part, TransitionRefused, transition
from domain.policy import DEFAULT_POLICIES


@pytest.mark.parametrize(
    ("text", "yuan"),
    [
        ("10万", 100_000), ("3.5万元", 35_000), ("100000", 100_000), ("十万", 100_000), ("一万五", 15_000),
        ("两千", 2_000), ("三千二百", 3_200), ("一百零五", 105), ("十二万", 120_000), ("1.2亿", 120_000_000),
        ("挽损10万", 100_000), ("被骗3万元", 30_000), ("8,000元", 8_000), ("1万5", 15_000), ("五万三千", 53_000),
        ("止付 20000", 20_000),
    ],
)
def test_amounts_as_people_type_them(text, yuan):
    assert parse_amount(text) == yuan


@pytest.mark.parametrize("text", ["很多", "", "十来万", "abc", "挽损"])
def test_not_an_amount(text):
    with pytest.raises(AmountError, match="无法识别金额"):
        parse_amount(text)


def test_report_words_in_any_order():
    report = parse_report(["挽损10万", "老人", "已醒悟", "劝阻成功", "见面劝阻"])
    assert (report.method, report.outcome, report.loss_avoided, report.note) == ("见面", "劝阻成功", 100_000,
                                                                                 "老人 已醒悟")
    lost = parse_report(["电话", "已被骗", "被骗3.5万元"])
    assert (lost.outcome, lost.amount_lost, lost.loss_avoided) == ("已被骗", 35_000, None)
    assert parse_report(["联系不上"]).outcome == "无法联系"
    with pytest.raises(CommandError, match="请写明劝阻结果"):
        parse_report(["见面", "挽损10万"])


@pytest.mark.parametrize(
    ("action", "state", "outcome", "to_state"),
    [
        ("ack", "received", None, "acknowledged"),
        ("ack", "dispatched", None, "acknowledged"),
        ("report", "dispatched", "劝阻成功", "resolved"),
        ("report", "acknowledged", "误报", "resolved"),
        # The default policies send someone to the door after a failed call (the whole table:
        # tests/test_lifecycle_table.py); with nobody to send, the phone stage goes on (below).
        ("report", "acknowledged", "无法联系", "visit_required"),
        ("report", "contacting", "已被骗", "resolved"),
        ("close", "resolved", None, "closed"),
        ("reassign", "acknowledged", None, "acknowledged"),
    ],
)
def test_allowed_transitions(action, state, outcome, to_state):
    assert transition(action, 7, state, DEFAULT_POLICIES["medium"], None, outcome).to_state == to_state


def test_a_failed_call_with_nobody_to_send_keeps_the_phone_stage():
    nobody = Part(assigned=True, signed=True, visitors_available=False)
    assert transition("report", 7, "acknowledged", DEFAULT_POLICIES["medium"], nobody, "无法联系").to_state == \
        "contacting"


@pytest.mark.parametrize(
    ("action", "state", "message"),
    [
        ("ack", "acknowledged", "已签收"),
        ("ack", "closed", "已签收"),
        ("report", "resolved", "不能反馈"),
        ("report", "closed", "不能反馈"),
        ("close", "dispatched", "尚未反馈劝阻结果，不能结案"),
        ("close", "acknowledged", "尚未反馈劝阻结果，不能结案"),
        ("close", "closed", "不能结案"),
        ("reassign", "resolved", "不能转派"),
    ],
)
def test_refused_transitions_say_what_is_possible(action, state, message):
    with pytest.raises(TransitionRefused, match=message) as refused:
        transition(action, 7, state, DEFAULT_POLICIES["medium"])
    assert "#7" in str(refused.value)


def test_parse_card_event_with_selections():
    event = parse_callback(
        "<xml><ToUserName><![CDATA[ww1]]></ToUserName><FromUserName><![CDATA[liuhong]]></FromUserName>"
        "<CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[template_card_event]]></Event><EventKey><![CDATA[report:12]]></EventKey>"
        "<TaskId><![CDATA[qz-12-liuhong-fb]]></TaskId><CardType><![CDATA[multiple_interaction]]></CardType>"
        "<ResponseCode><![CDATA[RC1]]></ResponseCode><AgentID>1000002</AgentID><SelectedItems>"
        "<SelectedItem><QuestionKey><![CDATA[method]]></QuestionKey><OptionIds><OptionId><![CDATA[home]]></OptionId>"
        "</OptionIds></SelectedItem><SelectedItem><QuestionKey><![CDATA[tags]]></QuestionKey><OptionIds>"
        "<OptionId>a</OptionId><OptionId>b</OptionId></OptionIds></SelectedItem></SelectedItems></xml>"
    )
    assert isinstance(event, CardEvent)
    assert (event.event_key, event.task_id, event.card_type, event.response_code) == (
        "report:12", "qz-12-liuhong-fb", "multiple_interaction", "RC1")
    assert event.selected == {"method": ["home"], "tags": ["a", "b"]}
    assert event.dedupe_key == "card:liuhong:1700000000:qz-12-liuhong-fb:report:12"


def test_parse_text_and_other_callbacks():
    text = parse_callback("<xml><FromUserName>u</FromUserName><CreateTime>5</CreateTime><MsgType>text</MsgType>"
                          "<Content>签收 1</Content><MsgId>123456789012345678</MsgId></xml>")
    assert isinstance(text, TextMessage) and text.dedupe_key == "msg:123456789012345678"
    other = parse_callback("<xml><FromUserName>u</FromUserName><CreateTime>5</CreateTime><MsgType>event</MsgType>"
                           "<Event>enter_agent</Event></xml>")
    # Without a MsgId the key is the callback's own content: another event of the same second differs.
    assert isinstance(other, OtherCallback) and other.dedupe_key.startswith("sha256:")
    again = parse_callback("<xml><FromUserName>u</FromUserName><CreateTime>5</CreateTime><MsgType>event</MsgType>"
                           "<Event>enter_agent</Event><AgentID>2</AgentID></xml>")
    assert again.dedupe_key != other.dedupe_key


@pytest.mark.parametrize(
    "xml",
    ["<xml><CreateTime>1</CreateTime></xml>", "<xml><FromUserName>u</FromUserName><CreateTime>x</CreateTime></xml>",
     "not xml", '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml>&e;</xml>'],
)
def test_malformed_callbacks_are_rejected(xml):
    with pytest.raises(CallbackRejected) as rejected:
        parse_callback(xml)
    assert rejected.value.status == 400
