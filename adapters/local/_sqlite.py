"""``SqliteStore``: the embedded default store, in WAL mode with a versioned schema."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from typing import Any, Literal

from durable import DurableStoreError

from ._lease_keeper import LeaseKeeper
from ._offload import Offloader, WouldBlock
from ._sql import Row, SqlStore, schema_statements
from ._store import gc_paused

__all__ = ["SqliteStore", "Synchronous"]

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]


class SqliteStore(SqlStore):
    """A durable-run store in one SQLite file, shareable by processes on one machine.

    ``synchronous`` is SQLite's durability setting. The default ``FULL`` makes
    every recorded step survive power loss; ``NORMAL`` survives process crashes
    only and is several times faster.

    Statements run on the event loop thread while the database is free, and on
    a worker thread whenever they must wait for another connection's lock.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout: float = 10.0,
    ) -> None:
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, got {synchronous!r}")
        self.path = os.fspath(path)
        self._synchronous = synchronous
        self._busy_ms = int(busy_timeout * 1000)
        self._offload = Offloader("durable-sqlite")
        # The lease keeper's connection, opened on its first renewal: renewals must not
        # wait for the event loop, nor share its connection with another thread.
        self._renewals: sqlite3.Connection | None = None
        self._renewals_lock = threading.Lock()
        self._closed = False
        self.lease_keeper = LeaseKeeper(self.renew_lease_blocking, name="durable-sqlite-leases")
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
        # Reads through a memory map skip a system call per page when loading long runs.
        self._db.execute("PRAGMA mmap_size = 268435456")
        self._migrate()
        self._db.execute("PRAGMA busy_timeout = 0")

    def _migrate(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in schema_statements(
                "INTEGER", "INTEGER PRIMARY KEY AUTOINCREMENT", " WITHOUT ROWID"
            ):
                db.execute(statement)
            row = db.execute("SELECT MAX(version) FROM durable_schema").fetchone()
            upgrade = self.schema_upgrade(row[0], self.path)
            if upgrade is not None:
                db.execute(upgrade)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self._db.close()
            raise

    def _run(self, sql: str, params: Sequence[Any], may_wait: bool) -> sqlite3.Cursor:
        if not may_wait:
            try:
                return self._db.execute(sql, params)
            except sqlite3.OperationalError as exc:
                # Extended codes (SQLITE_BUSY_SNAPSHOT, ...) share the primary code's low byte.
                if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise WouldBlock from exc
                raise
        # Autocommit: the busy statement left no transaction behind, so rerun it waiting.
        self._db.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        try:
            return self._db.execute(sql, params)
        finally:
            self._db.execute("PRAGMA busy_timeout = 0")

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Row]:
        return await self._offload.call(lambda wait: self._run(sql, params, wait).fetchall())

    async def _fetch_bulk(self, sql: str, params: Sequence[Any]) -> list[Row]:
        def fetch(wait: bool) -> list[Row]:
            # Thousands of row tuples at once: see gc_paused.
            with gc_paused():
                return self._run(sql, params, wait).fetchall()

        return await self._offload.call(fetch)

    async def _execute(self, sql: str, params: Sequence[Any]) -> int:
        return await self._offload.call(lambda wait: self._run(sql, params, wait).rowcount)

    async def _execute_unsynced(self, sql: str, params: Sequence[Any]) -> int:
        def op(wait: bool) -> int:
            # In WAL mode NORMAL commits without syncing the log: the write survives a
            # crash of this process, not of the machine, and costs no fsync.
            self._db.execute("PRAGMA synchronous = NORMAL")
            try:
                return self._run(sql, params, wait).rowcount
            finally:
                self._db.execute(f"PRAGMA synchronous = {self._synchronous}")

        return await self._offload.call(op)

    def _execute_blocking(self, sql: str, params: Sequence[Any], *, timeout: float) -> int:
        with self._renewals_lock:
            if self._closed:
                raise DurableStoreError(
                    f"the SQLite store at {self.path!r} is closed; open it again to use it"
                )
            if self._renewals is None:
                self._renewals = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False, timeout=timeout
                )
                self._renewals.execute(f"PRAGMA synchronous = {self._synchronous}")
            # This thread may wait for the database, but not for the store's whole busy
            # timeout: the other leases it renews would lapse meanwhile.
            self._renewals.execute(f"PRAGMA busy_timeout = {max(1, int(timeout * 1000))}")
            return self._renewals.execute(sql, params).rowcount

    async def close(self) -> None:
        self.lease_keeper.close()
        with self._renewals_lock:
            self._closed = True
            if self._renewals is not None:
                self._renewals.close()
                self._renewals = None
        if self._offload.close():
            self._db.close()
