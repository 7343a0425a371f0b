"""The SQL schemas of earlier versions, frozen, to build the databases they left behind.

Copied from ``adapters/local/_sql.py`` as each version shipped; never edit them:
a test that opens such a database with the current store checks that what
users already have still opens, keeps every record and takes new writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from durable import DurableRunManifest, manifest_hash


def version_1(bigint: str, clustered: str = "") -> list[str]:
    """Schema version 1: runs, steps, events."""
    return [
        "CREATE TABLE IF NOT EXISTS durable_schema (version INTEGER NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS durable_runs (
            run_id TEXT PRIMARY KEY,
            agent TEXT NOT NULL,
            manifest_hash TEXT NOT NULL,
            manifest TEXT NOT NULL,
            project_id TEXT NOT NULL,
            scenario_id TEXT,
            status TEXT NOT NULL,
            created_at {bigint} NOT NULL,
            updated_at {bigint} NOT NULL,
            completed_at {bigint},
            lease_holder TEXT,
            lease_generation {bigint} NOT NULL DEFAULT 0,
            lease_expires_at {bigint},
            outcome TEXT,
            result TEXT,
            error TEXT
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
            started_at {bigint},
            completed_at {bigint},
            deadline {bigint},
            PRIMARY KEY (run_id, step_index)
        ){clustered}""",
        f"""CREATE TABLE IF NOT EXISTS durable_events (
            run_id TEXT NOT NULL,
            key TEXT NOT NULL,
            payload TEXT NOT NULL,
            emitted_at {bigint} NOT NULL,
            PRIMARY KEY (run_id, key)
        ){clustered}""",
        "INSERT INTO durable_schema (version) VALUES (1)",
    ]


def version_2(bigint: str, serial: str, clustered: str = "") -> list[str]:
    """Schema version 2: adds the live stream and the conversation journal."""
    return [
        "CREATE TABLE IF NOT EXISTS durable_schema (version INTEGER NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS durable_runs (
            run_id TEXT PRIMARY KEY,
            agent TEXT NOT NULL,
            manifest_hash TEXT NOT NULL,
            manifest TEXT NOT NULL,
            project_id TEXT NOT NULL,
            scenario_id TEXT,
            status TEXT NOT NULL,
            created_at {bigint} NOT NULL,
            updated_at {bigint} NOT NULL,
            completed_at {bigint},
            lease_holder TEXT,
            lease_generation {bigint} NOT NULL DEFAULT 0,
            lease_expires_at {bigint},
            outcome TEXT,
            result TEXT,
            error TEXT
        )""",
        # Recovery looks up running runs by lease expiry; ended runs stay out of the index.
        "CREATE INDEX IF NOT EXISTS durable_runs_expiry ON durable_runs (lease_expires_at) "
        "WHERE status = 'running'",
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
            started_at {bigint},
            completed_at {bigint},
            deadline {bigint},
            PRIMARY KEY (run_id, step_index)
        ){clustered}""",
        f"""CREATE TABLE IF NOT EXISTS durable_events (
            run_id TEXT NOT NULL,
            key TEXT NOT NULL,
            payload TEXT NOT NULL,
            emitted_at {bigint} NOT NULL,
            PRIMARY KEY (run_id, key)
        ){clustered}""",
        f"""CREATE TABLE IF NOT EXISTS durable_live (
            seq {serial},
            run_id TEXT NOT NULL,
            step_index INTEGER,
            text_end INTEGER,
            event TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS durable_live_run ON durable_live (run_id, seq)",
        """CREATE TABLE IF NOT EXISTS durable_conversations (
            run_id TEXT PRIMARY KEY,
            started_at TEXT NOT NULL,
            halted TEXT,
            ended_at TEXT
        )""",
        f"""CREATE TABLE IF NOT EXISTS durable_conversation_turns (
            run_id TEXT NOT NULL,
            turn_index INTEGER NOT NULL,
            turn TEXT NOT NULL,
            PRIMARY KEY (run_id, turn_index)
        ){clustered}""",
        "INSERT INTO durable_schema (version) VALUES (2)",
    ]


def version_3(bigint: str, serial: str, clustered: str = "") -> list[str]:
    """Schema version 3: child runs and cancellation; the conversation journal retired."""
    return [
        "CREATE TABLE IF NOT EXISTS durable_schema (version INTEGER NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS durable_runs (
            run_id TEXT PRIMARY KEY,
            agent TEXT NOT NULL,
            manifest_hash TEXT NOT NULL,
            manifest TEXT NOT NULL,
            project_id TEXT NOT NULL,
            scenario_id TEXT,
            status TEXT NOT NULL,
            created_at {bigint} NOT NULL,
            updated_at {bigint} NOT NULL,
            completed_at {bigint},
            lease_holder TEXT,
            lease_generation {bigint} NOT NULL DEFAULT 0,
            lease_expires_at {bigint},
            outcome TEXT,
            result TEXT,
            error TEXT,
            parent_run_id TEXT,
            cancel_requested TEXT
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
            started_at {bigint},
            completed_at {bigint},
            deadline {bigint},
            PRIMARY KEY (run_id, step_index)
        ){clustered}""",
        f"""CREATE TABLE IF NOT EXISTS durable_events (
            run_id TEXT NOT NULL,
            key TEXT NOT NULL,
            payload TEXT NOT NULL,
            emitted_at {bigint} NOT NULL,
            PRIMARY KEY (run_id, key)
        ){clustered}""",
        f"""CREATE TABLE IF NOT EXISTS durable_live (
            seq {serial},
            run_id TEXT NOT NULL,
            step_index INTEGER,
            text_end INTEGER,
            event TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS durable_runs_expiry ON durable_runs (lease_expires_at) "
        "WHERE status = 'running'",
        "CREATE INDEX IF NOT EXISTS durable_runs_parent ON durable_runs "
        "(parent_run_id, created_at, run_id) WHERE parent_run_id IS NOT NULL",
        "CREATE INDEX IF NOT EXISTS durable_live_run ON durable_live (run_id, seq)",
        "INSERT INTO durable_schema (version) VALUES (3)",
    ]


def version_4(bigint: str, serial: str, clustered: str = "") -> list[str]:
    """Schema version 4: bounded recovery (``recoveries``, ``recovered_from``)."""
    return [
        "CREATE TABLE IF NOT EXISTS durable_schema (version INTEGER NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS durable_runs (
            run_id TEXT PRIMARY KEY,
            agent TEXT NOT NULL,
            manifest_hash TEXT NOT NULL,
            manifest TEXT NOT NULL,
            project_id TEXT NOT NULL,
            scenario_id TEXT,
            status TEXT NOT NULL,
            created_at {bigint} NOT NULL,
            updated_at {bigint} NOT NULL,
            completed_at {bigint},
            lease_holder TEXT,
            lease_generation {bigint} NOT NULL DEFAULT 0,
            lease_expires_at {bigint},
            outcome TEXT,
            result TEXT,
            error TEXT,
            parent_run_id TEXT,
            cancel_requested TEXT,
            recoveries INTEGER NOT NULL DEFAULT 0,
            recovered_from TEXT
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
            started_at {bigint},
            completed_at {bigint},
            deadline {bigint},
            PRIMARY KEY (run_id, step_index)
        ){clustered}""",
        f"""CREATE TABLE IF NOT EXISTS durable_events (
            run_id TEXT NOT NULL,
            key TEXT NOT NULL,
            payload TEXT NOT NULL,
            emitted_at {bigint} NOT NULL,
            PRIMARY KEY (run_id, key)
        ){clustered}""",
        f"""CREATE TABLE IF NOT EXISTS durable_live (
            seq {serial},
            run_id TEXT NOT NULL,
            step_index INTEGER,
            text_end INTEGER,
            event TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS durable_runs_expiry ON durable_runs (lease_expires_at) "
        "WHERE status = 'running'",
        "CREATE INDEX IF NOT EXISTS durable_runs_parent ON durable_runs "
        "(parent_run_id, created_at, run_id) WHERE parent_run_id IS NOT NULL",
        "CREATE INDEX IF NOT EXISTS durable_live_run ON durable_live (run_id, seq)",
        "INSERT INTO durable_schema (version) VALUES (4)",
    ]


def write_old_ended_run(execute: Execute, run_id: str, manifest: DurableRunManifest) -> None:
    """A run that completed long ago, as version 4 wrote it: what a purge takes first."""
    at = _ms(STARTED)
    execute(
        "INSERT INTO durable_runs (run_id, agent, manifest_hash, manifest, project_id, "
        "scenario_id, status, created_at, updated_at, completed_at, lease_generation, "
        "result) VALUES (?, 'a', ?, ?, 'p', NULL, 'completed', ?, ?, ?, 1, '\"done\"')",
        (run_id, manifest_hash(manifest), manifest.model_dump_json(), at, at, at),
    )
    execute(
        "INSERT INTO durable_steps (run_id, step_index, intent, kind, input_hash, status, "
        "attempts, result, started_at, completed_at) "
        "VALUES (?, 0, 'step 0', 'logic', '', 'completed', 1, '1', ?, ?)",
        (run_id, at, at),
    )


Execute = Callable[[str, tuple[Any, ...]], object]
"""Runs one statement with ``?`` placeholders on the old database."""

STARTED = datetime(2025, 6, 1, tzinfo=UTC)
"""When the old run started and last renewed its lease: long expired."""


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def write_old_run(execute: Execute, run_id: str, manifest: DurableRunManifest) -> None:
    """A running run with two completed steps and an event, as versions 1 to 3 wrote them.

    Its worker died: its lease expired long ago.
    """
    at = _ms(STARTED)
    execute(
        "INSERT INTO durable_runs (run_id, agent, manifest_hash, manifest, project_id, "
        "scenario_id, status, created_at, updated_at, lease_holder, lease_generation, "
        "lease_expires_at) VALUES (?, ?, ?, ?, ?, NULL, 'running', ?, ?, 'old-worker', 3, ?)",
        (
            run_id,
            "a",
            manifest_hash(manifest),
            manifest.model_dump_json(),
            "p",
            at,
            at,
            at + 30_000,
        ),
    )
    for index in range(2):
        execute(
            "INSERT INTO durable_steps (run_id, step_index, intent, kind, input_hash, status, "
            "attempts, result, started_at, completed_at) "
            "VALUES (?, ?, ?, 'logic', '', 'completed', 1, ?, ?, ?)",
            (run_id, index, f"step {index}", json.dumps({"i": index}), at, at),
        )
    execute(
        "INSERT INTO durable_events (run_id, key, payload, emitted_at) VALUES (?, ?, ?, ?)",
        (run_id, "approval", json.dumps({"ok": True}), at),
    )


def write_old_live_entry(execute: Execute, run_id: str) -> None:
    """A token delta in the version 2 live stream."""
    execute(
        "INSERT INTO durable_live (run_id, step_index, text_end, event) VALUES (?, 1, 2, ?)",
        (run_id, json.dumps({"kind": "token", "step": 1, "offset": 0, "text": "hi"})),
    )


def write_old_conversation(execute: Execute, run_id: str, *, halted: bool) -> None:
    """A journaled conversation with one committed turn; ``halted`` when it had finished."""
    execute(
        "INSERT INTO durable_conversations (run_id, started_at, halted, ended_at) "
        "VALUES (?, ?, ?, ?)",
        (
            run_id,
            STARTED.isoformat(),
            json.dumps({"kind": "max_turns", "turns": 1}) if halted else None,
            STARTED.isoformat() if halted else None,
        ),
    )
    execute(
        "INSERT INTO durable_conversation_turns (run_id, turn_index, turn) VALUES (?, 0, ?)",
        (run_id, json.dumps({"index": 0, "speaker": "a", "text": "hello"})),
    )
