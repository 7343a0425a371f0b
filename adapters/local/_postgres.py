"""``PostgresStore``: the SQL schema on PostgreSQL through psycopg 3."""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import Sequence
from typing import Any

import psycopg

from durable import DurableStoreError

from ._group_commit import Outcome, Write
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

    async def _run_batch(self, writes: Sequence[Write]) -> list[Outcome]:
        async with self._lock:
            if len(writes) == 1:
                # Its own transaction, in one round trip. Committing it synced costs what
                # the round trips of a transaction to skip the flush would.
                return [await self._one(writes[0])]
            try:
                return await self._pipelined(writes)
            except psycopg.Error:
                pass  # a write failed, and the batch with it: learn which, one at a time
            outcomes: list[Outcome] = []
            try:
                async with self._conn.transaction():
                    for write in writes:
                        outcomes.append(await self._one(write, savepoint=True))
            except psycopg.Error as exc:  # the commit failed: no write of the batch holds
                failed = DurableStoreError(f"a write to PostgreSQL failed ({exc})")
                return [failed] * len(writes)
            return outcomes

    async def _pipelined(self, writes: Sequence[Write]) -> list[Outcome]:
        """The batch in one transaction, sent in one round trip (psycopg's pipeline mode)."""
        conn = self._conn
        async with conn.pipeline(), conn.transaction():
            if not any(write.synced for write in writes):
                # Returns before the commit is flushed: the next synced commit, a step's
                # outcome, is flushed with it.
                await conn.execute("SET LOCAL synchronous_commit = off")
            cursors = [await conn.execute(_pg(write.sql), write.params) for write in writes]
        return [
            list(await cursor.fetchall()) if write.returning else cursor.rowcount
            for write, cursor in zip(writes, cursors, strict=True)
        ]

    async def _one(self, write: Write, *, savepoint: bool = False) -> Outcome:
        """One write's rows or count, or its error; in a savepoint inside a transaction,
        which the error then leaves usable for the writes after it."""
        try:
            async with self._conn.transaction() if savepoint else contextlib.nullcontext():
                cursor = await self._conn.execute(_pg(write.sql), write.params)
                return list(await cursor.fetchall()) if write.returning else cursor.rowcount
        except psycopg.Error as exc:
            return DurableStoreError(f"a write to PostgreSQL failed ({exc})")

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
