"""The two databases behind one small interface: statements, rows, and one transaction at a time.

The SQL in storage/ is written once, in what SQLite and PostgreSQL both understand (`?` placeholders,
INSERT … ON CONFLICT, RETURNING, IS NOT DISTINCT FROM). This module hides the rest: placeholder style,
row counts, connections, locks and pools. Rows are sqlite3.Row or asyncpg.Record: both index by
position and by column name, iterate and slice.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
import asyncpg


class Session(Protocol):
    """A transaction, or the read side: runs statements written with `?` placeholders."""

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Any]: ...

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Any | None: ...

    async def fetchval(self, sql: str, args: Sequence[Any] = ()) -> Any: ...

    async def insert(self, sql: str, args: Sequence[Any] = ()) -> int | None:
        """Run an INSERT; the new row's id, or None if ON CONFLICT DO NOTHING skipped it."""

    async def defer_constraints(self) -> None:
        """Check foreign keys at commit, not per statement (for rewriting linked tables)."""


class Engine(Protocol):
    dialect: str

    async def close(self) -> None: ...

    def transaction(self) -> Any:
        """An async context manager yielding a Session; commits on exit, rolls back on an exception."""

    @property
    def read(self) -> Session:
        """Reads of committed data only, beside any write in progress."""


# -- SQLite ------------------------------------------------------------------------------------


class _SQLiteSession:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        cursor = await self._conn.execute(sql, args)
        return cursor.rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, rows)

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        return list(await self._conn.execute_fetchall(sql, args))

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Any | None:
        # One trip to aiosqlite's thread (a cursor's execute, fetchone and close would be three).
        rows = await self._conn.execute_fetchall(sql, args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, args: Sequence[Any] = ()) -> Any:
        row = await self.fetchone(sql, args)
        return None if row is None else row[0]

    async def insert(self, sql: str, args: Sequence[Any] = ()) -> int | None:
        return await self.fetchval(f"{sql} RETURNING id", args)

    async def defer_constraints(self) -> None:
        await self._conn.execute("PRAGMA defer_foreign_keys=ON")


class SQLiteEngine:
    """One connection writes, behind an asyncio lock, in explicit transactions. Reads go through a
    second, read-only connection: in WAL mode it sees only committed data, so nothing reads (and, say,
    sends) the rows of a transaction that may still roll back, and reads go on beside a write."""

    dialect = "sqlite"

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader
        self._lock = asyncio.Lock()
        self._write = _SQLiteSession(writer)
        self._read = _SQLiteSession(reader)

    @classmethod
    async def connect(cls, path: Path, synchronous: str, migrate: Any) -> SQLiteEngine:
        """Open the file (WAL), apply `migrate(writer)`, then open the reader."""
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await aiosqlite.connect(path, isolation_level=None)
        writer.row_factory = aiosqlite.Row
        for pragma in ("journal_mode=WAL", f"synchronous={synchronous}", "foreign_keys=ON", "busy_timeout=5000"):
            await writer.execute(f"PRAGMA {pragma}")
        await migrate(writer)
        reader = await aiosqlite.connect(path, isolation_level=None)
        reader.row_factory = aiosqlite.Row
        await reader.execute("PRAGMA query_only=ON")
        await reader.execute("PRAGMA busy_timeout=5000")
        return cls(writer, reader)

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Session]:
        async with self._lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._write
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            await self._writer.execute("COMMIT")

    @property
    def read(self) -> Session:
        return self._read


# -- PostgreSQL --------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's $1, $2, … (none of our SQL has a `?` inside a string literal)."""
    counter = iter(range(1, sql.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


def _changed(status: str) -> int:
    """Rows changed, from a command status such as 'UPDATE 3' or 'INSERT 0 1'."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _PostgresSession:
    def __init__(self, conn: asyncpg.Connection | asyncpg.Pool) -> None:
        self._conn = conn

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        return _changed(await self._conn.execute(numbered(sql), *args))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            await self._conn.executemany(numbered(sql), rows)

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        return await self._conn.fetch(numbered(sql), *args)

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Any | None:
        return await self._conn.fetchrow(numbered(sql), *args)

    async def fetchval(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return await self._conn.fetchval(numbered(sql), *args)

    async def insert(self, sql: str, args: Sequence[Any] = ()) -> int | None:
        return await self.fetchval(f"{sql} RETURNING id", args)

    async def defer_constraints(self) -> None:
        await self._conn.execute("SET CONSTRAINTS ALL DEFERRED")


class PostgresEngine:
    """A pool of connections; each transaction has one to itself, and reads take any free one.

    Transactions run concurrently (READ COMMITTED): what must happen once across instances is
    guarded in the SQL itself (conditional UPDATEs, unique keys, ON CONFLICT), never by a lock here.
    """

    dialect = "postgresql"

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._read = _PostgresSession(pool)

    @classmethod
    async def connect(cls, url: str, pool_size: int, migrate: Any) -> PostgresEngine:
        async with _single(url) as conn:
            await migrate(conn)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_size, statement_cache_size=1024)
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Session]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield _PostgresSession(conn)

    @property
    def read(self) -> Session:
        return self._read


@asynccontextmanager
async def _single(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()
