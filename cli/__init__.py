"""The ``durable`` command: start agent runs, send them events, read their state.

    durable worker [--local]
    durable run AGENT --input JSON|@FILE|- [--run-id ID] [--wait] [--delegation JSON] [--local]
    durable event RUN KEY --payload JSON|@FILE|- [--local]
    durable status RUN [--local]
    durable result RUN [--wait] [--local]
    durable watch RUN [--after SEQ] [--json] [--timeout SECONDS] [--local]
    durable cancel RUN [--reason TEXT] [--local]
    durable list [--status S] [--local]
    durable approvals [--agent A] [--json] [--local]
    durable approve RUN|APPROVAL [--edit JSON] [--reason TEXT] [--by NAME] [--local]
    durable reject RUN|APPROVAL --reason TEXT [--by NAME] [--local]
    durable checkpoints RUN [NAME] [--local]
    durable purge --older-than DURATION [--status S] [--dry-run] --local
    durable serve [--host H] [--port P] [--local]
    durable check-compat [--agent A] [--json] [--local]

Temporal is the default, configured like the worker (``TEMPORAL_ADDRESS``, else
the embedded server a running ``durable worker`` started). ``--local`` uses the
SQLite store instead. Every command speaks ``DurableClient``, chosen once in
``_clients``; ``EXIT_CODES`` lists the exit statuses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence

from temporalio.service import RPCError

from durable import (
    DurableApprovalNotFoundError,
    DurableCheckpointNotFoundError,
    DurableError,
    DurableRunNotFoundError,
)
from durable_agents import worker
from durable_agents.adapters.settings import Settings, in_use
from durable_agents.adapters.telemetry import TelemetrySettings, command_span, configure_telemetry
from durable_agents.adapters.temporal import exit_without_teardown

from ._approvals import cmd_approvals, cmd_decide
from ._common import (
    EXIT_BROKEN_PIPE,
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
)
from ._compat import cmd_check_compat
from ._parser import parser
from ._runs import cmd_cancel, cmd_event, cmd_result, cmd_run, cmd_watch
from ._serve import cmd_serve
from ._stores import cmd_checkpoints, cmd_purge
from ._views import cmd_list, cmd_status

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_CODES",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "main",
    "parser",
]


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    # Never through the interpreter's teardown: the Temporal client's native threads
    # can abort it ("Fatal Python error"), even after a graceful stop.
    exit_without_teardown(_run(args))


def _telemetry_settings(settings: TelemetrySettings, command: str) -> TelemetrySettings:
    """Spans and pushed metrics as configured; metrics endpoints only for ``serve``, a
    long-lived process (a short command must not take a port a worker serves on)."""
    served = settings.metrics_address if command == "serve" else None
    return settings.model_copy(update={"metrics_address": served, "temporal_metrics_address": None})


def _run(args: argparse.Namespace) -> int:
    """The command's exit status; every failure becomes a message, never a traceback."""
    command = args.command
    try:
        if command == "worker":
            worker.main(["--local"] if args.local else [])
            return EXIT_OK
        settings = Settings.from_env()
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
            "serve": cmd_serve,
            "check-compat": cmd_check_compat,
        }[command]
        telemetry = configure_telemetry(_telemetry_settings(settings.telemetry, command))
        try:
            # What the runs a --local command executes here read; the command's span
            # continues the caller's trace (TRACEPARENT) into every run it starts.
            # durable serve is long-lived: each request's run gets its own trace, not the
            # command's.
            span = contextlib.nullcontext() if command == "serve" else command_span(command)
            with in_use(settings), span:
                code = asyncio.run(handler(args, settings))
        finally:
            telemetry.close()
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
