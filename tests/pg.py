"""PostgreSQL for the tests: each test gets a schema of its own in one test database, dropped afterwards.

QUANZU_TEST_PG_URL names the server and database (scripts/postgres creates it); the URL handed to the
code under test sets search_path to the fresh schema, which asyncpg passes on as a server setting.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

PG_URL = os.environ.get("QUANZU_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/quanzu_test")


_LEFT: list[str] = []  # schemas of this run still to drop (drop_left_schemas)


async def new_pg_schema() -> str:
    """A URL on a new, empty schema that stays until drop_left_schemas(): for tests whose apps may still
    be closing (and writing) when the test's other fixtures are torn down."""
    name = f"t_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(PG_URL)
    try:
        await admin.execute(f"CREATE SCHEMA {name}")
    finally:
        await admin.close()
    _LEFT.append(name)
    return _with_search_path(name)


async def drop_left_schemas() -> None:
    if not _LEFT:
        return
    admin = await asyncpg.connect(PG_URL)
    try:
        while _LEFT:
            await admin.execute(f"DROP SCHEMA IF EXISTS {_LEFT.pop()} CASCADE")
    finally:
        await admin.close()


def _with_search_path(name: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}search_path={name}"


@asynccontextmanager
async def pg_schema() -> AsyncIterator[str]:
    """Yield a database URL whose tables land in a new, empty schema; the schema is dropped on exit."""
    name = f"t_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(PG_URL)
    try:
        await admin.execute(f"CREATE SCHEMA {name}")
        yield _with_search_path(name)
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        await admin.close()
