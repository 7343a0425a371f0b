"""Continuing as new by itself: the replay of carried positions, and the safe point to leave.

An agent is a plain async function, so a new execution cannot resume it
mid-way. An execution continued as new runs the agent from its start again,
and every position the run already passed returns what it returned then, from
the carried records, as a local store replays: a step's recorded result
decoded by its return type (no activity is scheduled), ``now`` and ``uuid``
their recorded values, a wait its payload, a child run its result, a failure
its error again. A different intent there raises ``DurableRunDivergenceError``;
a different input fingerprint ``DurableStepInputMismatchError``. Both are
run-fatal: caught by the agent, they still fail the run.

Order: an outcome that came from Temporal (an activity, a timer, an event, a
child run) is handed back at its turn, in the order the outcomes first
arrived, and only once every other branch has gone as far as it can, as when
a workflow task delivered it. So parallel branches take their positions in
the same order as before. An outcome that never arrived (the agent stopped
awaiting it) never arrives on replay either: the agent stops awaiting it again.

The safe point: at the start of a call that takes a fresh position, when
Temporal suggests continuing as new and nothing of the run is under way (no
activity, timer, event wait or child run of any branch). Then the call raises
``ContinueAsNewNow``, which the workflow turns into a continue-as-new carrying
the run (``RunCarry``). An agent that asks ``continue_as_new_suggested()``
continues as new itself, and this one steps aside for the rest of the execution.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from temporalio import workflow
from temporalio.contrib.workflow_streams import WorkflowStreamState
from temporalio.exceptions import ApplicationError

from durable import (
    DurableError,
    DurableRunError,
    DurableRunManifest,
    StepKind,
    StepRecord,
    check_name,
)
from durable._children import cancelled_here
from durable._failures import divergence_error, input_mismatch_error, replayed_failure

from ._carry import CARRY_LIMIT, CarriedState, RaisedError, RunCarry, pack
from ._convert import durable_error_from, to_application_error

if TYPE_CHECKING:
    from ._context import TemporalContext

__all__ = ["ContinueAsNewNow", "TemporalReplay"]

T = TypeVar("T")


class ContinueAsNewNow(BaseException):
    """Raised at the safe point to end this execution and continue as new.

    A ``BaseException``: an agent's ``except Exception`` must not keep it, or the
    agent would go on past a position the run never recorded.
    """


class TemporalReplay:
    """``TemporalContext``'s carried positions, replay and safe point."""

    steps: list[StepRecord]
    events: dict[str, Any]
    _patches: dict[str, bool]
    usage: dict[str, float | None]
    _in_flight: int
    _before_continue: Callable[[], Awaitable[None]] | None
    _stream_state: Callable[[], WorkflowStreamState] | None

    @property
    def run_id(self) -> str:
        raise NotImplementedError

    def _init_replay(self, carried: CarriedState | None, *, execution: int = 1) -> None:
        self.execution = execution
        """This execution's number in the run's chain (1 for the run's first)."""
        self._carried: list[StepRecord] = [] if carried is None else list(carried.steps)
        self._arrivals: list[int] = [] if carried is None else list(carried.arrivals)
        self._turns = {key: turn for turn, key in enumerate(self._arrivals)}
        self._next_turn = 0
        self._skipped: set[int] = set()
        self._raised: dict[int, RaisedError] = {} if carried is None else dict(carried.raised)
        self._carried_patches: dict[str, bool] = {} if carried is None else dict(carried.patches)
        self._awaiting = 0
        """Calls of any branch awaiting Temporal now: the safe point needs none."""
        self.replaying = bool(self._carried)
        """Until the agent reaches its first fresh position: what it publishes was published."""
        self.fatal: DurableRunError | None = None
        """A divergence found on replay: every later call raises it again, and the run
        fails with it whatever the agent catches."""
        self.leaving = False
        """Set at the safe point: every later call raises ``ContinueAsNewNow``."""
        self._automatic = True

    def recorded_steps(self) -> list[StepRecord]:
        """Every position of the run: this execution's and the carried ones not replayed yet."""
        return self.steps + self._carried[len(self.steps) :]

    def _manages_continue_as_new(self) -> None:
        """The agent asked whether to continue as new: it does so itself."""
        self._automatic = False

    async def _take(
        self, intent: str, kind: StepKind, input_hash: str = "", *, waits: bool = False
    ) -> StepRecord | None:
        """Take the next position: its carried record on replay, ``None`` when it is fresh.

        ``waits``: the call awaited Temporal when it first ran, so its outcome is
        handed back at its turn. At a fresh position this is the safe point.
        """
        if self.fatal is not None:
            raise self.fatal
        if self.leaving:
            raise ContinueAsNewNow()
        check_name(intent, what="step intent")
        index = len(self.steps)
        if index >= len(self._carried):
            self.replaying = False
            if self._at_safe_point():
                self.leaving = True
                raise ContinueAsNewNow()
            return None
        record = self._carried[index]
        if record.intent != intent or record.kind != kind:
            self.fatal = divergence_error(
                self.run_id, index, (record.kind, record.intent), (kind, intent)
            )
            raise self.fatal
        if input_hash and record.input_hash and record.input_hash != input_hash:
            self.fatal = input_mismatch_error(
                self.run_id, index, intent, record.input_hash, input_hash
            )
            raise self.fatal
        self.steps.append(record)
        if waits:
            await self._turn(index)
        return record

    async def _take_patch(self, change_id: str) -> bool:
        """On a carried position, the answer the run gave before; else Temporal's marker."""
        if self.fatal is not None:
            raise self.fatal
        if self.leaving:
            raise ContinueAsNewNow()
        if len(self.steps) < len(self._carried):
            return self._carried_patches.get(change_id, False)
        return workflow.patched(change_id)

    def _deprecate(self, change_id: str) -> None:
        workflow.deprecate_patch(change_id)

    def _check_fresh(self, index: int) -> None:
        """A position begun without ``_take`` would skip the replay of a carried one."""
        if index < len(self._carried):
            raise RuntimeError(
                f"run {self.run_id!r} began position {index} without replaying its carried "
                "record; take positions with TemporalContext._take"
            )

    def _outcome(self, record: StepRecord) -> StepRecord:
        """A replayed position that failed raises its error again; else its record."""
        index = record.step_index
        raised = self._raised.get(index)
        if raised is not None:
            failure = ApplicationError(raised.message, raised.details, type=raised.type)
            error = durable_error_from(failure, self.run_id)
            if error is not None:
                raise error
        if record.status != "completed":
            raise replayed_failure(record)
        return record

    def _raising(self, index: int, error: DurableError) -> DurableError:
        """Remember the error a position raises, for its replay; return it to raise."""
        failure = to_application_error(error)
        details = failure.details[0] if failure.details else {}
        self._raised[index] = RaisedError(
            type=failure.type or type(error).__name__,
            message=failure.message,
            details=details if isinstance(details, dict) else {},
        )
        return error

    async def _turn(self, key: int) -> None:
        """Wait until the outcome ``key`` (see ``CarriedState.arrivals``) is next."""
        turn = self._turns.get(key)
        if turn is None:
            # It never arrived: the agent stopped awaiting it, and will again.
            await asyncio.get_running_loop().create_future()
            return
        try:
            await workflow.wait_condition(lambda: self._next_turn == turn)
        except asyncio.CancelledError:
            # The agent stopped awaiting it this time: later turns must not wait for it.
            self._skipped.add(turn)
            if self._next_turn == turn:
                self._advance()
            raise
        self._advance()

    def _advance(self) -> None:
        self._next_turn += 1
        while self._next_turn in self._skipped:
            self._next_turn += 1

    async def _arrival(self, key: int, awaitable: Awaitable[T]) -> T:
        """Await an outcome from Temporal, noting its turn for a later replay."""
        self._awaiting += 1
        try:
            value = await awaitable
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except BaseException:
            if not cancelled_here():
                self._arrivals.append(key)
            raise
        finally:
            self._awaiting -= 1
        self._arrivals.append(key)
        return value

    def _at_safe_point(self) -> bool:
        """Temporal suggests continuing as new, and nothing of the run is under way."""
        if not self._automatic or self._awaiting or self._in_flight:
            return False
        if len(self.steps) <= len(self._carried):
            return False  # nothing new yet: continuing again would only replay
        if workflow.cancellation_reason() is not None:
            return False
        if not workflow.info().is_continue_as_new_suggested():
            return False
        size = len(pack(self.carried_state()))
        if size > CARRY_LIMIT:
            self._automatic = False
            workflow.logger.warning(
                "run %r does not continue as new by itself: its %d positions take %d bytes "
                "packed, over %d; keep large step results by reference, or call "
                "ctx.continue_as_new with a compact input when continue_as_new_suggested()",
                self.run_id, len(self.steps), size, CARRY_LIMIT,
            )  # fmt: skip
            return False
        return True

    def carried_state(self) -> CarriedState:
        """The run so far, as the next execution replays it."""
        return CarriedState(
            steps=self.steps,
            arrivals=self._arrivals,
            raised=self._raised,
            events=self.events,
            usage=self.usage,
            patches=self._carried_patches | self._patches,
        )

    async def continue_here(self) -> NoReturn:
        """Continue as new from the safe point, carrying every position of the run."""
        ctx: TemporalContext = self  # type: ignore[assignment]
        await self._continue_as_new(ctx._own_manifest(), positions=True)

    async def _continue_as_new(self, manifest: DurableRunManifest, *, positions: bool) -> NoReturn:
        """End this execution and start the next with ``manifest``, the same run identity.

        Carried always: the usage totals and the live stream. With ``positions``, also
        the steps and events, which the next execution replays; without (the agent's own
        ``continue_as_new``), it starts with fresh positions, as documented.
        """
        ctx: TemporalContext = self  # type: ignore[assignment]
        await ctx._settle_children(f"its parent run {self.run_id!r} continued as new")
        if self._before_continue is not None:
            await self._before_continue()  # handlers finished: the events are final
        state = self.carried_state() if positions else CarriedState(usage=self.usage)
        carry = RunCarry(
            execution=self.execution + 1,
            state=pack(state),
            stream=None if self._stream_state is None else self._stream_state(),
        )
        # The memo as it is now: left out, the next execution would get the one the run
        # started with, without what the run upserted since (its usage totals).
        workflow.continue_as_new(args=[manifest, carry], memo=dict(workflow.memo()))
