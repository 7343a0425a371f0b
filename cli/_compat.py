"""``durable check-compat``: would the agents installed here replay every run in flight?

It replays each active run of the configured agents (``DURABLE_AGENT_MODULES``)
against the code imported now, executing no step: the local store's records
with ``--local``, else each running workflow's history through Temporal's
``Replayer``. Every run that would diverge is listed with its position and both
sides, and the exit status is 1, so the command can gate a deploy.
"""

from __future__ import annotations

import argparse
import sys

from durable import DurableRegistrationError, agent_definition, table
from durable._compat import CompatReport
from durable_agents import DurableAgentsPlugin, worker
from durable_agents.adapters.local import SqliteStore, check_runs
from durable_agents.adapters.settings import Settings
from durable_agents.adapters.temporal import TemporalConnectError, check_workflows, connect

from ._common import EXIT_FAILED, EXIT_OK, UsageError

__all__ = ["cmd_check_compat"]


async def cmd_check_compat(args: argparse.Namespace, settings: Settings) -> int:
    modules = settings.worker.agent_modules
    worker.import_agents(modules)
    agents = _agents(args.agent or [], modules)
    if args.local:
        path = settings.storage.local_store
        if not path.exists():
            raise UsageError(f"no local store at {path}; set DURABLE_STORE or DURABLE_DATA")
        store = SqliteStore(path)
        try:
            report = await check_runs(store, agents=agents)
        finally:
            await store.close()
        where = f"on the local store {path}"
    else:
        try:
            client = await connect(settings.temporal)
        except TemporalConnectError as exc:
            raise UsageError(str(exc)) from None
        queue = settings.worker.task_queue
        report = await check_workflows(
            client, task_queue=queue, plugins=[DurableAgentsPlugin(modules)], agents=agents
        )
        where = f"on Temporal at {settings.temporal.target}, task queue {queue!r}"
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        _show(report, where)
    return EXIT_OK if report.compatible else EXIT_FAILED


def _agents(names: list[str], modules: tuple[str, ...]) -> list[str] | None:
    for name in names:
        try:
            agent_definition(name)
        except DurableRegistrationError:
            raise UsageError(
                f"no agent {name!r} in the agent modules ({', '.join(modules)}); name one "
                "they define, or add its module to DURABLE_AGENT_MODULES"
            ) from None
    return names or None


def _show(report: CompatReport, where: str) -> None:
    count = len(report.checked)
    runs = f"{count} run{'' if count == 1 else 's'} in flight"
    if report.compatible:
        print(f"checked {runs} {where}: the code installed here replays every one")
    else:
        print(f"checked {runs} {where}: {len(report.diverging)} would diverge")
        rows = [
            (
                found.run_id,
                found.agent,
                "?" if found.position is None else found.position,
                found.recorded or "(no step the records show)",
                found.now or "(no step)",
            )
            for found in report.diverging
        ]
        print(table(("RUN", "AGENT", "POSITION", "RECORDED", "NOW"), rows, right=(2,), whole=(0,)))
        for found in report.diverging:
            print(f"  {found.run_id}: {found.error}")
    for run_id, reason in report.skipped.items():
        print(f"skipped {run_id}: {reason}", file=sys.stderr)
