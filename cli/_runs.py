"""Commands that start and drive runs: run, event, result, watch, cancel."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from temporalio.service import RPCError, RPCStatusCode

import worker
from adapters.local import SqliteStore, cancel_run, run_durable, send_event, watch_run
from durable import (
    DurableRunNotFoundError,
    LiveEvent,
    LiveView,
    RunRecord,
    check_name,
)

from ._clients import not_found, temporal_client
from ._common import EXIT_FAILED, EXIT_OK, UsageError, agent, json_argument, policy, show

__all__ = ["WATCH_TIMEOUT", "cmd_cancel", "cmd_event", "cmd_result", "cmd_run", "cmd_watch"]

WATCH_TIMEOUT = 30.0
"""Seconds ``durable watch`` waits for a run that does not exist yet."""


async def cmd_run(args: argparse.Namespace, settings: worker.WorkerSettings) -> int:
    worker.import_agents(settings.agent_modules)
    definition = agent(args.agent)
    payload = json_argument(args.input, "--input")
    # An empty --run-id is refused, never replaced: the caller meant a particular run.
    run_id = f"{definition.name}-{uuid.uuid4().hex[:8]}" if args.run_id is None else args.run_id
    check_name(run_id, what="--run-id")
    definition.manifest(payload)  # input of the wrong type is refused before anything is said
    delegation = None if args.delegation is None else policy(args.delegation)
    if args.local:
        settings.local_store.parent.mkdir(parents=True, exist_ok=True)
        store = SqliteStore(settings.local_store)
        try:
            print(f"run {run_id} of {definition.name} on {settings.local_store}", flush=True)
            outcome = await run_durable(
                definition.fn,
                payload,
                store=store,
                run_id=run_id,
                lease=settings.lease,
                delegation=delegation,
            )
        finally:
            await store.close()
        print(show(outcome.result))
        return 0
    client = await temporal_client(settings)
    await client.start(definition.name, payload, run_id=run_id, delegation=delegation)
    print(f"started run {run_id} of {definition.name}")
    link = settings.ui_link(run_id)
    if link:
        print(f"Temporal UI: {link}")
    if args.wait:
        print(show(await client.result(run_id)))
    return 0


async def cmd_event(args: argparse.Namespace, settings: worker.WorkerSettings) -> int:
    worker.import_agents(settings.agent_modules)
    payload = json_argument(args.payload, "--payload")
    accepted: bool | None
    if args.local:
        store = SqliteStore(settings.local_store)
        try:
            accepted = await send_event(store, args.run, args.key, payload)
        finally:
            await store.close()
    else:
        client = await temporal_client(settings)
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


_STILL = {
    "running": "running",
    "waiting": "waiting for an event",
    "waiting_for_approval": "waiting for an approval (see `durable approvals --local`)",
}


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
        if run.active:
            print(f"run {args.run} is still {_STILL[run.status]}; {_lease_holder(run)}")
            return 0
        if run.status == "failed":
            error = run.error
            detail = f"{error.type}: {error.message}" if error else "no error recorded"
            print(f"run {args.run} failed with {detail}", file=sys.stderr)
            return 1
        print(show(run.result))
        return 0
    client = await temporal_client(settings)
    try:
        print(show(await client.result(args.run)))
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise not_found(args.run, exc) from None
        raise
    return 0


async def _once_started(
    watch: Callable[[], AsyncIterator[LiveEvent]], run_id: str, timeout: float
) -> AsyncIterator[LiveEvent]:
    """The run's live stream, waiting up to ``timeout`` seconds for the run to exist.

    A watcher is often started just before the run it follows.
    """
    deadline = time.monotonic() + timeout
    said = False
    while True:
        events = watch()
        try:
            first = await anext(events)
        except StopAsyncIteration:
            return
        except DurableRunNotFoundError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                waited = f"; waited {timeout:g}s for it (--timeout)" if timeout else ""
                raise UsageError(f"{exc.message}{waited}") from None
            if not said:
                print(
                    f"waiting up to {timeout:g}s (--timeout) for run {run_id!r} to start",
                    file=sys.stderr,
                    flush=True,
                )
                said = True
            await asyncio.sleep(min(0.25, left))
            continue
        yield first
        async for event in events:
            yield event
        return


async def cmd_watch(args: argparse.Namespace, settings: worker.WorkerSettings) -> int:
    if args.after < 0:
        raise UsageError("--after must be 0 or the seq of an entry already seen")
    if not args.timeout >= 0:
        raise UsageError("--timeout must be 0 or more seconds")
    view = LiveView()
    failed = False
    store = SqliteStore(settings.local_store) if args.local else None
    client = None if store is not None else await temporal_client(settings)

    def watch() -> AsyncIterator[LiveEvent]:
        if store is not None:
            return watch_run(store, args.run, after=args.after)
        assert client is not None
        return client.watch(args.run, after=args.after)

    try:
        async for event in _once_started(watch, args.run, args.timeout):
            if args.json:
                print(event.model_dump_json(exclude_none=True), flush=True)
            else:
                view.show(event)
            failed = event.kind == "run_failed"
    finally:
        if store is not None:
            await store.close()
    return EXIT_FAILED if failed else EXIT_OK


async def cmd_cancel(args: argparse.Namespace, settings: worker.WorkerSettings) -> int:
    check_name(args.run, what="run id")
    reason = args.reason or "cancelled with `durable cancel`"
    held_until = ""
    if args.local:
        store = SqliteStore(settings.local_store)
        try:
            outcome = await cancel_run(store, args.run, reason)
            run = await store.load_run(args.run)
        finally:
            await store.close()
        if run is not None and run.lease_expires_at is not None:
            held_until = (
                f"; if worker {run.lease_holder!r} is gone, the run is cancelled once a worker "
                f"resumes it after its lease lapses at {run.lease_expires_at:%H:%M:%S} UTC "
                "(or cancel it again then)"
            )
    else:
        outcome = await (await temporal_client(settings)).cancel(args.run, reason)
    said = {
        "requested": f"cancelling: the worker running it cancels its children, then ends it"
        f"{held_until}",
        "cancelled": "cancelled, with its children (no worker was running it)",
        "already_ended": "already ended; nothing to cancel",
    }[outcome]
    print(f"run {args.run}: {said}")
    return EXIT_OK
