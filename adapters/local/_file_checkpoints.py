"""``FileStore``'s context checkpoints: one file per checkpoint in its run's directory.

    <run dir>/checkpoints/c_<quoted name>.json   line 1: the CheckpointInfo
                                                 line 2: the payload's canonical JSON

A write replaces the file atomically (write, fsync, rename) under the run's lock,
once the fence holds; a delete unlinks it. Reads take no lock: a file is only
ever replaced whole. Listing reads each file's first line only.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from durable import Checkpoint, CheckpointInfo, Lease

from . import _file
from . import _ledger as ledger
from ._paths import file_name

__all__ = ["FileCheckpoints", "checkpoint_count"]

T = TypeVar("T")

_FOLDER = "checkpoints"


def _file_of(directory: Path, name: str) -> Path:
    return directory / _FOLDER / file_name(name, prefix="c_", suffix=".json")


class FileCheckpoints:
    """The checkpoint methods of ``DurableRunStore`` for ``FileStore``."""

    if TYPE_CHECKING:

        def _dir(self, run_id: str) -> Path: ...
        def _locked(
            self, run_id: str, may_wait: bool, *, create: bool = False, timeout: float | None = None
        ) -> AbstractContextManager[Path]: ...
        async def _call(self, fn: Callable[[bool], T]) -> T: ...
        def _require(self, run_id: str, directory: Path) -> ledger.RunState: ...

    async def write_checkpoint(self, lease: Lease, info: CheckpointInfo, text: str) -> None:
        data = info.model_dump_json().encode() + b"\n" + text.encode("utf-8") + b"\n"

        def op(wait: bool) -> None:
            with self._locked(lease.run_id, wait) as directory:
                ledger.check_fence(self._require(lease.run_id, directory), lease)
                folder = directory / _FOLDER
                if not folder.is_dir():
                    folder.mkdir()
                    _file._fsync_dir(directory)
                _file._atomic_write(_file_of(directory, info.name), data)

        await self._call(op)

    async def delete_checkpoint(self, lease: Lease, name: str) -> bool:
        def op(wait: bool) -> bool:
            with self._locked(lease.run_id, wait) as directory:
                ledger.check_fence(self._require(lease.run_id, directory), lease)
                path = _file_of(directory, name)
                try:
                    path.unlink()
                except FileNotFoundError:
                    return False
                _file._fsync_dir(path.parent)
                return True

        return await self._call(op)

    async def list_checkpoints(self, run_id: str) -> list[CheckpointInfo]:
        def op(_: bool) -> list[CheckpointInfo]:
            infos = []
            for path in (self._dir(run_id) / _FOLDER).glob("c_*.json"):
                with open(path, "rb") as handle:
                    first = handle.readline()
                infos.append(_file._parse(CheckpointInfo, first, path))
            return sorted(infos, key=lambda info: info.name)

        return await self._call(op)

    async def read_checkpoint(self, run_id: str, name: str) -> Checkpoint | None:
        def op(_: bool) -> Checkpoint | None:
            path = _file_of(self._dir(run_id), name)
            try:
                info_line, _newline, text = path.read_bytes().partition(b"\n")
            except FileNotFoundError:
                return None
            info = _file._parse(CheckpointInfo, info_line, path)
            return Checkpoint.of(info, text.decode("utf-8"))

        return await self._call(op)


def checkpoint_count(directory: Path) -> int:
    """How many checkpoints the run in ``directory`` holds."""
    folder = directory / _FOLDER
    return sum(1 for _ in folder.glob("c_*.json")) if folder.is_dir() else 0
