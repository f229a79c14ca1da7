"""The two databases behind one small interface: statements, rows, and one transaction at a time.

The SQL in storage/ is written once, in what SQLite and PostgreSQL both understand (`?` placeholders,
INSERT … ON CONFLICT, RETURNING, IS NOT DISTINCT FROM). This module hides the rest: placeholder style,
row counts, connections, locks and pools. Rows are sqlite3.Row or asyncpg.Record: both index by
position and by column name, iterate and slice.
"""

from __future__ import annotations

import asyncio
import contextlib
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


class Engine(Protocol):
    async def close(self) -> None: ...

    def transaction(self, durable: bool = True) -> Any:
        """An async context manager yielding a Session; commits on exit, rolls back on an exception.

        Not `durable`: the commit need not be flushed to disk before it returns (the next durable one
        flushes it). For writes whose loss at a power cut changes nothing — a claim on an outbox row
        (lost, the row is pending, as a claim of a dead process becomes), a deferral, a heartbeat — so
        that, alone, they do not wait for an fsync. (With SQLite one that joins a durable group is
        flushed with it.)
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


class _Group:
    """Transactions committed together: one BEGIN IMMEDIATE, one COMMIT (one fsync) for all of them."""

    def __init__(self, durable: bool, begun: asyncio.Future[Any]) -> None:
        self.durable = durable
        self.begun = begun
        self.committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Members that went away (cancelled) must not leave an unread failure behind.
        for future in (begun, self.committed):
            future.add_done_callback(lambda f: f.cancelled() or f.exception())


class SQLiteEngine:
    """One connection writes, one transaction body at a time behind an asyncio lock (statements inline,
    BEGIN and COMMIT on the connection's one thread, so they stay in order even if a caller is
    cancelled). Reads go through a second, read-only connection: in WAL mode it sees only committed
    data, so nothing reads (and, say, sends) the rows of a transaction that may still roll back, and
    reads go on beside a write.

    Group commit: the bodies queued while one group commits run in the next SQLite transaction, each
    in a savepoint of its own (a failing body rolls back only its own writes), and one COMMIT, one
    fsync, makes them all durable; each caller returns only after it. With synchronous=FULL the fsync
    (milliseconds) is what a write waits for, so sign-fors, sent marks and intake arriving together
    share it instead of queueing for one each.
    """

    def __init__(self, writer: sqlite3.Connection, thread: ThreadPoolExecutor, reader: aiosqlite.Connection,
                 synchronous: str) -> None:
        self._writer = writer
        self._synchronous = synchronous
        self._thread = thread
        self._reader = reader
        self._lock = asyncio.Lock()
        self._group: _Group | None = None
        self._flushers: set[asyncio.Task[None]] = set()
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
            if self._group is not None:
                await self._commit(self._group)
            await self._on_thread(self._writer.close)
        self._thread.shutdown(wait=False)

    async def _on_thread(self, call: Callable[..., Any], *args: Any) -> Any:
        # Shielded: once queued, the statement runs whatever happens to the caller; waiting for it keeps
        # what the engine believes in step with what the connection did.
        return await asyncio.shield(asyncio.get_running_loop().run_in_executor(self._thread, call, *args))

    @asynccontextmanager
    async def transaction(self, durable: bool = True) -> AsyncIterator[Session]:
        async with self._lock:
            group = await self._join(durable)
            self._writer.execute("SAVEPOINT member")
            try:
                yield self._write
            except BaseException:
                await self._roll_back_member(group)
                raise
            self._writer.execute("RELEASE member")
        await asyncio.shield(group.committed)

    async def _join(self, durable: bool) -> _Group:
        """The open group, or a new one (with its flusher queued behind every body waiting now)."""
        group = self._group
        if group is not None and durable and not group.durable:
            await self._commit(group)  # a durable write must not ride on a commit that is not flushed
            group = None
        if group is None:
            # synchronous cannot change inside a transaction. NORMAL in WAL mode commits without an
            # fsync; the next FULL commit covers it.
            if not durable:
                self._writer.execute("PRAGMA synchronous=NORMAL")
            begun = asyncio.get_running_loop().run_in_executor(self._thread, self._writer.execute, "BEGIN IMMEDIATE")
            group = self._group = _Group(durable, begun)
            flusher = asyncio.create_task(self._flush(group), name="sqlite-group-commit")
            self._flushers.add(flusher)
            flusher.add_done_callback(self._flushers.discard)
        try:
            await asyncio.shield(group.begun)
        except sqlite3.Error as err:  # another connection held the file past busy_timeout
            if self._group is group:
                self._group = None
                group.committed.set_exception(err)
            raise
        return group

    async def _flush(self, group: _Group) -> None:
        async with self._lock:
            if self._group is group:
                with contextlib.suppress(Exception):  # the group's members are told, through `committed`
                    await self._commit(group)

    async def _commit(self, group: _Group) -> None:
        self._group = None
        try:
            await asyncio.shield(group.begun)
            await self._on_thread(self._writer.execute, "COMMIT")
        except BaseException as err:
            if self._writer.in_transaction:
                await self._on_thread(self._writer.execute, "ROLLBACK")
            if not group.committed.done():
                group.committed.set_exception(err)
            raise
        finally:
            if not group.durable:  # between groups the connection is at the configured level
                self._writer.execute(f"PRAGMA synchronous={self._synchronous}")
        group.committed.set_result(None)

    async def _roll_back_member(self, group: _Group) -> None:
        """Undo one failed body; if SQLite had to roll back the whole transaction (disk full, I/O
        error), the group is lost and every member of it fails."""
        try:
            self._writer.execute("ROLLBACK TO member")
            self._writer.execute("RELEASE member")
        except sqlite3.Error as err:
            if self._group is group:
                self._group = None
                if self._writer.in_transaction:
                    await self._on_thread(self._writer.execute, "ROLLBACK")
                group.committed.set_exception(err)

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
