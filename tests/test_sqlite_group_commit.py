"""SQLite's group commit (storage/engines.py): writes queued together share one COMMIT, yet each
behaves as a transaction of its own — it returns only once durable and visible, and one that fails
takes only its own writes with it."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from storage.engines import SQLiteEngine

pytestmark = pytest.mark.sqlite_only


def _schema(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL UNIQUE)")


class Refused(Exception):
    pass


async def test_writes_queued_together_commit_together_and_a_failing_one_loses_only_its_own(tmp_path):
    engine = await SQLiteEngine.connect(tmp_path / "group.sqlite3", "FULL", _schema)
    statements: list[str] = []
    engine._writer.set_trace_callback(statements.append)  # the connection that commits
    seen_after_return: dict[int, bool] = {}

    async def write(n: int) -> None:
        async with engine.transaction() as db:
            await db.execute("INSERT INTO notes(body) VALUES (?)", (f"note {n}",))
            if n % 7 == 3:
                await db.execute("INSERT INTO notes(body) VALUES (?)", (f"extra {n}",))
                raise Refused(n)
        # Returned: committed, so the read-only connection (committed data only) sees it.
        seen_after_return[n] = await engine.read.fetchval("SELECT COUNT(*) FROM notes WHERE body = ?",
                                                          (f"note {n}",)) == 1

    results = await asyncio.gather(*(write(n) for n in range(60)), return_exceptions=True)

    refused = {n for n, r in enumerate(results) if isinstance(r, Refused)}
    assert refused == {n for n in range(60) if n % 7 == 3}
    assert all(r is None for n, r in enumerate(results) if n not in refused)
    assert seen_after_return == {n: True for n in range(60) if n not in refused}
    bodies = {r[0] for r in await engine.read.fetchall("SELECT body FROM notes")}
    assert bodies == {f"note {n}" for n in range(60) if n not in refused}  # nothing of a failed one
    commits = statements.count("COMMIT")
    assert 1 <= commits <= 10  # 60 transactions queued at once shared a handful of commits
    await engine.close()


async def test_a_write_that_breaks_a_constraint_fails_alone_and_the_engine_goes_on(tmp_path):
    engine = await SQLiteEngine.connect(tmp_path / "unique.sqlite3", "FULL", _schema)

    async def write(body: str) -> int:
        async with engine.transaction() as db:
            return await db.insert("INSERT INTO notes(body) VALUES (?)", (body,))

    results = await asyncio.gather(write("a"), write("a"), write("b"), return_exceptions=True)
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert isinstance(results[0], int) and isinstance(results[2], int)
    assert await write("c") > 0
    assert sorted(r[0] for r in await engine.read.fetchall("SELECT body FROM notes")) == ["a", "b", "c"]
    await engine.close()
