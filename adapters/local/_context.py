"""``LocalContext``: the ``DurableContext`` of a run checkpointed in a local store.

Durability in one sentence per method: before a step runs, look up what was
recorded at its position; if it completed, return the recorded result (or raise
the recorded failure); otherwise run it and record the outcome under the lease.
"""

from __future__ import annotations

import asyncio
import logging
import uuid as _uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, TypeVarTuple, Unpack, cast

from opentelemetry.trace import Span
from pydantic import ValidationError

from durable import (
    UNSET,
    DelegationPolicy,
    DurableAwaitEventTimeoutError,
    DurableContext,
    DurableError,
    DurableRegistrationError,
    DurableRunError,
    DurableRunLeaseLostError,
    DurableRunManifest,
    JsonCodec,
    Lease,
    LiveEvent,
    RetryPolicy,
    RunRecord,
    StepError,
    StepKind,
    StepRecord,
    TokenDeltas,
    WaitingState,
    as_timedelta,
    attempt_scope,
    canonical_hash,
    check_arguments,
    check_name,
    event_payload,
    live_tokens,
    retry_hints,
    step_definition,
)
from durable._approvals import Approvals
from durable._compat import ReplayEnded
from durable._failures import (
    await_timeout_error,
    divergence_error,
    event_label,
    event_payload_error,
    input_mismatch_error,
    replayed_failure,
    step_error_from,
    step_failed_error,
    step_label,
    step_timeout_error,
    unrecordable,
)
from durable._live import retry_entry
from durable._patches import Patches, check_event_key, patch_key
from durable_agents.adapters.telemetry import RunGauge, names, spans, step_attempt, wait_attributes

from ._checkpoints import LocalCheckpoints
from ._children import LocalChildren, RunChild
from ._events import send_event
from ._live import LivePublisher
from ._store import DurableRunStore, utc_now

__all__ = ["LocalContext"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_codecs: dict[Any, JsonCodec[Any]] = {}


def _codec(annotation: Any) -> JsonCodec[Any]:
    codec = _codecs.get(annotation)
    if codec is None:
        codec = _codecs[annotation] = JsonCodec(annotation)
    return codec


class LocalContext(LocalChildren, Approvals, Patches, LocalCheckpoints):
    """Implements ``DurableContext`` over a ``DurableRunStore`` and a held lease."""

    def __init__(
        self,
        *,
        store: DurableRunStore,
        lease: Lease,
        run: RunRecord,
        steps: Sequence[StepRecord],
        poll_interval: timedelta,
        live: LivePublisher,
        declared: Mapping[str, JsonCodec[Any]] | None = None,
        manifest: DurableRunManifest | None = None,
        delegation: DelegationPolicy | None = None,
        run_child: RunChild | None = None,
        replay_only: bool = False,
    ) -> None:
        self._store = store
        self._replay_only = replay_only
        """A compatibility check: ``ReplayEnded`` where the records end, nothing written."""
        self.diverged: tuple[int, str, str] | None = None
        """Where replay found the code changed: position, what was recorded, what is now."""
        self._manifest = manifest
        self._delegation = delegation
        self._unproven = run.recoveries > 0
        self._executing = 0
        """Steps of this run executing now (a wait next to one proves nothing)."""
        self._waits: dict[int, WaitingState] = {}
        """Event waits under way, by position: with nothing else executing, the run waits."""
        self._shown: WaitingState | None = None
        """What the run's record says it waits for (``None``: running)."""
        """Taken over from a worker that died: until it gets past that point, the run's
        recoveries keep counting toward the bound of a poison run."""
        self.cancel_reason: str | None = None
        """Set once a cancellation of this run is under way."""
        self.gauge = RunGauge("local")
        """This run in the run gauges; the runner moves it in and out."""
        self._init_local_children(run_child)
        self._init_patches()
        self.live = live
        self.lease = lease
        self._run = run
        self._recorded = {record.step_index: record for record in steps}
        # Up to the last step that ended; a step cut off mid-way runs again, fresh.
        self._replayed_until = max(
            (i for i, r in self._recorded.items() if r.status != "running"), default=-1
        )
        self._last_recorded = max(self._recorded, default=-1)
        """The furthest position the run had reached: a position up to it is replayed."""
        self._next = 0
        self._poll = poll_interval.total_seconds()
        self._declared = dict(declared or {})
        self.fatal: DurableRunError | None = None
        """A run-fatal error raised here: every later call raises it again, and the
        runner fails the run with it even if the agent caught it and returned."""

    @property
    def run_id(self) -> str:
        return self._run.run_id

    @property
    def project_id(self) -> str:
        return self._run.project_id

    @property
    def scenario_id(self) -> str | None:
        return self._run.scenario_id

    def _own_manifest(self) -> DurableRunManifest:
        if self._manifest is None:
            raise RuntimeError("this context was made without its run's manifest")
        return self._manifest

    def _own_policy(self) -> DelegationPolicy | None:
        return self._delegation

    def _next_position(self) -> int:
        return self._next

    def _cancel_reason(self) -> str | None:
        return self.cancel_reason

    def publish(self, event: LiveEvent) -> bool:
        # What a replay re-runs was published by the execution that recorded it.
        if self._next <= self._replayed_until:
            return False
        self.live.publish(event)
        return True

    async def has_event(self, key: str) -> bool:
        intent = f"has_event:{check_event_key(key)}"
        index, record = self._position(intent, "event", "")
        if record is not None and record.status == "completed":
            return bool(record.result["arrived"])
        await self._begin(index, intent, "event")
        arrived = await self._store.load_event(self.run_id, key) is not None
        await self._complete(index, {"arrived": arrived})
        return arrived

    async def _take_patch(self, change_id: str) -> bool:
        if self.fatal is not None:
            raise self.fatal
        key = patch_key(change_id)
        if await self._store.load_event(self.run_id, key) is not None:
            return True  # the marker this run recorded when it first took the change
        if self._next <= self._last_recorded:
            return False  # the run had gone past here with the code before the change
        if self._replay_only:
            raise ReplayEnded()  # the run reaches the change fresh, past its records
        await self._fenced(self._store.emit_event(self.run_id, key, True, lease=self.lease))
        return True

    def continue_as_new_suggested(self) -> bool:
        return False  # a local run's record has no history limit

    async def continue_as_new(self, input: Any) -> NoReturn:
        raise DurableRegistrationError(
            f"run {self.run_id!r} asked to continue as new, which only Temporal does; "
            "call it only when continue_as_new_suggested() is true"
        )

    @property
    def positions_used(self) -> int:
        return self._next

    def unvisited_recorded_steps(self) -> list[StepRecord]:
        """Recorded steps at positions this execution never reached."""
        return [r for i, r in sorted(self._recorded.items()) if i >= self._next]

    def _position(
        self, intent: str, kind: StepKind, input_hash: str
    ) -> tuple[int, StepRecord | None]:
        if self.fatal is not None:
            raise self.fatal
        check_name(intent, what="step intent")
        index = self._next
        self._next += 1
        record = self._recorded.get(index)
        if record is None:
            if self._replay_only:
                raise ReplayEnded()  # past the records: the run would go on from here
            return index, None
        if record.intent != intent or record.kind != kind:
            self.diverged = (index, f"{record.kind} {record.intent!r}", f"{kind} {intent!r}")
            self.fatal = divergence_error(
                self.run_id, index, (record.kind, record.intent), (kind, intent)
            )
            raise self.fatal
        if input_hash and record.input_hash and record.input_hash != input_hash:
            self.diverged = (index, f"{kind} {intent!r}", f"{kind} {intent!r}, other input")
            self.fatal = input_mismatch_error(
                self.run_id, index, intent, record.input_hash, input_hash
            )
            raise self.fatal
        if self._replay_only and record.status == "running":
            raise ReplayEnded()  # where the run is now: the code agrees up to here
        return index, record

    async def _begin(
        self,
        index: int,
        intent: str,
        kind: StepKind,
        input_hash: str = "",
        deadline: datetime | None = None,
    ) -> datetime | None:
        """Record an attempt at ``index``; the step's deadline, the first one recorded."""
        recorded = await self._fenced(
            self._store.begin_step(
                self.lease,
                step_index=index,
                intent=intent,
                kind=kind,
                input_hash=input_hash,
                deadline=deadline,
            )
        )
        if deadline is None:
            # A resumed wait keeps its first deadline even if the code now gives none;
            # the store hands a deadline back only when given one.
            earlier = self._recorded.get(index)
            return None if earlier is None else earlier.deadline
        return recorded

    async def _complete(self, index: int, result: Any) -> None:
        await self._fenced(self._store.complete_step(self.lease, step_index=index, result=result))
        await self._proven()

    async def _proven(self, *, waiting: bool = False) -> None:
        """The resumed run got past where its worker died (a step completed, or it waits
        again with nothing else of it executing): its recoveries, and its ancestors',
        count from 0. So only a run that keeps killing its worker is ever failed as a
        poison run, never one that waits across restarts, or whose child does."""
        if waiting and (self._executing or self._in_flight):
            return  # a step or child running beside the wait may be what kills the worker
        if self._unproven:
            self._unproven = False
            try:
                await self._fenced(self._store.clear_recoveries(self.lease))
            except DurableRunLeaseLostError:
                raise
            except DurableError as exc:  # the step itself is recorded: try again later
                self._unproven = True
                logger.warning("run %r: clearing its recovery count failed: %s", self.run_id, exc)
        parent = None if self.control is None else self.control.parent
        if parent is not None:
            await parent._proven()

    async def _show_state(self) -> None:
        """Keep the run's record saying whether it waits: ``waiting_for_approval`` while
        an approval is awaited, ``waiting`` while an event is, and nothing else of the
        run executes; ``running`` otherwise. Writes only when that changes."""
        state: WaitingState | None = None
        if self._waits and not (self._executing or self._in_flight):
            approval = "waiting_for_approval" in self._waits.values()
            state = "waiting_for_approval" if approval else "waiting"
        if state != self._shown and self.fatal is None:
            self._shown = state
            self.gauge.move(state or "running")
            await self._fenced(self._store.set_waiting(self.lease, state))

    async def _failed(self, index: int, error: StepError, *, final: bool) -> None:
        await self._fenced(
            self._store.fail_step(self.lease, step_index=index, error=error, final=final)
        )

    async def _fenced(self, write: Awaitable[T]) -> T:
        """A write under the lease; losing the lease makes this context run-fatal."""
        try:
            return await write
        except DurableRunLeaseLostError as lost:
            self.fatal = self.fatal or lost
            raise

    async def step(
        self,
        intent: str,
        fn: Callable[[Unpack[Ts]], Awaitable[T]],
        *args: *Ts,
        input_fingerprint: object = UNSET,
        kind: StepKind = "logic",
        timeout: timedelta | float | None = None,
        retry: RetryPolicy | None = None,
        heartbeat: timedelta | float | None = None,
    ) -> T:
        definition = step_definition(fn)
        input_hash = "" if input_fingerprint is UNSET else canonical_hash(input_fingerprint)
        upcoming = self._recorded.get(self._next)
        if upcoming is None or upcoming.status == "running":
            # As on Temporal, before taking a position; a recorded outcome replays unchecked.
            check_arguments(args, what=f"step {intent!r} ({definition.name})")
        index, record = self._position(intent, kind, input_hash)
        label = step_label(index, intent, definition.name)
        if record is not None and record.status == "completed":
            value: T = definition.result.decode(record.result, what=label)
            return value
        options = definition.options.with_overrides(
            timeout=timeout, retry=retry, heartbeat=heartbeat
        )
        if record is not None and record.status == "failed":
            raise replayed_failure(record, maximum_attempts=options.retry.maximum_attempts)
        timeout = options.timeout.total_seconds()
        attempt = record.attempts if record is not None else 0
        # A step begun before this execution may have streamed text already.
        shown = 0 if record is None else await self._store.live_text_end(self.run_id, index)
        deltas = TokenDeltas(index, self.live.publish, shown=shown)
        # Why the attempt under way is a retry: the failure before it and the delay waited
        # (unknown for the first attempt of a resumed step, whose failure another process saw).
        previous: StepError | None = None if record is None else record.error
        waited: float | None = None
        self._executing += 1
        try:
            if self._shown is not None:
                await self._show_state()
            while True:
                attempt += 1
                await self._begin(index, intent, kind, input_hash)
                if attempt == 1:
                    started = LiveEvent(kind="step_started", step=index, intent=intent, attempt=1)
                else:
                    started = retry_entry(
                        index, attempt, intent=intent, delay=waited,
                        error_type=None if previous is None else previous.type,
                        message=None if previous is None else previous.message,
                    )  # fmt: skip
                self.live.publish(started)
                deltas.new_attempt()
                cause: BaseException | None = None
                try:
                    with (
                        live_tokens(deltas),
                        attempt_scope(attempt),
                        step_attempt(
                            substrate="local",
                            run_id=self.run_id,
                            index=index,
                            intent=intent,
                            name=definition.name,
                            attempt=attempt,
                        ),
                    ):
                        async with asyncio.timeout(timeout) as deadline:
                            value = await definition.fn(*args)
                    data, restored = definition.result.round_trip(value, what=label)
                except DurableRunLeaseLostError:
                    raise
                except TimeoutError as exc:
                    cause = exc
                    if deadline.expired():
                        cause = step_timeout_error(attempt, label, timeout)
                    error = step_error_from(cause)
                except Exception as exc:
                    cause = exc
                    error = step_error_from(exc)
                else:
                    await self._complete(index, data)
                    self.live.publish(LiveEvent(kind="step_completed", step=index, intent=intent))
                    return cast(T, restored)
                retryable, retry_after = retry_hints(cause)
                unrecorded = unrecordable(error)
                again = (
                    retryable
                    and unrecorded is None
                    and options.retry.retries(error.type)
                    and options.retry.allows_attempt(attempt + 1)
                )
                await self._failed(index, error, final=not again)
                if not again:
                    self.live.publish(
                        LiveEvent(
                            kind="step_failed", step=index, intent=intent, error=error.message
                        )
                    )
                    if unrecorded is not None:
                        raise unrecorded from cause
                    raise step_failed_error(
                        intent,
                        index,
                        error,
                        attempt,
                        maximum_attempts=options.retry.maximum_attempts,
                    ) from cause
                delay = options.retry.delay_before(attempt + 1).total_seconds()
                previous, waited = error, delay if retry_after is None else retry_after
                await asyncio.sleep(waited)
        finally:
            self._executing -= 1

    async def _checkpoint(self, intent: str, produce: Callable[[], str]) -> str:
        index, record = self._position(intent, "deterministic", "")
        if record is not None and record.status == "completed":
            return str(record.result)
        await self._begin(index, intent, "deterministic")
        value = produce()
        await self._complete(index, value)
        return value

    async def _record_value(self, intent: str, kind: StepKind, produce: Callable[[], Any]) -> Any:
        index, record = self._position(intent, kind, "")
        if record is not None and record.status == "completed":
            return record.result
        await self._begin(index, intent, kind)
        value = produce()
        await self._complete(index, value)
        return value

    def _await_decision(
        self, key: str, timeout: timedelta | None, waiting_as: WaitingState
    ) -> Awaitable[Any]:
        return self.await_event(key, timeout=timeout, waiting_as=waiting_as)

    async def now(self) -> datetime:
        return datetime.fromisoformat(await self._checkpoint("now", lambda: utc_now().isoformat()))

    async def uuid(self) -> _uuid.UUID:
        return _uuid.UUID(await self._checkpoint("uuid", lambda: str(_uuid.uuid4())))

    async def sleep(self, duration: timedelta | float) -> None:
        delta = as_timedelta(duration, what="sleep duration")
        index, record = self._position("sleep", "timer", "")
        if record is not None and record.status == "completed":
            return
        deadline = await self._begin(index, "sleep", "timer", deadline=utc_now() + delta)
        assert deadline is not None  # the store keeps the first deadline it was given
        await asyncio.sleep(0)  # whatever runs beside this sleep starts first
        await self._proven(waiting=True)
        self.live.publish(LiveEvent(kind="sleeping", step=index, until=deadline))
        remaining = (deadline - utc_now()).total_seconds()
        if remaining > 0:
            await asyncio.sleep(remaining)
        await self._complete(index, None)

    async def await_event(
        self,
        key: str,
        *,
        timeout: timedelta | float | None = None,
        type: Any = None,
        waiting_as: WaitingState = "waiting",
    ) -> Any:
        intent = f"await_event:{check_event_key(key)}"
        wait = None if timeout is None else as_timedelta(timeout, what="await_event timeout")
        codec = self._declared.get(key) if type is None else _codec(type)
        index, record = self._position(intent, "event", "")
        label = event_label(key, self.run_id)
        if record is not None and record.status == "completed":
            return record.result if codec is None else codec.decode(record.result, what=label)
        if record is not None and record.status == "failed":
            raise replayed_failure(record)
        # The deadline is the one recorded at the first wait: a resume continues it.
        deadline = await self._begin(
            index, intent, "event", deadline=None if wait is None else utc_now() + wait
        )
        self.live.publish(LiveEvent(kind="waiting", step=index, key=key, until=deadline))
        waited = spans.open_span(
            names.WAIT, wait_attributes("local", self.run_id, index, key, waiting_as)
        )
        try:
            with spans.current(waited):
                value = await self._waited(index, key, label, deadline, codec, waiting_as, waited)
        except DurableAwaitEventTimeoutError:
            spans.finish(waited)  # the wait ended as it may: what follows is the agent's
            raise
        except BaseException as exc:
            spans.finish(waited, exc)
            raise
        finally:
            self._waits.pop(index, None)
        spans.finish(waited)
        return value

    async def _waited(
        self,
        index: int,
        key: str,
        label: str,
        deadline: datetime | None,
        codec: JsonCodec[Any] | None,
        waiting_as: WaitingState,
        waited: Span,
    ) -> Any:
        """Poll the store for the event until it arrives or the deadline passes."""
        while True:
            event = await self._store.load_event(self.run_id, key)
            if event is not None:
                waited.set_attribute(names.WAIT_OUTCOME, "received")
                self.live.publish(LiveEvent(kind="event_received", step=index, key=key))
                self._waits.pop(index, None)
                await self._show_state()
                return await self._accept_event(index, label, event.payload, codec)
            now = utc_now()
            if deadline is not None and now >= deadline:
                waited.set_attribute(names.WAIT_OUTCOME, "timed_out")
                self.live.publish(LiveEvent(kind="wait_timed_out", step=index, key=key))
                self._waits.pop(index, None)
                await self._show_state()
                error = await_timeout_error(label, deadline)
                await self._failed(index, step_error_from(error), final=True)
                raise error
            self._waits[index] = waiting_as
            await self._show_state()
            pause = self._poll
            if deadline is not None:
                pause = min(pause, (deadline - now).total_seconds())
            await asyncio.sleep(max(pause, 0.0))
            await self._proven(waiting=True)

    async def _accept_event(
        self, index: int, label: str, payload: Any, codec: JsonCodec[Any] | None
    ) -> Any:
        if codec is None:
            await self._complete(index, payload)
            return payload
        try:
            value = codec.validate(payload)
        except ValidationError as exc:
            error = event_payload_error(
                label, codec.annotation, exc.errors(include_url=False, include_input=False)
            )
            await self._failed(index, step_error_from(error), final=True)
            raise error from None
        await self._complete(index, payload)
        return value

    async def _emitted(self, key: str) -> bool:
        return await self._store.load_event(self.run_id, key) is not None

    async def emit_event(self, key: str, payload: object, *, run_id: str | None = None) -> bool:
        check_event_key(key)
        payload = event_payload(payload, what=f"event {key!r}")
        other = run_id is not None and run_id != self.run_id
        intent = f"emit_event:{key}->{run_id}" if other else f"emit_event:{key}"
        index, record = self._position(intent, "event", "")
        if record is not None and record.status == "completed":
            return bool(record.result["accepted"])
        if record is not None and record.status == "failed":
            raise replayed_failure(record)
        await self._begin(index, intent, "event")
        if run_id is not None and other:
            try:
                accepted = await send_event(self._store, run_id, key, payload)
            except DurableError as error:
                await self._failed(index, step_error_from(error), final=True)
                raise
        else:
            emitted = await self._fenced(
                self._store.emit_event(self.run_id, key, payload, lease=self.lease)
            )
            accepted = emitted.accepted
        await self._complete(index, {"accepted": accepted})
        return accepted


if TYPE_CHECKING:
    # mypy proves the local context satisfies the protocol agents are written against.
    def _conforms(ctx: LocalContext) -> DurableContext:
        return ctx
