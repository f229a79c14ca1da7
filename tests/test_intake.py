"""The center's intake over real HTTP: accept, idempotency, validation, auth, size limits, batches."""

from __future__ import annotations

import json

from tests.helpers import AUTH, instruction, sim_messages, wait_for_messages, wait_state


async def test_instruction_is_pushed_to_station_group_grid_worker_and_duty_officer(bot, sim_client):
    body = instruction()
    resp = await bot.post("/api/v1/instructions", json=body, headers=AUTH)
    assert resp.status == 202
    accepted = await resp.json()
    assert accepted["status"] == "received"
    number = accepted["id"]
    assert isinstance(number, int)

    group = await wait_for_messages(sim_client, 1, chatid="dmstation")
    notice = group[0]["body"]["markdown"]["content"]
    assert f"#{number}" in notice
    assert "唐某" in notice and "138****8000" in notice
    assert "唐小明" not in notice and "13812348000" not in notice and "500101195901011234" not in notice
    assert "东门社区第一网格" in notice and "刘红" in notice and "王强" in notice

    for userid in ("liuhong", "wangqiang"):
        (card_msg,) = await wait_for_messages(sim_client, 1, user=userid, api="message/send")
        card = card_msg["body"]["template_card"]
        assert card["card_type"] == "button_interaction"
        assert card["button_list"] == [{"text": "签收", "style": 1, "key": f"ack:{number}"}]
        values = {item["keyname"]: item["value"] for item in card["horizontal_content_list"]}
        assert values["劝阻对象"].startswith("唐小明")  # the assignee needs the real name to act
        assert values["联系电话"] == "13812348000"
        assert card_msg["body"]["enable_duplicate_check"] == 1

    detail = await wait_state(bot, number, "dispatched")
    actions = [e["action"] for e in detail["timeline"]]
    assert actions[0] == "received" and actions[-1] == "dispatched"
    assert actions.count("delivered") == 3
    assert {d["label"]: d["state"] for d in detail["deliveries"]} == {
        "dm-station": "sent", "liuhong": "sent", "wangqiang": "sent",
    }
    assert detail["target"]["name"] == "唐小明"
    assert detail["issued_at"].startswith("2026-11-22T14:03:05")


async def test_same_instruction_no_is_accepted_once_and_pushed_once(bot, sim_client):
    body = instruction()
    first = await bot.post("/api/v1/instructions", json=body, headers=AUTH)
    assert first.status == 202
    first_id = (await first.json())["id"]
    await wait_for_messages(sim_client, 3)

    again = await bot.post("/api/v1/instructions", json={**body, "summary": "重发"}, headers=AUTH)
    assert again.status == 200
    repeated = await again.json()
    assert repeated["id"] == first_id and repeated["duplicate"] is True

    await wait_state(bot, first_id, "dispatched")
    assert len(await sim_messages(sim_client)) == 3


async def test_invalid_instruction_lists_every_field_error_in_chinese(bot, sim_client):
    body = instruction(risk_level="urgent", issued_at="yesterday", amount_at_risk=-5)
    del body["fraud_type"]
    body["target"] = {"name": "", "phone": "call me", "age": 200}
    body["jurisdiction"] = {"grid": "DM-01"}
    resp = await bot.post("/api/v1/instructions", json=body, headers=AUTH)
    assert resp.status == 400
    payload = await resp.json()
    fields = {e["field"] for e in payload["errors"]}
    assert fields == {"risk_level", "issued_at", "amount_at_risk", "fraud_type", "target.name", "target.phone",
                      "target.age", "jurisdiction.station"}
    assert all(e["message"] for e in payload["errors"])
    assert payload["error"] == "指令内容有误"
    assert await sim_messages(sim_client) == []


async def test_unknown_fields_are_kept_not_refused(bot):
    body = instruction(platform_extra={"source": "v2"})
    resp = await bot.post("/api/v1/instructions", json=body, headers=AUTH)
    assert resp.status == 202


async def test_body_that_is_not_json_or_not_an_object_is_refused(bot):
    resp = await bot.post("/api/v1/instructions", data=b"{not json", headers=AUTH)
    assert resp.status == 400
    assert "JSON" in (await resp.json())["error"]
    resp = await bot.post("/api/v1/instructions", json="a string", headers=AUTH)
    assert resp.status == 400
    assert (await resp.json())["errors"][0]["message"] == "指令必须是 JSON 对象"


async def test_intake_requires_a_configured_token_and_accepts_any_of_them(bot):
    body = instruction()
    assert (await bot.post("/api/v1/instructions", json=body)).status == 401
    wrong = await bot.post("/api/v1/instructions", json=body, headers={"Authorization": "Bearer nope-nope"})
    assert wrong.status == 401
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
    basic = await bot.post("/api/v1/instructions", json=body, headers={"Authorization": f"Basic {AUTH}"})
    assert basic.status == 401
    rotated = await bot.post("/api/v1/instructions", json=body,
                             headers={"Authorization": "Bearer second-token-for-rotation"})
    assert rotated.status == 202
    assert (await bot.get("/api/v1/instructions/1")).status == 401
    assert (await bot.get("/api/v1/directory")).status == 401


async def test_oversize_body_is_refused_before_it_is_read(aiohttp_client, sim_server, sim, make_settings):
    from bot.app import create_app

    settings = make_settings(str(sim_server.make_url("")).rstrip("/"), api={"max_body_bytes": 4096})
    client = await aiohttp_client(create_app(settings, clock=sim.clock.now))
    big = instruction(summary="长" * 3000)
    resp = await client.post("/api/v1/instructions", data=json.dumps(big), headers=AUTH)
    assert resp.status == 413
    assert "请求体过大" in (await resp.json())["error"]
    assert (await client.post("/api/v1/instructions", json=instruction(), headers=AUTH)).status == 202


async def test_batch_answers_per_item_and_stores_the_valid_ones(bot, sim_client):
    known = instruction()
    first = await bot.post("/api/v1/instructions", json=known, headers=AUTH)
    assert first.status == 202
    batch = [instruction(), instruction(risk_level="?"), known, instruction(jurisdiction={"station": "LH"})]
    resp = await bot.post("/api/v1/instructions", json=batch, headers=AUTH)
    assert resp.status == 200
    payload = await resp.json()
    assert (payload["accepted"], payload["duplicates"], payload["rejected"]) == (2, 1, 1)
    assert [r["code"] for r in payload["results"]] == [202, 400, 200, 202]
    assert payload["results"][1]["errors"][0]["field"] == "risk_level"
    assert payload["results"][2]["id"] == (await first.json())["id"]
    for result in (payload["results"][0], payload["results"][3]):
        assert (await bot.get(f"/api/v1/instructions/{result['id']}", headers=AUTH)).status == 200


async def test_batch_limits(bot):
    assert (await bot.post("/api/v1/instructions", json=[], headers=AUTH)).status == 400
    too_many = [instruction() for _ in range(101)]
    resp = await bot.post("/api/v1/instructions", json=too_many, headers=AUTH)
    assert resp.status == 413
    assert "最多" in (await resp.json())["error"]


async def test_unknown_instruction_is_404(bot):
    assert (await bot.get("/api/v1/instructions/999", headers=AUTH)).status == 404
    assert (await bot.get("/api/v1/instructions/abc", headers=AUTH)).status == 404


async def test_directory_lists_the_codes_the_intake_accepts(bot):
    resp = await bot.get("/api/v1/directory", headers=AUTH)
    assert resp.status == 200
    payload = await resp.json()
    stations = {s["code"]: s for s in payload["stations"]}
    assert set(stations) == {"DM", "LH"}
    assert [g["code"] for g in stations["DM"]["grids"]] == ["DM-01", "DM-02"]
    assert stations["LH"]["name"] == "龙湖派出所"


async def test_health_and_metrics(bot, sim_client):
    health = await bot.get("/healthz")
    assert health.status == 200 and (await health.json())["status"] == "ok"
    resp = await bot.post("/api/v1/instructions", json=instruction(risk_level="medium"), headers=AUTH)
    assert resp.status == 202
    await wait_state(bot, (await resp.json())["id"], "dispatched")
    resp = await bot.get("/metrics")
    text = await resp.text()
    assert 'quanzu_instructions_received_total{risk_level="medium"} 1.0' in text
    assert "quanzu_delivery_latency_seconds_count" in text
    assert "唐" not in text


async def test_concurrent_submissions_are_all_stored_and_pushed(bot, sim_client):
    import asyncio

    bodies = [instruction() for _ in range(25)]  # within WeCom's 30 cards per member per minute
    bodies.append(bodies[0])  # the platform retrying one of them at the same moment
    responses = await asyncio.gather(*(bot.post("/api/v1/instructions", json=b, headers=AUTH) for b in bodies))
    payloads = [await r.json() for r in responses]
    assert sorted(r.status for r in responses) == [200] + [202] * 25
    ids = {p["id"] for p in payloads}
    assert len(ids) == 25
    await wait_for_messages(sim_client, 50, api="message/send")
    for number in ids:
        await wait_state(bot, number, "dispatched")
