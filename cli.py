"""The ``durable`` command: start agent runs, send them events, read their state.

    durable worker [--local]
    durable run AGENT --input JSON|@FILE|- [--run-id ID] [--wait] [--delegation JSON] [--local]
    durable event RUN KEY --payload JSON|@FILE|- [--local]
    durable status RUN [--local]
    durable result RUN [--local]
    durable watch RUN [--after SEQ] [--json] [--timeout SECONDS] [--local]
    durable cancel RUN [--reason TEXT] [--local]
    durable list [--status S] [--local]
    durable approvals [--agent A] [--json] [--local]
    durable approve RUN|APPROVAL [--edit JSON] [--reason TEXT] [--by NAME] [--local]
    durable reject RUN|APPROVAL --reason TEXT [--by NAME] [--local]
    durable checkpoints RUN [NAME] [--local]
    durable purge --older-than DURATION [--status S] [--dry-run] --local

Temporal is the default, configured like the worker (``TEMPORAL_ADDRESS``, else
the embedded server a running ``durable worker`` started). ``--local`` uses the
SQLite store instead. ``EXIT_CODES`` lists the exit statuses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

import worker
from adapters.blobs import default_blob_store
from adapters.local import (
    SqliteStore,
    cancel_run,
    decide_approval,
    parse_duration,
    pending_approvals,
    purge,
    run_durable,
    send_event,
    watch_run,
)
from adapters.local._retention import purge_summary
from adapters.temporal import AgentClient, exit_without_teardown
from durable import (
    ACTIVE_STATUSES,
    ENDED_STATUSES,
    RUN_STATUSES,
    AgentDefinition,
    DecisionOutcome,
    DelegationPolicy,
    DurableApprovalNotFoundError,
    DurableCheckpointNotFoundError,
    DurableError,
    DurableRegistrationError,
    DurableRunNotFoundError,
    JsonCodec,
    LiveEvent,
    LiveView,
    PendingApproval,
    RunRecord,
    StepRecord,
    agent_definition,
    check_name,
    run_tree,
    steps_table,
    table,
    usage_line,
    usage_totals,
)
from durable._checkpoints import checkpoint_not_found

_JSON: JsonCodec[Any] = JsonCodec(Any)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success; a run still running is reported as such",
    EXIT_FAILED: "the run failed, or a durable error: a refused event, a store or server error",
    EXIT_USAGE: "bad input: arguments, JSON, settings, an unknown agent, run or approval",
    EXIT_INTERRUPTED: "interrupted with Ctrl-C",
    EXIT_BROKEN_PIPE: "the reader of the output went away (as with `| head`); nothing is printed",
}
"""Every exit status of ``durable``, as the README's exit-status table lists them."""

WATCH_TIMEOUT = 30.0
"""Seconds ``durable watch`` waits for a run that does not exist yet."""


class UsageError(Exception):
    """Bad input on the command line: exit status 2."""


def _json_argument(text: str, what: str) -> Any:
    """JSON given inline, as ``@FILE`` or as ``-`` for standard input.

    A file or standard input carries values too large for the command line.
    """
    source = what
    try:
        if text == "-":
            source = f"{what} from standard input"
            text = sys.stdin.read()
        elif text.startswith("@"):
            source = f"{what} file {text[1:]!r}"
            text = Path(text[1:]).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(
            f"cannot read {source} ({reason}); give a readable UTF-8 file of JSON"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        hint = (
            """quote it for the shell, for example '{"approved": true}', or pass @FILE or -"""
            if source == what
            else "fix the JSON"
        )
        raise UsageError(
            f"{source} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            f"{hint}"
        ) from None
    except RecursionError:
        raise UsageError(f"{source} is nested too deeply to read; flatten the JSON") from None


def _show(value: Any) -> str:
    return json.dumps(_JSON.encode(value, what="the output"), indent=2, ensure_ascii=False)


_steps_table = steps_table  # one layout for every table, in durable's table module


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


def _agent(name: str) -> AgentDefinition:
    try:
        return agent_definition(name)
    except DurableRegistrationError as exc:
        raise UsageError(exc.message) from None


async def cmd_run(args: argparse.Namespace, settings: worker.WorkerSettings) -> int:
    worker.import_agents(settings.agent_modules)
    definition = _agent(args.agent)
    payload = _json_argument(args.input, "--input")
    # An empty --run-id is refused, never replaced: the caller meant a particular run.
    run_id = f"{definition.name}-{uuid.uuid4().hex[:8]}" if args.run_id is None else args.run_id
    check_name(run_id, what="--run-id")
    definition.manifest(payload)  # input of the wrong type is refused before anything is said
    delegation = None if args.delegation is None else _policy(args.delegation)
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
        print(_show(outcome.result))
        return 0
    client = await _client(settings)
    await client.start(definition.name, payload, run_id=run_id, delegation=delegation)
    print(f"started run {run_id} of {definition.name}")
    link = settings.ui_link(run_id)
    if link:
        print(f"Temporal UI: {link}")
    if args.wait:
        print(_show(await client.result(run_id)))
    return 0


def _policy(text: str) -> DelegationPolicy:
    """``--delegation``: a DelegationPolicy as JSON, for this run only."""
    try:
        return DelegationPolicy.model_validate(_json_argument(text, "--delegation"))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'the policy'}: {e['msg']}" for e in exc.errors()
        )
        raise UsageError(
            f"--delegation is not a delegation policy ({problems}); give an object such as "
            """'{"allowed_agents": ["research"], "max_calls": 8, "max_depth": 2}'"""
        ) from None


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
            children = await store.list_children(args.run)
        finally:
            await store.close()
        waits = [s.intent.split(":", 1)[1] for s in steps if _waiting(s)]
        waits += [s.intent for s in steps if s.kind in ("agent", "conversation") and _open(s)]
        shown = f", waiting for {', '.join(waits)}" if run.active and waits else ""
        print(f"run {run.run_id}: {run.status} (agent {run.agent}){shown}")
        if run.status in ("failed", "cancelled") and run.error is not None:
            print(f"{run.status} with {run.error.type}: {run.error.message}")
        ended = not run.active
        family: list[tuple[str, str, str]] = [(c.run_id, c.agent, c.status) for c in children]
        parent = run.parent_run_id
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
            print(f"{'cancelled' if snapshot.state == 'cancelled' else 'failed'} with "
                  f"{snapshot.failure}")  # fmt: skip
        ended = snapshot.state not in ACTIVE_STATUSES
        if snapshot.unanswered is not None:
            print(f"worker: {snapshot.unanswered}; the steps below come from the run's history")
        parent, family = await client.family(args.run)
    if parent is not None:
        print(f"child run of {parent}")
    print(usage_line(usage))
    print(_steps_table(steps, ended=ended))
    for record in steps:
        if record.error is None:
            continue
        last = "last failure" if record.status == "running" else "failed with"
        line = f"step {record.step_index}: attempt {record.attempts}, {last} {record.error.type}"
        print(f"{line}: {record.error.message}")
        if record.step_index in next_attempts:
            print(f"  next attempt at {next_attempts[record.step_index]}")
    approvals = _approval_lines(steps, ended=ended, local=args.local)
    if approvals:
        print("approvals:")
        print("\n".join(approvals))
    if family:
        print("child runs:")
        print(table(("run", "agent", "status"), family, whole=(0,), indent="  "))
    return 0


_DECIDED = {"approve": "approved", "edit": "approved with an edit", "reject": "rejected"}


def _decision_words(decision: dict[str, Any]) -> str:
    """Who decided what, when and why, from a decision's recorded payload."""
    words = f"{_DECIDED.get(decision.get('decision', ''), decision.get('decision'))}"
    words += f" by {decision.get('decided_by')}"
    if decision.get("decided_at"):
        words += f" at {decision['decided_at']}"
    if decision.get("decision") == "edit":
        words += f", input {json.dumps(decision.get('input'), ensure_ascii=False)}"
    if decision.get("reason"):
        words += f"; reason: {decision['reason']}"
    return words


def _approval_lines(steps: Sequence[StepRecord], *, ended: bool, local: bool) -> list[str]:
    """Each approval of the run: its request, then who decided what, when and why.

    The request is the result of the approval's step; the decision is the
    payload of the wait at the next position.
    """
    at = {step.step_index: step for step in steps}
    lines = []
    for step in steps:
        if step.kind != "approval" or not isinstance(step.result, dict):
            continue
        request = step.result
        identity = request.get("approval_id")
        tool = f" (tool {request['tool']})" if request.get("tool") else ""
        lines.append(f"  {identity} at step {step.step_index}: {request.get('action')}{tool}")
        lines.append(f"    summary: {request.get('summary')}")
        lines.append(f"    proposed input: {json.dumps(request.get('input'), ensure_ascii=False)}")
        wait = at.get(step.step_index + 1)
        if wait is not None and wait.status == "completed" and isinstance(wait.result, dict):
            verdict = _decision_words(wait.result)
        elif wait is not None and wait.status == "failed":
            error = f" ({wait.error.type})" if wait.error is not None else ""
            verdict = f"none by its deadline{error}; the run took its on_timeout course"
        elif ended:
            verdict = "none; the run ended while it waited"
        else:
            until = f" until {wait.deadline.isoformat()}" if wait and wait.deadline else ""
            flag = " --local" if local else ""
            verdict = (
                f"pending{until}; decide with `durable approve {identity}{flag}` "
                f"or `durable reject {identity} --reason TEXT{flag}`"
            )
        lines.append(f"    decision: {verdict}")
    return lines


def _open(step: StepRecord) -> bool:
    return step.status == "running"


def _waiting(step: StepRecord) -> bool:
    return step.kind == "event" and _open(step) and step.intent.startswith("await_event:")


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
    client = None if store is not None else await _client(settings)

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


async def cmd_list(args: argparse.Namespace, settings: worker.WorkerSettings) -> int:
    rows: list[tuple[str, str | None, str, str]] = []
    if args.local:
        store = SqliteStore(settings.local_store)
        try:
            listed = await store.list_runs(status=args.status, limit=args.limit, newest=True)
        finally:
            await store.close()
        rows = [(run.run_id, run.parent_run_id, run.agent, run.status) for run in listed]
    else:
        client = await _client(settings)
        rows = await client.list_runs(status=args.status, limit=args.limit)
        rows.reverse()  # oldest first, as the local store lists them
    if not rows and args.status is not None:
        print(f"no {args.status} runs")
        return EXIT_OK
    print(run_tree(rows))
    return EXIT_OK


async def cmd_approvals(args: argparse.Namespace, settings: worker.WorkerSettings) -> int:
    pending: list[PendingApproval]
    if args.local:
        store = SqliteStore(settings.local_store)
        try:
            pending = await pending_approvals(store, agent=args.agent)
        finally:
            await store.close()
    else:
        pending = await (await _client(settings)).approvals(agent=args.agent)
    if args.json:
        print(json.dumps([p.model_dump(mode="json") for p in pending], indent=2))
        return EXIT_OK
    if not pending:
        print("no approvals pending" + (f" for agent {args.agent}" if args.agent else ""))
        return EXIT_OK
    for p in pending:
        print(f"{p.approval_id}  run {p.run_id}, agent {p.agent}")
        print(f"  action: {p.action}" + (f" (tool {p.tool})" if p.tool else ""))
        print(f"  summary: {p.summary}")
        print(f"  proposed input: {json.dumps(p.input, ensure_ascii=False)}")
        if p.deadline is not None:
            print(f"  deadline: {p.deadline.isoformat()}")
    flag = " --local" if args.local else ""
    print(
        f"\ndecide with `durable approve ID [--edit JSON]{flag}` or "
        f"`durable reject ID --reason TEXT{flag}` (a run's id stands for its one approval)"
    )
    return EXIT_OK


def _decider(given: str | None) -> str:
    """``--by``, else the name of the user this process runs as."""
    if given is not None:
        return given
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        raise UsageError(
            "cannot tell who decides (this process has no user name); pass --by NAME"
        ) from None


async def cmd_decide(args: argparse.Namespace, settings: worker.WorkerSettings) -> int:
    """``durable approve`` (with ``--edit``, an edit) and ``durable reject``."""
    editing = getattr(args, "edit", None) is not None
    edited = _json_argument(args.edit, "--edit") if editing else None
    if editing and edited is None:
        raise UsageError("--edit null is no edit; give the edited input as JSON, or approve")
    decision = "reject" if args.command == "reject" else "edit" if editing else "approve"
    by = _decider(args.by)
    reason = args.reason or None
    lease = ""
    if args.local:
        store = SqliteStore(settings.local_store)
        try:
            outcome = await decide_approval(
                store, args.target, decision, decided_by=by, input=edited, reason=reason
            )
            run = await store.load_run(outcome.run_id)
        finally:
            await store.close()
        expires = None if run is None else run.lease_expires_at
        if outcome.status == "decided" and (expires is None or expires <= datetime.now(UTC)):
            lease = (
                f"\nno worker runs {outcome.run_id} now: the decision is kept, and the run "
                "takes it when `durable worker --local` resumes it"
            )
    else:
        outcome = await (await _client(settings)).decide(
            args.target, decision, decided_by=by, input=edited, reason=reason
        )
    print(_outcome_words(outcome) + lease)
    return EXIT_OK


def _outcome_words(outcome: DecisionOutcome) -> str:
    said = f"approval {outcome.approval_id}"
    if outcome.status == "already_decided":
        return (
            f"{said} was already decided: {_decision_words(outcome.decision)}; the first "
            "decision stands, so this one changed nothing"
        )
    if outcome.status == "delivered":
        return (
            f"{said}: {_decision_words(outcome.decision)}; delivered, not yet acknowledged: "
            f"no worker answered in time, so it went to run {outcome.run_id} by signal; a "
            "worker applies it when it runs the run (start `durable worker`), first decision wins"
        )
    return f"{said}: {_decision_words(outcome.decision)}"


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
        outcome = await (await _client(settings)).cancel(args.run, reason)
    said = {
        "requested": f"cancelling: the worker running it cancels its children, then ends it"
        f"{held_until}",
        "cancelled": "cancelled, with its children (no worker was running it)",
        "already_ended": "already ended; nothing to cancel",
    }[outcome]
    print(f"run {args.run}: {said}")
    return EXIT_OK


async def cmd_checkpoints(args: argparse.Namespace, settings: worker.WorkerSettings) -> int:
    check_name(args.run, what="run id")
    if args.local:
        store = SqliteStore(settings.local_store)
        try:
            if await store.load_run(args.run) is None:
                raise UsageError(f"no run {args.run!r} in {settings.local_store}")
            if args.name is not None:
                found = await store.read_checkpoint(args.run, args.name)
                if found is None:
                    raise checkpoint_not_found(args.run, args.name)
                print(_show(found.payload))
                return EXIT_OK
            infos = await store.list_checkpoints(args.run)
        finally:
            await store.close()
    else:
        client = await _client(settings)
        if args.name is not None:
            print(_show((await client.checkpoint(args.run, args.name)).payload))
            return EXIT_OK
        infos = await client.checkpoints(args.run)
    if not infos:
        print(f"run {args.run} has no checkpoints")
        return EXIT_OK
    rows = [(i.name, i.size_bytes, i.step, f"{i.written_at:%Y-%m-%d %H:%M:%S} UTC") for i in infos]
    print(table(("name", "bytes", "step", "written"), rows, right=(1, 2)))
    return EXIT_OK


async def cmd_purge(args: argparse.Namespace, settings: worker.WorkerSettings) -> int:
    if not args.local:
        raise UsageError(
            "on Temporal, the namespace's retention deletes closed runs; set it with "
            "`temporal operator namespace update --namespace "
            f"{settings.namespace} --retention 30d`, "
            "or purge the local store with --local"
        )
    older_than = parse_duration(args.older_than, what="--older-than")
    store = SqliteStore(settings.local_store)
    try:
        report = await purge(
            store,
            older_than=older_than,
            statuses=args.status or ENDED_STATUSES,
            blobs=default_blob_store(),
            dry_run=args.dry_run,
        )
    finally:
        await store.close()
    for line in purge_summary(report):
        print(line)
    return EXIT_OK


def _plain(text: str) -> str:
    """Help text without the docstrings' reStructuredText literals."""
    return text.replace("``", "")


def parser() -> argparse.ArgumentParser:
    statuses = "\n".join(f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES.items())
    root = argparse.ArgumentParser(
        prog="durable",
        description=_plain(__doc__.splitlines()[0]),
        epilog=f"exit status:\n{statuses}\n\nSettings come from the environment; see the README.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = root.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("--local", action="store_true", help="use the local SQLite store")
        return sub

    json_forms = "inline, @FILE to read a file, or - to read standard input"
    command("worker", "run a worker (Temporal, or the local store with --local)")
    run = command("run", "start a run of an agent")
    run.add_argument("agent", help="the agent's name")
    run.add_argument("--input", required=True, help=f"the agent's input as JSON: {json_forms}")
    run.add_argument("--run-id", help="the run's id (default: <agent>-<random>)")
    run.add_argument("--wait", action="store_true", help="wait for the result and print it")
    run.add_argument(
        "--delegation",
        help="this run's DelegationPolicy as JSON, replacing the agent's (for example "
        """'{"max_depth": 2}')""",
    )
    event = command("event", "send an event to a run")
    event.add_argument("run")
    event.add_argument("key")
    event.add_argument(
        "--payload", default="null", help=f"the event's payload as JSON: {json_forms}"
    )
    status = command("status", "show a run's state and steps")
    status.add_argument("run")
    result = command("result", "wait for a run's result and print it")
    result.add_argument("run")
    watch = command("watch", "stream a run's steps, waits and model tokens as they happen")
    watch.add_argument("run")
    watch.add_argument("--after", type=int, default=0, help="start after this seq")
    watch.add_argument("--json", action="store_true", help="print each entry as a JSON line")
    watch.add_argument(
        "--timeout",
        type=float,
        default=WATCH_TIMEOUT,
        help=f"seconds to wait for a run that has not started yet (default {WATCH_TIMEOUT:g})",
    )
    cancel = command("cancel", "cancel a run and its child runs")
    cancel.add_argument("run")
    cancel.add_argument("--reason", default="", help="why; kept with the cancelled run")
    listing = command("list", "list the most recent runs, each child under its parent")
    listing.add_argument(
        "--limit", type=int, default=20, help="how many of the newest runs (default 20)"
    )
    listing.add_argument("--status", choices=RUN_STATUSES, help="only runs in this state")
    approvals = command("approvals", "list the approvals runs wait for, with their requests")
    approvals.add_argument("--agent", help="only approvals of this agent's runs")
    approvals.add_argument("--json", action="store_true", help="print them as a JSON array")
    by_help = "who decides, kept with the decision (default: this OS user)"
    target = "the approval's id, or the id of a run waiting for one approval"
    approve = command("approve", "approve a pending approval, as asked or edited")
    approve.add_argument("target", metavar="RUN|APPROVAL", help=target)
    approve.add_argument(
        "--edit", help=f"approve this input instead of the proposed one: JSON, {json_forms}"
    )
    approve.add_argument("--reason", help="why; kept with the decision")
    approve.add_argument("--by", help=by_help)
    reject = command("reject", "reject a pending approval")
    reject.add_argument("target", metavar="RUN|APPROVAL", help=target)
    reject.add_argument("--reason", required=True, help="why; kept with the decision")
    reject.add_argument("--by", help=by_help)
    checkpoints = command("checkpoints", "list a run's context checkpoints, or print one")
    checkpoints.add_argument("run")
    checkpoints.add_argument("name", nargs="?", help="print this checkpoint's payload as JSON")
    purging = command("purge", "delete ended local runs, with their child runs and records")
    purging.add_argument(
        "--older-than",
        required=True,
        metavar="DURATION",
        help="runs that ended longer ago than this: 30d, 12h, 90m, 1d12h",
    )
    purging.add_argument(
        "--status",
        action="append",
        choices=sorted(ENDED_STATUSES),
        help="only runs that ended so (repeat for several; default: any)",
    )
    purging.add_argument(
        "--dry-run", action="store_true", help="say what would be deleted, delete nothing"
    )
    return root


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    # Never through the interpreter's teardown: the Temporal client's native threads
    # can abort it ("Fatal Python error"), even after a graceful stop.
    exit_without_teardown(_run(args))


def _run(args: argparse.Namespace) -> int:
    """The command's exit status; every failure becomes a message, never a traceback."""
    command = args.command
    try:
        if command == "worker":
            worker.main(["--local"] if args.local else [])
            return EXIT_OK
        settings = worker.WorkerSettings.from_env()
        handler = {
            "run": cmd_run,
            "event": cmd_event,
            "status": cmd_status,
            "result": cmd_result,
            "list": cmd_list,
            "watch": cmd_watch,
            "cancel": cmd_cancel,
            "approvals": cmd_approvals,
            "approve": cmd_decide,
            "reject": cmd_decide,
            "checkpoints": cmd_checkpoints,
            "purge": cmd_purge,
        }[command]
        code = asyncio.run(handler(args, settings))
        sys.stdout.flush()  # a reader that went away shows here for buffered output
        return code
    except BrokenPipeError:
        # As Unix tools do when the reader stops (`durable watch RUN | head`): no message.
        # The output still buffered goes nowhere, so the last flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # the worker's and the agent import's own refusals
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or EXIT_OK
        return _say(command, str(exc.code).removeprefix("worker: "), EXIT_USAGE)
    except (
        UsageError,
        ValueError,
        DurableRunNotFoundError,
        DurableApprovalNotFoundError,
        DurableCheckpointNotFoundError,
    ) as exc:
        # An unknown run, approval or checkpoint is bad input too.
        return _say(command, str(exc), EXIT_USAGE)
    except DurableError as exc:
        return _say(command, str(exc), EXIT_FAILED)
    except OSError as exc:
        where = f" {exc.filename!r}" if exc.filename else ""
        return _say(
            command,
            f"cannot use{where}: {exc.strerror or exc}; check that DURABLE_DATA names a folder "
            "this user can read and write",
            EXIT_FAILED,
        )
    except RPCError as exc:
        return _say(
            command,
            f"the Temporal server answered {exc.status.name}: {exc.message.rstrip('.')}; "
            "check that it is up and that TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE name it",
            EXIT_FAILED,
        )
    except Exception as exc:
        return _say(
            command,
            f"unexpected {type(exc).__name__}: {exc}; this is a defect in durable, "
            "please report it with the command that caused it",
            EXIT_FAILED,
        )


def _say(command: str, message: str, code: int) -> int:
    with contextlib.suppress(OSError):
        print(f"durable {command}: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    main()
