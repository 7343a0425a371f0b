"""``SqliteStore``: the embedded default store, in WAL mode with a versioned schema."""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import quote

from durable import DurableStoreError

from ._group_commit import Outcome, Write
from ._lease_keeper import LeaseKeeper
from ._offload import Offloader, WouldBlock
from ._schema import Dialect, Row, check_readable, migrate_blocking
from ._sql import SqlStore
from ._store import gc_paused

__all__ = ["SqliteStore", "Synchronous", "store_error"]

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]

_FIRST_PAUSE = 0.0005
_LAST_PAUSE = 0.01
"""Seconds between tries at a database another connection holds: from about a commit's
time, doubling to this."""

SQLITE = Dialect(
    bigint="INTEGER",
    serial="INTEGER PRIMARY KEY AUTOINCREMENT",
    clustered=" WITHOUT ROWID",
    # SQLite has no ADD COLUMN IF NOT EXISTS: the migration asks which columns exist.
    run_columns="SELECT name FROM pragma_table_info('durable_runs')",
    has_table="SELECT name FROM sqlite_master WHERE type = 'table' AND name = '{table}'",
)


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
        self._busy = busy_timeout
        self._offload = Offloader("durable-sqlite")
        # The lease keeper's connection, opened on its first renewal: renewals must not
        # wait for the event loop, nor share its connection with another thread.
        self._renewals: sqlite3.Connection | None = None
        self._renewals_lock = threading.Lock()
        self._closed = False
        self.lease_keeper = LeaseKeeper(self.renew_lease_blocking, name="durable-sqlite-leases")
        self.read_only = False
        """True when the file could only be opened for reading: every write is refused."""
        try:
            self._db = self._open()
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from None
        self._db.execute("PRAGMA busy_timeout = 0")

    def _open(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=self._busy
            )
        except sqlite3.Error as exc:
            raise DurableStoreError(
                f"cannot open the SQLite store at {self.path!r} ({exc}); "
                "check that the directory exists and is writable"
            ) from None
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {self._synchronous}")
            # Reads through a memory map skip a system call per page when loading long runs.
            db.execute("PRAGMA mmap_size = 268435456")
            self._migrate(db)
            return db
        except sqlite3.Error as exc:
            db.close()
            if _code(exc) not in _READ_ONLY or not os.path.isfile(self.path):
                raise
        # A store on a read-only disk or folder still answers reads (listing, status):
        # SQLite opens it read-only, immutable when it cannot even create its WAL index.
        self.read_only = True
        uri = "file:" + quote(os.path.abspath(self.path)) + "?mode=ro"
        for suffix in ("", "&immutable=1"):
            db = sqlite3.connect(
                uri + suffix, uri=True, isolation_level=None, check_same_thread=False
            )
            try:
                found = db.execute("SELECT MAX(version) FROM durable_schema").fetchone()[0]
            except sqlite3.Error as exc:
                db.close()
                if suffix or _code(exc) not in _READ_ONLY:
                    raise
                continue
            try:
                check_readable(found, self.path)
            except DurableStoreError:
                db.close()
                raise
            return db
        raise AssertionError("unreachable")  # pragma: no cover

    def _migrate(self, db: sqlite3.Connection) -> None:
        # IMMEDIATE takes the write lock first: processes opening the file together
        # migrate one after the other, and each sees what the previous one did.
        db.execute("BEGIN IMMEDIATE")
        try:
            migrate_blocking(SQLITE, self.path, lambda sql: db.execute(sql).fetchall())
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def _run(self, sql: str, params: Sequence[Any], may_wait: bool) -> sqlite3.Cursor:
        try:
            return self._run_raw(sql, params, may_wait)
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from None

    def _run_raw(self, sql: str, params: Sequence[Any], may_wait: bool) -> sqlite3.Cursor:
        if not may_wait:
            try:
                return self._db.execute(sql, params)
            except sqlite3.OperationalError as exc:
                # Extended codes (SQLITE_BUSY_SNAPSHOT, ...) share the primary code's low byte.
                if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise WouldBlock from exc
                raise
        # Autocommit: the busy statement left no transaction behind, so rerun it, waiting.
        # Not with SQLite's busy handler, which sleeps up to 100 ms between tries: with
        # several processes writing, the lock is free again within a commit's time.
        deadline = time.monotonic() + self._busy
        pause = _FIRST_PAUSE
        while True:
            try:
                return self._db.execute(sql, params)
            except sqlite3.OperationalError as exc:
                busy = exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
                if not busy or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause * random.uniform(0.5, 1.5))  # apart from the other waiters
            pause = min(pause * 2, _LAST_PAUSE)

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

    async def _run_batch(self, writes: Sequence[Write]) -> list[Outcome]:
        # Under NORMAL or OFF no commit waits for the disk: there is nothing to skip.
        relaxed = self._synchronous in _SYNCING and not any(write.synced for write in writes)
        return await self._offload.call(lambda wait: self._batch(writes, relaxed, wait))

    def _batch(self, writes: Sequence[Write], relaxed: bool, wait: bool) -> list[Outcome]:
        db = self._db
        if relaxed:
            # In WAL mode NORMAL commits without syncing the log: the next synced
            # commit, a step's outcome, makes these durable with it.
            db.execute("PRAGMA synchronous = NORMAL")
        try:
            if len(writes) == 1:  # a statement is its own transaction
                return [self._one(writes[0], wait)]
            self._run("BEGIN IMMEDIATE", (), wait)
            try:
                outcomes = [self._one(write, wait, alone=False) for write in writes]
                if not db.in_transaction:  # an error rolled the whole batch back
                    failed = next(o for o in outcomes if isinstance(o, BaseException))
                    return [failed] * len(writes)
                self._run("COMMIT", (), wait)
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return outcomes
        finally:
            if relaxed:
                db.execute(f"PRAGMA synchronous = {self._synchronous}")

    def _one(self, write: Write, wait: bool, *, alone: bool = True) -> Outcome:
        """One write's rows or count, or its error; busy only when ``alone``: a batch
        holds the write lock from its ``BEGIN IMMEDIATE``."""
        try:
            cursor = self._run(write.sql, write.params, wait)
            return cursor.fetchall() if write.returning else cursor.rowcount
        except DurableStoreError as exc:
            return exc

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
            try:
                self._renewals.execute(f"PRAGMA busy_timeout = {max(1, int(timeout * 1000))}")
                return self._renewals.execute(sql, params).rowcount
            except sqlite3.Error as exc:
                raise store_error(self.path, exc) from None

    async def close(self) -> None:
        self.lease_keeper.close()
        with self._renewals_lock:
            self._closed = True
            if self._renewals is not None:
                self._renewals.close()
                self._renewals = None
        if self._offload.close():
            self._db.close()


_SYNCING = ("FULL", "EXTRA")
"""The settings under which every commit in WAL mode waits for the disk."""

_READ_ONLY = (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM)


def _code(exc: sqlite3.Error) -> int:
    # Extended codes (SQLITE_READONLY_DIRECTORY, ...) share the primary code's low byte.
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def store_error(path: str, exc: sqlite3.Error) -> DurableStoreError:
    """SQLite's error as a ``DurableStoreError`` naming the file and what to do."""
    code = _code(exc)
    if code == sqlite3.SQLITE_NOTADB:
        fix = (
            "it is not a SQLite database; point the store at its database file, "
            "or move this file away to start a new store there"
        )
    elif code == sqlite3.SQLITE_CORRUPT:
        fix = "the file is damaged; restore it from a backup, or move it away to start anew"
    elif code == sqlite3.SQLITE_READONLY:
        fix = (
            "this process may only read it; make the file and its folder writable to start, "
            "resume or send events to runs (reading commands work as they are)"
        )
    elif code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        fix = "another process holds it locked; check for a stuck process sharing the store"
    elif code in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_IOERR):
        fix = "check that the file and its folder exist and are readable and writable"
    elif code == sqlite3.SQLITE_FULL:
        fix = "the disk is full; free space and try again"
    else:
        fix = "check the file, or restore it from a backup"
    return DurableStoreError(f"the SQLite store at {path!r} failed ({exc}): {fix}")
