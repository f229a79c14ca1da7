"""Hostile-input drill: property-based fuzzing of every endpoint, plus the attacks worth naming one by one.

Hypothesis runs with a fixed profile (derandomized, so CI sees the same cases each run) in a worker
thread; each case is one real HTTP request to the app on the test's event loop. Every case must get an
answer from the documented set — never a 5xx — and text that gets stored must come back literally.
"""

from __future__ import annotations

import asyncio
import json
import re
import string
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from wechatpy.enterprise.crypto import WeChatCrypto

from bot.app import create_app
from bot.render import escape_markdown
from tests.conftest import services
from tests.helpers import AUTH, BASE_INSTRUCTION, instruction, instruction_detail

# Deterministic and bounded: the same cases on every run, no example database, no time limit per case.
FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=False,
                suppress_health_check=list(HealthCheck), phases=(Phase.explicit, Phase.generate, Phase.shrink))
FIGURES: Counter = Counter()  # cases tried per target, printed at the end for the drill table

HOSTILE_TEXT = [
    "'; DROP TABLE instructions; --", "\" OR 1=1 --", "1; DELETE FROM outbox", "%' OR '%'='",
    "{{ 7*7 }}", "{% for x in range(99999999) %}x{% endfor %}", "{{ ''.__class__.__mro__ }}", "{# x", "{%",
    "<@all>", "@all", "<@liuhong>", '<font color="warning">假通知</font>', "[点我](http://evil.example)",
    "**紧急** `x` # 标题", "<script>alert(1)</script>", "]]><xml><x/></xml>", "&amp;&#0;", "%s%n%x",
    "${jndi:ldap://127.0.0.1/a}", "\u202e反转", "\ufeffBOM", "𠮷" * 40, "a\u0000b", "\ud800", "\\", "",
]


def hostile_text() -> st.SearchStrategy[str]:
    return st.sampled_from(HOSTILE_TEXT) | st.text(max_size=80) | st.builds(
        lambda a, b: a + b, st.sampled_from(HOSTILE_TEXT), st.text(max_size=20))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80) | st.floats() | hostile_text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text(), inner, max_size=4),
    max_leaves=5,
)
_numbers = iter(range(10**9))


@st.composite
def instruction_bodies(draw: st.DrawFn) -> Any:
    """Mostly instruction-shaped objects with hostile fields; sometimes any JSON at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    body = json.loads(json.dumps(BASE_INSTRUCTION))
    body["instruction_no"] = f"FUZZ-{next(_numbers)}"
    for key in draw(st.lists(st.sampled_from(["summary", "fraud_type", "warning_type", "risk_level", "issued_at",
                                              "amount_at_risk", "instruction_no", "target", "jurisdiction", "extra"]),
                             max_size=3, unique=True)):
        body[key] = draw(json_values)
    for key in draw(st.lists(st.sampled_from(["name", "phone", "address", "id_number", "age"]), max_size=3,
                             unique=True)):
        body["target"] = {**body["target"], key: draw(hostile_text() | json_values)} \
            if isinstance(body["target"], dict) else body["target"]
    # Free text fields always get something hostile, so that accepted cases check literal storage.
    body["summary"] = draw(hostile_text())
    if isinstance(body["target"], dict) and draw(st.booleans()):
        body["target"]["address"] = draw(hostile_text())
    return body


def _run(loop: asyncio.AbstractEventLoop, coro: Awaitable[Any]) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)


async def _fuzz(name: str, examples: int, strategy: st.SearchStrategy, case: Callable[[Any], Awaitable[None]]):
    """Run `case` on `examples` generated values, each on this event loop, from a hypothesis worker thread."""
    loop = asyncio.get_running_loop()

    @settings(FUZZ, max_examples=examples)
    @given(strategy)
    def check(value: Any) -> None:
        FIGURES[name] += 1
        _run(loop, case(value))

    await asyncio.to_thread(check)
    print(f"hostile drill {name}: {FIGURES[name]} cases, 0 server errors")


@pytest.fixture
async def fuzz_bot(aiohttp_client, sim, make_settings):
    """The bot with WeCom unreachable: fuzzing measures the HTTP edges, and no CPU goes to delivery."""
    settings = make_settings("http://127.0.0.1:9")
    return await aiohttp_client(create_app(settings, clock=sim.clock.now))


def _dump(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=True).encode()  # NaN, Infinity and lone surrogates as Python writes them


async def test_fuzz_intake_json(fuzz_bot):
    async def case(body: Any) -> None:
        resp = await fuzz_bot.post("/api/v1/instructions", data=_dump(body),
                              headers={**AUTH, "Content-Type": "application/json"})
        assert resp.status in (200, 202, 400, 413), (resp.status, await resp.text())
        answer = await resp.json()
        if resp.status == 202:
            detail = await instruction_detail(fuzz_bot, answer["id"])
            assert detail["summary"] == body["summary"].strip()  # stored and shown literally
            assert detail["target"]["address"] == ((body["target"].get("address") or "").strip() or None)

    await _fuzz("intake JSON", 550, instruction_bodies(), case)


async def test_fuzz_intake_raw_bodies_and_batches(fuzz_bot):
    bodies = st.binary(max_size=300) | st.text(max_size=200).map(str.encode) | st.lists(
        instruction_bodies(), min_size=1, max_size=5).map(_dump)

    async def case(raw: bytes) -> None:
        resp = await fuzz_bot.post("/api/v1/instructions", data=raw,
                                   headers={**AUTH, "Content-Type": "application/json"})
        assert resp.status in (200, 202, 400, 413), (resp.status, await resp.text())

    await _fuzz("intake raw bodies and batches", 250, bodies, case)


async def test_fuzz_read_endpoints_paths_and_queries(fuzz_bot):
    segments = st.text(alphabet=string.printable + "中文%", max_size=30)

    async def case(value: tuple[str, str]) -> None:
        segment, query = value
        for path in (f"/api/v1/instructions/{segment}", f"/api/v1/directory?{query}", f"/healthz?{query}"):
            resp = await fuzz_bot.get(path.replace("#", "%23").replace(" ", "%20"), headers=AUTH)
            assert resp.status < 500, (path, resp.status)

    await _fuzz("read endpoints", 300, st.tuples(segments, segments), case)


async def test_fuzz_callback_query_strings_and_bodies(fuzz_bot):
    params = st.dictionaries(st.sampled_from(["msg_signature", "timestamp", "nonce", "echostr"]) | st.text(max_size=8),
                             st.text(max_size=60), max_size=5)
    bodies = st.binary(max_size=400) | st.builds(
        lambda inner: f"<xml><ToUserName>x</ToUserName><Encrypt><![CDATA[{inner}]]></Encrypt></xml>".encode(),
        st.text(max_size=200))

    async def case(value: tuple[dict[str, str], bytes]) -> None:
        query, body = value
        get = await fuzz_bot.get("/wecom/callback", params=query)
        post = await fuzz_bot.post("/wecom/callback", params=query, data=body)
        assert get.status in (200, 400, 403) and post.status in (200, 400, 403, 413), (get.status, post.status)

    await _fuzz("callback queries and bodies", 500, st.tuples(params, bodies), case)


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


@st.composite
def callback_plaintexts(draw: st.DrawFn) -> str:
    """Decrypted callbacks a signed sender could write: commands and card events with hostile fields."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=200))
    user = draw(st.sampled_from(["liuhong", "wangqiang", "zhengjie", "lina"]) | hostile_text())
    kind = draw(st.sampled_from(["text", "event", "image", "voice"]) | st.text(max_size=8))
    fields = {"ToUserName": "wwdemo0000000001", "FromUserName": user, "CreateTime": str(draw(st.integers(0, 2**40))),
              "MsgType": kind, "MsgId": str(draw(st.integers(0, 2**63)))}
    if kind == "text":
        verb = draw(st.sampled_from(["签收", "反馈", "查询", "转派", "结案", "我的任务", "帮助", ""]))
        fields["Content"] = f"{verb} {draw(st.integers(-5, 10**15) | st.just(1))} {draw(hostile_text())}"
    else:
        fields["Event"] = draw(st.sampled_from(["template_card_event", "template_card_menu_event", "click"]))
        fields["EventKey"] = draw(st.sampled_from(["ack:1", "report:1", "ack:99999999999"]) | hostile_text())
        fields["TaskId"] = draw(hostile_text())
        fields["CardType"] = draw(st.sampled_from(["button_interaction", "multiple_interaction"]) | hostile_text())
        fields["ResponseCode"] = draw(hostile_text())
    xml = "".join(f"<{k}>{_cdata(v)}</{k}>" for k, v in fields.items())
    if draw(st.booleans()):
        q, o = draw(hostile_text()), draw(hostile_text())
        xml += (f"<SelectedItems><SelectedItem><QuestionKey>{_cdata(q)}</QuestionKey><OptionIds><OptionId>"
                f"{_cdata(o)}</OptionId></OptionIds></SelectedItem></SelectedItems>")
    return f"<xml>{xml}</xml>"


def _signed(sim, plaintext: str, nonce: str = "fuzz", timestamp: int = 1700000000) -> tuple[dict[str, str], str]:
    crypto = WeChatCrypto(sim.config.token, sim.config.encoding_aes_key, sim.config.corp_id)
    envelope = crypto.encrypt_message(plaintext, nonce, timestamp)
    encrypt = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]>", envelope).group(1)
    signature = re.search(r"<MsgSignature><!\[CDATA\[(.*?)\]\]>", envelope).group(1)
    params = {"msg_signature": signature, "timestamp": str(timestamp), "nonce": nonce}
    return params, f"<xml><ToUserName>x</ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"


async def test_fuzz_signed_callbacks_with_hostile_content(fuzz_bot, sim):
    resp = await fuzz_bot.post("/api/v1/instructions", json=instruction(), headers=AUTH)
    assert resp.status == 202

    async def case(plaintext: str) -> None:
        try:
            params, body = _signed(sim, plaintext)
        except UnicodeEncodeError:  # a lone surrogate cannot even be encrypted by a sender
            return
        resp = await fuzz_bot.post("/wecom/callback", params=params, data=body)
        assert resp.status in (200, 400), (resp.status, await resp.text())

    await _fuzz("signed callbacks", 400, callback_plaintexts(), case)
    # Hostile commands changed nothing they were not allowed to, and the tables are all still there.
    assert (await instruction_detail(fuzz_bot, 1))["instruction_no"]
    assert await services(fuzz_bot).storage.outbox_counts()


# -- named attacks ---------------------------------------------------------------------------------


async def test_entity_expansion_and_external_entities_are_refused_even_inside_a_signed_body(bot, sim):
    attacks = [
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><xml><FromUserName>&c;</FromUserName></xml>',
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        "<xml><FromUserName>liuhong</FromUserName><MsgType>text</MsgType><Content>&e;</Content></xml>",
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]><xml/>',
    ]
    for attack in attacks:
        params, body = _signed(sim, attack)
        resp = await bot.post("/wecom/callback", params=params, data=body)  # signature fine, content hostile
        assert resp.status == 400, attack
        outer = await bot.post("/wecom/callback", params=params, data=attack)  # in the envelope itself
        assert outer.status == 400


async def test_oversize_bodies_are_refused_early_also_when_chunked(bot):
    limit = services(bot).settings.api.max_body_bytes

    async def chunks(total: int):
        for _ in range(total // 65536 + 1):
            yield b" " * 65536

    resp = await bot.post("/api/v1/instructions", data=chunks(limit + 1), headers={**AUTH,
                          "Content-Type": "application/json"})
    assert resp.status == 413
    resp = await bot.post("/wecom/callback", params={"msg_signature": "x", "timestamp": "1", "nonce": "n"},
                          data=chunks(128 * 1024))
    assert resp.status == 413
    declared = await bot.post("/api/v1/instructions", data=b"{}", headers={**AUTH, "Content-Length": str(limit + 1)},
                              skip_auto_headers=())
    assert declared.status in (400, 413)


async def test_replayed_callback_is_acted_on_once(bot, sim, sim_client):
    resp = await bot.post("/api/v1/instructions", json=instruction(), headers=AUTH)
    number = (await resp.json())["id"]
    plaintext = (f"<xml><ToUserName>{_cdata(sim.config.corp_id)}</ToUserName><FromUserName>{_cdata('liuhong')}"
                 f"</FromUserName><CreateTime>1700000000</CreateTime><MsgType>{_cdata('text')}</MsgType>"
                 f"<Content>{_cdata(f'签收 {number}')}</Content><MsgId>77001</MsgId></xml>")
    params, body = _signed(sim, plaintext)
    for _ in range(3):  # an attacker (or WeCom) sending the same signed request again
        assert (await bot.post("/wecom/callback", params=params, data=body)).status == 200
    params, body = _signed(sim, plaintext, nonce="other")  # re-signed with a fresh nonce: same MsgId
    assert (await bot.post("/wecom/callback", params=params, data=body)).status == 200
    acks = [e for e in (await instruction_detail(bot, number))["timeline"] if e["action"] == "ack"]
    assert len(acks) == 1


async def test_sql_and_template_syntax_in_every_text_field_are_stored_and_shown_literally(bot, sim_client):
    evil = "x'); DROP TABLE instructions; -- {{ 7*7 }} {% raw %}<@all>"
    body = instruction(summary=evil, fraud_type="{{ config }}'--", target={
        "name": "{{ x }}'; --", "phone": "13812348000", "address": evil, "age": 50})
    resp = await bot.post("/api/v1/instructions", json=body, headers=AUTH)
    assert resp.status == 202
    number = (await resp.json())["id"]
    detail = await instruction_detail(bot, number)
    assert detail["summary"] == evil and detail["fraud_type"] == "{{ config }}'--"
    assert detail["target"]["name"] == "{{ x }}'; --" and detail["target"]["address"] == evil
    from tests.helpers import wait_for_messages

    (notice,) = await wait_for_messages(sim_client, 1, chatid="dmstation")
    content = notice["body"]["markdown"]["content"]
    assert escape_markdown("{{ config }}'--") in content and "<@all>" not in content and "49" not in content
    cards = await wait_for_messages(sim_client, 2, api="message/send")
    card = cards[0]["body"]["template_card"]
    assert card["quote_area"]["quote_text"] == evil  # the assignee's card shows it as written, as text
    values = {c["keyname"]: c["value"] for c in card["horizontal_content_list"]}
    assert values["劝阻对象"].startswith("{{ x }}'; --") and values["地址"].startswith(evil[:50])


async def test_json_that_cannot_be_stored_is_refused_not_a_server_error(bot):
    # Found by the fuzzing: a lone surrogate ("\ud800" is valid JSON) made the database write fail: a 500.
    for raw in (b'{"summary": "\\ud800"}', b'{"instruction_no": "X-1", "extra": {"\\udfff": 1}}',
                b'{"amount_at_risk": NaN}', b'{"amount_at_risk": Infinity}'):
        resp = await bot.post("/api/v1/instructions", data=raw, headers={**AUTH, "Content-Type": "application/json"})
        assert resp.status == 400, raw
    body = instruction(summary="\ud800 x")
    resp = await bot.post("/api/v1/instructions", data=json.dumps(body).encode(),
                          headers={**AUTH, "Content-Type": "application/json"})
    assert resp.status == 400
