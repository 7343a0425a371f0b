"""The SQL stores' schema and its migration, written once for SQLite and PostgreSQL.

A migration is a dialogue (``migration``): it yields one statement at a time
and is sent back that statement's rows, so each dialect runs it on its own
connection, blocking (``migrate_blocking``) or not (``migrate``), inside one
transaction that also serializes workers opening the database together.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

from durable import ENDED_STATUSES, DurableStoreError

__all__ = [
    "ADDED_RUN_COLUMNS",
    "ENDED_CLAUSE",
    "JOURNAL_TABLES",
    "SCHEMA_VERSION",
    "Dialect",
    "check_readable",
    "migrate",
    "migrate_blocking",
    "migration",
]

log = logging.getLogger("durable.local")

SCHEMA_VERSION = 5
"""1: runs, steps, events. 2: adds ``durable_live``, the live stream, and the
conversation journal (``durable_conversations``, ``durable_conversation_turns``).
3: adds ``parent_run_id`` and ``cancel_requested`` to ``durable_runs`` (child
runs and cancellation) and retires the conversation journal: conversations run
as child runs. 4: adds ``recoveries`` and ``recovered_from`` to ``durable_runs``
(bounded recovery). Version 3 libraries would take runs over without counting,
so the version moves on and they refuse the database. 5: adds
``durable_checkpoints`` (context checkpoints) and ``waiting`` to
``durable_runs`` (what a live run waits for). A version 4 library would neither
show the checkpoints nor leave a waiting run's state right when it takes the run
over, so it refuses the database.

A new index alone (such as ``durable_runs_expiry``) keeps the version: every
open creates what is missing, and older libraries still read and write the
database, so refusing them would buy nothing."""

ADDED_RUN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("parent_run_id", "TEXT"),
    ("cancel_requested", "TEXT"),
    ("recoveries", "INTEGER NOT NULL DEFAULT 0"),
    ("recovered_from", "TEXT"),
    ("waiting", "TEXT"),
)
"""Columns of ``durable_runs`` newer than version 2, added in place to older databases."""

JOURNAL_TABLES = ("durable_conversation_turns", "durable_conversations")
"""The conversation journal of version 2, dropped once none of its conversations is in flight."""

Row = Sequence[Any]

ENDED_CLAUSE = "status IN ({})".format(", ".join(f"'{s}'" for s in sorted(ENDED_STATUSES)))
"""The ended states as SQL, word for word what the partial index ``durable_runs_ended``
says: SQLite uses a partial index only for a query that repeats its condition."""


@dataclass(frozen=True)
class Dialect:
    """What differs between the SQL dialects' schemas."""

    bigint: str
    """The 64-bit integer type."""
    serial: str
    """An auto-incrementing primary key."""
    clustered: str
    """Appended to the step and event tables (SQLite's ``WITHOUT ROWID`` keeps a
    run's steps contiguous in key order, so loading them is one range scan)."""
    run_columns: str
    """A query whose rows' first value names each column of ``durable_runs``."""
    has_table: str
    """A query returning a row when the table named by ``{table}`` exists, else none."""


def _tables(d: Dialect) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS durable_runs (
            run_id TEXT PRIMARY KEY,
            agent TEXT NOT NULL,
            manifest_hash TEXT NOT NULL,
            manifest TEXT NOT NULL,
            project_id TEXT NOT NULL,
            scenario_id TEXT,
            status TEXT NOT NULL,
            created_at {d.bigint} NOT NULL,
            updated_at {d.bigint} NOT NULL,
            completed_at {d.bigint},
            lease_holder TEXT,
            lease_generation {d.bigint} NOT NULL DEFAULT 0,
            lease_expires_at {d.bigint},
            outcome TEXT,
            result TEXT,
            error TEXT,
            parent_run_id TEXT,
            cancel_requested TEXT,
            recoveries INTEGER NOT NULL DEFAULT 0,
            recovered_from TEXT,
            waiting TEXT
        )""",
        f"""CREATE TABLE IF NOT EXISTS durable_steps (
            run_id TEXT NOT NULL,
            step_index INTEGER NOT NULL,
            intent TEXT NOT NULL,
            kind TEXT NOT NULL,
            input_hash TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            result TEXT,
            error TEXT,
            started_at {d.bigint},
            completed_at {d.bigint},
            deadline {d.bigint},
            PRIMARY KEY (run_id, step_index)
        ){d.clustered}""",
        f"""CREATE TABLE IF NOT EXISTS durable_events (
            run_id TEXT NOT NULL,
            key TEXT NOT NULL,
            payload TEXT NOT NULL,
            emitted_at {d.bigint} NOT NULL,
            PRIMARY KEY (run_id, key)
        ){d.clustered}""",
        f"""CREATE TABLE IF NOT EXISTS durable_live (
            seq {d.serial},
            run_id TEXT NOT NULL,
            step_index INTEGER,
            text_end INTEGER,
            event TEXT NOT NULL
        )""",
        f"""CREATE TABLE IF NOT EXISTS durable_checkpoints (
            run_id TEXT NOT NULL,
            name TEXT NOT NULL,
            step_index INTEGER NOT NULL,
            size_bytes INTEGER NOT NULL,
            digest TEXT NOT NULL,
            written_at {d.bigint} NOT NULL,
            payload TEXT NOT NULL,
            PRIMARY KEY (run_id, name)
        ){d.clustered}""",
    ]


_INDEXES = [
    # Recovery looks up running runs by lease expiry; ended runs stay out of the index.
    "CREATE INDEX IF NOT EXISTS durable_runs_expiry ON durable_runs (lease_expires_at) "
    "WHERE status = 'running'",
    # A run's children, in creation order; runs started by a caller stay out of it.
    "CREATE INDEX IF NOT EXISTS durable_runs_parent ON durable_runs "
    "(parent_run_id, created_at, run_id) WHERE parent_run_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS durable_live_run ON durable_live (run_id, seq)",
    # Listing runs newest first, a page at a time from a run's (created_at, run_id).
    "CREATE INDEX IF NOT EXISTS durable_runs_created ON durable_runs (created_at, run_id)",
    # A purge looks up ended runs by when they ended; runs still active stay out of it.
    "CREATE INDEX IF NOT EXISTS durable_runs_ended ON durable_runs (completed_at, run_id) "
    f"WHERE {ENDED_CLAUSE}",
]


def _newer_error(found: int, location: str) -> DurableStoreError:
    return DurableStoreError(
        f"{location} has durable schema version {found}, but this version of the "
        f"library supports up to {SCHEMA_VERSION}; upgrade the library to use it"
    )


def check_readable(found: int | None, location: str) -> None:
    """Refuse to read a database this library cannot read as it is, without writing."""
    if found is not None and found > SCHEMA_VERSION:
        raise _newer_error(found, location)
    if found is not None and found < SCHEMA_VERSION:
        raise DurableStoreError(
            f"{location} has durable schema version {found}, which this library upgrades "
            f"to version {SCHEMA_VERSION} when it opens the store for writing, but this "
            "process may only read it; open it once from a process that may write it"
        )


def migration(d: Dialect, location: str) -> Generator[str, list[Row], None]:
    """Create or upgrade the schema to ``SCHEMA_VERSION``; refuse a newer one.

    Yields each statement and must be sent its rows (``[]`` for none). Every
    step is a no-op where it already holds, so a current database reads its
    version, its columns and creates nothing.
    """
    yield "CREATE TABLE IF NOT EXISTS durable_schema (version INTEGER NOT NULL)"
    found: int | None = (yield "SELECT MAX(version) FROM durable_schema")[0][0]
    if found is not None and found > SCHEMA_VERSION:
        raise _newer_error(found, location)
    for statement in _tables(d):
        yield statement
    present = {row[0] for row in (yield d.run_columns)}
    for name, kind in ADDED_RUN_COLUMNS:
        if name not in present:
            yield f"ALTER TABLE durable_runs ADD COLUMN {name} {kind}"
    for statement in _INDEXES:
        yield statement
    if found is not None and found < 3 and (yield d.has_table.format(table=JOURNAL_TABLES[1])):
        yield from _retire_journal(location)
    if found is None:
        yield f"INSERT INTO durable_schema (version) VALUES ({SCHEMA_VERSION})"
    elif found < SCHEMA_VERSION:
        yield f"UPDATE durable_schema SET version = {SCHEMA_VERSION}"


def _retire_journal(location: str) -> Generator[str, list[Row], None]:
    """Drop version 2's conversation journal unless a conversation in it is in flight.

    A halted conversation's result is already recorded in its parent run's
    step, so its journal holds nothing a run still needs. One that had not
    halted restarts its turns when its run resumes; its journal is kept as it
    was, untouched, for whoever wants to read it.
    """
    in_flight = int((yield "SELECT COUNT(*) FROM durable_conversations WHERE halted IS NULL")[0][0])
    if in_flight:
        log.warning(
            "%s: kept the tables %s of the retired conversation journal: %d journaled "
            "conversation(s) had not halted. Conversations now run as child runs, so "
            "these restart their turns when their runs resume; drop the two tables "
            "once those runs have ended",
            location,
            " and ".join(JOURNAL_TABLES),
            in_flight,
        )
        return
    for table in JOURNAL_TABLES:
        yield f"DROP TABLE IF EXISTS {table}"


def migrate_blocking(d: Dialect, location: str, execute: Callable[[str], list[Row]]) -> None:
    """Run ``migration`` with ``execute``, which runs one statement and returns its rows."""
    steps = migration(d, location)
    rows: list[Row] | None = None
    while True:
        try:
            statement = next(steps) if rows is None else steps.send(rows)
        except StopIteration:
            return
        rows = execute(statement)


async def migrate(
    d: Dialect, location: str, execute: Callable[[str], Awaitable[list[Row]]]
) -> None:
    """``migrate_blocking`` for a connection that is awaited."""
    steps = migration(d, location)
    rows: list[Row] | None = None
    while True:
        try:
            statement = next(steps) if rows is None else steps.send(rows)
        except StopIteration:
            return
        rows = await execute(statement)
