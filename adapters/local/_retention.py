"""Retention of local runs: ``purge`` deletes ended runs, and a worker does it periodically.

A purge starts from ended runs that have no parent in the store and ended
before the cut-off, and takes each with its whole family of child runs: a child
run goes with its parent, never on its own, so none is ever left without its
parent. A family any of whose runs is still active (``running``, ``waiting``,
anything not in ``ENDED_STATUSES``) is kept whole. An ended run is final, so
nothing can make it active again between the check and the delete; every store
checks once more as it deletes.

What goes: the runs, their steps, events, live streams and checkpoints, and the
blobs their steps refer to (conversation transcripts). A blob is named by its
content's hash, and a transcript names its turns by run id, so it is never
shared with a run that stays. On Temporal, runs are purged by the namespace's
retention instead (see the README).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from durable import ENDED_STATUSES, RunRecord, StepRecord

from ._store import DurableRunStore, PurgeCounts, utc_now

__all__ = [
    "BlobDeleter",
    "PurgeReport",
    "RetentionSweep",
    "blob_refs",
    "describe_counts",
    "ended_at",
    "parse_duration",
    "purge",
    "purge_root",
    "purge_summary",
]

log = logging.getLogger("durable.local.retention")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_BLOB_REF = re.compile(r"[0-9a-f]{64}")
_PAGE = 100


def parse_duration(text: str, *, what: str) -> timedelta:
    """``30s``, ``15m``, ``12h``, ``7d``, ``2w`` or a sum such as ``1d12h``; positive."""
    cleaned = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(cleaned)
    if not cleaned or "".join(number + unit for number, unit in parts) != cleaned:
        raise ValueError(
            f"{what} must be a duration such as 30d, 12h, 90m or 1d12h "
            f"(units s, m, h, d, w), got {text!r}"
        )
    seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise ValueError(f"{what} must be longer than 0, got {text!r}")
    return timedelta(seconds=seconds)


def ended_at(run: RunRecord) -> datetime:
    """When ``run`` ended (its ``completed_at``, which every way of ending sets)."""
    return run.completed_at or run.updated_at


def purge_root(
    run: RunRecord, *, exists: Collection[str], ended_before: datetime, statuses: Collection[str]
) -> bool:
    """Whether a purge starts from ``run`` (``exists``: the run ids in the store).

    The memory and file stores apply it as written; the SQL stores in one query.
    """
    return (
        run.status in ENDED_STATUSES
        and run.status in statuses
        and run.completed_at is not None
        and run.completed_at < ended_before
        and (run.parent_run_id is None or run.parent_run_id not in exists)
    )


class BlobDeleter(Protocol):
    """What a purge needs of a blob store (``durable_agents.adapters.blobs.BlobStore``)."""

    def delete(self, ref: str) -> bool:
        """Remove the blob ``ref``; ``False`` if it was not there."""
        ...


def blob_refs(steps: Iterable[StepRecord]) -> set[str]:
    """Blob references the steps' results hold: a 64-hex value under a key ending in ``_ref``
    (as a conversation turn's ``transcript_ref``)."""
    found: set[str] = set()
    pending: list[Any] = [step.result for step in steps]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, str) and key.endswith("_ref") and _BLOB_REF.fullmatch(item):
                    found.add(item)
                else:
                    pending.append(item)
        elif isinstance(value, list):
            pending.extend(value)
    return found


@dataclass
class PurgeReport:
    """What ``purge`` removed (or, with ``dry_run``, would remove)."""

    cutoff: datetime
    """Runs that ended before this were purged."""
    runs: list[str] = field(default_factory=list)
    """Every run removed, each family's parent first."""
    counts: PurgeCounts = field(default_factory=PurgeCounts)
    blobs: int = 0
    kept: list[tuple[str, str]] = field(default_factory=list)
    """Families kept whole because a run in them is still active: (run, the active run)."""
    dry_run: bool = False


async def _family(store: DurableRunStore, root: RunRecord) -> list[RunRecord]:
    """``root`` and every run below it, parents before their children."""
    family, seen = [root], {root.run_id}
    at = 0
    while at < len(family):
        for child in await store.list_children(family[at].run_id):
            if child.run_id not in seen:  # a hand-edited store could hold a cycle
                seen.add(child.run_id)
                family.append(child)
        at += 1
    return family


async def purge(
    store: DurableRunStore,
    *,
    older_than: timedelta,
    statuses: Collection[str] = ENDED_STATUSES,
    blobs: BlobDeleter | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PurgeReport:
    """Delete the runs that ended more than ``older_than`` ago, with their child runs.

    ``statuses`` limits which ended runs a purge starts from (their children go
    with them whatever their own status). ``blobs``, when given, also loses the
    blobs the purged runs' steps refer to. A run still active is never deleted,
    nor any run of its family. Returns what was removed.
    """
    if older_than <= timedelta(0):
        raise ValueError(f"older_than must be longer than 0, got {older_than}")
    live = sorted(set(statuses) - ENDED_STATUSES)
    if live:
        raise ValueError(
            f"a purge deletes only ended runs ({', '.join(sorted(ENDED_STATUSES))}); "
            f"{', '.join(live)} is not one: a run still active is never purged"
        )
    report = PurgeReport(cutoff=(now or utc_now()) - older_than, dry_run=dry_run)
    after: tuple[datetime, str] | None = None
    while True:
        page = await store.list_purgeable_runs(
            ended_before=report.cutoff, statuses=statuses, after=after, limit=_PAGE
        )
        for root in page:
            await _purge_family(store, root, report, blobs)
        if len(page) < _PAGE:
            return report
        after = (ended_at(page[-1]), page[-1].run_id)


async def _purge_family(
    store: DurableRunStore, root: RunRecord, report: PurgeReport, blobs: BlobDeleter | None
) -> None:
    family = await _family(store, root)
    active = [run for run in family if run.status not in ENDED_STATUSES]
    if active:
        report.kept.append((root.run_id, active[0].run_id))
        return
    ids = [run.run_id for run in family]
    refs: set[str] = set()
    if blobs is not None:
        for run_id in ids:
            refs |= blob_refs(await store.load_steps(run_id))
    if report.dry_run:
        report.runs += ids
        report.blobs += len(refs)
        return
    counts = await store.delete_runs(ids)
    report.counts += counts
    report.runs += ids
    if blobs is not None:
        # After the runs: a blob outliving its run wastes space; a run losing its blob breaks.
        report.blobs += sum(blobs.delete(ref) for ref in sorted(refs))


class RetentionSweep:
    """A worker's periodic purge: at most once every ``every``, runs ended over
    ``retention`` ago. Failures are logged, never raised: the worker keeps working."""

    def __init__(
        self,
        retention: timedelta,
        *,
        every: timedelta = timedelta(minutes=10),
        blobs: BlobDeleter | None = None,
    ) -> None:
        if retention <= timedelta(0):
            raise ValueError(f"retention must be longer than 0, got {retention}")
        self.retention = retention
        self.every = every.total_seconds()
        self.blobs = blobs
        self._last: float | None = None

    async def maybe_sweep(self, store: DurableRunStore) -> PurgeReport | None:
        """Purge if a sweep is due; the report, or ``None`` if none was due or it failed."""
        now = time.monotonic()
        if self._last is not None and now - self._last < self.every:
            return None
        self._last = now
        try:
            report = await purge(store, older_than=self.retention, blobs=self.blobs)
        except Exception:
            log.exception("the retention sweep failed; the next one tries again")
            return None
        if report.runs:
            log.info(
                "retention: purged %d run(s) that ended before %s (%s)",
                len(report.runs),
                report.cutoff.isoformat(),
                describe_counts(report),
            )
        return report


def purge_summary(report: PurgeReport) -> list[str]:
    """What a purge did, for people: a summary line, then each run removed."""
    when = f"that ended before {report.cutoff:%Y-%m-%d %H:%M:%S} UTC"
    if report.dry_run:
        lines = [f"would purge {len(report.runs)} run(s) {when} (dry run: nothing deleted)"]
    elif report.runs:
        lines = [f"purged {len(report.runs)} run(s) {when}: {describe_counts(report)}"]
    else:
        lines = [f"no run {when} to purge"]
    lines += [f"  {run_id}" for run_id in report.runs]
    for run_id, active in report.kept:
        lines.append(f"kept {run_id} and its child runs: {active} is still active")
    return lines


def describe_counts(report: PurgeReport) -> str:
    """``N steps, N events, N live entries, N checkpoints, N blobs``: one line for people."""
    counts = report.counts
    return (
        f"{counts.steps} steps, {counts.events} events, {counts.live} live entries, "
        f"{counts.checkpoints} checkpoints, {report.blobs} blobs"
    )
