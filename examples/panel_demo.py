"""The review panel demo: a conversation inside an agent run, streamed live.

    python -m durable_agents.examples.panel_demo [--temporal]

The ``refund.review_panel`` conversation runs as a child run of the
``panel_review`` agent, on the local SQLite store by default (a run in the same
store, whose every turn is a recorded step) or, with ``--temporal``, on the
embedded Temporal server (a child workflow). The parent's live stream is
printed until it starts the conversation, then the conversation's own.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from pathlib import Path

from durable import LiveView
from durable.conversation import ConversationResult
from durable_agents.examples.panel import Case, panel_review

DATA = Path("data").resolve()
"""Where the local store goes: ``data/`` under the working directory."""


async def _local(case: Case) -> None:
    from durable_agents.adapters.local import SqliteStore, run_durable, watch_run

    DATA.mkdir(exist_ok=True)
    store = SqliteStore(DATA / "panel.db")
    run_id = f"panel-{uuid.uuid4().hex[:8]}"
    run = asyncio.create_task(run_durable(panel_review, case, store=store, run_id=run_id))
    view = LiveView()
    for watched in (run_id, f"{run_id}/conversation-0"):
        for _ in range(1000):  # until the run exists, so it can be watched
            if run.done() or await store.load_run(watched) is not None:
                break
            await asyncio.sleep(0.01)
        async for event in watch_run(store, watched):
            view.show(event)
            if watched == run_id and event.kind == "step_started":
                break  # the parent started the conversation: follow the child
    result = (await run).result
    await store.close()
    _summary(result)


async def _temporal(case: Case) -> None:
    from temporalio.worker import Worker

    from durable_agents import DurableAgentsPlugin
    from durable_agents.adapters.settings import Settings
    from durable_agents.adapters.temporal import AgentClient
    from durable_agents.worker import temporal_client

    settings = Settings.from_env()
    run_id = f"panel-{uuid.uuid4().hex[:8]}"
    async with (
        temporal_client(settings) as client,
        Worker(
            client,
            task_queue=settings.worker.task_queue,
            plugins=[DurableAgentsPlugin(("durable_agents.examples.panel",))],
        ),
    ):
        agents = AgentClient(client, task_queue=settings.worker.task_queue)
        await agents.start(panel_review, case, run_id=run_id)
        child = f"{run_id}/conversation-0"
        link = settings.temporal.ui_link(child)
        print(f"the conversation runs as child workflow {child}: {link}")
        view = LiveView()
        for watched in (run_id, child):
            async for event in agents.watch(watched):
                view.show(event)
                if watched == run_id and event.kind == "step_started":
                    break  # the parent started the conversation: follow the child
        _summary(await agents.result(run_id))


def _summary(result: ConversationResult) -> None:
    usage = result.usage
    print(
        f"\nhalted: {result.halted.kind} after {result.turns} turns; "
        f"tokens {usage.input_tokens} in, {usage.output_tokens} out"
    )
    for turn in result.transcript:
        print(f"  {turn.turn_id}: {turn.text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--temporal", action="store_true", help="run on the embedded server")
    args = parser.parse_args()
    case = Case(summary="Order A-1001 arrived damaged; the customer asks for a refund of $25.")
    asyncio.run(_temporal(case) if args.temporal else _local(case))


if __name__ == "__main__":
    main()
