"""What a model call costs through the durable step path, against calling httpx directly.

    python -m bench.llm_overhead [--calls N] [--first-token-ms MS] [--token-ms MS]
                                 [--tokens N] [--no-temporal]

One local streaming server answers every call with the same timing (headers at
once, the first token after ``--first-token-ms``, then a token every
``--token-ms``). The baseline streams from it with httpx and httpx-sse directly.

* Local: ``chat`` steps in one ``run_durable`` run on a SQLite store (synchronous
  FULL). Time to first token is when the token reaches a watcher of the run's
  live stream in the same process; total is when ``chat`` returns.
* Temporal (embedded dev server): one run per call, timed from ``start`` to the
  first token seen by ``AgentClient.watch`` and to the run's result. This is the
  whole latency a client sees, so the difference from direct is printed in ms.

Medians over interleaved calls; a ratio of 1.00 means no overhead. The local
path is first timed against a server that answers at once, where only the
path's own fixed cost remains, so its ratios there are large by construction.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from httpx_sse import aconnect_sse
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from bench._llm_workloads import MARKS, Calls, llm_calls
from bench._model_server import Timing, model_server
from durable_agents import DurableAgentsPlugin
from durable_agents.adapters.local import SqliteStore, run_durable, watch_run
from durable_agents.adapters.temporal import AgentClient, DevServer

QUEUE = "bench-llm"


@dataclass
class Sample:
    first_token: float
    total: float


def _median(samples: list[Sample]) -> Sample:
    return Sample(
        statistics.median(s.first_token for s in samples),
        statistics.median(s.total for s in samples),
    )


async def direct(http: httpx.AsyncClient, base_url: str) -> Sample:
    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": "question"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    began = time.perf_counter()
    first = 0.0
    text = []
    async with aconnect_sse(http, "POST", f"{base_url}/chat/completions", json=body) as source:
        async for event in source.aiter_sse():
            if event.data == "[DONE]":
                break
            for choice in json.loads(event.data).get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    first = first or time.perf_counter() - began
                    text.append(content)
    return Sample(first, time.perf_counter() - began)


async def local_calls(store: SqliteStore, calls: int) -> list[Sample]:
    """``calls`` chat steps in one run; first tokens as a watcher of its stream sees them."""
    run_id = f"llm-{uuid.uuid4().hex[:8]}"
    seen: dict[int, float] = {}
    job = Calls(calls=calls)
    run = asyncio.create_task(run_durable(llm_calls, job, store=store, run_id=run_id))
    for _ in range(10_000):  # until the run exists, so it can be watched
        if await store.load_run(run_id) is not None:
            break
        await asyncio.sleep(0.001)
    async for event in watch_run(store, run_id):
        if event.kind == "token" and event.step is not None and event.step not in seen:
            seen[event.step] = time.perf_counter()
    await run
    marks = MARKS.pop(run_id)
    return [Sample(seen[i] - began, ended - began) for i, (began, ended) in enumerate(marks)]


async def temporal_call(agents: AgentClient) -> Sample:
    run_id = f"llm-{uuid.uuid4().hex[:8]}"
    began = time.perf_counter()
    await agents.start(llm_calls, Calls(calls=1), run_id=run_id)
    first = 0.0
    async for event in agents.watch(run_id):
        if event.kind == "token":
            first = time.perf_counter() - began
            break
    await agents.result(run_id)
    return Sample(first, time.perf_counter() - began)


def _row(label: str, mine: Sample, base: Sample) -> None:
    def compare(name: str, ours: float, theirs: float) -> str:
        return (
            f"{name} {ours * 1000:7.1f} ms (direct {theirs * 1000:6.1f}, "
            f"ratio {ours / theirs:4.2f}, added {(ours - theirs) * 1000:+6.1f} ms)"
        )

    first = compare("first token", mine.first_token, base.first_token)
    print(f"  {label:<9} {first}   {compare('total', mine.total, base.total)}")


async def compare_local(http: httpx.AsyncClient, base_url: str, calls: int) -> None:
    os.environ["DURABLE_MODELS"] = json.dumps({"bench": {"base_url": base_url, "model": "m"}})
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "bench.db")
        await local_calls(store, 2)  # warm both paths
        await direct(http, base_url)
        mine, base = [], []
        for _ in range(max(calls // 5, 1)):
            mine += await local_calls(store, 5)
            base += [await direct(http, base_url) for _ in range(5)]
        await store.close()
    _row("local", _median(mine), _median(base))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--first-token-ms", type=float, default=50.0)
    parser.add_argument("--token-ms", type=float, default=5.0)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--no-temporal", action="store_true", help="skip the Temporal part")
    args = parser.parse_args()
    timing = Timing(args.first_token_ms / 1000, args.token_ms / 1000, args.tokens)
    print(f"medians of {args.calls} calls, interleaved with as many direct ones")
    async with httpx.AsyncClient(timeout=30) as http:
        async with model_server(Timing(0, 0, args.tokens)) as instant:
            # No model time at all: what remains is the path's own fixed cost.
            print(f"a server that answers at once, {args.tokens} tokens:")
            await compare_local(http, instant, args.calls)
        async with model_server(timing) as base_url:
            print(
                f"a model with its first token after {args.first_token_ms:g} ms, then "
                f"{args.tokens} tokens {args.token_ms:g} ms apart:"
            )
            await compare_local(http, base_url, args.calls)
            if args.no_temporal:
                return
            with DevServer() as server:
                client = await Client.connect(
                    server.address, data_converter=pydantic_data_converter
                )
                agents = AgentClient(client, task_queue=QUEUE)
                async with Worker(
                    client,
                    task_queue=QUEUE,
                    plugins=[DurableAgentsPlugin(("bench._llm_workloads",))],
                ):
                    await temporal_call(agents)
                    mine, base = [], []
                    for _ in range(args.calls):
                        mine.append(await temporal_call(agents))
                        base.append(await direct(http, base_url))
                _row("temporal", _median(mine), _median(base))


if __name__ == "__main__":
    asyncio.run(main())
