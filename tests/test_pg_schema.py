"""The PostgreSQL schema against the SQLite one: same tables, columns and indexes, triggers with the same effect,
and a migration runner that several instances may start at once."""

from __future__ import annotations

import asyncio
import calendar
import re
import sqlite3
from contextlib import closing
from pathlib import Path

import asyncpg
import pytest

from storage.pg_migrations import migrate, postgres_migrations
from storage.sqlite import migrations
from tests.pg import pg_schema

pytestmark = pytest.mark.postgresql_only

LATEST = max(number for number, _ in migrations())
DASHBOARD = 6  # the migration that adds report_facts, report_daily and their triggers
# 2026-03-02 00:00 in Asia/Shanghai: instructions on either side of it count on different days.
MIDNIGHT = float(calendar.timegm((2026, 3, 1, 16, 0, 0)))


def sqlite_file(path: Path, upto: int = LATEST) -> sqlite3.Connection:
    """An SQLite database migrated by the SQLite scripts up to `upto`, as SQLiteStorage._migrate does."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA foreign_keys=ON")
    for number, script in migrations():
        if number <= upto:
            db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version={number};\nCOMMIT;")
    return db


def test_the_postgres_scripts_mirror_the_sqlite_ones_one_for_one():
    assert [n for n, _ in postgres_migrations()] == [n for n, _ in migrations()] == list(range(1, LATEST + 1))
    folder = Path(__file__).resolve().parent.parent / "storage" / "migrations"
    assert sorted(p.name for p in (folder / "postgres").glob("*.sql")) == sorted(p.name for p in folder.glob("*.sql"))


async def test_migrate_a_fresh_schema_then_again_changes_nothing():
    async with pg_schema() as url:
        conn = await asyncpg.connect(url)
        try:
            assert await migrate(conn) == LATEST
            catalog = "SELECT relname, relkind FROM pg_class WHERE relnamespace = current_schema()::regnamespace"
            before = sorted(map(tuple, await conn.fetch(catalog)))
            assert await migrate(conn) == LATEST
            assert sorted(map(tuple, await conn.fetch(catalog))) == before
            assert [tuple(r) for r in await conn.fetch("SELECT version FROM schema_version")] == [(LATEST,)]
            assert await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
        finally:
            await conn.close()


async def test_two_instances_migrating_at_once_both_succeed_and_each_script_runs_once():
    async with pg_schema() as url:
        first, second = await asyncpg.connect(url), await asyncpg.connect(url)
        try:
            # A script applied twice would fail on its CREATE TABLE; both calls succeeding means it ran once.
            assert await asyncio.gather(migrate(first), migrate(second)) == [LATEST, LATEST]
            assert await first.fetchval("SELECT count(*) FROM schema_version") == 1
            assert await second.fetchval("SELECT version FROM schema_version") == LATEST
        finally:
            await first.close()
            await second.close()


async def test_tables_columns_indexes_and_triggers_are_those_of_sqlite(tmp_path):
    with closing(sqlite_file(tmp_path / "q.sqlite3")) as lite:
        tables = [r[0] for r in lite.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' ORDER BY name")]
        lite_columns = {t: lite.execute("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?)"
                                        " ORDER BY cid", (t,)).fetchall() for t in tables}
        lite_indexes = sorted(r[0] for r in lite.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%'"))
        lite_triggers = sorted(r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
    async with pg_schema() as url:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
            pg_tables = [r[0] for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")]
            assert pg_tables == sorted([*tables, "schema_version"])
            for table in tables:
                rows = await conn.fetch(
                    "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
                    " pg_get_expr(d.adbin, d.adrelid), a.attidentity::text FROM pg_attribute a"
                    " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
                    " WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                    table,
                )
                assert [r[0] for r in rows] == [c[0] for c in lite_columns[table]], table
                for (name, pg_type, notnull, default, identity), (_, lite_type, lite_notnull, lite_default, pk) \
                        in zip(rows, lite_columns[table], strict=True):
                    assert pg_type == _pg_type(name, lite_type), (table, name)
                    assert notnull == bool(lite_notnull or pk), (table, name)
                    assert _default(default) == lite_default, (table, name)
                    # SQLite's rowid ids (INTEGER PRIMARY KEY) are identities that take explicit values too
                    assert identity == ("d" if name == "id" and pk else ""), (table, name)
            pg_indexes = sorted(r[0] for r in await conn.fetch(
                "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
                " WHERE i.relnamespace = current_schema()::regnamespace"
                " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)"))
            assert pg_indexes == lite_indexes
            pg_triggers = sorted(r[0] for r in await conn.fetch(
                "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                " WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal"))
            assert pg_triggers == lite_triggers
            foreign_keys = await conn.fetch(
                "SELECT conname, condeferrable, condeferred FROM pg_constraint"
                " WHERE contype = 'f' AND connamespace = current_schema()::regnamespace")
            assert len(foreign_keys) == 10
            assert all(r["condeferrable"] and not r["condeferred"] for r in foreign_keys)
        finally:
            await conn.close()


def _pg_type(column: str, sqlite_type: str) -> str:
    if sqlite_type == "INTEGER":  # ids and references to them are bigint; flags and counters int4
        return "bigint" if column == "id" or column.endswith("_id") else "integer"
    return {"REAL": "double precision", "TEXT": "text"}[sqlite_type]


def _default(expression: str | None) -> str | None:
    """PostgreSQL's spelling of a default ('[]'::text) as SQLite stores it ('[]')."""
    return None if expression is None else re.sub(r"::text$", "", expression)


@pytest.mark.parametrize("sql", [
    "INSERT INTO people(userid, name, role) VALUES ('u', 'n', 'chief')",
    "INSERT INTO people(userid, name, role, station_code) VALUES ('u', 'n', 'officer', 'nowhere')",
    "INSERT INTO outbox(purpose, channel, address, label, rate_keys, body, priority, next_attempt_at, created_at)"
    " VALUES ('p', 'fax', 'a', 'l', '[]', '{}', 0, 0, 0)",
    "INSERT INTO outbox(purpose, channel, address, label, rate_keys, body, priority, next_attempt_at, created_at,"
    " state) VALUES ('p', 'app', 'a', 'l', '[]', '{}', 0, 0, 0, 'lost')",
    "INSERT INTO events(instruction_id, at, actor, channel, action) VALUES (99, 0, 'a', 'api', 'x')",
    "INSERT INTO awareness_runs(campaign, title, trigger, created_at, definition) VALUES ('c', 't', 'cron', 0, '{}')",
    "INSERT INTO bulletin_runs(kind, period_start, created_at, messages) VALUES ('monthly', 1, 0, 0)",
])
async def test_constraints_refuse_the_same_rows(tmp_path, sql):
    with closing(sqlite_file(tmp_path / "q.sqlite3")) as lite, pytest.raises(sqlite3.IntegrityError):
        lite.execute(sql)
    async with pg_schema() as url:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
            with pytest.raises(asyncpg.IntegrityConstraintViolationError):
                await conn.execute(sql)
        finally:
            await conn.close()


async def test_the_widened_outbox_channel_and_deferred_foreign_keys(tmp_path):
    async with pg_schema() as url:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
            await conn.execute(
                "INSERT INTO outbox(purpose, channel, address, label, rate_keys, body, priority, next_attempt_at,"
                " created_at) VALUES ('awareness', 'customer_group', 'a', 'l', '[]', '{}', 3, 0, 0)")
            async with conn.transaction():  # as replace_directory rewrites the directory
                await conn.execute("SET CONSTRAINTS ALL DEFERRED")
                await conn.execute("INSERT INTO grids(code, name, station_code) VALUES ('G', 'g', 'S')")
                await conn.execute("INSERT INTO stations(code, name) VALUES ('S', 's')")
        finally:
            await conn.close()


# -- the report triggers of migration 006 ------------------------------------------------------

_INSERT_INSTRUCTION = (
    "INSERT INTO instructions(id, instruction_no, issued_at, received_at, warning_type, fraud_type, risk_level,"
    " target_name, target_phone, station_code, routed_station, state, raw, acked_at, outcome, loss_avoided)"
    " VALUES (?, ?, ?, ?, '涉诈来电', ?, ?, '某某', '138', 'S1', ?, ?, '{}', ?, ?, ?)"
)
_INSERT_DEADLINE = "INSERT INTO deadlines(instruction_id, stage, milestone, due_at) VALUES (?, ?, ?, ?)"
_SETTLE = "UPDATE deadlines SET state = ?, settled_at = ? WHERE instruction_id = ? AND stage = ? AND milestone = ?"
_ASSIGN = ("INSERT INTO assignments(instruction_id, userid, role_label, assigned_at, stage)"
           " VALUES (?, ?, ?, ?, ?)")
_EVENT = "INSERT INTO events(instruction_id, at, actor, channel, action) VALUES (?, ?, 'system', 'timer', ?)"

# Writes as the service makes them, around one Asia/Shanghai midnight.
STEPS: list[tuple[str, tuple]] = [
    (_INSERT_INSTRUCTION, (1, "A-1", MIDNIGHT - 60, MIDNIGHT - 1, "冒充公检法", "high", "S1", "received",
                           None, None, None)),
    (_INSERT_INSTRUCTION, (2, "A-2", MIDNIGHT - 60, MIDNIGHT, "冒充公检法", "high", "S1", "received",
                           None, None, None)),
    (_INSERT_INSTRUCTION, (3, "A-3", MIDNIGHT - 60, MIDNIGHT - 0.25, "刷单返利", "medium", "S2", "received",
                           None, None, None)),
    (_INSERT_INSTRUCTION, (4, "A-4", MIDNIGHT, MIDNIGHT + 3600.5, "刷单返利", "low", None, "received",
                           None, None, None)),
    (_INSERT_INSTRUCTION, (5, "A-5", MIDNIGHT, MIDNIGHT + 7200, "其他", "low", "S2", "closed",
                           MIDNIGHT + 7300.125, "劝阻成功", 0.1)),
    (_INSERT_INSTRUCTION, (6, "A-6", MIDNIGHT, MIDNIGHT + 7201, "其他", "low", "S2", "closed",
                           MIDNIGHT + 7300.5, "劝阻成功", 0.2)),
    (_INSERT_DEADLINE, (1, "phone", "ack", MIDNIGHT - 1 + 300)),
    (_INSERT_DEADLINE, (1, "phone", "contact", MIDNIGHT - 1 + 900)),
    (_INSERT_DEADLINE, (1, "phone", "report", MIDNIGHT - 1 + 3600)),
    (_INSERT_DEADLINE, (2, "phone", "ack", MIDNIGHT + 300)),
    (_INSERT_DEADLINE, (2, "visit", "ack", MIDNIGHT + 1800)),
    (_INSERT_DEADLINE, (2, "phone", "contact", MIDNIGHT + 900)),
    (_INSERT_DEADLINE, (3, "phone", "ack", MIDNIGHT + 600)),
    (_INSERT_DEADLINE, (3, "visit", "ack", MIDNIGHT + 1800)),
    (_INSERT_DEADLINE, (3, "phone", "contact", MIDNIGHT + 1200)),
    (_INSERT_DEADLINE, (4, "visit", "ack", MIDNIGHT + 5400)),
    ("INSERT INTO deadlines(instruction_id, stage, milestone, due_at, state, settled_at)"
     " VALUES (5, 'phone', 'ack', ?, 'met', ?)", (MIDNIGHT + 7500, MIDNIGHT + 7300.125)),
    (_ASSIGN, (1, "off1", "民警", MIDNIGHT, "phone")),
    (_ASSIGN, (2, "gw1", "网格员", MIDNIGHT, "visit")),
    (_EVENT, (1, MIDNIGHT, "acked")),
    (_EVENT, (3, MIDNIGHT + 60, "visit_ordered")),
    ("UPDATE instructions SET state = 'acked', acked_at = ? WHERE id = 1", (MIDNIGHT + 99,)),
    (_SETTLE, ("met", MIDNIGHT + 99, 1, "phone", "ack")),                 # on time
    (_SETTLE, ("met", MIDNIGHT + 400.75, 2, "phone", "ack")),             # late
    (_SETTLE, ("met", MIDNIGHT + 500, 1, "phone", "contact")),
    (_SETTLE, ("met", MIDNIGHT + 3000, 1, "phone", "report")),            # no report trigger for this one
    # several rows in one statement: the phone and the visit ack of instruction 3
    ("UPDATE deadlines SET state = 'moot', settled_at = ? WHERE instruction_id = 3 AND milestone = 'ack'",
     (MIDNIGHT + 700,)),
    (_SETTLE, ("met", MIDNIGHT + 1000, 3, "visit", "ack")),
    ("UPDATE deadlines SET state = 'superseded' WHERE instruction_id = 2 AND stage = 'phone' AND state = 'open'", ()),
    (_SETTLE, ("met", MIDNIGHT + 6000, 4, "visit", "ack")),               # late
    ("UPDATE deadlines SET due_at = due_at + 60 WHERE instruction_id = 2", ()),  # touches no report column
    ("UPDATE instructions SET contact_method = '见面', outcome = '劝阻成功', loss_avoided = 1234.5,"
     " state = 'reported' WHERE id = 1", ()),
    ("UPDATE instructions SET outcome = '已被骗', amount_lost = 0.1 WHERE id = 2", ()),
    ("UPDATE instructions SET amount_lost = 0.2 WHERE id = 2", ()),
    ("UPDATE instructions SET routed_station = 'S1' WHERE id = 4", ()),
    ("UPDATE instructions SET contact_method = '电话', outcome = '无法联系' WHERE id = 3", ()),
    ("UPDATE instructions SET summary = 'x' WHERE id = 1", ()),
    ("UPDATE instructions SET state = state WHERE id IN (1, 2)", ()),
    ("UPDATE instructions SET loss_avoided = 0.30000000000000004 WHERE id = 6", ()),
    ("UPDATE instructions SET outcome = '误报', loss_avoided = NULL WHERE id = 5", ()),
    ("UPDATE instructions SET state = 'closed', closed_at = ? WHERE id IN (1, 2, 3)", (MIDNIGHT + 9000,)),
]


def _postgres(sql: str) -> str:
    numbers = iter(range(1, 100))
    return re.sub(r"\?", lambda _: f"${next(numbers)}", sql)


async def _report_tables_after(steps_before_006: bool, tmp_path: Path) -> tuple[list, list]:
    """report_facts and report_daily after STEPS on SQLite and on PostgreSQL, written once every migration
    ran or (steps_before_006) before migration 006 and those after it, so that 006 builds report_facts from
    the history."""
    queries = ("SELECT * FROM report_facts ORDER BY day, instruction_id",
               "SELECT * FROM report_daily ORDER BY day, station, risk_level, outcome")
    first_after_steps = DASHBOARD if steps_before_006 else LATEST + 1
    with closing(sqlite_file(tmp_path / "q.sqlite3", first_after_steps - 1)) as lite:
        for sql, args in STEPS:
            lite.execute(sql, args)
        for number, script in migrations():
            if number >= first_after_steps:
                lite.executescript(f"BEGIN;\n{script}\nCOMMIT;")
        from_sqlite = [lite.execute(q).fetchall() for q in queries]
    async with pg_schema() as url:
        conn = await asyncpg.connect(url)
        try:
            scripts = postgres_migrations()
            for number, script in scripts:
                if number < first_after_steps:
                    await conn.execute(script)
            for sql, args in STEPS:
                await conn.execute(_postgres(sql), *args)
            for number, script in scripts:
                if number >= first_after_steps:
                    await conn.execute(script)
            from_postgres = [[tuple(r) for r in await conn.fetch(q)] for q in queries]
        finally:
            await conn.close()
    return from_sqlite, from_postgres


@pytest.mark.parametrize("steps_before_006", [False, True], ids=["live-triggers", "history-of-006"])
async def test_report_tables_are_the_same_on_both_backends(tmp_path, steps_before_006):
    from_sqlite, from_postgres = await _report_tables_after(steps_before_006, tmp_path)
    assert from_postgres == from_sqlite
    facts = {r[1]: r for r in from_sqlite[0]}
    day = int((MIDNIGHT + 28800) // 86400)
    assert [facts[n][0] for n in (1, 2, 3, 4)] == [day - 1, day, day - 1, day]  # either side of midnight
    assert [facts[n][8] for n in (1, 2, 3, 4, 5)] == [1, 0, 1, 0, 1]  # ack_ontime: on time, late, visit, late
    assert [facts[n][10] for n in (1, 2, 3)] == [0, 1, 1]  # visit: assigned to the door, visit_ordered
    assert facts[1][9] == MIDNIGHT + 500  # contact_at
    if not steps_before_006:  # a daily row emptied by a change keeps existing, at zero
        assert any(r[4] == 0 for r in from_sqlite[1])
