"""Copy a Quanzu SQLite database into PostgreSQL (`bot.py db copy-to-postgres`).

The SQLite file is opened read-only and read in one read transaction: one snapshot, even if a bot still
writes to it, streamed table by table in batches, parents before children so that foreign keys are
checked as the rows arrive. Everything lands in PostgreSQL in one transaction, so a failure leaves the
target as it was. The target must hold no instruction and no outbox row; anything else it holds (a
Quanzu that started on it once wrote meta and the directory) is replaced by the SQLite file's rows, so
that instance_salt, from which WeCom task ids are derived, carries over.

report_facts and report_daily are copied as they are. So that the triggers of migration 006 do not
count every row a second time, the target's user triggers are disabled for the copy with ALTER TABLE …
DISABLE TRIGGER inside the transaction, and enabled again before it commits: the tables' owner may do
that (session_replication_role would need a superuser, and would skip the foreign key checks too), and
no other session ever sees a table without its triggers.

Each identity sequence then continues after the highest id, or after SQLite's AUTOINCREMENT high-water
mark where that is higher (the newest rows were deleted), so no id is ever handed out twice. Before the
commit, row counts and a sample of rows are compared with the source, floats exactly; any difference
rolls the copy back.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiosqlite
import asyncpg

from storage.pg_migrations import migrate
from storage.sqlite import migrations as sqlite_migrations

# A target holding rows of these has been in use: a copy never merges two histories.
IN_USE_TABLES = ("instructions", "outbox")
# The spot check: rows compared column by column besides the row counts of every table.
NEWEST_INSTRUCTIONS = 50
RANDOM_INSTRUCTIONS = 50
RANDOM_ROWS = {"outbox": 10, "events": 10}
# ALTER TABLE … ENABLE … TRIGGER for each pg_trigger.tgenabled, to give a trigger back the mode it had.
_ENABLE = {b"O": "ENABLE TRIGGER", b"A": "ENABLE ALWAYS TRIGGER", b"R": "ENABLE REPLICA TRIGGER"}


class TransferError(Exception):
    """The copy was refused or failed and no data was written; the message (Chinese) says why."""


@dataclass(frozen=True)
class TableCount:
    table: str
    sqlite_rows: int
    postgres_rows: int


@dataclass
class CopyReport:
    counts: list[TableCount] = field(default_factory=list)
    compared_rows: int = 0                                # rows of the spot check, compared column by column
    differences: list[str] = field(default_factory=list)  # what the check found; empty when verified
    replaced: dict[str, int] = field(default_factory=dict)  # target rows (per table) the copy replaced
    committed: bool = False

    @property
    def verified(self) -> bool:
        return self.committed and not self.differences

    def lines(self) -> list[str]:
        """The report as the command line prints it."""
        width = max([len(c.table) for c in self.counts] + [5])
        out = [f"{'表':<{width - 1}}  {'SQLite':>10}  {'PostgreSQL':>10}"]
        out += [f"{c.table:<{width}}  {c.sqlite_rows:>10}  {c.postgres_rows:>10}"
                + ("" if c.sqlite_rows == c.postgres_rows else "  ≠") for c in self.counts]
        if self.replaced:
            out.append("目标库原有的启动数据已被替换：" + "、".join(f"{t} {n} 行" for t, n in self.replaced.items()))
        out.append(f"抽查 {self.compared_rows} 行，逐列比对")
        if self.verified:
            out.append("校验通过 / verified")
        else:
            out.append("校验未通过，已回滚，目标库未写入任何数据 / verification failed, nothing was written:")
            out += [f"  {d}" for d in self.differences]
        return out


async def copy_sqlite_to_postgres(sqlite_path: str | Path, pg_url: str, *, batch: int = 5000,
                                  on_table: Callable[[str, int], None] | None = None) -> CopyReport:
    """Copy the Quanzu database at sqlite_path into the (empty) PostgreSQL database at pg_url and verify it.

    Raises TransferError when the input is unusable or the target is in use; returns a report whose
    `verified` is False (and nothing committed) when the check after the copy found a difference.
    on_table(table, rows) is called as each table is copied.
    """
    version = max(number for number, _ in sqlite_migrations())
    source = await _open_source(Path(sqlite_path), version)
    try:
        target = await _connect(pg_url)
        try:
            await _prepare(target, version)
            await source.execute("BEGIN")  # one snapshot for the copy and for its check
            try:
                return await _copy(source, target, max(1, batch), on_table)
            finally:
                await source.execute("ROLLBACK")
        finally:
            await target.close()
    finally:
        await source.close()


# -- the two ends ----------------------------------------------------------------------------


async def _open_source(path: Path, expected: int) -> aiosqlite.Connection:
    """The SQLite file, read-only, once its schema version is the one this Quanzu ships."""
    uri = await asyncio.to_thread(_read_only_uri, path)
    try:
        db = await aiosqlite.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as err:
        raise TransferError(f"无法打开 SQLite 数据库 {path}：{err}") from err
    try:
        (version,) = await (await db.execute("PRAGMA user_version")).fetchone()
    except sqlite3.Error as err:
        await db.close()
        raise TransferError(f"无法读取 SQLite 数据库 {path}：{err}") from err
    if version != expected:
        await db.close()
        if version == 0:
            raise TransferError(f"{path} 不是 Quanzu 的数据库（没有结构版本）")
        if version < expected:
            raise TransferError(f"{path} 的结构版本是 {version}，当前 Quanzu 是 {expected}：请先用当前版本的 Quanzu "
                                "在这个 SQLite 文件上启动一次（bot.py run），让它完成迁移，再复制")
        raise TransferError(f"{path} 的结构版本 {version} 比当前 Quanzu（{expected}）新：请用同一版本的 Quanzu 复制")
    return db


def _read_only_uri(path: Path) -> str:
    if not path.is_file():
        raise TransferError(f"找不到 SQLite 数据库文件：{path}")
    return f"{path.resolve().as_uri()}?mode=ro"


async def _connect(url: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(url, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as err:
        raise TransferError(f"无法连接 PostgreSQL（{_redacted(url)}）：{err}") from err


def _redacted(url: str) -> str:
    """The URL without its password, fit for a message."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "(无法解析的地址)"


async def _prepare(target: asyncpg.Connection, expected: int) -> None:
    """Refuse a target in use before touching it at all, then migrate it to the SQLite file's version."""
    try:
        await _refuse_if_in_use(target)
        version = await migrate(target)
    except asyncpg.PostgresError as err:
        raise TransferError(f"PostgreSQL 数据库无法读取或迁移：{err}") from err
    if version != expected:
        raise TransferError(f"PostgreSQL 数据库的结构版本是 {version}，SQLite 的是 {expected}："
                            "请用同一版本的 Quanzu 复制")


# -- the copy --------------------------------------------------------------------------------


async def _copy(source: aiosqlite.Connection, target: asyncpg.Connection, batch: int,
                on_table: Callable[[str, int], None] | None) -> CopyReport:
    tables = await _source_tables(source)
    report = CopyReport()
    tx = target.transaction()
    await tx.start()
    try:
        await _check_target_tables(target, tables)
        await target.execute(f"LOCK TABLE {', '.join(map(_quote, tables))} IN EXCLUSIVE MODE")
        await _refuse_if_in_use(target)  # again, now that nobody can write meanwhile
        report.replaced = await _clear(target, reversed(tables))
        disabled = await _disable_triggers(target, tables)
        for table, columns in tables.items():
            copied = await _copy_table(source, target, table, columns, batch)
            if on_table is not None:
                on_table(table, copied)
        for table, trigger, mode in disabled:
            await target.execute(f"ALTER TABLE {_quote(table)} {_ENABLE[mode]} {_quote(trigger)}")
        await _continue_sequences(source, target, tables)
        await _verify(source, target, tables, report)
    except (asyncpg.PostgresError, sqlite3.Error) as err:
        await tx.rollback()
        raise TransferError(f"复制失败，已回滚，未写入任何数据：{err}") from err
    except BaseException:
        await tx.rollback()
        raise
    if report.differences:
        await tx.rollback()
        return report
    try:
        await tx.commit()
    except asyncpg.PostgresError as err:
        raise TransferError(f"提交失败，未写入任何数据：{err}") from err
    report.committed = True
    return report


async def _source_tables(db: aiosqlite.Connection) -> dict[str, list[str]]:
    """The SQLite tables (SQLite's own left out) with their columns, parents before children."""
    names = [r[0] for r in await db.execute_fetchall(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite!_%' ESCAPE '!' ORDER BY rowid"
    )]
    parents = {}
    for name in names:
        rows = await db.execute_fetchall("SELECT \"table\" FROM pragma_foreign_key_list(?)", (name,))
        parents[name] = {r[0] for r in rows if r[0] in names and r[0] != name}
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = [n for n in names if n not in ordered and parents[n] <= set(ordered)]
        if not ready:
            raise TransferError("SQLite 数据库的外键成环，无法确定复制顺序")
        ordered += ready
    return {
        name: [r[0] for r in await db.execute_fetchall("SELECT name FROM pragma_table_info(?) ORDER BY cid", (name,))]
        for name in ordered
    }


async def _check_target_tables(target: asyncpg.Connection, tables: dict[str, list[str]]) -> None:
    """The target has exactly these tables with these columns, in this order (one schema version on both)."""
    problems = []
    for table, columns in tables.items():
        have = [r[0] for r in await target.fetch(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(quote_ident($1))"
            " AND attnum > 0 AND NOT attisdropped ORDER BY attnum", table,
        )]
        if not have:
            problems.append(f"缺少表 {table}")
        elif have != columns:
            problems.append(f"表 {table} 的列不同（SQLite：{', '.join(columns)}；PostgreSQL：{', '.join(have)}）")
    extra = [r[0] for r in await target.fetch(
        "SELECT relname FROM pg_class WHERE relnamespace = to_regnamespace(quote_ident(current_schema()))"
        " AND relkind IN ('r', 'p') AND relname <> 'schema_version' AND NOT relname = ANY($1::text[])"
        " ORDER BY relname", list(tables),
    )]
    if extra:
        problems.append(f"PostgreSQL 多出表 {', '.join(extra)}")
    if problems:
        raise TransferError("两边的表结构不一致，未复制：" + "；".join(problems))


async def _refuse_if_in_use(target: asyncpg.Connection) -> None:
    used = [t for t in IN_USE_TABLES if await target.fetchval("SELECT to_regclass(quote_ident($1))", t) is not None
            and await target.fetchval(f"SELECT EXISTS (SELECT 1 FROM {_quote(t)})")]
    if used:
        raise TransferError(f"目标 PostgreSQL 数据库已有数据（{'、'.join(used)} 表不为空），拒绝复制，未写入任何数据"
                            " / the target already holds instructions or outbox rows; nothing was written")


async def _clear(target: asyncpg.Connection, tables: Iterable[str]) -> dict[str, int]:
    """Empty the target's tables, children first; returns the rows each held."""
    cleared = {}
    for table in tables:
        status = await target.execute(f"DELETE FROM {_quote(table)}")
        if (count := int(status.split()[-1])) > 0:
            cleared[table] = count
    return dict(reversed(cleared.items()))


async def _disable_triggers(target: asyncpg.Connection, tables: Iterable[str]) -> list[tuple[str, str, bytes]]:
    """Disable the enabled user triggers of these tables; returns (table, trigger, mode) to enable them again."""
    rows = await target.fetch(
        "SELECT c.relname, t.tgname, t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " WHERE t.tgrelid IN (SELECT to_regclass(quote_ident(n)) FROM unnest($1::text[]) AS n)"
        " AND NOT t.tgisinternal AND t.tgenabled <> 'D' ORDER BY c.relname, t.tgname", list(tables),
    )
    disabled = [(r[0], r[1], r[2]) for r in rows]
    for table, trigger, _ in disabled:
        try:
            await target.execute(f"ALTER TABLE {_quote(table)} DISABLE TRIGGER {_quote(trigger)}")
        except asyncpg.InsufficientPrivilegeError as err:
            raise TransferError("复制时要暂停目标表的触发器，须以表的所有者（运行迁移的用户）连接 PostgreSQL，"
                                f"未写入任何数据：{err}") from err
    return disabled


async def _copy_table(source: aiosqlite.Connection, target: asyncpg.Connection, table: str,
                      columns: list[str], batch: int) -> int:
    copied = 0
    cursor = await source.execute(f"SELECT {', '.join(map(_quote, columns))} FROM {_quote(table)}")
    try:
        while rows := await cursor.fetchmany(batch):
            await target.copy_records_to_table(table, records=rows, columns=columns)
            copied += len(rows)
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as err:  # InterfaceError: a value of the wrong type
        raise TransferError(f"复制表 {table} 时出错（第 {copied + 1} 至 {copied + batch} 行之间），已回滚，"
                            f"未写入任何数据：{err}") from err
    finally:
        await cursor.close()
    return copied


async def _continue_sequences(source: aiosqlite.Connection, target: asyncpg.Connection,
                              tables: Iterable[str]) -> None:
    """Set each identity sequence after the highest id copied, or SQLite's high-water mark if higher."""
    high_water: dict[str, int] = {}
    if await (await source.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")).fetchone():
        high_water = {r[0]: r[1] for r in await source.execute_fetchall("SELECT name, seq FROM sqlite_sequence")}
    identities = await target.fetch(
        "SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        " WHERE a.attrelid IN (SELECT to_regclass(quote_ident(n)) FROM unnest($1::text[]) AS n)"
        " AND a.attidentity <> '' AND NOT a.attisdropped", list(tables),
    )
    for table, column in identities:
        highest = await target.fetchval(f"SELECT COALESCE(MAX({_quote(column)}), 0) FROM {_quote(table)}")
        top = max(highest, high_water.get(table) or 0)
        await target.execute(  # is_called false: the next value is 1 itself
            "SELECT setval(pg_get_serial_sequence(quote_ident($1), $2), GREATEST($3::bigint, 1), $3::bigint > 0)",
            table, column, top,
        )


# -- the check -------------------------------------------------------------------------------


async def _verify(source: aiosqlite.Connection, target: asyncpg.Connection, tables: dict[str, list[str]],
                  report: CopyReport) -> None:
    for table in tables:
        (sqlite_rows,) = await (await source.execute(f"SELECT COUNT(*) FROM {_quote(table)}")).fetchone()
        postgres_rows = await target.fetchval(f"SELECT count(*) FROM {_quote(table)}")
        report.counts.append(TableCount(table, sqlite_rows, postgres_rows))
        if sqlite_rows != postgres_rows:
            report.differences.append(f"{table}：SQLite {sqlite_rows} 行，PostgreSQL {postgres_rows} 行")
    rng = random.Random()
    samples = {"instructions": [r[0] for r in await source.execute_fetchall(
        "SELECT id FROM instructions ORDER BY id DESC LIMIT ?", (NEWEST_INSTRUCTIONS,))]}
    samples["instructions"] += await _random_ids(source, "instructions", RANDOM_INSTRUCTIONS, rng)
    for table, count in RANDOM_ROWS.items():
        samples[table] = await _random_ids(source, table, count, rng)
    for table, ids in samples.items():
        await _compare_rows(source, target, table, tables[table], sorted(set(ids)), report)
    await _compare_meta(source, target, report)


async def _random_ids(db: aiosqlite.Connection, table: str, count: int, rng: random.Random) -> list[int]:
    """Up to `count` ids of rows picked at random (the first id at or after a random point in the id range)."""
    low, high = await (await db.execute(f"SELECT MIN(id), MAX(id) FROM {_quote(table)}")).fetchone()
    if low is None:
        return []
    ids = []
    for _ in range(count):
        (found,) = await (await db.execute(
            f"SELECT id FROM {_quote(table)} WHERE id >= ? ORDER BY id LIMIT 1", (rng.randint(low, high),)
        )).fetchone()
        ids.append(found)
    return ids


async def _compare_rows(source: aiosqlite.Connection, target: asyncpg.Connection, table: str, columns: list[str],
                        ids: list[int], report: CopyReport) -> None:
    if not ids:
        return
    select = f"SELECT {', '.join(map(_quote, columns))} FROM {_quote(table)}"
    key = columns.index("id")
    theirs = {r[key]: tuple(r) for r in await source.execute_fetchall(
        f"{select} WHERE id IN ({', '.join('?' * len(ids))})", ids)}
    ours = {r[key]: tuple(r) for r in await target.fetch(f"{select} WHERE id = ANY($1::bigint[])", ids)}
    for row_id in ids:
        report.compared_rows += 1
        report.differences += _row_differences(f"{table} id={row_id}", columns, theirs.get(row_id), ours.get(row_id))


async def _compare_meta(source: aiosqlite.Connection, target: asyncpg.Connection, report: CopyReport) -> None:
    theirs = dict(await source.execute_fetchall("SELECT key, value FROM meta"))
    ours = {r[0]: r[1] for r in await target.fetch("SELECT key, value FROM meta")}
    for key in sorted(theirs.keys() | ours.keys()):
        report.compared_rows += 1
        report.differences += _row_differences(f"meta {key}", ["value"], _one(theirs, key), _one(ours, key))


def _one(values: dict[str, Any], key: str) -> tuple[Any, ...] | None:
    return (values[key],) if key in values else None


def _row_differences(what: str, columns: Sequence[str], theirs: tuple | None, ours: tuple | None) -> list[str]:
    """Column by column, value and type: 1.0 is not 1, and a float must be exactly the same number."""
    if theirs is None or ours is None:
        return [f"{what}：{'SQLite' if theirs is None else 'PostgreSQL'} 没有这一行"]
    return [f"{what} 列 {column}：SQLite {a!r}，PostgreSQL {b!r}"
            for column, a, b in zip(columns, theirs, ours, strict=True)
            if type(a) is not type(b) or a != b]


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
