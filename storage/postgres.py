"""PostgreSQL (asyncpg): several Quanzu instances on one database, for a province or for failover."""

from __future__ import annotations

from storage.engines import Engine, PostgresEngine, Session
from storage.pg_migrations import migrate
from storage.sql_storage import SQLStorage


class PostgresStorage(SQLStorage):
    """Storage on a PostgreSQL database that other instances may share."""

    shared = True  # other instances claim outbox rows and hold the scheduler lease too

    def __init__(self, url: str, pool_size: int = 10) -> None:
        super().__init__()
        self.url = url
        self._pool_size = pool_size

    async def _connect(self) -> Engine:
        return await PostgresEngine.connect(self.url, self._pool_size, migrate)

    async def _after_explicit_ids(self, db: Session, table: str) -> None:
        await db.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST(MAX(id), 1), MAX(id) IS NOT NULL)"
            f" FROM {table}"
        )

    async def _lock_instruction(self, db: Session, instruction_id: int) -> None:
        await db.execute("SELECT 1 FROM instructions WHERE id = ? FOR UPDATE", (instruction_id,))
