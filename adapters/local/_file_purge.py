"""``FileStore``'s part of a purge: find ended runs, delete their directories.

A run's directory is deleted under its lock, once its ``run.json`` says it
ended: renamed first (one atomic step that takes the whole run out of every
listing), then removed. A directory left behind by a purge that was killed
between the two (``.purged-*``) is removed by the next purge.
"""

from __future__ import annotations

import functools
import shutil
import uuid
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from durable import ENDED_STATUSES, RunRecord

from . import _file
from . import _ledger as ledger
from ._file_checkpoints import checkpoint_count
from ._retention import ended_at, purge_root
from ._store import PurgeCounts

__all__ = ["FilePurge"]

T = TypeVar("T")

_GRAVE = ".purged-"


class FilePurge:
    """The purge methods of ``DurableRunStore`` for ``FileStore``."""

    if TYPE_CHECKING:
        _root: Path
        _cache: dict[str, Any]

        def _dir(self, run_id: str) -> Path: ...
        def _locked(
            self, run_id: str, may_wait: bool, *, create: bool = False, timeout: float | None = None
        ) -> AbstractContextManager[Path]: ...
        async def _call(self, fn: Callable[[bool], T]) -> T: ...
        def _refresh(
            self, run_id: str, directory: Path, *, repair: bool = True
        ) -> ledger.RunState | None: ...
        async def load_run(self, run_id: str) -> RunRecord | None: ...

    async def list_purgeable_runs(
        self,
        *,
        ended_before: datetime,
        statuses: Collection[str],
        after: tuple[datetime, str] | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        def op(_: bool) -> list[str]:
            for grave in self._root.glob(f"{_GRAVE}*"):
                shutil.rmtree(grave, ignore_errors=True)
            # run.json is only ever replaced whole (rename), so it is read without the lock.
            runs = [
                _file._parse(RunRecord, path.read_bytes(), path)
                for path in self._root.glob("r_*/run.json")
            ]
            exists = {run.run_id for run in runs}
            keys = sorted(
                (ended_at(run), run.run_id)
                for run in runs
                if purge_root(run, exists=exists, ended_before=ended_before, statuses=statuses)
            )
            return [key[1] for key in keys if after is None or key > after][:limit]

        chosen = await self._call(op)
        return [run for run_id in chosen if (run := await self.load_run(run_id)) is not None]

    async def delete_runs(self, run_ids: Sequence[str]) -> PurgeCounts:
        counts = PurgeCounts()
        for run_id in run_ids:
            counts += await self._call(functools.partial(self._delete, run_id))
        return counts

    def _delete(self, run_id: str, wait: bool) -> PurgeCounts:
        if not self._dir(run_id).is_dir():
            return PurgeCounts()
        with self._locked(run_id, wait) as directory:
            state = self._refresh(run_id, directory)
            if state is None or state.run.status not in ENDED_STATUSES:
                return PurgeCounts()
            counts = PurgeCounts(
                runs=1,
                steps=len(state.steps),
                events=len(state.events),
                live=_lines(directory / "live.jsonl"),
                checkpoints=checkpoint_count(directory),
            )
            grave = self._root / f"{_GRAVE}{uuid.uuid4().hex}"
            directory.rename(grave)
            _file._fsync_dir(self._root)
        self._cache.pop(run_id, None)
        shutil.rmtree(grave)
        return counts


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except FileNotFoundError:
        return 0
