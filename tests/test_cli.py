"""The command line as an operator uses it: real processes, real ports."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import aiohttp

from tests.helpers import DISTRICT, ROOT, free_ports, instruction, run_cli, wait_http


async def test_run_and_simulator_commands_deliver_an_instruction(tmp_path, database, db_toml):
    sim_port, bot_port = free_ports(2)
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[server]
port = {bot_port}
[database]
{db_toml}
[wecom]
corp_id = "wwcli"
corp_secret = "cli-secret"
agent_id = 1000009
token = "CliToken"
encoding_aes_key = "QuanzuDemoEncodingAesKey0123456789abcdefgh0"
api_base = "http://127.0.0.1:{sim_port}/cgi-bin/"
[api]
tokens = ["cli-token-123"]
[directory]
path = "{DISTRICT}"
""",
        encoding="utf-8",
    )
    sim = await asyncio.create_subprocess_exec(
        sys.executable, "bot.py", "simulator", "--port", str(sim_port), "--corp-id", "wwcli", "--corp-secret",
         "cli-secret", "--agent-id", "1000009", "--token", "CliToken", "--directory", str(DISTRICT),
         "--callback-url", f"http://127.0.0.1:{bot_port}/wecom/callback",
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    log_path = tmp_path / "bot.log"
    log_file = log_path.open("wb")
    bot = await asyncio.create_subprocess_exec(sys.executable, "bot.py", "run", "--config", str(config), cwd=ROOT,
                                               stdout=subprocess.DEVNULL, stderr=log_file)
    try:
        await wait_http(f"http://127.0.0.1:{sim_port}/_sim/messages")
        # The operator creates the app's group chats (the simulator, like WeCom, has none the app did not create).
        code, out = await run_cli("wecom", "create-chat", "--config", str(config))
        assert code == 0 and 'chatid = "dmstation"' in out, out
        await wait_http(f"http://127.0.0.1:{bot_port}/healthz")
        async with aiohttp.ClientSession() as session:
            resp = await session.post(f"http://127.0.0.1:{bot_port}/api/v1/instructions", json=instruction(),
                                      headers={"Authorization": "Bearer cli-token-123"})
            assert resp.status == 202
            for _ in range(200):
                got = await (await session.get(f"http://127.0.0.1:{sim_port}/_sim/messages")).json()
                if len(got["messages"]) == 3:
                    break
                await asyncio.sleep(0.05)
            assert sorted(m["api"] for m in got["messages"]) == ["appchat/send", "message/send", "message/send"]
    finally:
        for proc in (bot, sim):
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)
        log_file.close()
    if "path" in database:
        assert (tmp_path / "quanzu.sqlite3").exists()
    log = log_path.read_text(encoding="utf-8")
    assert "cli-secret" not in log  # secrets never reach the log
    assert "quanzu started" in log


def test_bad_config_exits_with_a_message_naming_the_key(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[wecom]\ncorp_id = "x"\n', encoding="utf-8")
    result = subprocess.run([sys.executable, "bot.py", "run", "--config", str(config)], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "wecom.corp_secret is required" in result.stderr


def test_directory_check(tmp_path):
    result = subprocess.run([sys.executable, "bot.py", "directory", "check", str(DISTRICT)], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert "2 stations, 4 grids, 11 people" in result.stdout
    broken = tmp_path / "d.toml"
    broken.write_text('[[grids]]\ncode = "G"\nname = "g"\nstation = "nowhere"\n', encoding="utf-8")
    result = subprocess.run([sys.executable, "bot.py", "directory", "check", str(broken)], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "is not a known station" in result.stderr
