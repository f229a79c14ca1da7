"""A credential or permission error never fails messages for good: the sender pauses what it affects, keeps
the messages due, says so in /healthz (and to the center's group when that still works), and sends
everything, once, when the setting is fixed. `bot.py outbox retry` re-queues what failed before, audited.
"""

from __future__ import annotations

from collections import Counter

from bot.app import create_app
from tests.awareness_helpers import run_now, wait_run
from tests.conftest import services
from tests.helpers import (
    eventually,
    instruction_detail,
    markdown_text,
    run_cli,
    sim_messages,
    submit,
    wait_for_messages,
    wait_state,
)

NEW_SECRET = "secret-reset-in-the-console"


_submit = submit


async def _health(bot) -> dict:
    resp = await bot.get("/healthz")
    assert resp.status == 200
    return await resp.json()


def _url(server) -> str:
    return str(server.make_url("")).rstrip("/")


async def test_a_secret_reset_mid_run_pauses_then_everything_goes_out_once_after_the_fix_and_a_restart(
    aiohttp_client, sim, sim_server, sim_client, make_settings
):
    first = await aiohttp_client(create_app(make_settings(_url(sim_server)), clock=sim.clock.now))
    before = await _submit(first, jurisdiction={"station": "DM", "grid": "DM-01"})
    await wait_state(first, before, "dispatched")

    # The admin resets the app's Secret in the console; WeCom drops the tokens of the old one.
    sim.config.corp_secret = NEW_SECRET
    sim.revoke_tokens()
    dm = await _submit(first, jurisdiction={"station": "DM", "grid": "DM-01"})
    lh = await _submit(first, jurisdiction={"station": "LH", "grid": "LH-01"})

    # 龙湖's group robot needs no token: its notice still goes out. Nothing else does, and nothing fails.
    await wait_for_messages(sim_client, 1, robot="demo-robot-lh-0001")
    health = await eventually(lambda: _health(first), lambda h: h["status"] == "degraded", what="degraded")
    (reason,) = health["reasons"]
    assert "corp_secret" in reason and "应用管理" in reason
    counts = await services(first).storage.outbox_counts()
    assert "failed" not in counts and counts.get("pending", 0) >= 4
    for number in (dm, lh):
        detail = await instruction_detail(first, number)
        assert detail["delivery_failed"] is False and detail["state"] == "received"
    await first.close()

    # Fixed in the config file, and restarted on the same database.
    second = await aiohttp_client(create_app(make_settings(_url(sim_server), wecom={"corp_secret": NEW_SECRET}),
                                             clock=sim.clock.now))
    assert (await _health(second))["status"] == "ok"
    sim.clock.advance(16)  # the held messages' next look
    services(second).worker.wake()
    for number in (dm, lh):
        await wait_state(second, number, "dispatched")
    await eventually(services(second).storage.outbox_counts, lambda c: set(c) == {"sent"}, what="all sent")

    messages = await sim_messages(sim_client)
    cards = Counter((m["to_users"][0], m["body"]["template_card"]["task_id"]) for m in messages
                    if m["msgtype"] == "template_card")
    assert len(cards) == 6 and set(cards.values()) == {1}  # three instructions, two cards each, each once
    notices = Counter(m.get("chatid") or m.get("robot_key") for m in messages if m["msgtype"] == "markdown")
    assert notices == {"dmstation": 2, "demo-robot-lh-0001": 1}


async def test_no_customer_contact_permission_pauses_those_pushes_only_and_tells_the_center_once(
    start_bot, sim_client
):
    bot = await start_bot({"name": "elders", "selection": "rotation", "audience": {"groups": ["dm-elders"]},
                           "urgent": True})
    # The admin takes the app off 客户联系 → 可调用应用: its externalcontact calls answer 48002.
    assert (await sim_client.post("/_sim/app", json={"customer_contact": False})).status == 200
    run = await run_now(bot, "elders")
    health = await eventually(lambda: _health(bot), lambda h: h["status"] == "degraded", what="degraded")
    assert any("客户联系" in r and "可调用应用" in r for r in health["reasons"])
    (notice,) = await wait_for_messages(sim_client, 1, chatid="centercmd")
    assert "推送已暂停" in markdown_text(notice) and "客户联系" in markdown_text(notice)

    # Alerts still go out meanwhile: only customer-group pushes are paused.
    number = await _submit(bot, jurisdiction={"station": "DM", "grid": "DM-01"})
    await wait_state(bot, number, "dispatched")
    body = await wait_run(bot, "elders", run, lambda b: b["log"][0]["state"] == "pending")
    assert body["run"]["progress"]["failed"] == 0

    # Granted again in the console: the next probe gets through and the push goes out; the center was told once.
    assert (await sim_client.post("/_sim/app", json={"customer_contact": True})).status == 200
    await sim_client.post("/_sim/clock", json={"advance": 31})
    services(bot).worker.wake()
    await wait_for_messages(sim_client, 1, api="externalcontact/add_msg_template")
    await eventually(lambda: _health(bot), lambda h: h["status"] == "ok", what="ok again")
    notices = [m for m in await sim_messages(sim_client, chatid="centercmd") if "推送已暂停" in markdown_text(m)]
    assert len(notices) == 1


async def test_outbox_retry_requeues_failed_messages_audited_and_the_running_bot_sends_them(
    bot, sim, sim_client, db_toml, tmp_path
):
    # WeCom refuses the station notice for good once (a request error is not retried); the operator has it re-sent.
    sim.add_fault("appchat/send", errcode=40058, times=1)
    number = await _submit(bot, jurisdiction={"station": "DM", "grid": "DM-01"})
    detail = await eventually(lambda: instruction_detail(bot, number), lambda d: d["delivery_failed"],
                              what="the station notice failed")
    notice = next(d for d in detail["deliveries"] if d["purpose"] == "station_notice")
    assert notice["state"] == "failed"

    config = _config_file(services(bot).settings, db_toml, tmp_path)
    code, out = await run_cli("outbox", "retry", "--config", config, "--instruction", str(number))
    assert code == 0 and "已重新排队 1 条失败消息" in out and f"#{number}" in out, out
    detail = await eventually(lambda: instruction_detail(bot, number), lambda d: not d["delivery_failed"]
                              and all(x["state"] == "sent" for x in d["deliveries"]), what="re-sent")
    assert len(await sim_messages(sim_client, chatid="dmstation")) == 1
    (requeued,) = [e for e in detail["timeline"] if e["action"] == "delivery_requeued"]
    assert requeued["channel"] == "cli"

    code, out = await run_cli("outbox", "retry", "--config", config, "--failed")
    assert code == 0 and "没有符合条件的失败消息" in out
    code, out = await run_cli("outbox", "retry", "--config", config, "--since", "昨天")
    assert code == 2 and "ISO 8601" in out


def _config_file(settings, db_toml: str, folder) -> str:
    """A config file for the CLI naming the running bot's database, WeCom and directory."""
    w = settings.wecom
    path = folder / "cli.toml"
    path.write_text(
        f'[database]\n{db_toml}\n[wecom]\ncorp_id = "{w.corp_id}"\ncorp_secret = "{w.corp_secret}"\n'
        f'agent_id = {w.agent_id}\ntoken = "{w.token}"\nencoding_aes_key = "{w.encoding_aes_key}"\n'
        f'api_base = "{w.api_base}"\n[api]\ntokens = ["{settings.api.tokens[0]}"]\n'
        f'[directory]\npath = "{settings.directory.path}"\n', encoding="utf-8")
    return str(path)
