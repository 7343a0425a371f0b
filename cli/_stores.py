"""Commands on what a store keeps: a run's checkpoints, and purging ended runs."""

from __future__ import annotations

import argparse

from durable import ENDED_STATUSES, check_name, table
from durable_agents.adapters.blobs import BlobStore
from durable_agents.adapters.local import parse_duration
from durable_agents.adapters.local._retention import purge_summary
from durable_agents.adapters.settings import Settings

from ._clients import open_purging, open_target
from ._common import EXIT_OK, show

__all__ = ["cmd_checkpoints", "cmd_purge"]


async def cmd_checkpoints(args: argparse.Namespace, settings: Settings) -> int:
    check_name(args.run, what="run id")
    async with open_target(args, settings) as target:
        if args.name is not None:
            print(show((await target.client.checkpoint(args.run, args.name)).payload))
            return EXIT_OK
        infos = await target.client.checkpoints(args.run)
    if not infos:
        print(f"run {args.run} has no checkpoints")
        return EXIT_OK
    rows = [(i.name, i.size_bytes, i.step, f"{i.written_at:%Y-%m-%d %H:%M:%S} UTC") for i in infos]
    print(table(("name", "bytes", "step", "written"), rows, right=(1, 2)))
    return EXIT_OK


async def cmd_purge(args: argparse.Namespace, settings: Settings) -> int:
    async with open_purging(args, settings) as client:
        report = await client.purge(
            older_than=parse_duration(args.older_than, what="--older-than"),
            statuses=args.status or ENDED_STATUSES,
            blobs=BlobStore(settings.storage.blob_root),
            dry_run=args.dry_run,
        )
    for line in purge_summary(report):
        print(line)
    return EXIT_OK
