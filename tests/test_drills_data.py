"""Data safety drill: WAL and the durability setting, an online backup while the bot writes, a restore the
bot starts on, refusals that protect the live database, and versioned migrations run on start."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bench.drills.harness import database_consistency
from bot.app import create_app
from bot.backup import BackupError, backup, inspect, restore
from storage.sqlite import SQLiteStorage, migrations
from tests.conftest import services
from tests.helpers import AUTH, ROOT, instruction, instruction_detail, wait_state

pytestmark = pytest.mark.sqlite_only


async def test_sqlite_runs_in_wal_mode_with_the_configured_durability(aiohttp_client, sim_server, sim, make_settings):
    for setting, level in (("FULL", 2), ("NORMAL", 1)):
        settings = make_settings(str(sim_server.make_url("")).rstrip("/"), database={"synchronous": setting})
        client = await aiohttp_client(create_app(settings, clock=sim.clock.now))
        db = services(client).storage.engine._writer  # the connection that commits
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == level
        await client.close()


async def test_backup_while_the_bot_writes_is_consistent_and_the_bot_starts_on_the_restored_copy(
    aiohttp_client, bot, sim, sim_client, make_settings, sim_server, tmp_path
):
    storage = services(bot).storage
    accepted: list[int] = []
    stop = asyncio.Event()
    reached: dict[int, asyncio.Event] = {20: asyncio.Event()}

    async def writer() -> None:
        while not stop.is_set():
            resp = await bot.post("/api/v1/instructions", json=instruction(), headers=AUTH)
            assert resp.status == 202
            accepted.append((await resp.json())["id"])
            for count, event in reached.items():
                if len(accepted) >= count:
                    event.set()

    task = asyncio.create_task(writer())
    await reached[20].wait()
    copy = tmp_path / "backups" / "quanzu-copy.sqlite3"
    started_with = len(accepted)
    info = await asyncio.to_thread(backup, storage.path, copy)  # while the writer keeps committing
    reached[len(accepted) + 10] = after = asyncio.Event()
    await after.wait()
    stop.set()
    await task

    print(f"data drill: backup began at {started_with} accepted; copy holds {info.instructions} of {len(accepted)}")
    assert not copy.with_name(copy.name + ".partial").exists()
    assert info.schema_version == max(n for n, _ in migrations())
    assert 20 <= info.instructions <= len(accepted)
    state = database_consistency(copy)
    assert state["partial"] == []  # a snapshot at a commit boundary: no instruction without its outbox rows
    assert sorted(state["numbers"].values()) == list(range(1, info.instructions + 1))

    # Restore: the bot starts on the copy, shows what it held and sends what it had not sent yet.
    restored = tmp_path / "restored" / "quanzu.sqlite3"
    settings = make_settings(str(sim_server.make_url("")).rstrip("/"), database={"path": str(restored)},
                             server={"port": 1})  # nothing listens on port 1
    assert restore(settings, copy).instructions == info.instructions
    again = await aiohttp_client(create_app(settings, clock=sim.clock.now))
    detail = await instruction_detail(again, info.instructions)
    assert detail["instruction_no"] and detail["timeline"][0]["action"] == "received"
    await wait_state(again, info.instructions, "dispatched")
    resp = await again.post("/api/v1/instructions", json=instruction(), headers=AUTH)
    assert (await resp.json())["id"] == info.instructions + 1


async def test_backup_command_copies_the_database_of_a_running_bot(bot, tmp_path):
    await bot.post("/api/v1/instructions", json=instruction(), headers=AUTH)
    settings = services(bot).settings
    config = tmp_path / "backup-config.toml"
    config.write_text(
        f'[database]\npath = "{settings.database.path}"\n[wecom]\ncorp_id = "x"\ncorp_secret = "y"\nagent_id = 1\n'
        f'encoding_aes_key = "{settings.wecom.encoding_aes_key}"\n[api]\ntokens = ["backup-test-token"]\n'
        f'[directory]\npath = "{settings.directory.path}"\n',
        encoding="utf-8",
    )
    dest = tmp_path / "nightly.sqlite3"
    command = [sys.executable, "bot.py", "backup", "--config", str(config), str(dest)]
    proc = await asyncio.create_subprocess_exec(*command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert b"backed up" in out and b"1 instructions" in out
    # Never overwrites: a second run to the same name is refused.
    proc = await asyncio.create_subprocess_exec(*command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 1 and b"exists" in err


async def test_restore_is_refused_while_the_bot_runs_and_for_a_file_that_is_no_database(bot, tmp_path):
    settings = services(bot).settings
    copy = tmp_path / "copy.sqlite3"
    backup(settings.database.path, copy)
    running = settings.model_copy(update={"server": settings.server.model_copy(update={"port": bot.port})})
    with pytest.raises(BackupError, match="stop the bot"):
        restore(running, copy)
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(BackupError, match="not a Quanzu database"):
        inspect(junk)


async def test_migrations_are_versioned_and_run_on_start(tmp_path):
    path = tmp_path / "old.sqlite3"
    scripts = migrations()
    numbers = [n for n, _ in scripts]
    assert numbers == sorted(set(numbers)) and 5 in numbers
    with contextlib.closing(sqlite3.connect(path)) as db:  # a database as the first release left it
        db.executescript(f"{scripts[0][1]}\nPRAGMA user_version={scripts[0][0]};")
        db.execute("INSERT INTO meta(key, value) VALUES ('kept', 'yes')")
        db.commit()
    storage = SQLiteStorage(path)
    await storage.open()
    try:
        assert await storage.meta("kept") == "yes"
    finally:
        await storage.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == numbers[-1]
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "outbox_queue" in indexes
    # Opening again applies nothing twice.
    storage = SQLiteStorage(Path(path))
    await storage.open()
    await storage.close()
