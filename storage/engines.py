"""The two databases behind one small interface: statements, rows, and one transaction at a time.

The SQL in storage/ is written once, in what SQLite and PostgreSQL both understand (`?` placeholders,
INSERT … ON CONFLICT, RETURNING, IS NOT DISTINCT FROM). This module hides the rest: placeholder style,
row counts, connections, locks and pools. Rows are sqlite3.Row or asyncpg.Record: both index by
position and by column name, iterate and slice.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
import asyncpg


class Reader(Protocol):
    """Queries of committed data, written with `?` placeholders."""

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Any]: ...

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Any | None: ...

    async def fetchval(self, sql: str, args: Sequence[Any] = ()) -> Any: ...


class Session(Reader, Protocol):
    """A transaction: queries and writes."""

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    async def insert(self, sql: str, args: Sequence[Any] = ()) -> int | None:
        """Run an INSERT; the new row's id, or None if ON CONFLICT DO NOTHING skipped it."""

    async def defer_constraints(self) -> None:
        """Check foreign keys at commit, not per statement (for rewriting linked tables)."""


class Engine(Protocol):
    async def close(self) -> None: ...

    def transaction(self, durable: bool = True) -> Any:
        """An async context manager yielding a Session; commits on exit, rolls back on an exception.

        Not `durable`: the commit is not flushed to disk before it returns (it is with the next durable
        one). For writes whose loss at a power cut changes nothing — a claim on an outbox row (lost, the
        row is pending, as a claim of a dead process becomes), a deferral, a heartbeat — so they do not
        each wait for an fsync that the instructions' own commits are queueing behind.
        """

    @property
    def read(self) -> Reader:
        """Reads of committed data only, beside any write in progress."""


# -- SQLite ------------------------------------------------------------------------------------


class _SQLiteReader:
    """The read-only connection, through aiosqlite's thread: a long report query never holds up the loop."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        return list(await self._conn.execute_fetchall(sql, args))

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Any | None:
        # One trip to aiosqlite's thread (a cursor's execute, fetchone and close would be three).
        rows = await self._conn.execute_fetchall(sql, args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, args: Sequence[Any] = ()) -> Any:
        row = await self.fetchone(sql, args)
        return None if row is None else row[0]


class _SQLiteWriter:
    """The writer's statements, run on the event loop itself inside a transaction the engine opened.

    Each is an indexed insert or update of a few rows (tens of microseconds); sending it to a thread
    and waking the loop for its answer cost several times that, some thirty times per instruction.
    Only what can wait — BEGIN IMMEDIATE (another connection's lock) and COMMIT (the fsync) — goes to
    the connection's own thread.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, args).rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        return self._conn.execute(sql, args).fetchall()

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Any | None:
        return self._conn.execute(sql, args).fetchone()

    async def fetchval(self, sql: str, args: Sequence[Any] = ()) -> Any:
        row = self._conn.execute(sql, args).fetchone()
        return None if row is None else row[0]

    async def insert(self, sql: str, args: Sequence[Any] = ()) -> int | None:
        return await self.fetchval(f"{sql} RETURNING id", args)

    async def defer_constraints(self) -> None:
        self._conn.execute("PRAGMA defer_foreign_keys=ON")


class SQLiteEngine:
    """One connection writes, behind an asyncio lock, in explicit transactions (statements inline,
    BEGIN and COMMIT on the connection's one thread, so they stay in order even if a caller is
    cancelled). Reads go through a second, read-only connection: in WAL mode it sees only committed
    data, so nothing reads (and, say, sends) the rows of a transaction that may still roll back, and
    reads go on beside a write."""

    def __init__(self, writer: sqlite3.Connection, thread: ThreadPoolExecutor, reader: aiosqlite.Connection,
                 synchronous: str) -> None:
        self._writer = writer
        self._synchronous = synchronous
        self._thread = thread
        self._reader = reader
        self._lock = asyncio.Lock()
        self._write = _SQLiteWriter(writer)
        self._read = _SQLiteReader(reader)

    @classmethod
    async def connect(cls, path: Path, synchronous: str, migrate: Callable[[sqlite3.Connection], None]
                      ) -> SQLiteEngine:
        """Open the file (WAL), apply `migrate(writer)`, then open the reader."""
        path.parent.mkdir(parents=True, exist_ok=True)
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")

        def open_writer() -> sqlite3.Connection:
            writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            writer.row_factory = sqlite3.Row
            for pragma in ("journal_mode=WAL", f"synchronous={synchronous}", "foreign_keys=ON",
                           "busy_timeout=5000"):
                writer.execute(f"PRAGMA {pragma}")
            migrate(writer)
            return writer

        writer = await asyncio.get_running_loop().run_in_executor(thread, open_writer)
        reader = await aiosqlite.connect(path, isolation_level=None)
        reader.row_factory = aiosqlite.Row
        await reader.execute("PRAGMA query_only=ON")
        await reader.execute("PRAGMA busy_timeout=5000")
        return cls(writer, thread, reader, synchronous)

    async def close(self) -> None:
        await self._reader.close()
        async with self._lock:
            await self._on_thread(self._writer.close)
        self._thread.shutdown(wait=False)

    async def _on_thread(self, call: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, call, *args)

    @asynccontextmanager
    async def transaction(self, durable: bool = True) -> AsyncIterator[Session]:
        async with self._lock:
            if not durable:  # in WAL mode NORMAL commits without an fsync; a later FULL commit covers it
                self._writer.execute("PRAGMA synchronous=NORMAL")
            try:
                await self._on_thread(self._writer.execute, "BEGIN IMMEDIATE")
                try:
                    yield self._write
                except BaseException:
                    await asyncio.shield(self._on_thread(self._writer.execute, "ROLLBACK"))
                    raise
                await asyncio.shield(self._on_thread(self._writer.execute, "COMMIT"))
            finally:
                if not durable:
                    self._writer.execute(f"PRAGMA synchronous={self._synchronous}")

    @property
    def read(self) -> Reader:
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
    async def transaction(self, durable: bool = True) -> AsyncIterator[Session]:
        async with self._pool.acquire() as conn, conn.transaction():
            if not durable:
                await conn.execute("SET LOCAL synchronous_commit = off")
            yield _PostgresSession(conn)

    @property
    def read(self) -> Reader:
        return self._read


@asynccontextmanager
async def _single(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()
