"""Persistence behind one interface; SQLite is the embedded default."""

from storage.base import DispatchPlanner, Storage
from storage.sqlite import SQLiteStorage

__all__ = ["DispatchPlanner", "SQLiteStorage", "Storage", "open_storage"]


async def open_storage(path, synchronous: str = "FULL") -> Storage:
    """Open (and migrate) the database at path."""
    storage = SQLiteStorage(path, synchronous)
    await storage.open()
    return storage
