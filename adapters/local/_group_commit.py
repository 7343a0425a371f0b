"""Group commit: the step writes of concurrent runs share one transaction and one commit.

A durable step costs a commit that waits for the disk, and a store has one
connection. Runs in one process that write at the same moment would queue on
it, each paying for its own flush. Here a write waits one turn of the event
loop, so every write issued in that turn joins it, and the batch commits once.
Each write still learns its own outcome (its rows, or its error) only after
the batch's commit, so a step's result reaches its agent only once durable.
Writes arriving while a batch commits form the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._schema import Row

__all__ = ["GroupCommit", "Write"]


@dataclass(frozen=True)
class Write:
    sql: str
    params: Sequence[Any]
    returning: bool = False
    """The write's rows are its outcome (``RETURNING``); else the count of rows changed."""
    synced: bool = True
    """The commit must reach the disk before the write's outcome is given; a batch of
    writes that need not (a step's begin record) commits without waiting for it."""


Outcome = list[Row] | int | BaseException
"""A write's rows or changed-row count, or the error it raised (its own, or its batch's)."""

RunBatch = Callable[[Sequence[Write]], Awaitable[list[Outcome]]]
"""Runs writes in one transaction, in order; one outcome each."""


@dataclass
class GroupCommit:
    run_batch: RunBatch
    _pending: list[tuple[Write, asyncio.Future[Outcome]]] = field(default_factory=list)
    _flusher: asyncio.Task[None] | None = None
    batches: int = 0
    """Batches committed so far (how well writes were grouped: writes / batches)."""
    writes: int = 0

    async def submit(self, write: Write, *, alone: bool = False) -> list[Row] | int:
        """Run ``write`` in the next batch; its rows or count once the batch committed.

        ``alone``: the caller knows no other run writes now (one run in the process),
        so with no batch under way the write goes at once, without waiting a turn.
        """
        if alone and not self._pending and (self._flusher is None or self._flusher.done()):
            (outcome,) = await self.run_batch([write])
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._pending.append((write, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush(), name="durable-group-commit")
        outcome = await future
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # one turn: the writes issued in it join this batch
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                outcomes = await self.run_batch([write for write, _ in batch])
            except BaseException as exc:  # the batch never ran, or was interrupted
                outcomes = [exc] * len(batch)
                if not isinstance(exc, Exception):
                    _settle(batch, outcomes)
                    raise
            self.batches += 1
            self.writes += len(batch)
            _settle(batch, outcomes)


def _settle(
    batch: list[tuple[Write, asyncio.Future[Outcome]]], outcomes: Sequence[Outcome]
) -> None:
    for (_, future), outcome in zip(batch, outcomes, strict=True):
        if not future.done():  # a writer that stopped waiting takes no outcome
            future.set_result(outcome)
