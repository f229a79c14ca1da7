"""Persistence behind one interface: SQLite (the embedded default) or PostgreSQL, by the database URL."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from storage.base import DispatchPlanner, Storage
from storage.sqlite import SQLiteStorage

__all__ = ["DatabaseOptions", "DispatchPlanner", "SQLiteStorage", "Storage", "open_storage"]


class DatabaseOptions(Protocol):
    """Which database and how: the [database] section of the config (bot/config.py) has these."""

    @property
    def url(self) -> str | None: ...  # PostgreSQL when set

    @property
    def path(self) -> Path: ...  # else this SQLite file

    @property
    def synchronous(self) -> str: ...

    @property
    def pool_size(self) -> int: ...


async def open_storage(database: DatabaseOptions) -> Storage:
    """Open (and migrate) the configured database: PostgreSQL when [database] url is set, else the SQLite file."""
    if database.url:
        from storage.postgres import PostgresStorage

        storage: Storage = PostgresStorage(database.url, database.pool_size)
    else:
        storage = SQLiteStorage(database.path, database.synchronous)
    await storage.open()
    return storage
