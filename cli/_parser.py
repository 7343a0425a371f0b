"""The command line's grammar: every command, its arguments and its help."""

from __future__ import annotations

import argparse

from durable import ENDED_STATUSES, RUN_STATUSES

from ._common import EXIT_CODES
from ._runs import WATCH_TIMEOUT

__all__ = ["parser"]

DESCRIPTION = "The ``durable`` command: start agent runs, send them events, read their state."


def _plain(text: str) -> str:
    """Help text without the docstrings' reStructuredText literals."""
    return text.replace("``", "")


def parser() -> argparse.ArgumentParser:
    statuses = "\n".join(f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES.items())
    root = argparse.ArgumentParser(
        prog="durable",
        description=_plain(DESCRIPTION),
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
    result = command("result", "print a run's result, or what it is still doing")
    result.add_argument("run")
    result.add_argument(
        "--wait", action="store_true", help="wait for an active run's end instead of saying so"
    )
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
    compat = command(
        "check-compat",
        "replay every run in flight against the agents installed here; exit 1 if any diverge",
    )
    compat.add_argument(
        "--agent", action="append", help="only runs of this agent (repeat for several)"
    )
    compat.add_argument("--json", action="store_true", help="print the report as JSON")
    serve = command("serve", "serve the HTTP API and the web view of runs")
    serve.add_argument("--host", help="the address to listen on (default DURABLE_API_HOST)")
    serve.add_argument("--port", type=int, help="the port to listen on (default DURABLE_API_PORT)")
    return root
