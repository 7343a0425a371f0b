"""The one place a command's client is chosen: the local store with ``--local``, else Temporal.

Every command speaks ``DurableClient`` (``LocalClient`` or ``AgentClient``) and
nothing else, so no command branches on the substrate; what a message needs to
know about where runs are (the flag to repeat, a Temporal UI link) comes with
the client, in a ``Target``.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol, runtime_checkable

from durable import Checkpoint, CheckpointInfo, DurableClient
from durable_agents.adapters.local import LocalClient, PurgeReport, RunSlots, SqliteStore
from durable_agents.adapters.local._retention import BlobDeleter
from durable_agents.adapters.settings import Settings
from durable_agents.adapters.temporal import AgentClient, TemporalConnectError, connect

from ._common import UsageError

__all__ = ["CommandClient", "Purging", "Target", "open_purging", "open_target"]


class CommandClient(DurableClient, Protocol):
    """What the commands call: the ``DurableClient`` protocol and a run's checkpoints,
    which both clients read."""

    async def checkpoints(self, run_id: str) -> list[CheckpointInfo]: ...

    async def checkpoint(self, run_id: str, name: str) -> Checkpoint: ...


@runtime_checkable
class Purging(Protocol):
    """A client whose store a purge may delete from (``LocalClient``); on Temporal the
    namespace's retention deletes closed runs instead."""

    async def purge(
        self,
        *,
        older_than: timedelta,
        statuses: Collection[str],
        blobs: BlobDeleter | None = None,
        dry_run: bool = False,
    ) -> PurgeReport: ...


@dataclass(frozen=True)
class Target:
    """A command's client, and the words its messages need about where runs are."""

    client: CommandClient
    flag: str
    """``" --local"`` or ``""``: what a command a message suggests must repeat."""
    where: str
    """Where runs are, for people: ``on the local store PATH``, ``on Temporal at ADDRESS``."""
    executes_here: bool
    """Runs this client starts execute in this process (the local store), so
    ``durable run`` stays until its run ends instead of leaving it to a worker."""
    ui_link: Callable[[str], str | None]
    """A run's page in the Temporal UI, when there is one."""


@asynccontextmanager
async def open_target(args: argparse.Namespace, settings: Settings) -> AsyncIterator[Target]:
    """The client the command line asks for, closed when the command is done."""
    target = _local(settings) if args.local else await _temporal(settings)
    try:
        yield target
    finally:
        await target.client.close()


@asynccontextmanager
async def open_purging(args: argparse.Namespace, settings: Settings) -> AsyncIterator[Purging]:
    """The client a purge deletes through: the local store's; refused, before anything
    is reached, on Temporal, where the namespace's retention deletes closed runs."""
    if not args.local:
        raise UsageError(
            "on Temporal, the namespace's retention deletes closed runs; set it with "
            f"`temporal operator namespace update --namespace {settings.temporal.namespace} "
            "--retention 30d`, or purge the local store with --local"
        )
    async with open_target(args, settings) as target:
        assert isinstance(target.client, Purging), "a local client purges its store"
        yield target.client


def _local(settings: Settings) -> Target:
    path = settings.storage.local_store
    path.parent.mkdir(parents=True, exist_ok=True)
    client = LocalClient(
        SqliteStore(path),
        lease=settings.worker.lease,
        slots=RunSlots(settings.worker.max_concurrent_runs),
        owns_store=True,
    )
    return Target(
        client=client,
        flag=" --local",
        where=f"on the local store {path}",
        executes_here=True,
        ui_link=lambda run_id: None,
    )


async def _temporal(settings: Settings) -> Target:
    try:
        client = await connect(settings.temporal)
    except TemporalConnectError as exc:
        raise UsageError(str(exc)) from None
    return Target(
        client=AgentClient(client, task_queue=settings.worker.task_queue),
        flag="",
        where=f"on Temporal at {settings.temporal.target}",
        executes_here=False,
        ui_link=settings.temporal.ui_link,
    )
