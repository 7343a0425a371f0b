"""Durable chat turns on a substrate: ``run_durable_turn``, and ``StoreTurns`` for local stores.

The turn logic is ``durable.chat``'s, written once; this module only chooses
where the turn's run executes. With a ``DurableClient`` a worker runs it
(``ClientTurns``); with a local store it runs in this process
(``StoreTurns``), under a lease of its own, exactly as ``run_durable`` runs any
agent, and a turn whose worker died is taken over here once its lease lapses.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

from durable import (
    DurableClient,
    DurableError,
    DurableRunLeaseHeldError,
    LiveEvent,
    RunOutcome,
    RunRecord,
    as_timedelta,
    derive_worker_id,
)
from durable.chat import (
    ChatTurn,
    ChatTurnIdentity,
    ClientTurns,
    DurableTurn,
    TurnProducer,
    TurnRuns,
    TurnText,
    turn_in_flight,
)
from durable_agents.adapters.local import (
    DurableRunStore,
    RunResult,
    cancel_run,
    run_durable,
    watch_run,
)
from durable_agents.agents.chat import chat_turn

__all__ = ["StoreTurns", "run_durable_turn"]

_ANSWERED_BY = "answered_by"
"""The key of the run's outcome metadata naming the worker that ran the turn to its end."""


def run_durable_turn(
    identity: ChatTurnIdentity,
    produce: TurnProducer,
    *,
    store: DurableRunStore | None = None,
    client: DurableClient | None = None,
    lease: timedelta | float = timedelta(seconds=60),
) -> DurableTurn:
    """One durable chat turn, run ``chat:<session>:<turn>``; read its ``stream``.

    Give a local ``store`` (the turn runs in this process, under a lease of
    ``lease``) or a ``client`` (a worker runs it). A fresh turn streams the
    producer's text live; a completed one replays its answer as one ``result``
    event without running the producer; one in flight elsewhere raises
    ``DurableRunLeaseHeldError`` from the stream; a failed, cancelled or
    interrupted one runs again from the top. See ``durable.chat``.
    """
    runs: TurnRuns
    if store is not None and client is None:
        runs = StoreTurns(store, lease=lease)
    elif client is not None and store is None:
        runs = ClientTurns(client)
    else:
        raise ValueError("run_durable_turn needs exactly one of store= (local) or client=")
    return DurableTurn(runs, ChatTurn(identity=identity, produce=produce))


class StoreTurns:
    """``TurnRuns`` on a local store: each turn runs in this process with ``run_durable``.

    ``lease`` is the turn run's lease: how long after this process dies another one
    may take the turn over (a turn rarely runs longer than a minute, and its lease
    is renewed while it runs). ``poll_interval`` paces the watch of the run's
    cancellation and of the live stream written by other processes.
    """

    def __init__(
        self,
        store: DurableRunStore,
        *,
        lease: timedelta | float = timedelta(seconds=60),
        poll_interval: timedelta | float = timedelta(milliseconds=50),
        project_id: str = "default",
    ) -> None:
        self.store = store
        self.lease = as_timedelta(lease, what="lease")
        self.poll = as_timedelta(poll_interval, what="poll_interval")
        self.project_id = project_id
        self._running: dict[str, asyncio.Task[RunResult[TurnText]]] = {}

    async def begin(self, turn: ChatTurn) -> TurnText | None:
        run_id = turn.identity.run_id
        worker = derive_worker_id()  # one per attempt: it tells this attempt's run apart
        task = asyncio.create_task(
            run_durable(
                chat_turn,
                turn,
                store=self.store,
                run_id=run_id,
                project_id=self.project_id,
                worker_id=worker,
                lease=self.lease,
                poll_interval=self.poll,
                outcome=RunOutcome(notes="chat turn", metadata={_ANSWERED_BY: worker}),
                retry_failed=True,
            ),
            name=f"durable-chat:{run_id}",
        )
        try:
            # The turn is this attempt's once the store names its worker as the holder;
            # only then does watching its live stream show this attempt's run, never
            # the failed run it replaces.
            while not task.done():
                run = await self.store.load_run(run_id)
                if run is not None and run.lease_holder == worker:
                    self._running[run_id] = task
                    return None
                await asyncio.wait({task}, timeout=self.poll.total_seconds() / 5)
            try:
                result = task.result()
            except DurableRunLeaseHeldError:
                raise turn_in_flight(run_id) from None
        except BaseException:
            task.cancel()
            raise
        if _answered_by(result.run) == worker:
            self._running[run_id] = task  # so fast it ended before it was seen running
            return None
        return result.result  # completed before: replayed from the store

    def live(self, run_id: str) -> AsyncIterator[LiveEvent]:
        return watch_run(self.store, run_id, poll_interval=self.poll)

    async def finish(self, run_id: str) -> TurnText:
        task = self._running[run_id]
        try:
            return (await asyncio.shield(task)).result
        finally:
            if task.done():
                self._running.pop(run_id, None)

    async def abandon(self, run_id: str, reason: str) -> None:
        task = self._running.pop(run_id, None)
        if task is None or task.done():
            return
        # Through the store, as any process would: the run ends cancelled, not merely
        # stopped, so that asking again starts it again at once.
        await cancel_run(self.store, run_id, reason)
        with contextlib.suppress(DurableError, asyncio.CancelledError):
            await task


def _answered_by(run: RunRecord) -> str | None:
    metadata = run.outcome.metadata if run.outcome is not None else None
    value = (metadata or {}).get(_ANSWERED_BY)
    return value if isinstance(value, str) else None
