"""``PostgresStore``: the SQL schema on PostgreSQL through psycopg 3."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import psycopg

from durable import DurableStoreError

from ._sql import Row, SqlStore, schema_statements

__all__ = ["PostgresStore"]


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


class PostgresStore(SqlStore):
    """A durable-run store on a PostgreSQL server; open it with ``await PostgresStore.connect``."""

    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self._conn = connection
        # One connection serves one statement at a time.
        self._lock = asyncio.Lock()

    @classmethod
    async def connect(cls, dsn: str) -> PostgresStore:
        """Connect to ``dsn`` and create or check the schema."""
        try:
            conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        except psycopg.Error as exc:
            raise DurableStoreError(
                f"cannot connect to PostgreSQL ({exc}); check the connection string "
                "and that the server is running"
            ) from None
        store = cls(conn)
        try:
            await store._migrate()
        except BaseException:
            await conn.close()
            raise
        return store

    async def _migrate(self) -> None:
        async with self._conn.transaction():
            # Serialize schema creation between workers starting at the same time.
            await self._conn.execute("SELECT pg_advisory_xact_lock(hashtext('durable_schema'))")
            for statement in schema_statements("BIGINT", "BIGSERIAL PRIMARY KEY"):
                await self._conn.execute(statement)
            cursor = await self._conn.execute("SELECT MAX(version) FROM durable_schema")
            row = await cursor.fetchone()
            found = None if row is None else row[0]
            upgrade = self.schema_upgrade(found, "the PostgreSQL database")
            if upgrade is not None:
                await self._conn.execute(upgrade)

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Row]:
        async with self._lock:
            cursor = await self._conn.execute(_pg(sql), params)
            return list(await cursor.fetchall())

    async def _execute(self, sql: str, params: Sequence[Any]) -> int:
        async with self._lock:
            cursor = await self._conn.execute(_pg(sql), params)
            return cursor.rowcount

    async def _execute_unsynced(self, sql: str, params: Sequence[Any]) -> int:
        async with self._lock, self._conn.transaction():
            # Returns before the commit is flushed; a server crash may lose it, never corrupt.
            await self._conn.execute("SET LOCAL synchronous_commit = off")
            cursor = await self._conn.execute(_pg(sql), params)
            return cursor.rowcount

    async def close(self) -> None:
        await self._conn.close()
