"""Commands that start and drive runs: run, event, result, watch, cancel."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable

from durable import ACTIVE_STATUSES, DurableRunNotFoundError, LiveEvent, LiveView, check_name
from durable_agents import worker
from durable_agents.adapters.settings import Settings

from ._clients import open_target
from ._common import EXIT_FAILED, EXIT_OK, UsageError, agent, json_argument, policy, show

__all__ = ["WATCH_TIMEOUT", "cmd_cancel", "cmd_event", "cmd_result", "cmd_run", "cmd_watch"]

WATCH_TIMEOUT = 30.0
"""Seconds ``durable watch`` waits for a run that does not exist yet."""


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    worker.import_agents(settings.worker.agent_modules)
    definition = agent(args.agent)
    payload = json_argument(args.input, "--input")
    # An empty --run-id is refused, never replaced: the caller meant a particular run.
    run_id = f"{definition.name}-{uuid.uuid4().hex[:8]}" if args.run_id is None else args.run_id
    check_name(run_id, what="--run-id")
    definition.manifest(payload)  # input of the wrong type is refused before anything is said
    delegation = None if args.delegation is None else policy(args.delegation)
    async with open_target(args, settings) as target:
        started = await target.client.start(
            definition.name, payload, run_id=run_id, delegation=delegation
        )
        if started.created:
            print(f"started run {run_id} of {definition.name} {target.where}", flush=True)
        else:
            print(
                f"found run {run_id} of {definition.name} {target.where}, started before "
                "with this input",
                flush=True,
            )
        link = target.ui_link(run_id)
        if link:
            print(f"Temporal UI: {link}")
        # A run the client executes here lives as long as this process: stay for its end.
        if args.wait or target.executes_here:
            print(show(await target.client.result(run_id)))
    return EXIT_OK


async def cmd_event(args: argparse.Namespace, settings: Settings) -> int:
    worker.import_agents(settings.worker.agent_modules)
    payload = json_argument(args.payload, "--payload")
    async with open_target(args, settings) as target:
        accepted = await target.client.send_event(args.run, args.key, payload)
        if accepted is None:
            view = await target.client.describe(args.run)
            print(
                f"delivered, not yet acknowledged: no worker answered in time, so {args.key!r} "
                f"went to run {args.run} by signal; it is applied when a worker runs the run "
                f"({view.note or 'none answers now'}), first emit wins"
            )
            return EXIT_OK
    print("accepted" if accepted else f"not accepted: {args.key!r} was already sent (first wins)")
    return EXIT_OK


_STILL = {
    "running": "running",
    "waiting": "waiting for an event",
    "waiting_for_approval": "waiting for an approval (see `durable approvals{flag}`)",
}


async def cmd_result(args: argparse.Namespace, settings: Settings) -> int:
    worker.import_agents(settings.worker.agent_modules)
    async with open_target(args, settings) as target:
        if not args.wait:
            view = await target.client.describe(args.run)
            if view.status in ACTIVE_STATUSES:
                still = _STILL.get(view.status, view.status).format(flag=target.flag)
                who = view.note or "its worker continues it"
                print(
                    f"run {args.run} is still {still}; {who}; "
                    f"`durable result {args.run} --wait{target.flag}` waits for its end"
                )
                return EXIT_OK
        print(show(await target.client.result(args.run)))
    return EXIT_OK


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


async def cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    if args.after < 0:
        raise UsageError("--after must be 0 or the seq of an entry already seen")
    if not args.timeout >= 0:
        raise UsageError("--timeout must be 0 or more seconds")
    view = LiveView()
    failed = False
    async with open_target(args, settings) as target:

        def watch() -> AsyncIterator[LiveEvent]:
            return target.client.watch(args.run, after=args.after)

        async for event in _once_started(watch, args.run, args.timeout):
            if args.json:
                print(event.model_dump_json(exclude_none=True), flush=True)
            else:
                view.show(event)
            failed = event.kind == "run_failed"
    return EXIT_FAILED if failed else EXIT_OK


_CANCELLED = {
    "requested": "cancelling: the worker running it cancels its children, then ends it; if "
    "that worker is gone, the run is cancelled once a worker resumes it (or cancel it again "
    "then)",
    "cancelled": "cancelled, with its children (no worker was running it)",
    "already_ended": "already ended; nothing to cancel",
}


async def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    check_name(args.run, what="run id")
    reason = args.reason or "cancelled with `durable cancel`"
    async with open_target(args, settings) as target:
        outcome = await target.client.cancel(args.run, reason)
    print(f"run {args.run}: {_CANCELLED[outcome]}")
    return EXIT_OK
