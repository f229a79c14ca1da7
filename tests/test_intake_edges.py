"""Edges of the center's API found by trying to break it: every one is a 4xx, never a 5xx, and one bad
item of a batch never stops the valid ones from being stored."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

import pytest

from tests.conftest import services
from tests.helpers import AUTH, instruction, instruction_detail

JSON = {**AUTH, "Content-Type": "application/json"}


async def _post(bot, payload: object):
    return await bot.post("/api/v1/instructions", data=json.dumps(payload).encode(), headers=JSON)


def _field_errors(answer: dict) -> set[str]:
    return {e["field"] for e in answer["errors"]}


# -- whole bodies ----------------------------------------------------------------------------------


async def test_json_nested_thousands_deep_is_refused(bot):
    for depth in (3000, 50000):
        for raw in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
            resp = await bot.post("/api/v1/instructions", data=raw, headers=JSON)
            assert resp.status == 400, (depth, raw[:10])
            assert "JSON" in (await resp.json())["error"]
    deep_extra = b'{"extra":' + b"[" * 5000 + b"]" * 5000 + b"}"
    resp = await bot.post("/api/v1/instructions", data=deep_extra, headers=JSON)
    assert resp.status == 400


async def test_numbers_too_large_for_a_float_are_field_errors(bot):
    for amount in (10**400, 10**20, -1, True, "100"):
        resp = await _post(bot, instruction(amount_at_risk=amount))
        assert resp.status == 400, amount
        assert _field_errors(await resp.json()) == {"amount_at_risk"}
    for raw_number in (b"1e309", b"-1e309", b"1" + b"0" * 5000):
        body = json.dumps(instruction()).encode().replace(b'"amount_at_risk": 100000', b'"amount_at_risk": '
                                                          + raw_number)
        resp = await bot.post("/api/v1/instructions", data=body, headers=JSON)
        assert resp.status == 400, raw_number[:10]
    resp = await _post(bot, instruction(target={"name": "唐小明", "phone": "13812348000", "age": 10**400}))
    assert resp.status == 400 and _field_errors(await resp.json()) == {"target.age"}
    resp = await _post(bot, instruction(amount_at_risk=123456789.5))  # large but real: stored as given
    assert resp.status == 202
    assert (await instruction_detail(bot, (await resp.json())["id"]))["amount_at_risk"] == 123456789.5


async def test_issued_at_outside_a_sane_range_is_a_field_error_in_chinese(bot):
    for issued_at in ("0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00", "9999-12-31T23:59:59-12:00",
                      "9999-12-31T23:59:59", "1999-12-31T23:59:59+08:00", "2100-01-01T00:00:00+08:00",
                      "2026-11-22T14:03:05+23:59", "2026-11-22T25:00:00",
                      "\u0660\u0660\u0660\u0661-01-01", "2026-11-22T14:03:05+08:00\x00"):
        resp = await _post(bot, instruction(issued_at=issued_at))
        assert resp.status == 400, issued_at
        (error,) = (await resp.json())["errors"]
        assert error["field"] == "issued_at" and any("\u4e00" <= ch <= "\u9fff" for ch in error["message"])
    now = services(bot).clock()
    just_now = datetime.fromtimestamp(now + 3600, UTC).isoformat()  # clocks differ a little: fine
    assert (await _post(bot, instruction(issued_at=just_now))).status == 202
    tomorrow = datetime.fromtimestamp(now + 2 * 86400, UTC).isoformat()
    assert (await _post(bot, instruction(issued_at=tomorrow))).status == 400


async def test_wrong_json_types_nul_bytes_and_lone_surrogates_in_every_field(bot):
    fields = ["instruction_no", "issued_at", "warning_type", "fraud_type", "risk_level", "summary",
              "amount_at_risk", "target", "jurisdiction"]
    target_fields = ["name", "phone", "id_number", "address", "age"]
    hostile = [None, True, 0, -1, 2**64, 1.5, [], {}, [1, "a"], {"a": None}, "", " ", "a\x00b", "\x00",
               "\ud800", "x\udfffy", "\u202e", "a" * 5000]
    for value in hostile:
        for field in fields:
            resp = await _post(bot, instruction(**{field: value}))
            assert resp.status in (202, 400), (field, value, resp.status)
        for field in target_fields:
            body = instruction()
            body["target"][field] = value
            resp = await _post(bot, body)
            assert resp.status in (202, 400), (field, value, resp.status)
        for field in ("station", "grid"):
            body = instruction()
            body["jurisdiction"][field] = value
            resp = await _post(bot, body)
            assert resp.status in (202, 400), (field, value, resp.status)


# -- batches ---------------------------------------------------------------------------------------


async def test_a_batch_of_valid_and_hostile_items_stores_every_valid_one(bot):
    hostile = [
        instruction(issued_at="0001-01-01T00:00:00+14:00"),
        instruction(issued_at="9999-12-31T23:59:59-12:00"),
        instruction(amount_at_risk=10**400),
        instruction(summary="a\x00b"),
        instruction(target={"name": "唐小明", "phone": "13812348000", "age": 2**70}),
        instruction(jurisdiction={"station": "DM", "grid": ["DM-01"]}),
        instruction(risk_level={"high": True}),
        "not an object", 17, None, [instruction()],
    ]
    valid = [instruction() for _ in range(4)]
    batch = [valid[0], *hostile[:5], valid[1], *hostile[5:], valid[2], valid[3]]
    resp = await _post(bot, batch)
    assert resp.status == 200
    answer = await resp.json()
    assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (4, 0, len(hostile))
    codes = {r["index"]: r["code"] for r in answer["results"]}
    assert [codes[batch.index(v)] for v in valid] == [202] * 4
    for result in answer["results"]:
        if result["code"] == 202:
            detail = await instruction_detail(bot, result["id"])
            assert detail["instruction_no"] == result["instruction_no"]
        else:
            assert result["code"] == 400 and result["errors"], result
    again = await _post(bot, batch)  # the center retries the whole batch: the valid ones are duplicates
    assert (await again.json())["duplicates"] == 4


@pytest.mark.sqlite_only
async def test_an_item_the_database_refuses_fails_alone_and_the_rest_of_its_batch_is_stored(bot, database):
    """Whatever validation misses: a database that refuses one row (a trigger standing in for a fault)."""
    with sqlite3.connect(database["path"]) as db:
        db.execute("CREATE TRIGGER refuse_one BEFORE INSERT ON instructions WHEN NEW.instruction_no = 'YJ-REFUSED'"
                   " BEGIN SELECT RAISE(ABORT, 'refused for the test'); END")
    batch = [instruction(), instruction(instruction_no="YJ-REFUSED"), instruction(), instruction(risk_level="x")]
    resp = await _post(bot, batch)
    assert resp.status == 200
    answer = await resp.json()
    assert [r["code"] for r in answer["results"]] == [202, 503, 202, 400]
    assert (answer["accepted"], answer["failed"], answer["rejected"]) == (2, 1, 1)
    assert answer["results"][1]["instruction_no"] == "YJ-REFUSED" and "请稍后重试" in answer["results"][1]["error"]
    for result in (answer["results"][0], answer["results"][2]):
        assert (await instruction_detail(bot, result["id"]))["instruction_no"] == result["instruction_no"]
    alone = await _post(bot, batch[1])
    assert alone.status == 503 and alone.headers["Retry-After"]


# -- paths, queries, headers -----------------------------------------------------------------------


async def test_ids_out_of_range_or_not_ascii_digits_are_404(bot):
    for segment in ("9223372036854775808", "99999999999999999999999", "-1", "-9223372036854775809", "0",
                    "%D9%A3", "1e3", "%00", "1%00", "%ED%A0%80", "+1", " 1"):
        resp = await bot.get(f"/api/v1/instructions/{segment}", headers=AUTH)
        assert resp.status == 404, (segment, resp.status)
    for segment in ("9223372036854775808", "%C2%B2", "-1", "%00"):
        resp = await bot.get(f"/api/v1/campaigns/x/runs/{segment}", headers=AUTH)
        assert resp.status == 404, (segment, resp.status)
    for name in ("%00", "a%00b", "%ED%A0%80", "x" * 300, "%E4%B8%AD"):
        for method, suffix in (("GET", ""), ("GET", "/preview"), ("POST", "/run"), ("POST", "/disable"),
                               ("POST", "/enable"), ("GET", "/runs/1")):
            resp = await bot.request(method, f"/api/v1/campaigns/{name}{suffix}", headers=AUTH)
            assert resp.status == 404, (name, suffix, resp.status)


async def test_tokens_with_bytes_that_are_not_utf8_are_401(bot):
    for header in (b"Bearer \xff\xfe", b"Bearer \xe4\xb8\xad", b"\xff", b"Bearer test-intake-token\x80"):
        resp = await bot.get("/api/v1/directory", headers={"Authorization": header.decode("latin-1")})
        assert resp.status == 401, header


# -- campaigns -------------------------------------------------------------------------------------


async def test_hostile_campaign_bodies_are_400(bot):
    bodies = [
        b"[" * 5000 + b"]" * 5000,
        b'{"name": "\\ud800"}',
        json.dumps({"name": "c1", "title": "a\x00b", "schedule": ""}).encode(),
        json.dumps({"name": "c1", "title": "t", "trend_days": 10**30}).encode(),
        json.dumps({"name": "c1", "title": "t", "trend_days": 10**6}).encode(),
        json.dumps({"name": "c1", "title": "t" * 10000}).encode(),
        json.dumps({"name": "c1", "title": "t", "schedule": "99 99 99 99 99"}).encode(),
        json.dumps({"name": "c1", "title": "t", "schedule": "* * * * * * * *"}).encode(),
        json.dumps({"name": "c1", "title": "t", "fraud_types": ["\x00"]}).encode(),
        json.dumps({"name": "c1", "title": "t", "audience": {"stations": ["a" * 1000]}}).encode(),
        json.dumps({"name": "c1", "quiet_hours": "99:99-00:00"}).encode(),
        b"\xff\xfe{",
    ]
    for raw in bodies:
        resp = await bot.post("/api/v1/campaigns", data=raw, headers=JSON)
        assert resp.status == 400, (raw[:60], resp.status, await resp.text())
        assert any("\u4e00" <= ch <= "\u9fff" for ch in (await resp.json())["error"])


# -- rosters ---------------------------------------------------------------------------------------

ROSTER_HEADER = "日期,派出所,班次,开始,结束,值班民警,带班领导\n"


async def test_roster_bodies_in_odd_encodings_and_shapes_are_400(bot):
    bodies = [
        ROSTER_HEADER.encode("utf-16"),
        ROSTER_HEADER.encode("utf-32"),
        (ROSTER_HEADER + "2026-11-27,DM,白班,08:00,20:00,王强,陈龙\n").encode("utf-16-le"),
        b"\x00" * 100,
        (ROSTER_HEADER + "2026-11-27,DM,白\x00班,08:00,20:00,王强,陈龙\n").encode(),
        (ROSTER_HEADER + "2026-11-27,DM,白班,08:00,20:00,王强,陈龙\r\"x\ry\"\n").encode(),
        (ROSTER_HEADER + "9999-12-31,DM,夜班,20:00,08:00,王强,陈龙\n").encode(),
        (ROSTER_HEADER + "0001-01-01,DM,夜班,20:00,08:00,王强,陈龙\n").encode(),
        (ROSTER_HEADER + "\u0662\u0660\u0662\u0666-11-27,DM,白班,08:00,20:00,王强,陈龙\n").encode(),
        (ROSTER_HEADER + "2026-11-27,DM," + "班" * 200 + ",08:00,20:00,王强,陈龙\n").encode(),
        (ROSTER_HEADER + '2026-11-27,DM,"' + "x" * 200_000 + '",08:00,20:00,王强,陈龙\n').encode(),
        ('"' + "x" * 200_000).encode(),
        b"\xed\xa0\x80,\xff\xfe",
    ]
    for raw in bodies:
        resp = await bot.post("/api/v1/rosters", data=raw, headers={**AUTH, "Content-Type": "text/csv"})
        assert resp.status == 400, (raw[:60], resp.status, await resp.text())
        answer = await resp.json()
        assert answer["errors"] and all(isinstance(e, str) for e in answer["errors"])


async def test_a_wrong_method_is_a_405_in_chinese_that_names_the_allowed_ones(bot):
    resp = await bot.delete("/api/v1/instructions", headers=AUTH)
    assert resp.status == 405
    assert set(resp.headers["Allow"].split(",")) >= {"POST"}
    assert (await resp.json())["error"] == "不支持该请求方法"
