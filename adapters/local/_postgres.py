"""``PostgresStore``: the SQL schema on PostgreSQL through psycopg 3."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Sequence
from typing import Any

import psycopg

from durable import DurableStoreError

from ._lease_keeper import LeaseKeeper
from ._schema import Dialect, Row, migrate
from ._sql import SqlStore

__all__ = ["PostgresStore"]


POSTGRES = Dialect(
    bigint="BIGINT",
    serial="BIGSERIAL PRIMARY KEY",
    clustered="",
    # Resolved through the search path, as every other statement's table names are.
    run_columns=(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'durable_runs'::regclass "
        "AND attnum > 0 AND NOT attisdropped"
    ),
    has_table="SELECT 1 WHERE to_regclass('{table}') IS NOT NULL",
)


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


class PostgresStore(SqlStore):
    """A durable-run store on a PostgreSQL server; open it with ``await PostgresStore.connect``.

    Leases are renewed on a second, synchronous connection opened from ``dsn``,
    so a step that blocks the event loop keeps its lease. ``dsn`` is required:
    a store that could not renew would lose every lease it takes.
    """

    def __init__(self, connection: psycopg.AsyncConnection[Any], *, dsn: str) -> None:
        if not isinstance(dsn, str) or not dsn:
            raise ValueError(
                "PostgresStore needs the connection string of its database to renew leases "
                "on a second connection; open it with await PostgresStore.connect(dsn)"
            )
        self._conn = connection
        # One connection serves one statement at a time.
        self._lock = asyncio.Lock()
        # Kept only to open the lease keeper's connection; never logged: it may hold a password.
        self._dsn = dsn
        self._renewals: psycopg.Connection[Any] | None = None
        self._statement_timeout_ms = 0
        self._renewals_lock = threading.Lock()
        self._closed = False
        self.lease_keeper = LeaseKeeper(self.renew_lease_blocking, name="durable-postgres-leases")

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
        store = cls(conn, dsn=dsn)
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
            await migrate(POSTGRES, "the PostgreSQL database", self._migration_step)

    async def _migration_step(self, sql: str) -> list[Row]:
        cursor = await self._conn.execute(sql)
        return [] if cursor.description is None else list(await cursor.fetchall())

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

    def _execute_blocking(self, sql: str, params: Sequence[Any], *, timeout: float) -> int:
        with self._renewals_lock:
            if self._closed:
                raise DurableStoreError(
                    "this PostgresStore is closed; open it again with PostgresStore.connect(dsn)"
                )
            try:
                if self._renewals is None:
                    # libpq counts whole seconds, at least 2; 0 would mean none at all.
                    self._renewals = psycopg.connect(
                        self._dsn, autocommit=True, connect_timeout=max(1, math.ceil(timeout))
                    )
                    self._statement_timeout_ms = 0
                # A row lock held by a stuck transaction would otherwise hold the renewal,
                # and every lease renewed after it, for good.
                timeout_ms = max(1, int(timeout * 1000))
                if timeout_ms != self._statement_timeout_ms:
                    self._renewals.execute(f"SET statement_timeout = {timeout_ms}")
                    self._statement_timeout_ms = timeout_ms
                return self._renewals.execute(_pg(sql), params).rowcount
            except psycopg.Error as exc:
                # Reconnect on the next renewal: a dropped connection stays broken.
                if self._renewals is not None:
                    self._renewals.close()
                    self._renewals = None
                raise DurableStoreError(f"renewing a lease on PostgreSQL failed ({exc})") from None

    async def close(self) -> None:
        self.lease_keeper.close()
        with self._renewals_lock:
            self._closed = True
            if self._renewals is not None:
                self._renewals.close()
                self._renewals = None
        await self._conn.close()
