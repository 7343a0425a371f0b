"""Commands on what a store keeps: a run's checkpoints, and purging ended runs."""

from __future__ import annotations

import argparse

import worker
from adapters.blobs import default_blob_store
from adapters.local import SqliteStore, parse_duration, purge
from adapters.local._retention import purge_summary
from durable import ENDED_STATUSES, check_name, table
from durable._checkpoints import checkpoint_not_found

from ._clients import temporal_client
from ._common import EXIT_OK, UsageError, show

__all__ = ["cmd_checkpoints", "cmd_purge"]


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
                print(show(found.payload))
                return EXIT_OK
            infos = await store.list_checkpoints(args.run)
        finally:
            await store.close()
    else:
        client = await temporal_client(settings)
        if args.name is not None:
            print(show((await client.checkpoint(args.run, args.name)).payload))
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
