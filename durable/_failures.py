"""How failures are recorded and worded, shared by every substrate.

Both substrates build their errors here, so a scenario sees the same code and
the same message whether it ran on a local store or on Temporal, and a recorded
failure replays as the very error the fresh execution raised.
"""

from __future__ import annotations

import traceback
from datetime import datetime
from typing import Any

from ._errors import (
    UNRECORDABLE_ERRORS,
    DurableAwaitEventTimeoutError,
    DurableChildRunFailedError,
    DurableError,
    DurableEventPayloadError,
    DurableRunCancelledError,
    DurableRunDivergenceError,
    DurableRunEndedError,
    DurableRunFailedError,
    DurableRunInputInvalidError,
    DurableRunInputMismatchError,
    DurableStepFailedError,
    DurableStepInputMismatchError,
    DurableStepTimeoutError,
    error_for_code,
)
from ._records import StepError, StepKind, StepRecord

__all__ = [
    "await_timeout_error",
    "cancelled_error",
    "child_failed_error",
    "child_id_taken_error",
    "divergence_error",
    "event_label",
    "event_payload_error",
    "heartbeat_timeout_error",
    "input_invalid_error",
    "input_mismatch_error",
    "input_type_error",
    "manifest_mismatch_error",
    "parent_cancelled_reason",
    "replayed_failure",
    "run_ended_error",
    "run_failed_error",
    "step_error_from",
    "step_failed_error",
    "step_label",
    "step_timeout_error",
    "unrecordable",
]

_UNRECORDABLE = frozenset(cls.code.value for cls in UNRECORDABLE_ERRORS)


def unrecordable(error: StepError) -> DurableError | None:
    """The error to raise for a step whose result cannot be recorded, else ``None``.

    Such a failure is deterministic (another attempt returns the same value),
    so it is never retried, and the agent sees it as itself, not as a step failure.
    """
    if error.code not in _UNRECORDABLE:
        return None
    cls = error_for_code(error.code)
    assert cls is not None
    return cls(error.message)


def step_label(index: int, intent: str, name: str) -> str:
    return f"step {index} {intent!r} ({name})"


def event_label(key: str, run_id: str) -> str:
    return f"event {key!r} awaited by run {run_id!r}"


def step_error_from(exc: BaseException) -> StepError:
    """The recorded form of an exception: class name, message, code, stack."""
    if isinstance(exc, DurableError):
        message, code = exc.message, exc.code.value
    else:
        message, code = str(exc) or repr(exc), None
    return StepError(
        message=message,
        type=type(exc).__name__,
        code=code,
        stack="".join(traceback.format_exception(exc)),
    )


def step_failed_error(
    intent: str,
    index: int,
    error: StepError,
    attempts: int,
    *,
    maximum_attempts: int | None = None,
) -> DurableStepFailedError:
    """The final failure of a step after ``attempts`` attempts.

    ``maximum_attempts`` is the step's retry policy's (0: unlimited; ``None``:
    not known here). The message never promises another attempt: none is made.
    """
    if maximum_attempts and attempts >= maximum_attempts:
        how = (
            f"failed: all {attempts} attempt(s) its retry policy allows are spent, "
            f"the last with {error.type}: {error.message}"
        )
    elif maximum_attempts is not None:
        how = (
            f"failed on attempt {attempts} with {error.type}: {error.message}, which is not retried"
        )
    else:
        how = (
            f"failed after {attempts} attempt(s), with no attempt left, "
            f"the last with {error.type}: {error.message}"
        )
    return DurableStepFailedError(
        f"step {index} {intent!r} {how}; the failure is recorded and replays identically, "
        "so catch DurableStepFailedError to handle it or fix the cause and start a new run",
        intent=intent,
        error_type=error.type,
        error_code=error.code,
        attempts=attempts,
    )


def step_timeout_error(attempt: int, label: str, timeout: float) -> DurableStepTimeoutError:
    return DurableStepTimeoutError(
        f"attempt {attempt} of {label} ran past the step timeout of {timeout:g}s; "
        "raise the step's timeout or make the step faster"
    )


def heartbeat_timeout_error(attempt: int, label: str, heartbeat: float) -> DurableStepTimeoutError:
    return DurableStepTimeoutError(
        f"attempt {attempt} of {label} sent no heartbeat for {heartbeat:g}s, so its worker "
        "was taken for lost; if the worker was alive but starved, give the step a longer "
        "heartbeat= or the worker fewer concurrent activities"
    )


def divergence_error(
    run_id: str, index: int, recorded: tuple[StepKind, str], now: tuple[StepKind, str]
) -> DurableRunDivergenceError:
    return DurableRunDivergenceError(
        f"run {run_id!r} recorded step {index} as {recorded[0]} {recorded[1]!r}, "
        f"but the code now reaches {now[0]} {now[1]!r} there; steps were added, removed or "
        "reordered, so restore the previous order or start a new run"
    )


def input_mismatch_error(
    run_id: str, index: int, intent: str, recorded: str, now: str
) -> DurableStepInputMismatchError:
    return DurableStepInputMismatchError(
        f"step {index} {intent!r} of run {run_id!r} was recorded with input "
        f"fingerprint {recorded[:12]}…, but replay passes {now[:12]}…; "
        "the step's inputs changed, so restore them or start a new run"
    )


def input_invalid_error(
    run_id: str, label: str, cause: DurableError
) -> DurableRunInputInvalidError:
    return DurableRunInputInvalidError(
        f"the recorded input of run {run_id!r} no longer matches the input type of "
        f"{label} ({cause.message}); deploy a type that accepts it, or start a new run"
    )


def input_type_error(label: str, annotation: Any, reason: str) -> DurableRunInputInvalidError:
    """The input given to start a run of ``label`` does not fit its input type."""
    return DurableRunInputInvalidError(
        f"the input of {label} does not match {annotation!r}: {reason}; send an input of "
        "that type (JSON data, or a pydantic model or dataclass of it) and start the run again"
    )


def await_timeout_error(label: str, deadline: datetime) -> DurableAwaitEventTimeoutError:
    return DurableAwaitEventTimeoutError(
        f"{label} did not arrive by its deadline {deadline.isoformat()}; "
        "send the event before the deadline, or raise the timeout and start a new run"
    )


def event_payload_error(label: str, annotation: Any, errors: Any) -> DurableEventPayloadError:
    return DurableEventPayloadError(
        f"the payload of {label} does not match {annotation!r}: {errors}; "
        "the sender must send the declared type"
    )


def manifest_mismatch_error(
    run_id: str, recorded_hash: str, new_hash: str
) -> DurableRunInputMismatchError:
    return DurableRunInputMismatchError(
        f"run {run_id!r} already exists with manifest hash {recorded_hash[:12]}…, "
        f"but this start has {new_hash[:12]}…; use a new run id for new input, "
        "or resume with the original manifest"
    )


def run_ended_error(run_id: str) -> DurableRunEndedError:
    return DurableRunEndedError(
        f"run {run_id!r} has already ended, so it takes no more events; "
        "start a new run to act on this event"
    )


def run_failed_error(run_id: str, error_type: str, message: str) -> DurableRunFailedError:
    return DurableRunFailedError(
        f"run {run_id!r} already failed with {error_type}: {message}; fix the cause and "
        "start it again under a new run id"
    )


def replayed_failure(record: StepRecord, *, maximum_attempts: int | None = None) -> DurableError:
    """The error the fresh execution raised for this recorded failure, raised again.

    ``maximum_attempts`` is the step's retry policy's, as the fresh execution had it.
    """
    error = record.error or StepError(message="no error was recorded", type="unknown")
    fatal = unrecordable(error)
    if fatal is not None:
        return fatal
    cls = error_for_code(error.code)
    if record.kind == "event" and cls is not None:
        return cls(error.message)  # event steps raise their error as is, never wrapped
    return step_failed_error(
        record.intent, record.step_index, error, record.attempts, maximum_attempts=maximum_attempts
    )


def cancelled_error(run_id: str, reason: str) -> DurableRunCancelledError:
    """A run that was cancelled, raised to whoever awaits it, on every substrate."""
    return DurableRunCancelledError(
        f"run {run_id!r} was cancelled: {reason}; start a new run to do its work again",
        reason=reason,
    )


def parent_cancelled_reason(parent_run_id: str, reason: str) -> str:
    """Why a child run is cancelled along with its parent."""
    return f"its parent run {parent_run_id!r} was cancelled: {reason}"


def child_failed_error(
    run_id: str,
    agent: str,
    *,
    cancelled: bool,
    error_type: str,
    error_code: str | None,
    detail: str,
) -> DurableChildRunFailedError:
    """A child run that ended without a result, as its parent raises it."""
    verb = "was cancelled" if cancelled else "failed"
    return DurableChildRunFailedError(
        f"child run {run_id!r} ({agent}) {verb}: [{error_code or error_type}] {detail}; "
        f"read it with `durable status {run_id}`, and catch DurableChildRunFailedError "
        "where the parent can go on without it",
        child_run_id=run_id,
        error_type=error_type,
        error_code=error_code,
    )


def child_id_taken_error(run_id: str, parent_run_id: str) -> DurableRunInputMismatchError:
    """A ``call_agent(run_id=...)`` naming a run that is not the caller's child."""
    return DurableRunInputMismatchError(
        f"run {run_id!r} already exists and is not a child of run {parent_run_id!r}; "
        "pass call_agent another run_id, or none to derive one"
    )
