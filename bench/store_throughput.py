"""Durable steps per second for each local store, against raw SQLite in the same run.

    python -m bench.store_throughput [--steps N] [--resume 1000 10000]

The baseline does what one durable step minimally costs: one INSERT and one
UPDATE, each committed on its own, in WAL mode at the same ``synchronous``
setting. Ratios above 1 mean faster than the baseline. Resume times load and
replay runs with many completed steps; their ratio shows whether resuming grows
linearly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from pydantic import BaseModel

from adapters.local import (
    DurableRunStore,
    FileStore,
    InMemoryStore,
    PostgresStore,
    SqliteStore,
    Synchronous,
    run_durable,
)
from durable import DurableContext, agent, step


class Plan(BaseModel):
    steps: int


class Stop(BaseException):
    """Ends a replay measurement without ending the run."""


@step(name="bench.noop")
async def noop(i: int) -> int:
    return i


@agent(name="bench.sequential")
async def sequential(ctx: DurableContext, plan: Plan) -> int:
    total = 0
    for i in range(plan.steps):
        total += await ctx.step("noop", noop, i)
    return total


@agent(name="bench.replay")
async def replay(ctx: DurableContext, plan: Plan) -> int:
    for i in range(plan.steps):
        await ctx.step("noop", noop, i)
    raise Stop


def raw_sqlite(path: Path, steps: int, synchronous: Synchronous) -> float:
    """Steps per second of one INSERT plus one UPDATE per step, each committed."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    db.execute(
        "CREATE TABLE steps (run_id TEXT, step_index INTEGER, status TEXT, result TEXT, "
        "PRIMARY KEY (run_id, step_index))"
    )
    started = time.perf_counter()
    for i in range(steps):
        db.execute("INSERT INTO steps VALUES ('r', ?, 'running', NULL)", (i,))
        db.execute(
            "UPDATE steps SET status = 'completed', result = ? WHERE run_id = 'r' "
            "AND step_index = ?",
            (str(i), i),
        )
    elapsed = time.perf_counter() - started
    db.close()
    return steps / elapsed


async def durable_rate(store: DurableRunStore, steps: int) -> float:
    started = time.perf_counter()
    await run_durable(sequential, Plan(steps=steps), store=store, run_id=f"seq-{steps}")
    elapsed = time.perf_counter() - started
    await store.close()
    return steps / elapsed


async def resume_seconds(
    open_store: Callable[[], Awaitable[DurableRunStore]],
    sizes: tuple[int, int],
    repeats: int = 7,
) -> list[float]:
    """Median time for a fresh worker to open the store, resume a run and replay it.

    Each resume opens the store anew, as a restarted worker would, so no cache
    of a previous resume helps it. Sizes are measured interleaved, so a noisy
    moment on a shared machine hits both rather than skewing their ratio.
    """

    async def resume(steps: int) -> float:
        started = time.perf_counter()
        store = await open_store()
        with contextlib.suppress(Stop):
            await run_durable(
                replay, Plan(steps=steps), store=store, run_id=f"resume-{steps}", worker_id="b"
            )
        elapsed = time.perf_counter() - started
        await store.close()
        return elapsed

    for steps in sizes:
        await resume(steps)  # records the run
    times: dict[int, list[float]] = {steps: [] for steps in sizes}
    for _ in range(repeats):
        for steps in sizes:
            times[steps].append(await resume(steps))
    return [statistics.median(times[steps]) for steps in sizes]


def report(name: str, rate: float, baseline: float) -> None:
    print(f"  {name:<28} {rate:9.0f} steps/s   ratio {rate / baseline:5.2f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="steps per throughput run")
    parser.add_argument("--resume", type=int, nargs=2, default=(1_000, 10_000))
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="durable-bench-"))

    for sync in ("FULL", "NORMAL"):
        baseline = raw_sqlite(tmp / f"raw-{sync}.db", args.steps, sync)
        print(f"synchronous={sync}: raw SQLite baseline {baseline:.0f} steps/s")
        report(
            f"SqliteStore ({sync})",
            await durable_rate(SqliteStore(tmp / f"store-{sync}.db", synchronous=sync), args.steps),
            baseline,
        )
        if sync == "FULL":
            report(
                "FileStore (fsync)",
                await durable_rate(FileStore(tmp / "files"), args.steps),
                baseline,
            )
            report("InMemoryStore", await durable_rate(InMemoryStore(), args.steps), baseline)
            if not args.no_postgres:
                await _postgres(args.steps, baseline)

    small, large = args.resume
    print(f"resume: a fresh worker loads and replays a run of {small} and of {large} steps")
    memory = InMemoryStore()
    memory.close = _noop  # type: ignore[method-assign]  # keep its runs between resumes
    openers: dict[str, Callable[[], Awaitable[DurableRunStore]]] = {
        "SqliteStore": lambda: _async(SqliteStore(tmp / "resume.db", synchronous="OFF")),
        "FileStore": lambda: _async(FileStore(tmp / "resume-files")),
        "InMemoryStore": lambda: _async(memory),
    }
    for name, opener in openers.items():
        few, many = await resume_seconds(opener, (small, large))
        print(
            f"  {name:<14} {small}: {few * 1000:8.1f} ms   {large}: {many * 1000:8.1f} ms   "
            f"ratio {many / few:5.2f} (linear = {large / small:g})"
        )


async def _noop() -> None:
    return None


async def _async(value: DurableRunStore) -> DurableRunStore:
    return value


async def _postgres(steps: int, baseline: float) -> None:
    from tests.support.postgres import postgres_server

    with postgres_server() as dsn:
        store = await PostgresStore.connect(dsn)
        report("PostgresStore (fsync off)", await durable_rate(store, steps), baseline)


if __name__ == "__main__":
    asyncio.run(main())
