"""PostgreSQL schema migrations: the scripts of storage/migrations/postgres, numbered like SQLite's.

Script N builds on PostgreSQL what storage/migrations/N_*.sql builds on SQLite, so a schema version means
the same tables and columns on both backends. The version is the one row of schema_version (SQLite keeps
it in PRAGMA user_version). Instances that start together on one database take turns: each script runs
in its own transaction with the version bump, under a transaction-scoped advisory lock, and the version
is read again once the lock is held, so no script ever runs twice. Objects are created unqualified, in
the connection's current schema.
"""

from __future__ import annotations

import logging
from importlib import resources

import asyncpg

_LOGGER = logging.getLogger(__name__)

# pg_advisory_xact_lock key of the migration runner; the same for every Quanzu release, never reused.
MIGRATION_LOCK = 0x5155_414E_5A55_0001  # "QUANZU", 1


def postgres_migrations() -> list[tuple[int, str]]:
    """The numbered PostgreSQL migration scripts shipped with the package, in order."""
    folder = resources.files("storage") / "migrations" / "postgres"
    scripts = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            scripts.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(scripts)


async def schema_version(conn: asyncpg.Connection) -> int:
    """The version the database is at; 0 if Quanzu never migrated it."""
    if await conn.fetchval("SELECT to_regclass('schema_version')") is None:
        return 0
    return await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")


async def migrate(conn: asyncpg.Connection) -> int:
    """Apply every shipped script above the database's version; returns the version reached."""
    scripts = postgres_migrations()
    while True:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            version = await _version_locked(conn)
            pending = [(number, script) for number, script in scripts if number > version]
            if not pending:
                return version
            number, script = pending[0]
            _LOGGER.info("applying PostgreSQL migration %03d", number)
            await conn.execute(script)
            await conn.execute("UPDATE schema_version SET version = $1", number)


async def _version_locked(conn: asyncpg.Connection) -> int:
    """The version, creating schema_version (one row, 0) on first use; call with the migration lock held."""
    if await conn.fetchval("SELECT to_regclass('schema_version')") is None:
        await conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        await conn.execute("INSERT INTO schema_version (version) VALUES (0)")
    return await conn.fetchval("SELECT version FROM schema_version")
