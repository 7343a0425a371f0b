"""What running agents through TemporalContext costs over hand-written Temporal code.

    python -m bench.temporal_overhead [--steps N] [--runs M] [--repeats R]

On one embedded dev server, in one run, it times N sequential steps through a
``TemporalContext`` agent against a hand-written workflow calling the same
activity with ``execute_activity``, as activities and as local activities, and
M concurrent runs of each. It prints the ratios: 1.00 means no overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from activities.steps import run_step
from adapters.temporal import AgentClient, DevServer, workflow_runner
from bench._temporal_workloads import Plan, RawSequential, sequential
from durable_agents import DurableAgentsPlugin

QUEUE = "bench"
RAW_QUEUE = "bench-raw"  # one worker per queue and process; the server is the same
MODULES = ("bench._temporal_workloads",)


async def _timed(start_runs: Callable[[], Awaitable[None]]) -> float:
    began = time.perf_counter()
    await start_runs()
    return time.perf_counter() - began


async def measure(client: Client, plan: Plan, runs: int, repeats: int) -> tuple[float, float]:
    agents = AgentClient(client, task_queue=QUEUE)

    async def ours() -> None:
        ids = [f"ours-{uuid.uuid4().hex[:8]}" for _ in range(runs)]
        await asyncio.gather(*(agents.start(sequential, plan, run_id=i) for i in ids))
        await asyncio.gather(*(agents.result(i) for i in ids))

    async def raw() -> None:
        handles = await asyncio.gather(
            *(
                client.start_workflow(
                    RawSequential.run, plan, id=f"raw-{uuid.uuid4().hex[:8]}", task_queue=RAW_QUEUE
                )
                for _ in range(runs)
            )
        )
        await asyncio.gather(*(h.result() for h in handles))

    await ours()  # warm both paths before measuring
    await raw()
    mine, theirs = [], []
    for _ in range(repeats):  # interleaved, so a noisy moment hits both
        mine.append(await _timed(ours))
        theirs.append(await _timed(raw))
    return statistics.median(mine), statistics.median(theirs)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="sequential steps per run")
    parser.add_argument("--runs", type=int, default=10, help="concurrent runs")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with DevServer() as server:
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        ours = Worker(client, task_queue=QUEUE, plugins=[DurableAgentsPlugin(MODULES)])
        raw = Worker(
            client,
            task_queue=RAW_QUEUE,
            workflows=[RawSequential],
            activities=[run_step],
            workflow_runner=workflow_runner(),
        )
        print(f"{args.steps} steps per run; medians of {args.repeats}, interleaved")
        async with ours, raw:
            for local in (False, True):
                kind = "local activities" if local else "activities"
                plan = Plan(steps=args.steps, local=local)
                for runs, label in ((1, "sequential"), (args.runs, f"{args.runs} concurrent")):
                    mine, theirs = await measure(client, plan, runs, args.repeats)
                    per_step = (mine - theirs) / (args.steps * runs) * 1000
                    print(
                        f"  {kind:<17} {label:<14} TemporalContext {mine * 1000:8.1f} ms   "
                        f"raw {theirs * 1000:8.1f} ms   ratio {mine / theirs:5.2f}   "
                        f"added {per_step:+.2f} ms/step"
                    )


if __name__ == "__main__":
    asyncio.run(main())
