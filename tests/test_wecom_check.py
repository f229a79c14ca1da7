"""`bot.py wecom check | create-chat | sync-chat` against the real simulator over HTTP, as an operator runs them,
and the same check at start-up in /healthz; placeholder values from config.example.toml refused at start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.app import create_app
from tests.helpers import DISTRICT, run_cli

CHECK_OK = "结果：全部通过"


def _config(folder: Path, sim, sim_url: str, db_toml: str, directory: Path = DISTRICT, **wecom: str) -> str:
    c = sim.config
    values = {"corp_id": c.corp_id, "corp_secret": c.corp_secret, "token": c.token,
              "encoding_aes_key": c.encoding_aes_key, **wecom}
    path = folder / "config.toml"
    path.write_text(
        "[database]\n" + db_toml + "\n[wecom]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
        + f'agent_id = {c.agent_id}\napi_base = "{sim_url}/cgi-bin/"\n[api]\ntokens = ["check-test-token"]\n'
        f"[directory]\npath = {json.dumps(str(directory))}\n", encoding="utf-8")
    return str(path)


def _problems(out: str) -> list[str]:
    return [line.strip()[2:] for line in out.splitlines() if line.strip().startswith("✗")]


@pytest.fixture
def sim_url(sim_server) -> str:
    return str(sim_server.make_url("")).rstrip("/")


def _district_with(folder: Path, old: str, new: str) -> Path:
    """The demo district with one line changed (a real deployment edits its directory file the same way)."""
    text = DISTRICT.read_text(encoding="utf-8")
    assert old in text
    path = folder / "district.toml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


async def test_a_correct_set_up_passes(tmp_path, sim, sim_url, sim_client, db_toml):
    code, out = await run_cli("wecom", "check", "--config", _config(tmp_path, sim, sim_url, db_toml))
    assert code == 0, out
    assert CHECK_OK in out and _problems(out) == []
    for verified in ("企业ID与应用 Secret 正确", "应用可见范围为根部门", "(dm-station)由本应用创建",
                     "(center-command)由本应用创建", "(lh-station) 的 webhook key 有效", "可调用客户联系接口"):
        assert verified in out, out
    # The robot probe shows nothing in any group.
    assert (await (await sim_client.get("/_sim/messages")).json())["messages"] == []


async def test_a_wrong_secret_is_one_line_naming_the_setting_and_where_to_find_it(tmp_path, sim, sim_url, db_toml):
    code, out = await run_cli("wecom", "check", "--config",
                              _config(tmp_path, sim, sim_url, db_toml, corp_secret="copied-from-the-wrong-app"))
    assert code == 1
    (problem,) = _problems(out)
    assert "[wecom] corp_secret" in problem and "应用管理 → 自建 → 本应用" in problem


async def test_a_wrong_corp_id_and_a_malformed_callback_key_are_each_reported(tmp_path, sim, sim_url, db_toml):
    code, out = await run_cli("wecom", "check", "--config",
                              _config(tmp_path, sim, sim_url, db_toml, corp_id="wwsomeoneelse000001",
                                      token="has spaces and !"))
    assert code == 1
    problems = _problems(out)
    assert len(problems) == 2
    assert "[wecom] token" in problems[0] and "设置API接收" in problems[0]
    assert "[wecom] corp_id" in problems[1] and "我的企业" in problems[1]


async def test_a_chat_made_by_hand_in_the_client_is_refused_and_create_chat_makes_one_the_app_owns(
    tmp_path, sim, sim_url, sim_client, db_toml
):
    # Someone made 东门's group by hand in the WeCom client and put its chatid in the directory.
    resp = await sim_client.post("/_sim/appchats", json={
        "chatid": "handmade01", "name": "东门派出所预警处置群", "userlist": ["chenlong", "wangqiang", "lina"]})
    assert resp.status == 200
    directory = _district_with(tmp_path, 'chatid = "dmstation"', 'chatid = "handmade01"')
    config = _config(tmp_path, sim, sim_url, db_toml, directory=directory)
    code, out = await run_cli("wecom", "check", "--config", config)
    assert code == 1
    (problem,) = _problems(out)
    assert "dm-station" in problem and "86008" in problem and "换一个新的 chatid" in problem
    assert "bot.py wecom create-chat dm-station" in problem

    # create-chat cannot take that chatid: it is someone else's group.
    code, out = await run_cli("wecom", "create-chat", "DM", "--config", config)
    assert code == 1 and "86008" in out and "换一个新的 chatid" in out
    # With a new chatid in the directory the app creates the group itself, owner the station's leader.
    directory = _district_with(tmp_path, 'chatid = "dmstation"', 'chatid = "dmalerts2"')
    code, out = await run_cli("wecom", "create-chat", "DM", "--config", config)
    assert code == 0 and 'chatid = "dmalerts2"' in out and "群主 chenlong" in out, out
    code, out = await run_cli("wecom", "check", "--config", config)
    assert code == 0 and CHECK_OK in out, out
    chat = next(c for c in sim.directory.snapshot()["appchats"] if c["chatid"] == "dmalerts2")
    assert chat["by_app"] and chat["owner"] == "chenlong"
    assert sorted(chat["userlist"]) == sorted(["chenlong", "wangqiang", "lina", "liuhong", "zhangwei"])


async def test_a_removed_robot_is_reported_with_how_to_re_add_it(tmp_path, sim, sim_url, sim_client, db_toml):
    assert (await sim_client.delete("/_sim/robots/demo-robot-lh-0001")).status == 200
    code, out = await run_cli("wecom", "check", "--config", _config(tmp_path, sim, sim_url, db_toml))
    assert code == 1
    (problem,) = _problems(out)
    assert "「龙湖派出所预警处置群」(lh-station)" in problem and "93000" in problem and "群机器人" in problem
    assert "demo-robot-lh-0001" not in out  # the key is a secret: never printed


async def test_members_out_of_line_are_reported_and_sync_chat_fixes_them(tmp_path, sim, sim_url, db_toml):
    # 张伟 moved away and 赵磊 joined 东门: the directory says so, the chat does not yet.
    directory = _district_with(tmp_path, 'members = ["chenlong", "wangqiang", "lina", "liuhong", "zhangwei"]',
                               'members = ["chenlong", "wangqiang", "lina", "liuhong", "zhaolei"]')
    config = _config(tmp_path, sim, sim_url, db_toml, directory=directory)
    code, out = await run_cli("wecom", "check", "--config", config)
    assert code == 1
    (problem,) = _problems(out)
    assert "缺 1 人，多 1 人" in problem and "bot.py wecom sync-chat dm-station" in problem
    code, out = await run_cli("wecom", "sync-chat", "DM", "--config", config)
    assert code == 0 and "加入 1 人（zhaolei）" in out and "移出 1 人（zhangwei）" in out, out
    assert (await run_cli("wecom", "check", "--config", config))[0] == 0
    chat = next(c for c in sim.directory.snapshot()["appchats"] if c["chatid"] == "dmstation")
    assert "zhaolei" in chat["userlist"] and "zhangwei" not in chat["userlist"]


async def test_create_chat_refuses_a_robot_group_and_an_unknown_code(tmp_path, sim, sim_url, db_toml):
    config = _config(tmp_path, sim, sim_url, db_toml)
    code, out = await run_cli("wecom", "create-chat", "LH", "--config", config)
    assert code == 2 and "群机器人" in out
    code, out = await run_cli("wecom", "create-chat", "NOPE", "--config", config)
    assert code == 2 and "NOPE" in out


async def test_placeholders_copied_from_the_example_config_are_refused_at_start(tmp_path, sim, sim_url, db_toml):
    config = _config(tmp_path, sim, sim_url, db_toml, corp_secret="replace-with-the-app-secret",
                     encoding_aes_key="abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")
    code, out = await run_cli("run", "--config", config)
    assert code == 2
    assert "wecom.corp_secret" in out and "wecom.encoding_aes_key" in out and "config.example.toml" in out


async def test_healthz_is_degraded_with_the_reason_while_the_start_up_check_fails(
    aiohttp_client, sim, sim_url, sim_client, make_settings
):
    assert (await sim_client.delete("/_sim/robots/demo-robot-lh-0001")).status == 200
    bot = await aiohttp_client(create_app(make_settings(sim_url), clock=sim.clock.now))
    health = await (await bot.get("/healthz")).json()
    assert health["status"] == "degraded" and "outbox" in health
    (reason,) = health["reasons"]
    assert "lh-station" in reason and "93000" in reason

