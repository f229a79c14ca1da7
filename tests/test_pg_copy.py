"""Copying a real SQLite database, written through the storage API, into PostgreSQL: the copy, its check, and
`bot.py db copy-to-postgres` as an operator runs it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import asyncpg
import pytest

from bot.demo import seed_history
from bot.directory import load_directory_file
from domain.models import OutboxMessage
from storage.pg_migrations import migrate
from storage.sqlite import SQLiteStorage, migrations
from storage.transfer import CopyReport, TransferError, _row_differences, copy_sqlite_to_postgres
from tests.helpers import DISTRICT, ROOT
from tests.pg import pg_schema

pytestmark = pytest.mark.postgresql_only

NOW = 1_790_000_000.25


def _message(n: int) -> OutboxMessage:
    return OutboxMessage(purpose="station_notice", channel="app", address=f"user{n}", label=f"user{n}",
                         body={"touser": f"user{n}", "msgtype": "text", "text": {"content": f"第 {n} 条"}},
                         rate_keys=("app", f"user:user{n}"), priority=n % 3, task_id=f"t{n}")


@pytest.fixture
async def sqlite_db(tmp_path) -> Path:
    """A Quanzu SQLite database: the demo directory, 300 instructions of synthetic history with their
    deadlines, assignments and events, outbox rows with and without an instruction, and callbacks."""
    path = tmp_path / "quanzu.sqlite3"
    storage = SQLiteStorage(path)
    await storage.open()
    try:
        directory = load_directory_file(DISTRICT)
        await storage.replace_directory(directory)
        await seed_history(storage, directory, NOW, count=300, days=10)
        await storage.enqueue(None, [_message(n) for n in range(5)], NOW)
        await storage.enqueue(7, [_message(n) for n in range(5, 9)], NOW + 0.5)
        await storage.record_callback("dedupe-1", "wangqiang", "text", "<xml>签收 7</xml>", NOW + 1)
    finally:
        await storage.close()
    with closing(sqlite3.connect(path)) as db, db:  # the newest outbox row gone: its id must never come back
        db.execute("DELETE FROM outbox WHERE id = (SELECT MAX(id) FROM outbox)")
    return path


def _rows(path: Path, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


async def _counts(conn: asyncpg.Connection, tables: list[str]) -> dict[str, int]:
    return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in tables}


_REPORT_QUERIES = ("SELECT * FROM report_facts ORDER BY day, instruction_id",
                   "SELECT * FROM report_daily ORDER BY day, station, risk_level, outcome")


async def test_copy_verifies_and_the_target_carries_on_where_sqlite_stopped(sqlite_db):
    tables = [r[0] for r in _rows(sqlite_db, "SELECT name FROM sqlite_master WHERE type = 'table'"
                                             " AND name NOT LIKE 'sqlite%'")]
    seen: list[tuple[str, int]] = []
    async with pg_schema() as url:
        report = await copy_sqlite_to_postgres(sqlite_db, url, batch=64, on_table=lambda t, n: seen.append((t, n)))
        assert report.verified, report.differences
        assert sorted(t for t, _ in seen) == sorted(tables)
        order = [t for t, _ in seen]
        assert order.index("stations") < order.index("grids") < order.index("people")
        assert order.index("instructions") < order.index("deadlines") < order.index("timers")
        counts = {c.table: (c.sqlite_rows, c.postgres_rows) for c in report.counts}
        for table in tables:
            (expected,) = _rows(sqlite_db, f"SELECT COUNT(*) FROM {table}")[0]
            assert counts[table] == (expected, expected), table
        assert counts["instructions"][0] == counts["report_facts"][0] == 300
        assert counts["events"][0] > 300 and counts["outbox"][0] == 8 and counts["people"][0] > 0
        assert report.compared_rows >= 50 + 1 + 3  # newest instructions, random ones, outbox, events, meta

        conn = await asyncpg.connect(url)
        try:
            for query in _REPORT_QUERIES:
                assert [tuple(r) for r in await conn.fetch(query)] == _rows(sqlite_db, query)
            meta = dict(_rows(sqlite_db, "SELECT key, value FROM meta"))
            assert {r[0]: r[1] for r in await conn.fetch("SELECT key, value FROM meta")} == meta
            assert "instance_salt" in meta
            # ids continue after the copied ones; outbox after the deleted newest row (SQLite's high-water mark)
            new_id = await conn.fetchval(
                "INSERT INTO instructions(instruction_no, issued_at, received_at, warning_type, fraud_type,"
                " risk_level, target_name, target_phone, station_code, routed_station, state, raw)"
                " VALUES ('NEW-1', $1, $1, '涉诈来电', '其他', 'low', '某某', '138', 'DM', 'DM', 'received', '{}')"
                " RETURNING id", NOW + 100)
            assert new_id == 301
            ((outbox_high_water,),) = _rows(sqlite_db, "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")
            outbox_id = await conn.fetchval(
                "INSERT INTO outbox(purpose, channel, address, label, rate_keys, body, priority, next_attempt_at,"
                " created_at) VALUES ('station_notice', 'app', 'a', 'a', '[]', '{}', 0, 0, 0) RETURNING id")
            assert outbox_id == outbox_high_water + 1 == counts["outbox"][0] + 2
            # the triggers are back on
            assert await conn.fetchval("SELECT day FROM report_facts WHERE instruction_id = $1", new_id) == int(
                (NOW + 100 + 28800) // 86400)
            before = await _counts(conn, tables)
            salt = meta["instance_salt"]
        finally:
            await conn.close()

        with pytest.raises(TransferError, match="拒绝复制"):
            await copy_sqlite_to_postgres(sqlite_db, url)
        conn = await asyncpg.connect(url)
        try:
            assert await _counts(conn, tables) == before
            assert await conn.fetchval("SELECT value FROM meta WHERE key = 'instance_salt'") == salt
        finally:
            await conn.close()


async def test_what_a_quanzu_start_left_in_the_target_is_replaced(sqlite_db):
    async with pg_schema() as url:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
            await conn.execute("INSERT INTO meta(key, value) VALUES ('instance_salt', 'abcdef'), ('center_name', 'x')")
            await conn.execute("INSERT INTO stations(code, name) VALUES ('ZZ', '别处')")
            report = await copy_sqlite_to_postgres(sqlite_db, url)
            assert report.verified and report.replaced == {"meta": 2, "stations": 1}
            assert await conn.fetchval("SELECT value FROM meta WHERE key = 'instance_salt'") == dict(
                _rows(sqlite_db, "SELECT key, value FROM meta"))["instance_salt"]
            assert await conn.fetchval("SELECT count(*) FROM stations WHERE code = 'ZZ'") == 0
        finally:
            await conn.close()


async def test_an_sqlite_file_of_an_older_version_is_refused(tmp_path):
    path = tmp_path / "old.sqlite3"
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        for number, script in migrations()[:-1]:
            db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version={number};\nCOMMIT;")
    async with pg_schema() as url:
        with pytest.raises(TransferError, match="启动一次"):
            await copy_sqlite_to_postgres(path, url)
        conn = await asyncpg.connect(url)
        try:  # the SQLite side is checked before anything is written
            assert await conn.fetchval("SELECT to_regclass('schema_version')") is None
        finally:
            await conn.close()


async def test_a_difference_found_by_the_check_rolls_the_copy_back(sqlite_db):
    async with pg_schema() as url:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
            # A target that loses precision: single-precision times are not the times SQLite holds.
            await conn.execute("ALTER TABLE instructions ALTER COLUMN received_at TYPE real")
            report = await copy_sqlite_to_postgres(sqlite_db, url)
            assert not report.verified and not report.committed
            assert report.differences and all("列 received_at" in d for d in report.differences)
            assert "校验未通过" in "\n".join(report.lines())
            assert await conn.fetchval("SELECT count(*) FROM instructions") == 0
            assert await conn.fetchval("SELECT count(*) FROM meta") == 0
        finally:
            await conn.close()


def test_the_check_compares_types_and_floats_exactly():
    assert _row_differences("t id=1", ["a", "b"], (1, 0.30000000000000004), (1, 0.30000000000000004)) == []
    assert len(_row_differences("t id=1", ["a", "b"], (1, 0.1 + 0.2), (1.0, 0.3))) == 2
    assert _row_differences("t id=1", ["a"], None, (1,)) == ["t id=1：SQLite 没有这一行"]
    report = CopyReport(differences=["x"])
    assert not report.verified and "verification failed" in "\n".join(report.lines())


# -- the command line ------------------------------------------------------------------------


def _config(tmp_path: Path, database: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[database]
path = "{database}"
[wecom]
corp_id = "wwcli"
corp_secret = "cli-secret"
agent_id = 1000009
token = "CliToken"
encoding_aes_key = "QuanzuDemoEncodingAesKey0123456789abcdefgh0"
[api]
tokens = ["cli-token-123"]
[directory]
path = "{DISTRICT}"
""",
        encoding="utf-8",
    )
    return config


def _cli(config: Path, url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "bot.py", "db", "copy-to-postgres", "--config", str(config), "--to", url],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


async def test_the_command_prints_the_counts_and_the_verification(tmp_path, sqlite_db):
    config = _config(tmp_path, sqlite_db)
    async with pg_schema() as url:
        started = time.monotonic()
        result = _cli(config, url)
        assert result.returncode == 0, result.stderr
        assert "校验通过 / verified" in result.stdout
        assert any(line.split()[:3] == ["instructions", "300", "300"] for line in result.stdout.splitlines())
        assert time.monotonic() - started < 30

        again = _cli(config, url)  # the target is in use now
        assert again.returncode == 2 and "拒绝复制" in again.stderr
        assert len(again.stderr.strip().splitlines()) == 1


async def test_the_command_refuses_bad_input_with_one_line(tmp_path):
    async with pg_schema() as url:
        missing = _cli(_config(tmp_path, tmp_path / "nowhere.sqlite3"), url)
        assert missing.returncode == 2 and "找不到 SQLite 数据库文件" in missing.stderr
        assert len(missing.stderr.strip().splitlines()) == 1
    (tmp_path / "q.sqlite3").write_bytes(b"")
    unreachable = _cli(_config(tmp_path, tmp_path / "q.sqlite3"), "postgresql://nobody:secret@127.0.0.1:1/x")
    assert unreachable.returncode == 2
    # an empty file has no schema version; it is refused before PostgreSQL is contacted
    assert "不是 Quanzu 的数据库" in unreachable.stderr


async def test_the_command_says_when_postgres_is_unreachable_without_showing_the_password(tmp_path, sqlite_db):
    result = _cli(_config(tmp_path, sqlite_db), "postgresql://nobody:secret@127.0.0.1:1/x")
    assert result.returncode == 2 and "无法连接 PostgreSQL" in result.stderr
    assert "secret" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
