"""What running agents through this project costs over Temporal written by hand.

    python -m bench.temporal_overhead [--steps N] [--concurrency 20,50,200]
                                      [--concurrent-steps N] [--repeats R] [--local]

On one embedded dev server, in one process, two sides run the same trivial steps
(each returns its argument):

* the project: the ``bench.sequential`` agent (``bench._temporal_workloads``),
  one ``ctx.step`` per step, hosted by a worker with ``DurableAgentsPlugin``
  (pydantic data converter), started with ``AgentClient.start`` and awaited
  with ``AgentClient.result``;
* plain temporalio (``bench._plain_temporal``, no project code at all): its own
  activity and its own workflow calling ``execute_activity``, hosted by a plain
  ``Worker`` (default data converter, default sandbox), started with
  ``Client.start_workflow`` and awaited with ``handle.result()``.

Levels: ``sequential`` is one run of ``--steps`` steps; then ``--concurrency``
runs at once of ``--concurrent-steps`` steps each. Each level is timed
``--repeats`` times per side, the two sides interleaved (and which goes first
alternating) so a noisy moment of the machine hits both; the medians give the
ratio project ÷ plain, 1.00 meaning no overhead. At the largest concurrency the
throughput ratio (runs per second, project ÷ plain) is printed too. Each figure
is printed with its goal (``GOAL_RATIO``, ``GOAL_THROUGHPUT``) and whether the
run met it. ``--local`` runs the steps as local activities on both sides.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from bench._plain_temporal import PlainPlan, PlainSequential, plain_noop, plain_noop_local
from bench._temporal_workloads import Plan, sequential
from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.temporal import AgentClient, DevServer

MODULES = ("bench._temporal_workloads",)

GOAL_RATIO = 1.05
"""At most this much of plain temporalio's time, at every level."""
GOAL_THROUGHPUT = 0.95
"""At least this share of plain temporalio's runs per second, at the largest concurrency."""


@dataclass(frozen=True)
class Level:
    """``runs`` runs at once, each of ``steps`` sequential steps."""

    runs: int
    steps: int

    @property
    def label(self) -> str:
        return "sequential" if self.runs == 1 else f"{self.runs} concurrent"


@dataclass(frozen=True)
class Timing:
    """The median time of one level on each side, in seconds."""

    level: Level
    project: float
    plain: float

    @property
    def ratio(self) -> float:
        """Project time ÷ plain time: 1.00 is no overhead."""
        return self.project / self.plain

    @property
    def throughput(self) -> float:
        """Runs per second, project ÷ plain."""
        return (self.level.runs / self.project) / (self.level.runs / self.plain)


class Sides:
    """The two sides on one server, each with its own client, worker and task queue."""

    def __init__(self, agents: AgentClient, plain: Client, plain_queue: str, *, local: bool):
        self.agents = agents
        self.plain_client = plain
        self.plain_queue = plain_queue
        self.local = local

    async def project(self, level: Level) -> None:
        """``level.runs`` runs of the agent, started and awaited through ``AgentClient``."""
        plan = Plan(steps=level.steps, local=self.local)
        ids = [f"project-{uuid.uuid4().hex[:12]}" for _ in range(level.runs)]
        await asyncio.gather(*(self.agents.start(sequential, plan, run_id=i) for i in ids))
        results = await asyncio.gather(*(self.agents.result(i) for i in ids))
        _check("the project's agent", results, level)

    async def plain(self, level: Level) -> None:
        """The same runs of the plain workflow, through a plain client."""
        plan = PlainPlan(steps=level.steps, local=self.local)
        handles = await asyncio.gather(
            *(
                self.plain_client.start_workflow(
                    PlainSequential.run,
                    plan,
                    id=f"plain-{uuid.uuid4().hex[:12]}",
                    task_queue=self.plain_queue,
                )
                for _ in range(level.runs)
            )
        )
        results = await asyncio.gather(*(h.result() for h in handles))
        _check("the plain workflow", results, level)


def _check(side: str, results: Sequence[object], level: Level) -> None:
    expected = sum(range(level.steps))
    wrong = [r for r in results if r != expected]
    if wrong:
        raise RuntimeError(
            f"{side} returned {wrong[0]!r} where its {level.steps} steps sum to {expected}: "
            "the bench measured something other than its steps; check the workloads"
        )


@asynccontextmanager
async def sides(address: str, *, local: bool = False) -> AsyncIterator[Sides]:
    """Both sides' clients and workers on the server at ``address``, running until exit.

    Task queues are unique to this call, so benches sharing a server never
    take each other's tasks.
    """
    suffix = uuid.uuid4().hex[:8]
    project_queue, plain_queue = f"bench-project-{suffix}", f"bench-plain-{suffix}"
    project_client = await Client.connect(address, data_converter=pydantic_data_converter)
    plain_client = await Client.connect(address)
    project_worker = Worker(
        project_client, task_queue=project_queue, plugins=[DurableAgentsPlugin(MODULES)]
    )
    plain_worker = Worker(
        plain_client,
        task_queue=plain_queue,
        workflows=[PlainSequential],
        activities=[plain_noop, plain_noop_local],
    )
    async with project_worker, plain_worker:
        agents = AgentClient(project_client, task_queue=project_queue)
        yield Sides(agents, plain_client, plain_queue, local=local)


async def _timed(run: Callable[[], Awaitable[None]]) -> float:
    began = time.perf_counter()
    await run()
    return time.perf_counter() - began


async def measure(both: Sides, level: Level, *, repeats: int) -> Timing:
    """Median times of ``level`` on each side, after one untimed round of each."""
    await both.project(level)
    await both.plain(level)
    project: list[float] = []
    plain: list[float] = []
    for repeat in range(repeats):
        # Interleaved, and alternating which side goes first, so neither always
        # meets the server still settling the other side's runs.
        if repeat % 2 == 0:
            project.append(await _timed(lambda: both.project(level)))
            plain.append(await _timed(lambda: both.plain(level)))
        else:
            plain.append(await _timed(lambda: both.plain(level)))
            project.append(await _timed(lambda: both.project(level)))
    return Timing(level, statistics.median(project), statistics.median(plain))


def _goal(met: bool) -> str:
    return "met" if met else "MISSED"


def report(timing: Timing, *, throughput: bool) -> str:
    """One level's line: both medians, the ratio and its goal, and the throughput if asked."""
    level = timing.level
    line = (
        f"  {level.label:<14} {level.runs:>3} x {level.steps:>2} steps   "
        f"project {timing.project * 1000:8.1f} ms   plain {timing.plain * 1000:8.1f} ms   "
        f"ratio {timing.ratio:5.2f} (goal <= {GOAL_RATIO:.2f}: "
        f"{_goal(timing.ratio <= GOAL_RATIO)})"
    )
    if throughput:
        line += (
            f"   throughput {timing.throughput:5.2f} (goal >= {GOAL_THROUGHPUT:.2f}: "
            f"{_goal(timing.throughput >= GOAL_THROUGHPUT)})"
        )
    return line


def levels(steps: int, concurrency: Sequence[int], concurrent_steps: int) -> list[Level]:
    return [Level(1, steps), *(Level(runs, concurrent_steps) for runs in concurrency)]


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(
            f"--concurrency takes run counts of at least 1 separated by commas, such as "
            f"20,50,200; got {text!r}"
        )
    return counts


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="steps of the sequential run")
    parser.add_argument(
        "--concurrency", type=_counts, default=[20, 50, 200], help="concurrent runs per level"
    )
    parser.add_argument("--concurrent-steps", type=int, default=5, help="steps per concurrent run")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per side and level")
    parser.add_argument("--local", action="store_true", help="steps as local activities")
    args = parser.parse_args()
    kind = "local activities" if args.local else "activities"
    print(
        f"this project against plain temporalio, steps as {kind}; medians of {args.repeats} "
        "rounds per side, interleaved"
    )
    widest = max(args.concurrency)
    with DevServer() as server:
        async with sides(server.address, local=args.local) as both:
            for level in levels(args.steps, args.concurrency, args.concurrent_steps):
                timing = await measure(both, level, repeats=args.repeats)
                print(report(timing, throughput=level.runs == widest and level.runs > 1))


if __name__ == "__main__":
    asyncio.run(main())
