"""The ``durable`` command: start agent runs, send them events, read their state.

    durable worker [--local]
    durable run AGENT --input JSON [--run-id ID] [--wait] [--local]
    durable event RUN KEY --payload JSON [--local]
    durable status RUN [--local]
    durable result RUN [--local]
    durable watch RUN [--after SEQ] [--json] [--local]
    durable list [--local]

Temporal is the default, configured like the worker (``TEMPORAL_ADDRESS``, else
the embedded server a running ``durable worker`` started). ``--local`` uses the
SQLite store instead. Exit status: 0 on success, 1 when the run reports a
durable error, 2 for bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

import worker
from adapters.local import SqliteStore, run_durable, send_event, watch_run
from adapters.temporal import AgentClient, exit_without_teardown
from durable import (
    DurableError,
    DurableRunNotFoundError,
    JsonCodec,
    LiveView,
    RunRecord,
    StepRecord,
    agent_definition,
    check_name,
    usage_totals,
)

_JSON: JsonCodec[Any] = JsonCodec(Any)


class UsageError(Exception):
    """Bad input on the command line: exit status 2."""


def _json_argument(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{what} is not valid JSON ({exc.msg} at column {exc.colno}); quote it for the "
            """shell, for example '{"approved": true}'"""
        ) from None


def _show(value: Any) -> str:
    return json.dumps(_JSON.encode(value, what="the output"), indent=2, ensure_ascii=False)


def _steps_table(steps: Sequence[StepRecord]) -> str:
    lines = [f"{'#':>3}  {'intent':<32}{'kind':<15}{'status':<11}attempts"]
    for record in steps:
        lines.append(
            f"{record.step_index:>3}  {record.intent[:31]:<32}{record.kind:<15}"
            f"{record.status:<11}{record.attempts}"
        )
    return "\n".join(lines)


async def _client(settings: worker.WorkerSettings) -> AgentClient:
    try:
        client = await Client.connect(
            settings.address, namespace=settings.namespace, data_converter=pydantic_data_converter
        )
    except RuntimeError as exc:
        raise UsageError(
            f"cannot reach Temporal at {settings.address} ({exc}); start `durable worker`, "
            "which starts the embedded server, or set TEMPORAL_ADDRESS"
        ) from None
    return AgentClient(client, task_queue=settings.task_queue)


def _not_found(run_id: str, exc: RPCError) -> UsageError:
    return UsageError(f"no run {run_id!r} on this Temporal namespace ({exc.message})")


async def cmd_run(args: argparse.Namespace, settings: worker.WorkerSettings) -> int:
    worker.import_agents(settings.agent_modules)
    definition = agent_definition(args.agent)
    payload = _json_argument(args.input, "--input")
    run_id = args.run_id or f"{definition.name}-{uuid.uuid4().hex[:8]}"
    check_name(run_id, what="--run-id")
    if args.local:
        settings.local_store.parent.mkdir(parents=True, exist_ok=True)
        store = SqliteStore(settings.local_store)
        try:
            print(f"run {run_id} of {definition.name} on {settings.local_store}", flush=True)
            outcome = await run_durable(definition.fn, payload, store=store, run_id=run_id)
        finally:
            await store.close()
        print(_show(outcome.result))
        return 0
    client = await _client(settings)
    await client.start(definition.name, payload, run_id=run_id)
    print(f"started run {run_id} of {definition.name}")
    link = settings.ui_link(run_id)
    if link:
        print(f"Temporal UI: {link}")
    if args.wait:
        print(_show(await client.result(run_id)))
    return 0


async def cmd_event(args: argparse.Namespace, settings: worker.WorkerSettings) -> int:
    worker.import_agents(settings.agent_modules)
    payload = _json_argument(args.payload, "--payload")
    accepted: bool | None
    if args.local:
        store = SqliteStore(settings.local_store)
        try:
            accepted = await send_event(store, args.run, args.key, payload)
        finally:
            await store.close()
    else:
        client = await _client(settings)
        # Only a worker answers an update: wait for one a bounded time, then go by signal.
        accepted = await client.send_event(args.run, args.key, payload, answer_within=10.0)
        if accepted is None:
            described = await client.client.get_workflow_handle(args.run).describe()
            queue = described.raw_description.execution_config.task_queue.name
            print(
                f"delivered, not yet acknowledged: no worker answered within 10s, so {args.key!r} "
                f"went to run {args.run} by signal; it is applied when a worker polls task queue "
                f"{queue!r} (start `durable worker` with TASK_QUEUE={queue}), first emit wins"
            )
            return 0
    print("accepted" if accepted else f"not accepted: {args.key!r} was already sent (first wins)")
    return 0


async def cmd_status(args: argparse.Namespace, settings: worker.WorkerSettings) -> int:
    if args.local:
        store = SqliteStore(settings.local_store)
        try:
            run = await store.load_run(args.run)
            if run is None:
                raise UsageError(f"no run {args.run!r} in {settings.local_store}")
            steps = await store.load_steps(args.run)
        finally:
            await store.close()
        print(f"run {run.run_id}: {run.status} (agent {run.agent})")
        if run.status == "failed" and run.error is not None:
            print(f"failed with {run.error.type}: {run.error.message}")
        usage = usage_totals(steps)
        next_attempts: dict[int, str] = {}
    else:
        client = await _client(settings)
        try:
            snapshot = await client.snapshot(args.run)
        except DurableRunNotFoundError as exc:
            raise UsageError(str(exc)) from None
        usage = await client.usage(args.run)
        steps, next_attempts = snapshot.steps, snapshot.next_attempts
        waiting = (
            "unknown (no worker answered)"
            if snapshot.waiting_for is None
            else ", ".join(snapshot.waiting_for) or "nothing"
        )
        print(f"run {args.run}: {snapshot.state} (agent {snapshot.agent}), waiting for {waiting}")
        if snapshot.failure is not None:
            print(f"failed with {snapshot.failure}")
        if snapshot.unanswered is not None:
            print(f"worker: {snapshot.unanswered}; the steps below come from the run's history")
    print(
        f"model calls: {usage['input_tokens']:g} tokens in, {usage['output_tokens']:g} out, "
        f"cost {usage['cost']:g}"
    )
    print(_steps_table(steps))
    for record in steps:
        if record.error is None:
            continue
        last = "last failure" if record.status == "running" else "failed with"
        line = f"step {record.step_index}: attempt {record.attempts}, {last} {record.error.type}"
        print(f"{line}: {record.error.message}")
        if record.step_index in next_attempts:
            print(f"  next attempt at {next_attempts[record.step_index]}")
    return 0


def _lease_holder(run: RunRecord) -> str:
    """Who continues a running local run: a live lease holder, or no one until a worker."""
    expires = run.lease_expires_at
    if run.lease_holder is not None and expires is not None and expires > datetime.now(UTC):
        return (
            f"worker {run.lease_holder!r} holds its lease until {expires.isoformat()} "
            "and continues it while it renews the lease"
        )
    lapsed = f"expired at {expires.isoformat()}" if expires is not None else "is not held"
    return (
        f"no worker holds it (its lease {lapsed}); start `durable worker --local` "
        "to resume it, then ask again"
    )


async def cmd_result(args: argparse.Namespace, settings: worker.WorkerSettings) -> int:
    worker.import_agents(settings.agent_modules)
    if args.local:
        store = SqliteStore(settings.local_store)
        try:
            run = await store.load_run(args.run)
        finally:
            await store.close()
        if run is None:
            raise UsageError(f"no run {args.run!r} in {settings.local_store}")
        if run.status == "running":
            print(f"run {args.run} is still running; {_lease_holder(run)}")
            return 0
        if run.status == "failed":
            error = run.error
            detail = f"{error.type}: {error.message}" if error else "no error recorded"
            print(f"run {args.run} failed with {detail}", file=sys.stderr)
            return 1
        print(_show(run.result))
        return 0
    client = await _client(settings)
    try:
        print(_show(await client.result(args.run)))
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise _not_found(args.run, exc) from None
        raise
    return 0


async def cmd_watch(args: argparse.Namespace, settings: worker.WorkerSettings) -> int:
    if args.after < 0:
        raise UsageError("--after must be 0 or the seq of an entry already seen")
    view = LiveView()
    failed = False
    store = SqliteStore(settings.local_store) if args.local else None
    try:
        if store is not None:
            events = watch_run(store, args.run, after=args.after)
        else:
            events = (await _client(settings)).watch(args.run, after=args.after)
        async for event in events:
            if args.json:
                print(event.model_dump_json(exclude_none=True), flush=True)
            else:
                view.show(event)
            failed = event.kind == "run_failed"
    except DurableRunNotFoundError as exc:
        raise UsageError(str(exc)) from None
    finally:
        if store is not None:
            await store.close()
    return 1 if failed else 0


async def cmd_list(args: argparse.Namespace, settings: worker.WorkerSettings) -> int:
    print(f"{'run':<40}{'agent':<28}status")
    if args.local:
        store = SqliteStore(settings.local_store)
        try:
            for run in await store.list_runs(limit=args.limit):
                print(f"{run.run_id:<40}{run.agent:<28}{run.status}")
        finally:
            await store.close()
        return 0
    client = await _client(settings)
    async for execution in client.client.list_workflows(limit=args.limit):
        state = execution.status.name.lower() if execution.status else "unknown"
        print(f"{execution.id:<40}{execution.workflow_type:<28}{state}")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="durable", description=__doc__.splitlines()[0])
    commands = root.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help)
        sub.add_argument("--local", action="store_true", help="use the local SQLite store")
        return sub

    command("worker", "run a worker (Temporal, or the local store with --local)")
    run = command("run", "start a run of an agent")
    run.add_argument("agent", help="the agent's name")
    run.add_argument("--input", required=True, help="the agent's input as JSON")
    run.add_argument("--run-id", help="the run's id (default: <agent>-<random>)")
    run.add_argument("--wait", action="store_true", help="wait for the result and print it")
    event = command("event", "send an event to a run")
    event.add_argument("run")
    event.add_argument("key")
    event.add_argument("--payload", default="null", help="the event's payload as JSON")
    status = command("status", "show a run's state and steps")
    status.add_argument("run")
    result = command("result", "wait for a run's result and print it")
    result.add_argument("run")
    watch = command("watch", "stream a run's steps, waits and model tokens as they happen")
    watch.add_argument("run")
    watch.add_argument("--after", type=int, default=0, help="start after this seq")
    watch.add_argument("--json", action="store_true", help="print each entry as a JSON line")
    listing = command("list", "list recent runs")
    listing.add_argument("--limit", type=int, default=20)
    return root


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "worker":
        worker.main(["--local"] if args.local else [])
        return
    try:
        settings = worker.WorkerSettings.from_env()
        handler = {
            "run": cmd_run,
            "event": cmd_event,
            "status": cmd_status,
            "result": cmd_result,
            "list": cmd_list,
            "watch": cmd_watch,
        }[args.command]
        code = asyncio.run(handler(args, settings))
    except (UsageError, ValueError) as exc:
        print(f"durable {args.command}: {exc}", file=sys.stderr)
        code = 2
    except DurableError as exc:
        print(f"durable {args.command}: {exc}", file=sys.stderr)
        code = 1
    exit_without_teardown(code)


if __name__ == "__main__":
    main()
