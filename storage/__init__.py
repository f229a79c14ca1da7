"""Persistence behind one interface: SQLite (the embedded default) or PostgreSQL, by the database URL."""

from __future__ import annotations

from bot.config import DatabaseSettings
from storage.base import DispatchPlanner, Storage
from storage.sqlite import SQLiteStorage

__all__ = ["DispatchPlanner", "SQLiteStorage", "Storage", "open_storage"]


async def open_storage(database: DatabaseSettings) -> Storage:
    """Open (and migrate) the configured database: PostgreSQL when [database] url is set, else the SQLite file."""
    if database.url:
        from storage.postgres import PostgresStorage

        storage: Storage = PostgresStorage(database.url, database.pool_size)
    else:
        storage = SQLiteStorage(database.path, database.synchronous)
    await storage.open()
    return storage
