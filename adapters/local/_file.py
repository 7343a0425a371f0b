"""``FileStore``: one directory per run, JSONL logs, fsync, safe across processes.

Layout under ``root``::

    <root>/r_<quoted run id>/   (r_=<sha256 of the id> when the quoted id would not
                                fit in a file name; see ``_paths``)
        run.json       the RunRecord, replaced atomically (write, fsync, rename);
                       it names the run's parent (``parent_run_id``) and a
                       cancellation asked of its holder (``cancel_requested``)
        manifest.json  the manifest the run was started with, written once
        steps.jsonl    append-only StepRecord log; the last line per position wins
        events.jsonl   append-only EventRecord log; the first line per key wins
        live.jsonl     the live stream for watchers, appended without fsync; an
                       entry's ``seq`` is its line number, from 1
        checkpoints/   the run's context checkpoints, a file each (``_file_checkpoints``)
        .lock          flock'd around every operation

Every operation takes the run's exclusive ``flock``, rereads ``run.json`` (so a
takeover by another process is seen before any write), tails the logs from
where this process last read them, applies the ledger rules and appends the
changed record with ``fsync``. A line torn by a crash is cut off on the next
locked read, before anything is appended after it.

A failed or cancelled run started again (``retry_failed``) loses its logs and
checkpoints first, under its lock, and gets its new ``run.json`` last.

Listing (runs, expired runs, a run's children) reads every ``run.json``
without the lock: it is only ever replaced whole. Cancelling a tree changes one
run at a time, each under its own lock, so no two runs' locks are ever held
together.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import shutil
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from pydantic import TypeAdapter, ValidationError

from durable import (
    CancelOutcome,
    DurableRunManifest,
    DurableStoreError,
    EventRecord,
    Lease,
    LiveEvent,
    RunOutcome,
    RunRecord,
    RunStatus,
    StepError,
    StepKind,
    StepRecord,
    WaitingState,
)
from durable._live import live_position_error, text_end

from . import _ledger as ledger
from ._file_checkpoints import _FOLDER as _CHECKPOINTS
from ._file_checkpoints import FileCheckpoints
from ._file_purge import FilePurge
from ._lease_keeper import LeaseKeeper, renewal_timeout
from ._offload import Offloader, WouldBlock
from ._paths import file_name
from ._store import (
    EmitResult,
    EndStatus,
    Resumed,
    checked_event,
    cursor_not_found,
    gc_paused,
    run_not_found,
    utc_now,
)

__all__ = ["FileStore"]

T = TypeVar("T")


@dataclass
class _Cached:
    state: ledger.RunState
    steps_offset: int = 0
    events_offset: int = 0


class FileStore(FileCheckpoints, FilePurge):
    """A durable-run store in a directory tree; several processes may share ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = Path(root)
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _file_error(self._root, exc) from None
        self._cache: dict[str, _Cached] = {}
        self._offload = Offloader("durable-file")
        self.lease_keeper = LeaseKeeper(self.renew_lease_blocking, name="durable-file-leases")

    async def _call(self, fn: Callable[[bool], T]) -> T:
        try:
            return await self._offload.call(fn)
        except OSError as exc:
            raise _file_error(self._root, exc) from None

    def _dir(self, run_id: str) -> Path:
        # "r_" keeps "." and ".." from ever naming a run directory.
        return self._root / file_name(run_id, prefix="r_")

    @contextmanager
    def _locked(
        self, run_id: str, may_wait: bool, *, create: bool = False, timeout: float | None = None
    ) -> Iterator[Path]:
        """Hold the run's lock; ``timeout`` bounds the wait when ``may_wait``."""
        directory = self._dir(run_id)
        if create:
            directory.mkdir(exist_ok=True)
        elif not directory.is_dir():
            raise run_not_found(run_id)
        fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            unbounded = may_wait and timeout is None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if unbounded else fcntl.LOCK_NB))
            except BlockingIOError:
                if not may_wait or timeout is None:
                    raise WouldBlock from None
                _wait_for_lock(fd, run_id, timeout)
            yield directory
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def _refresh(
        self, run_id: str, directory: Path, *, repair: bool = True
    ) -> ledger.RunState | None:
        """Bring this process's view of the run up to date; caller holds the lock.

        Without ``repair`` (a read-only disk, no lock) a torn last line is skipped
        rather than cut off.
        """
        run_file = directory / "run.json"
        if not run_file.exists():
            return None
        run = _parse(RunRecord, run_file.read_bytes(), run_file)
        cached = self._cache.get(run_id)
        if cached is None or cached.state.run.created_at != run.created_at:
            cached = _Cached(ledger.RunState(run))
            self._cache[run_id] = cached
        cached.state.run = run
        with gc_paused():
            cached.steps_offset = _tail(
                directory / "steps.jsonl",
                cached.steps_offset,
                lambda raw, path: _keep_last_step(cached.state, _parse(StepRecord, raw, path)),
                repair=repair,
            )
        cached.events_offset = _tail(
            directory / "events.jsonl",
            cached.events_offset,
            lambda raw, path: _keep_first_event(cached.state, _parse(EventRecord, raw, path)),
            repair=repair,
        )
        return cached.state

    def _require(self, run_id: str, directory: Path) -> ledger.RunState:
        state = self._refresh(run_id, directory)
        if state is None:
            raise run_not_found(run_id)
        return state

    def _append(
        self, run_id: str, directory: Path, name: str, record: StepRecord | EventRecord
    ) -> None:
        path = directory / name
        line = _adapter(type(record)).dump_json(record, by_alias=True) + b"\n"
        with open(path, "ab") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
            end = handle.tell()
        cached = self._cache[run_id]
        # Our own append is already applied to the state; skip rereading it.
        if name == "steps.jsonl":
            cached.steps_offset = end
        else:
            cached.events_offset = end

    def _write_run(self, directory: Path, state: ledger.RunState) -> None:
        _atomic_write(
            directory / "run.json", _adapter(RunRecord).dump_json(state.run, by_alias=True)
        )

    async def start_or_resume(
        self,
        *,
        run_id: str,
        agent: str,
        manifest: DurableRunManifest,
        worker_id: str,
        lease_for: timedelta,
        retry_failed: bool = False,
    ) -> Resumed:
        def op(wait: bool) -> Resumed:
            with self._locked(run_id, wait, create=True) as directory:
                now = utc_now()
                state = self._refresh(run_id, directory)
                if state is None:
                    state = ledger.new_run(run_id=run_id, agent=agent, manifest=manifest, now=now)
                    self._cache[run_id] = _Cached(state)
                    _atomic_write(directory / "manifest.json", manifest.model_dump_json().encode())
                    _fsync_dir(self._root)
                elif ledger.restartable(
                    state.run, manifest, retry_failed=retry_failed
                ) and not self._has_children(run_id):
                    _discard_records(directory)
                    _atomic_write(directory / "manifest.json", manifest.model_dump_json().encode())
                    fresh = ledger.restart(
                        state,
                        agent=agent,
                        manifest=manifest,
                        worker_id=worker_id,
                        now=now,
                        lease_for=lease_for,
                    )
                    # Last: until run.json says so, the run is still the one that ended. Its
                    # new created_at makes every process drop what it cached of the old one.
                    self._cache[run_id] = _Cached(state)
                    self._write_run(directory, state)
                    return Resumed(run=state.snapshot(), steps=[], lease=fresh, restarted=True)
                taken = ledger.acquire(
                    state, manifest=manifest, worker_id=worker_id, now=now, lease_for=lease_for
                )
                if taken is not None:
                    self._write_run(directory, state)
                steps = [state.steps[i] for i in sorted(state.steps)]
                lease, kind = taken or (None, None)
                return Resumed(run=state.snapshot(), steps=steps, lease=lease, resumed=kind)

        return await self._call(op)

    def _has_children(self, run_id: str) -> bool:
        # run.json is only ever replaced whole (rename), so it is read without the lock.
        return any(
            _parse(RunRecord, path.read_bytes(), path).parent_run_id == run_id
            for path in self._root.glob("r_*/run.json")
        )

    async def clear_recoveries(self, lease: Lease) -> None:
        def clear(wait: bool) -> None:
            with self._locked(lease.run_id, wait) as directory:
                state = self._require(lease.run_id, directory)
                ledger.clear_recoveries(state, lease, now=utc_now())
                self._write_run(directory, state)

        await self._call(clear)

    async def set_waiting(self, lease: Lease, waiting: WaitingState | None) -> None:
        def mark(wait: bool) -> None:
            with self._locked(lease.run_id, wait) as directory:
                state = self._require(lease.run_id, directory)
                ledger.set_waiting(state, lease, waiting, now=utc_now())
                self._write_run(directory, state)

        await self._call(mark)

    async def renew_lease(self, lease: Lease, *, lease_for: timedelta) -> Lease:
        # Runs renew from the keeper's thread; delegating keeps one home for the renewal.
        return await asyncio.to_thread(self.renew_lease_blocking, lease, lease_for=lease_for)

    def renew_lease_blocking(self, lease: Lease, *, lease_for: timedelta) -> Lease:
        # The run's flock also excludes this process's other descriptors, so the keeper's
        # thread and the store's other calls take turns on the run. It reads run.json
        # itself and leaves the cache, which those calls share, untouched. The wait is
        # bounded: a process stuck holding the lock must not stall every other renewal.
        timeout = renewal_timeout(lease_for)
        with self._locked(lease.run_id, True, timeout=timeout) as directory:
            run_file = directory / "run.json"
            state = ledger.RunState(_parse(RunRecord, run_file.read_bytes(), run_file))
            renewed = ledger.renew(state, lease, now=utc_now(), lease_for=lease_for)
            self._write_run(directory, state)
            return renewed

    async def _step_op(
        self, lease: Lease, apply: Callable[[ledger.RunState], StepRecord]
    ) -> StepRecord:
        return await self._call(lambda wait: self._apply_step(lease, apply, wait))

    def _apply_step(
        self, lease: Lease, apply: Callable[[ledger.RunState], StepRecord], wait: bool
    ) -> StepRecord:
        with self._locked(lease.run_id, wait) as directory:
            state = self._require(lease.run_id, directory)
            record = apply(state)
            self._append(lease.run_id, directory, "steps.jsonl", record)
            return record

    async def begin_step(
        self,
        lease: Lease,
        *,
        step_index: int,
        intent: str,
        kind: StepKind,
        input_hash: str,
        deadline: datetime | None = None,
    ) -> datetime | None:
        record = await self._step_op(
            lease,
            lambda state: ledger.begin_step(
                state,
                lease,
                step_index=step_index,
                intent=intent,
                kind=kind,
                input_hash=input_hash,
                deadline=deadline,
                now=utc_now(),
            ),
        )
        return None if deadline is None else record.deadline

    async def complete_step(self, lease: Lease, *, step_index: int, result: Any) -> None:
        await self._step_op(
            lease,
            lambda state: ledger.finish_step(
                state, lease, step_index=step_index, result=result, now=utc_now()
            ),
        )

    async def fail_step(
        self, lease: Lease, *, step_index: int, error: StepError, final: bool
    ) -> None:
        await self._step_op(
            lease,
            lambda state: ledger.finish_step(
                state, lease, step_index=step_index, error=error, final=final, now=utc_now()
            ),
        )

    async def end_run(
        self,
        lease: Lease,
        *,
        status: EndStatus,
        result: Any = None,
        error: StepError | None = None,
        outcome: RunOutcome | None = None,
    ) -> RunRecord:
        def op(wait: bool) -> RunRecord:
            with self._locked(lease.run_id, wait) as directory:
                state = self._require(lease.run_id, directory)
                record = ledger.end_run(
                    state,
                    lease,
                    status=status,
                    result=result,
                    error=error,
                    outcome=outcome,
                    now=utc_now(),
                )
                self._write_run(directory, state)
                return record

        return await self._call(op)

    async def request_cancel(
        self, run_id: str, reason: str, *, now: datetime | None = None
    ) -> tuple[CancelOutcome, RunRecord]:
        return await ledger.cancel_tree(self, run_id, reason, now=now or utc_now())

    async def _cancel_one(
        self, run_id: str, reason: str, now: datetime
    ) -> tuple[CancelOutcome, RunRecord]:
        def op(wait: bool) -> tuple[CancelOutcome, RunRecord]:
            with self._locked(run_id, wait) as directory:
                state = self._require(run_id, directory)
                before = state.run
                outcome = ledger.cancel(state, reason, now=now)
                if state.run is not before:
                    self._write_run(directory, state)
                return outcome, state.snapshot()

        return await self._call(op)

    async def list_children(self, run_id: str) -> list[RunRecord]:
        return await self._select_runs(lambda run: run.parent_run_id == run_id, None)

    async def emit_event(
        self, run_id: str, key: str, payload: Any, *, lease: Lease | None = None
    ) -> EmitResult:
        data = checked_event(run_id, key, payload)

        def op(wait: bool) -> EmitResult:
            with self._locked(run_id, wait) as directory:
                state = self._require(run_id, directory)
                accepted, record = ledger.emit_event(state, key, data, lease=lease, now=utc_now())
                if accepted:
                    self._append(run_id, directory, "events.jsonl", record)
                return EmitResult(accepted=accepted, record=record)

        return await self._call(op)

    def _read(self, run_id: str, wait: bool) -> ledger.RunState | None:
        if not self._dir(run_id).is_dir():
            return None
        try:
            with self._locked(run_id, wait) as directory:
                return self._refresh(run_id, directory)
        except OSError as exc:
            if exc.errno not in _READ_ONLY:
                raise
        # A store on a read-only disk still answers reads. No writer can append there,
        # so reading without the lock sees whole records.
        return self._refresh(run_id, self._dir(run_id), repair=False)

    async def load_event(self, run_id: str, key: str) -> EventRecord | None:
        state = await self._call(lambda wait: self._read(run_id, wait))
        return None if state is None else state.events.get(key)

    async def load_run(self, run_id: str) -> RunRecord | None:
        state = await self._call(lambda wait: self._read(run_id, wait))
        return None if state is None else state.snapshot()

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        state = await self._call(lambda wait: self._read(run_id, wait))
        return [] if state is None else [state.steps[i] for i in sorted(state.steps)]

    async def load_manifest(self, run_id: str) -> DurableRunManifest | None:
        path = self._dir(run_id) / "manifest.json"
        try:
            return _parse(DurableRunManifest, path.read_bytes(), path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _file_error(self._root, exc) from None

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        agent: str | None = None,
        limit: int = 100,
        newest: bool = False,
        before: str | None = None,
    ) -> list[RunRecord]:
        cursor = None
        if before is not None:
            found = await self.load_run(before)
            if found is None:
                raise cursor_not_found(before)
            cursor = ledger.creation_order(found)
        return await self._select_runs(
            lambda run: ledger.listed(run, status=status, agent=agent, before=cursor),
            limit,
            newest,
        )

    async def list_expired_runs(
        self, *, now: datetime, limit: int = 100, agents: Collection[str] | None = None
    ) -> list[RunRecord]:
        hosted = None if agents is None else frozenset(agents)
        return await self._select_runs(lambda run: ledger.recoverable(run, now, hosted), limit)

    async def _select_runs(
        self, keep: Callable[[RunRecord], bool], limit: int | None, newest: bool = False
    ) -> list[RunRecord]:
        """The first ``limit`` runs ``keep`` accepts (all if ``None``; the last ``limit``
        with ``newest``), in creation order."""
        # run.json is only ever replaced whole (rename), so it is read without the lock.
        runs = []
        try:
            for run_file in self._root.glob("r_*/run.json"):
                run = _parse(RunRecord, run_file.read_bytes(), run_file)
                if keep(run):
                    runs.append(run)
        except OSError as exc:
            raise _file_error(self._root, exc) from None
        runs.sort(key=ledger.creation_order)
        chosen = runs[-limit:] if newest and limit else runs[:limit]
        return [
            snapshot for run in chosen if (snapshot := await self.load_run(run.run_id)) is not None
        ]

    async def append_live(self, run_id: str, events: Sequence[LiveEvent]) -> None:
        data = b"".join(
            e.model_dump_json(exclude={"seq"}, exclude_none=True).encode() + b"\n" for e in events
        )

        def op(wait: bool) -> None:
            with self._locked(run_id, wait) as directory:
                _append_lines(directory / "live.jsonl", data)

        await self._call(op)

    async def read_live(self, run_id: str, *, after: int = 0, limit: int = 500) -> list[LiveEvent]:
        # Unlocked: only complete lines are read, and appends never rewrite them.
        return await self._call(lambda _: self._read_live(run_id, after, limit))

    def _read_live(self, run_id: str, after: int, limit: int) -> list[LiveEvent]:
        if after < 0:
            raise live_position_error(run_id, after, 0)
        path = self._dir(run_id) / "live.jsonl"
        try:
            with open(path, "rb") as handle:
                _skip_lines(handle, after, lambda end: live_position_error(run_id, after, end))
                data = handle.read(1 << 20)
        except FileNotFoundError:
            if after:
                raise live_position_error(run_id, after, 0) from None
            return []
        events: list[LiveEvent] = []
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n") or len(events) >= limit:
                break
            event = _parse(LiveEvent, line, path)
            events.append(event.model_copy(update={"seq": after + len(events) + 1}))
        return events

    async def live_text_end(self, run_id: str, step_index: int) -> int:
        end, after = 0, 0
        while batch := await self.read_live(run_id, after=after):
            end = max(end, text_end(batch, step_index))
            after = batch[-1].seq
        return end

    async def close(self) -> None:
        self.lease_keeper.close()
        self._offload.close()


_adapters: dict[type[Any], TypeAdapter[Any]] = {}


def _adapter(record_type: type[T]) -> TypeAdapter[T]:
    adapter = _adapters.get(record_type)
    if adapter is None:
        adapter = _adapters[record_type] = TypeAdapter(record_type)
    return adapter


def _parse(model: type[T], raw: bytes, path: Path) -> T:
    try:
        return _adapter(model).validate_json(raw)
    except ValidationError as exc:
        raise DurableStoreError(
            f"{path} holds a record that is not a valid {model.__name__} "
            f"({exc.error_count()} errors); restore the file from a backup or remove the run"
        ) from None


_READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)


def _file_error(root: Path, exc: OSError) -> DurableStoreError:
    """An ``OSError`` of the store's files as a ``DurableStoreError`` saying what to do."""
    where = exc.filename or root
    if exc.errno in _READ_ONLY:
        fix = (
            f"this process may only read {str(root)!r}; make it writable to start, resume "
            "or send events to runs (reading runs works as it is)"
        )
    elif exc.errno == errno.ENOSPC:
        fix = "the disk is full; free space and try again"
    else:
        fix = f"check the file store at {str(root)!r}"
    return DurableStoreError(f"{exc.strerror or exc} for {str(where)!r}: {fix}")


def _wait_for_lock(fd: int, run_id: str, timeout: float) -> None:
    """Poll for the exclusive flock on ``fd`` for up to ``timeout`` s: flock has no timeout."""
    deadline = time.monotonic() + timeout
    while True:
        time.sleep(0.005)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise DurableStoreError(
                    f"the lock of run {run_id!r} stayed taken for {timeout:.2f}s; "
                    "check for a stuck process sharing the store"
                ) from None


def _keep_last_step(state: ledger.RunState, record: StepRecord) -> None:
    state.steps[record.step_index] = record


def _keep_first_event(state: ledger.RunState, record: EventRecord) -> None:
    state.events.setdefault(record.key, record)


def _tail(
    path: Path, offset: int, apply: Callable[[bytes, Path], None], *, repair: bool = True
) -> int:
    """Apply every complete line after ``offset``; cut off a torn last line if ``repair``."""
    # Logs are only created by appends under the run's lock, which the caller holds.
    if not path.exists():
        return 0
    with open(path, "r+b" if repair else "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size < offset:
            raise DurableStoreError(
                f"{path} shrank from {offset} to {size} bytes while in use; "
                "another program modified it, so restore it from a backup"
            )
        handle.seek(offset)
        data = handle.read()
        complete = data.rfind(b"\n") + 1
        if complete < len(data) and repair:
            # A crash mid-append left a partial line; it was never acknowledged.
            handle.truncate(offset + complete)
            handle.flush()
            os.fsync(handle.fileno())
        for line in data[:complete].splitlines():
            if line:
                apply(line, path)
        return offset + complete


def _skip_lines(handle: BinaryIO, count: int, beyond: Callable[[int], Exception]) -> None:
    """Move ``handle`` past its first ``count`` complete lines, or raise ``beyond(lines)``."""
    # Counting newlines runs at memory speed; an entry's position needs no index.
    seen = 0
    while seen < count:
        start = handle.tell()
        chunk = handle.read(1 << 20)
        found = chunk.count(b"\n")
        if seen + found >= count:
            at = -1
            for _ in range(count - seen):
                at = chunk.index(b"\n", at + 1)
            handle.seek(start + at + 1)
            return
        if len(chunk) < 1 << 20:
            raise beyond(seen + found)
        seen += found


def _append_lines(path: Path, data: bytes) -> None:
    """Append whole lines, first cutting off a line left torn by a writer that died."""
    with open(path, "ab+") as handle:
        end = handle.seek(0, os.SEEK_END)
        if end:
            handle.seek(end - 1)
            if handle.read(1) != b"\n":
                handle.seek(0)
                handle.truncate(handle.read().rfind(b"\n") + 1)
        handle.write(data)


def _discard_records(directory: Path) -> None:
    """Remove a run's steps, events, live stream and checkpoints, to start it again.

    Unlinked, never truncated: a reader that opened a log without the lock (the live
    stream) keeps reading the old file whole.
    """
    for name in ("steps.jsonl", "events.jsonl", "live.jsonl"):
        (directory / name).unlink(missing_ok=True)
    folder = directory / _CHECKPOINTS
    if folder.is_dir():
        shutil.rmtree(folder)
    _fsync_dir(directory)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
