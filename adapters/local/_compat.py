"""``check_runs``: would the agents installed now replay the local runs in flight?

Each active run is replayed from its records by the code imported now, in a
context that executes no step and writes nothing: a recorded position returns
what it recorded, and the first position past the records (or the one the run
is at) ends the replay there. A changed intent, kind or input fingerprint on
the way is a divergence, with its position and both sides; so is an agent that
now returns before reaching every recorded position, an input the agent's type
no longer accepts, or anything else the replay raises that would fail the run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from durable import (
    ACTIVE_STATUSES,
    RUN_STATUSES,
    DurableError,
    DurableRegistrationError,
    Lease,
    LiveEvent,
    RunRecord,
    agent_definition,
)
from durable._compat import CompatReport, Divergence, ReplayEnded

from ._context import LocalContext
from ._live import LivePublisher
from ._store import DurableRunStore

__all__ = ["check_runs"]

REPLAY_LIMIT = 30.0
"""Seconds a run's replay may take: replay awaits nothing but recorded values."""

_READS = frozenset(
    {"load_run", "load_steps", "load_manifest", "load_event", "list_runs", "list_children",
     "read_live", "live_text_end", "list_checkpoints", "read_checkpoint"}
)  # fmt: skip


class _ReadOnly:
    """The store's reads; any write is a defect of the check, refused before it happens."""

    def __init__(self, store: DurableRunStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        if name not in _READS:
            raise RuntimeError(f"a compatibility check must not write, but called {name}")
        return getattr(self._store, name)


class _Discarding(LivePublisher):
    """A replay publishes nothing new; this drops anything offered."""

    def publish(self, event: LiveEvent) -> None:
        pass


async def check_runs(
    store: DurableRunStore, *, agents: Collection[str] | None = None
) -> CompatReport:
    """Replay every active run (of ``agents``, when given) against the agents imported now."""
    checked: list[str] = []
    diverging: list[Divergence] = []
    skipped: dict[str, str] = {}
    for run in await _active_runs(store, agents):
        try:
            agent_definition(run.agent)
        except DurableRegistrationError:
            skipped[run.run_id] = (
                f"agent {run.agent!r} is not installed here; name its module in "
                "DURABLE_AGENT_MODULES to check its runs"
            )
            continue
        checked.append(run.run_id)
        found = await _replay(store, run)
        if found is not None:
            diverging.append(found)
    return CompatReport(checked=checked, diverging=diverging, skipped=skipped)


async def _active_runs(store: DurableRunStore, agents: Collection[str] | None) -> list[RunRecord]:
    runs: list[RunRecord] = []
    for status in [status for status in RUN_STATUSES if status in ACTIVE_STATUSES]:
        for agent in sorted(agents) if agents else [None]:
            before: str | None = None
            while True:
                page = await store.list_runs(
                    status=status, agent=agent, limit=500, newest=True, before=before
                )
                runs.extend(page)
                if len(page) < 500:
                    break
                before = page[0].run_id
    return sorted(runs, key=lambda run: (run.created_at, run.run_id))


async def _replay(store: DurableRunStore, run: RunRecord) -> Divergence | None:
    definition = agent_definition(run.agent)
    agent = run.agent
    manifest = await store.load_manifest(run.run_id)
    steps = await store.load_steps(run.run_id)
    reads = cast(DurableRunStore, _ReadOnly(store))
    ctx = LocalContext(
        store=reads,
        lease=Lease(
            run_id=run.run_id,
            holder="check-compat",
            generation=0,
            expires_at=datetime.max.replace(tzinfo=UTC),
        ),
        run=run,
        steps=steps,
        poll_interval=timedelta(seconds=1),
        live=_Discarding(reads, run.run_id),
        declared=definition.events,
        manifest=manifest,
        delegation=None if manifest is None else manifest.delegation or definition.delegation,
        replay_only=True,
    )

    def diverging(error: BaseException) -> Divergence:
        position, recorded, now = ctx.diverged or (None, None, None)
        text = str(error) if isinstance(error, DurableError) else f"{type(error).__name__}: {error}"
        return Divergence(
            run_id=run.run_id, agent=agent, position=position, recorded=recorded, now=now,
            error=text,
        )  # fmt: skip

    if manifest is None:
        return diverging(RuntimeError(f"run {run.run_id!r} has no manifest in the store"))
    try:
        agent_input = definition.decode_input(manifest, run_id=run.run_id)
        async with asyncio.timeout(REPLAY_LIMIT):
            await definition.fn(ctx, agent_input)
    except (Exception, ReplayEnded, BaseExceptionGroup) as error:  # a finding, whatever it is
        if ctx.fatal is not None:
            return diverging(ctx.fatal)
        if _reached_the_end(error):
            return None
        if isinstance(error, TimeoutError):
            error = TimeoutError(
                f"the replay did not reach the end of the run's records in {REPLAY_LIMIT:g}s; "
                "does the agent await something other than its context?"
            )
        return diverging(error)
    unvisited = ctx.unvisited_recorded_steps()
    if not unvisited:
        return None  # every position replayed and the agent returns: it would complete
    first = unvisited[0]
    return Divergence(
        run_id=run.run_id,
        agent=agent,
        position=first.step_index,
        recorded=f"{first.kind} {first.intent!r}",
        now="the agent returns",
        error=(
            f"run {run.run_id!r} recorded {len(unvisited)} position(s) from "
            f"{first.step_index} on, but the code now returns after {ctx.positions_used}; "
            "restore the removed steps, or let the run finish before deploying"
        ),
    )


def _reached_the_end(error: BaseException) -> bool:
    """``ReplayEnded``, alone or with the cancellations it caused in a task group."""
    if isinstance(error, ReplayEnded):
        return True
    if isinstance(error, BaseExceptionGroup):
        inner = error.exceptions
        return any(_reached_the_end(e) for e in inner) and all(
            _reached_the_end(e) or isinstance(e, asyncio.CancelledError) for e in inner
        )
    return False
