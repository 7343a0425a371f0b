"""Conversation journals: every committed turn of a local conversation, durably.

A conversation run appends each turn once its model call has finished, and
records its halt at the end. Resuming the run loads the journal and continues
after the last committed turn, so no committed turn is ever run twice. Each
store has its journal: in memory, a JSONL file per run with fsync, or two SQL
tables in the store's database.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from durable import DurableStoreError
from durable.conversation import ConversationTurn, HaltReason

from ._paths import file_name

__all__ = [
    "ConversationJournal",
    "FileJournal",
    "InMemoryJournal",
    "JournalEntry",
    "SqlJournal",
]


class JournalEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_id: str
    started_at: datetime
    turns: list[ConversationTurn]
    halted: HaltReason | None = None
    ended_at: datetime | None = None


class ConversationJournal(Protocol):
    async def load(self, run_id: str) -> JournalEntry | None:
        """The run's journal so far, or ``None`` for a run never begun."""
        ...

    async def begin(self, run_id: str, started_at: datetime) -> None:
        """Start the run's journal; a no-op if it exists."""
        ...

    async def append_turn(self, run_id: str, turn: ConversationTurn) -> ConversationTurn:
        """Record a committed turn and return the turn recorded at its index.

        The first turn recorded at an index wins: a worker that lost the run to
        another one mid-turn gets the other's turn back and continues from it.
        """
        ...

    async def record_halt(self, run_id: str, halt: HaltReason, ended_at: datetime) -> None: ...


class InMemoryJournal:
    def __init__(self) -> None:
        self._entries: dict[str, JournalEntry] = {}

    async def load(self, run_id: str) -> JournalEntry | None:
        return self._entries.get(run_id)

    async def begin(self, run_id: str, started_at: datetime) -> None:
        self._entries.setdefault(
            run_id, JournalEntry(run_id=run_id, started_at=started_at, turns=[])
        )

    async def append_turn(self, run_id: str, turn: ConversationTurn) -> ConversationTurn:
        entry = self._entries[run_id]
        if turn.index == len(entry.turns):
            self._entries[run_id] = entry.model_copy(update={"turns": [*entry.turns, turn]})
        return self._entries[run_id].turns[turn.index]

    async def record_halt(self, run_id: str, halt: HaltReason, ended_at: datetime) -> None:
        entry = self._entries[run_id]
        self._entries[run_id] = entry.model_copy(update={"halted": halt, "ended_at": ended_at})


class FileJournal:
    """One JSONL file per conversation run: a ``begin`` line, ``turn`` lines, a ``halt`` line.

    Every append is fsynced before it returns, so an acknowledged turn survives
    a crash; a line torn by a crash is ignored when the file is read back.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = Path(root)

    def _path(self, run_id: str) -> Path:
        return self._root / file_name(run_id, suffix=".jsonl")

    async def load(self, run_id: str) -> JournalEntry | None:
        path = self._path(run_id)
        if not path.exists():
            return None
        started: Any = None
        turns: list[ConversationTurn] = []
        halted: HaltReason | None = None
        ended: Any = None
        for number, line in enumerate(path.read_bytes().split(b"\n"), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # the torn last line of a crashed append: never acknowledged
            kind = record.get("record")
            if kind == "begin":
                started = started or record["started_at"]
            elif kind == "turn":
                turn = ConversationTurn.model_validate(record["turn"])
                if turn.index == len(turns):
                    turns.append(turn)
            elif kind == "halt":
                halted, ended = HaltReason.model_validate(record["halt"]), record["ended_at"]
            else:
                raise DurableStoreError(
                    f"{path} line {number} is not a journal record; restore it from a backup"
                )
        if started is None:
            return None
        return JournalEntry(
            run_id=run_id, started_at=started, turns=turns, halted=halted, ended_at=ended
        )

    def _append(self, run_id: str, record: dict[str, Any]) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
        with open(self._path(run_id), "ab") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    async def begin(self, run_id: str, started_at: datetime) -> None:
        if await self.load(run_id) is None:
            # The id is kept inside: a long id's file is named by its hash.
            record = {"record": "begin", "run_id": run_id, "started_at": started_at.isoformat()}
            self._append(run_id, record)

    async def append_turn(self, run_id: str, turn: ConversationTurn) -> ConversationTurn:
        self._append(run_id, {"record": "turn", "turn": turn.model_dump(mode="json")})
        entry = await self.load(run_id)
        if entry is None or len(entry.turns) <= turn.index:
            raise DurableStoreError(
                f"turn {turn.index} of conversation {run_id!r} follows a missing turn in "
                f"{self._path(run_id)}; restore the journal from a backup"
            )
        return entry.turns[turn.index]

    async def record_halt(self, run_id: str, halt: HaltReason, ended_at: datetime) -> None:
        self._append(
            run_id,
            {
                "record": "halt",
                "halt": halt.model_dump(mode="json"),
                "ended_at": ended_at.isoformat(),
            },
        )


class SqlExecutor(Protocol):
    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]: ...

    async def _execute(self, sql: str, params: Sequence[Any]) -> int: ...


class SqlJournal:
    """Two tables in the store's database: one row per run, one per committed turn."""

    def __init__(self, db: SqlExecutor) -> None:
        self._db = db

    async def load(self, run_id: str) -> JournalEntry | None:
        runs = await self._db._fetch(
            "SELECT started_at, halted, ended_at FROM durable_conversations WHERE run_id = ?",
            (run_id,),
        )
        if not runs:
            return None
        started, halted, ended = runs[0]
        rows = await self._db._fetch(
            "SELECT turn FROM durable_conversation_turns WHERE run_id = ? ORDER BY turn_index",
            (run_id,),
        )
        return JournalEntry(
            run_id=run_id,
            started_at=started,
            turns=[ConversationTurn.model_validate_json(row[0]) for row in rows],
            halted=None if halted is None else HaltReason.model_validate_json(halted),
            ended_at=ended,
        )

    async def begin(self, run_id: str, started_at: datetime) -> None:
        await self._db._execute(
            "INSERT INTO durable_conversations (run_id, started_at) VALUES (?, ?) "
            "ON CONFLICT (run_id) DO NOTHING",
            (run_id, started_at.isoformat()),
        )

    async def append_turn(self, run_id: str, turn: ConversationTurn) -> ConversationTurn:
        inserted = await self._db._execute(
            "INSERT INTO durable_conversation_turns (run_id, turn_index, turn) VALUES (?, ?, ?) "
            "ON CONFLICT (run_id, turn_index) DO NOTHING",
            (run_id, turn.index, turn.model_dump_json()),
        )
        if inserted:
            return turn
        rows = await self._db._fetch(
            "SELECT turn FROM durable_conversation_turns WHERE run_id = ? AND turn_index = ?",
            (run_id, turn.index),
        )
        return ConversationTurn.model_validate_json(rows[0][0])

    async def record_halt(self, run_id: str, halt: HaltReason, ended_at: datetime) -> None:
        await self._db._execute(
            "UPDATE durable_conversations SET halted = ?, ended_at = ? WHERE run_id = ?",
            (halt.model_dump_json(), ended_at.isoformat(), run_id),
        )
