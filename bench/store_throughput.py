"""Durable steps per second for each local store, against raw database code in the same run.

    python -m bench.store_throughput [--steps N] [--runs R] [--run-steps K]
        [--processes P] [--rounds M] [--resume 1000 10000] [--no-postgres]

The baselines do what one durable step minimally costs: one INSERT and one
UPDATE, each committed on its own (raw ``sqlite3`` in WAL mode at the same
``synchronous`` setting; raw psycopg on the same PostgreSQL server, with fsync
on and off). Ratios above 1 mean faster than the baseline. The sequential
SQLite figure is split into what the store's writes cost alone and what the
runner adds per step.

Under concurrency, R runs of K steps at once in one process, then the same
spread over P processes on one database, are compared with the sequential rate
of the same store: group commit lets the runs share commits, so the goal is at
least 5 times that rate. Resume times load and replay runs with many completed
steps; their ratio shows whether resuming grows linearly.

Every throughput figure is the median of M rounds (``--rounds``, 3 by default),
each on a fresh database file or fresh run ids, and every ratio the median of
each round's own ratio to a baseline timed in the same round: on a shared
machine a single round of the concurrent figures moved by half between runs of
the same code. (Resume times are medians of their own repeats.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel

from bench._rounds import ratio, rounds_of
from durable import DurableContext, DurableRunManifest, agent, agent_definition, step
from durable_agents.adapters.local import (
    DurableRunStore,
    FileStore,
    InMemoryStore,
    PostgresStore,
    SqliteStore,
    Synchronous,
    run_durable,
)


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


async def durable_rate(store: DurableRunStore, steps: int, *, run_id: str = "seq") -> float:
    started = time.perf_counter()
    await run_durable(sequential, Plan(steps=steps), store=store, run_id=run_id)
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


def report(
    name: str, rates: Sequence[float], baselines: Sequence[float], goal: float | None = None
) -> None:
    """A figure's median rate, and its median ratio to the baseline of its round."""
    figure = ratio(rates, baselines)
    verdict = (
        "" if goal is None else f"   goal >= {goal:g}: {'met' if figure >= goal else 'MISSED'}"
    )
    print(f"  {name:<34} {statistics.median(rates):9.0f} steps/s   ratio {figure:5.2f}{verdict}")


async def store_writes_rate(store: DurableRunStore, steps: int) -> float:
    """Steps per second of the store's own writes for a step (begin, complete), no runner."""
    resumed = await store.start_or_resume(
        run_id="writes-alone",
        agent=sequential.__name__,
        manifest=sequential_manifest(steps),
        worker_id="bench",
        lease_for=timedelta(seconds=60),
    )
    lease = resumed.lease
    assert lease is not None
    started = time.perf_counter()
    for i in range(steps):
        await store.begin_step(lease, step_index=i, intent="noop", kind="logic", input_hash="")
        await store.complete_step(lease, step_index=i, result=i)
    elapsed = time.perf_counter() - started
    await store.close()
    return steps / elapsed


def sequential_manifest(steps: int) -> DurableRunManifest:
    return agent_definition("bench.sequential").manifest(
        Plan(steps=steps), project_id="bench", scenario_id=None
    )


async def concurrent_rate(store: DurableRunStore, runs: int, steps: int, prefix: str) -> float:
    """Steps per second of ``runs`` runs of ``steps`` steps at once, in this process."""
    started = time.perf_counter()
    await asyncio.gather(
        *(
            run_durable(sequential, Plan(steps=steps), store=store, run_id=f"{prefix}-{i}")
            for i in range(runs)
        )
    )
    elapsed = time.perf_counter() - started
    await store.close()
    return runs * steps / elapsed


def processes_rate(
    kind: str, location: str, processes: int, runs: int, steps: int, prefix: str
) -> float:
    """Steps per second of ``runs`` runs spread over ``processes`` processes on one database."""
    start = time.time() + 3.0  # time for every process to import and open the store
    each = runs // processes
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench._store_processes",
                kind,
                location,
                str(start),
                str(each),
                str(steps),
                f"{prefix}-{n}",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    ends = []
    for child in children:
        out, _ = child.communicate(timeout=600)
        if child.returncode:
            raise RuntimeError(f"a bench process failed with exit status {child.returncode}")
        ends.append(float(json.loads(out)["ended"]))
    return each * processes * steps / (max(ends) - start)


def raw_postgres(dsn: str, steps: int) -> float:
    """Steps per second of one INSERT plus one UPDATE per step, each committed (psycopg)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(
            "CREATE TABLE raw_steps (run_id TEXT, step_index INTEGER, status TEXT, "
            "result TEXT, PRIMARY KEY (run_id, step_index))"
        )
        started = time.perf_counter()
        for i in range(steps):
            db.execute("INSERT INTO raw_steps VALUES ('r', %s, 'running', NULL)", (i,))
            db.execute(
                "UPDATE raw_steps SET status = 'completed', result = %s WHERE run_id = 'r' "
                "AND step_index = %s",
                (str(i), i),
            )
        elapsed = time.perf_counter() - started
        db.execute("DROP TABLE raw_steps")
    return steps / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="steps per sequential run")
    parser.add_argument("--runs", type=int, default=100, help="runs at once")
    parser.add_argument("--run-steps", type=int, default=20, help="steps of each of those runs")
    parser.add_argument("--processes", type=int, default=4, help="processes on one database")
    parser.add_argument("--rounds", type=int, default=3, help="rounds each figure's median takes")
    parser.add_argument("--resume", type=int, nargs=2, default=(1_000, 10_000))
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, not {args.rounds}")
    with tempfile.TemporaryDirectory(prefix="durable-bench-") as tmp:
        await _measure(args, Path(tmp))


async def _measure(args: argparse.Namespace, tmp: Path) -> None:
    runs, run_steps, processes, rounds = args.runs, args.run_steps, args.processes, args.rounds
    steps = args.steps
    print(f"medians of {rounds} rounds; a ratio is the median of each round's own ratio")

    def raw(sync: Synchronous) -> Callable[[int], Awaitable[float]]:
        async def measure(r: int) -> float:
            return raw_sqlite(tmp / f"raw-{sync}-{r}.db", steps, sync)

        return measure

    def ours(sync: Synchronous, name: str = "store") -> Callable[[int], Awaitable[float]]:
        async def measure(r: int) -> float:
            store = SqliteStore(tmp / f"{name}-{sync}-{r}.db", synchronous=sync)
            return await durable_rate(store, steps)

        return measure

    baseline, full, alone, files, in_memory = await rounds_of(
        rounds,
        raw("FULL"),
        ours("FULL"),
        lambda r: store_writes_rate(SqliteStore(tmp / f"writes-{r}.db"), steps),
        lambda r: durable_rate(FileStore(tmp / f"files-{r}"), steps),
        lambda r: durable_rate(InMemoryStore(), steps),
    )
    print(f"synchronous=FULL: raw SQLite baseline {statistics.median(baseline):.0f} steps/s")
    report("SqliteStore (FULL)", full, baseline, 0.9)
    report("  its writes alone (no runner)", alone, baseline)
    runner = statistics.median([1e6 * (1 / f - 1 / a) for f, a in zip(full, alone, strict=True)])
    print(f"  {'  the runner per step':<34} {runner:9.0f} µs")
    report("FileStore (fsync)", files, baseline)
    report("InMemoryStore", in_memory, baseline)
    baseline, normal = await rounds_of(rounds, raw("NORMAL"), ours("NORMAL"))
    print(f"synchronous=NORMAL: raw SQLite baseline {statistics.median(baseline):.0f} steps/s")
    report("SqliteStore (NORMAL)", normal, baseline)

    async def in_one(r: int) -> float:
        return await concurrent_rate(
            SqliteStore(tmp / f"concurrent-{r}.db"), runs, run_steps, f"c{r}"
        )

    async def spread(r: int) -> float:
        return processes_rate(
            "sqlite", str(tmp / f"processes-{r}.db"), processes, runs, run_steps, f"p{r}"
        )

    # Each round's concurrent figures against a sequential run of the same round.
    sequential_rate, together, apart = await rounds_of(
        rounds, ours("FULL", "sequential"), in_one, spread
    )
    print(
        f"concurrency on SQLite (FULL): {runs} runs of {run_steps} steps, against the "
        f"sequential rate {statistics.median(sequential_rate):.0f} steps/s"
    )
    report(f"{runs} runs in one process", together, sequential_rate, 5)
    report(f"{runs} runs over {processes} processes", apart, sequential_rate, 5)

    if not args.no_postgres:
        for fsync in (True, False):
            await _postgres(steps, fsync, runs, run_steps, processes, rounds)

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


async def _postgres(
    steps: int, fsync: bool, runs: int, run_steps: int, processes: int, rounds: int
) -> None:
    from tests.support.postgres import postgres_server

    setting = "on" if fsync else "off"
    with postgres_server(fsync=fsync) as dsn:

        async def raw(r: int) -> float:
            return raw_postgres(dsn, steps)

        async def store(r: int) -> float:
            return await durable_rate(await PostgresStore.connect(dsn), steps, run_id=f"seq-{r}")

        async def in_one(r: int) -> float:
            return await concurrent_rate(await PostgresStore.connect(dsn), runs, run_steps, f"c{r}")

        async def spread(r: int) -> float:
            return processes_rate("postgres", dsn, processes, runs, run_steps, f"p{r}")

        baseline, rate, together, apart = await rounds_of(rounds, raw, store, in_one, spread)
        print(
            f"PostgreSQL, fsync {setting}: raw psycopg baseline "
            f"{statistics.median(baseline):.0f} steps/s"
        )
        report(f"PostgresStore (fsync {setting})", rate, baseline, 0.5)
        report(f"{runs} runs in one process", together, rate, 5)
        report(f"{runs} runs over {processes} processes", apart, rate, 5)


if __name__ == "__main__":
    asyncio.run(main())
