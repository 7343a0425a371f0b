"""``SqliteStore``: the embedded default store, in WAL mode with a versioned schema."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

from durable import DurableStoreError

from ._sql import SCHEMA_VERSION, Row, SqlStore, schema_statements

__all__ = ["SqliteStore", "Synchronous"]

T = TypeVar("T")

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]


class SqliteStore(SqlStore):
    """A durable-run store in one SQLite file, shareable by processes on one machine.

    ``synchronous`` is SQLite's durability setting. The default ``FULL`` makes
    every recorded step survive power loss; ``NORMAL`` survives process crashes
    only and is several times faster.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout: float = 10.0,
    ) -> None:
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(
                f"synchronous must be OFF, NORMAL, FULL or EXTRA, got {synchronous!r}"
            )
        self.path = os.fspath(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="durable-sqlite")
        try:
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
            )
        except sqlite3.Error as exc:
            raise DurableStoreError(
                f"cannot open the SQLite store at {self.path!r} ({exc}); "
                "check that the directory exists and is writable"
            ) from None
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute(f"PRAGMA synchronous = {synchronous}")
        self._migrate()

    def _migrate(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in schema_statements("INTEGER"):
                db.execute(statement)
            row = db.execute("SELECT MAX(version) FROM durable_schema").fetchone()
            self.check_schema_version(row[0], self.path)
            if row[0] is None:
                db.execute("INSERT INTO durable_schema (version) VALUES (?)", (SCHEMA_VERSION,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self._db.close()
            raise

    async def _call(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Row]:
        return await self._call(lambda: self._db.execute(sql, params).fetchall())

    async def _execute(self, sql: str, params: Sequence[Any]) -> int:
        return await self._call(lambda: self._db.execute(sql, params).rowcount)

    async def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._db.close()
