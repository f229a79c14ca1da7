"""SQLite (aiosqlite): the embedded default, one process on one file, nothing to set up."""

from __future__ import annotations

import logging
import sqlite3
from importlib import resources
from pathlib import Path

from storage.engines import Engine, SQLiteEngine
from storage.sql_storage import SQLStorage

_LOGGER = logging.getLogger(__name__)


def migrations() -> list[tuple[int, str]]:
    """The numbered SQL migration scripts shipped with the package, in order."""
    folder = resources.files("storage") / "migrations"
    scripts = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            scripts.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(scripts)


def migrate(db: sqlite3.Connection) -> None:
    (version,) = db.execute("PRAGMA user_version").fetchone()
    for number, script in migrations():
        if number <= version:
            continue
        _LOGGER.info("applying migration %03d", number)
        # executescript commits on its own; the version bump is part of the script's transaction
        db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version={number};\nCOMMIT;")


class SQLiteStorage(SQLStorage):
    """Storage on one SQLite file."""

    shared = False  # one process: nothing to share the work with

    def __init__(self, path: str | Path, synchronous: str = "FULL") -> None:
        super().__init__()
        self.path = Path(path)
        self._synchronous = synchronous

    async def _connect(self) -> Engine:
        return await SQLiteEngine.connect(self.path, self._synchronous, migrate)

    async def release_claims(self, alive_since: float) -> int:
        """One process owns the file, so any claim not made by this one is from a process that ended."""
        async with self._transaction(durable=False) as db:
            return await db.execute(
                "UPDATE outbox SET state = 'pending', claimed_by = NULL WHERE state = 'sending'"
                " AND (claimed_by IS NULL OR claimed_by != ?)",
                (self.instance_id,),
            )
