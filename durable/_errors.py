"""One error hierarchy for every substrate; each error carries a stable ``code``.

    DurableError                              (code: ErrorCode)
     ├── DurableRunError                      a run cannot proceed as asked
     │    ├── DurableRunLeaseHeldError          lease_held
     │    ├── DurableRunLeaseLostError          lease_lost
     │    ├── DurableRunInputMismatchError      manifest_mismatch
     │    ├── DurableRunInputInvalidError       input_invalid
     │    ├── DurableRunDivergenceError         step_divergence
     │    ├── DurableStepInputMismatchError     step_input_mismatch
     │    ├── DurableRunFailedError             run_failed
     │    ├── DurableRunEndedError              run_ended
     │    ├── DurableRunNotFoundError           run_not_found
     │    ├── DurableRunCancelledError          cancelled
     │    ├── DurableChildRunFailedError        child_failed
     │    ├── DurableDelegationError            delegation_refused
     │    └── DurableRunRecoveryExhaustedError  recovery_exhausted
     ├── DurableStepError                     a step did not produce a result
     │    ├── DurableStepFailedError            step_failed
     │    ├── DurableStepTimeoutError           step_timeout
     │    └── DurableResultNotSerializableError result_not_serializable
     ├── DurableEventError                    an event wait or payload went wrong
     │    ├── DurableAwaitEventTimeoutError     await_event_timeout
     │    ├── DurableEventPayloadError          event_payload_invalid
     │    └── DurableApprovalNotFoundError      approval_not_found
     ├── DurableCheckpointNotFoundError       checkpoint_not_found
     ├── DurableNonCanonicalValueError        non_canonical_value
     ├── DurablePayloadTooLargeError          payload_too_large
     ├── DurableRegistrationError             registration
     └── DurableStoreError                    store_error

Divergence, a step input mismatch and a lost lease are *run-fatal*
(``RUN_FATAL_ERRORS``): an agent may catch them, but the run still ends with
their code, because the run can no longer be replayed or written safely.

Codes are a stored contract: they are written into step and run records and
compared across substrates, so they never change once released. Every message
says what was wrong and what to do about it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

__all__ = [
    "RUN_FATAL_ERRORS",
    "UNRECORDABLE_ERRORS",
    "DurableApprovalNotFoundError",
    "DurableAwaitEventTimeoutError",
    "DurableCheckpointNotFoundError",
    "DurableChildRunFailedError",
    "DurableDelegationError",
    "DurableError",
    "DurableEventError",
    "DurableEventPayloadError",
    "DurableNonCanonicalValueError",
    "DurablePayloadTooLargeError",
    "DurableRegistrationError",
    "DurableResultNotSerializableError",
    "DurableRunCancelledError",
    "DurableRunDivergenceError",
    "DurableRunEndedError",
    "DurableRunError",
    "DurableRunFailedError",
    "DurableRunInputInvalidError",
    "DurableRunInputMismatchError",
    "DurableRunLeaseHeldError",
    "DurableRunLeaseLostError",
    "DurableRunNotFoundError",
    "DurableRunRecoveryExhaustedError",
    "DurableStepError",
    "DurableStepFailedError",
    "DurableStepInputMismatchError",
    "DurableStepTimeoutError",
    "DurableStoreError",
    "ErrorCode",
    "error_for_code",
]


class ErrorCode(StrEnum):
    LEASE_HELD = "lease_held"
    LEASE_LOST = "lease_lost"
    MANIFEST_MISMATCH = "manifest_mismatch"
    INPUT_INVALID = "input_invalid"
    STEP_DIVERGENCE = "step_divergence"
    STEP_INPUT_MISMATCH = "step_input_mismatch"
    RUN_FAILED = "run_failed"
    RUN_ENDED = "run_ended"
    RUN_NOT_FOUND = "run_not_found"
    STEP_FAILED = "step_failed"
    STEP_TIMEOUT = "step_timeout"
    RESULT_NOT_SERIALIZABLE = "result_not_serializable"
    AWAIT_EVENT_TIMEOUT = "await_event_timeout"
    EVENT_PAYLOAD_INVALID = "event_payload_invalid"
    NON_CANONICAL_VALUE = "non_canonical_value"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    REGISTRATION = "registration"
    STORE_ERROR = "store_error"
    CANCELLED = "cancelled"
    CHILD_FAILED = "child_failed"
    DELEGATION_REFUSED = "delegation_refused"
    RECOVERY_EXHAUSTED = "recovery_exhausted"
    CHECKPOINT_NOT_FOUND = "checkpoint_not_found"
    APPROVAL_NOT_FOUND = "approval_not_found"


class DurableError(Exception):
    """Base of every error this project raises on purpose."""

    code: ClassVar[ErrorCode]
    """Set on every concrete error; the bases only group them."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class DurableRunError(DurableError):
    """The run as a whole cannot proceed as asked."""


class DurableRunLeaseHeldError(DurableRunError):
    """Another live worker holds the run's lease."""

    code = ErrorCode.LEASE_HELD


class DurableRunLeaseLostError(DurableRunError):
    """This worker's lease was taken over; it must stop and write nothing more."""

    code = ErrorCode.LEASE_LOST


class DurableRunInputMismatchError(DurableRunError):
    """The run id is already used by a run with a different manifest."""

    code = ErrorCode.MANIFEST_MISMATCH


class DurableRunInputInvalidError(DurableRunError, ValueError):
    """A run's input does not match its agent's input type.

    Either the input given to start the run (a bad argument, hence also a
    ``ValueError``, raised before anything is written) or the recorded input of
    a run whose agent's input type changed since.
    """

    code = ErrorCode.INPUT_INVALID


class DurableRunDivergenceError(DurableRunError):
    """A recorded step position now carries a different intent or kind."""

    code = ErrorCode.STEP_DIVERGENCE


class DurableStepInputMismatchError(DurableRunError):
    """A recorded step was given a different input fingerprint on replay."""

    code = ErrorCode.STEP_INPUT_MISMATCH


class DurableRunFailedError(DurableRunError):
    """The run already ended in failure; its recorded error is kept."""

    code = ErrorCode.RUN_FAILED


class DurableRunEndedError(DurableRunError):
    """The run has already ended, so it takes no more events."""

    code = ErrorCode.RUN_ENDED


class DurableRunNotFoundError(DurableRunError):
    """No run with this id exists in the store."""

    code = ErrorCode.RUN_NOT_FOUND


class DurableRunCancelledError(DurableRunError):
    """The run was cancelled (``durable cancel`` or ``cancel``); ``reason`` says why."""

    code = ErrorCode.CANCELLED

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class DurableChildRunFailedError(DurableRunError):
    """A child run ended without a result; raised in the parent that awaited it.

    ``child_run_id`` names the child, ``error_code`` is the child's own error
    code (``None`` for an agent's plain exception) and ``error_type`` its class.
    """

    code = ErrorCode.CHILD_FAILED

    def __init__(
        self,
        message: str,
        *,
        child_run_id: str = "",
        error_type: str = "",
        error_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.child_run_id = child_run_id
        self.error_type = error_type
        self.error_code = error_code


class DurableDelegationError(DurableRunError):
    """The delegation policy refused a child-agent call; nothing was started or spent.

    ``reason`` is one of ``DELEGATION_REASONS``.
    """

    code = ErrorCode.DELEGATION_REFUSED

    def __init__(self, message: str, *, reason: str = "", agent: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.agent = agent


class DurableRunRecoveryExhaustedError(DurableRunError):
    """A run lost its worker more times than recovery allows; it ended failed.

    A local worker that takes over a run whose previous worker died counts a
    recovery (``RunRecord.recoveries``). Past ``max_recovery_attempts`` the
    run most likely kills every worker that runs it, so it is failed instead of
    resumed again. ``recoveries`` is the count, ``last_worker`` the worker that
    died last holding it.
    """

    code = ErrorCode.RECOVERY_EXHAUSTED

    def __init__(self, message: str, *, recoveries: int = 0, last_worker: str = "") -> None:
        super().__init__(message)
        self.recoveries = recoveries
        self.last_worker = last_worker


class DurableStepError(DurableError):
    """A step did not produce a result."""


class DurableStepFailedError(DurableStepError):
    """A step failed for good: retries exhausted or the error was not retryable.

    ``error_type`` is the class name of the original error, ``error_code`` its
    code when it was a ``DurableError``; both survive replay.
    """

    code = ErrorCode.STEP_FAILED

    def __init__(
        self,
        message: str,
        *,
        intent: str,
        error_type: str,
        error_code: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.intent = intent
        self.error_type = error_type
        self.error_code = error_code
        self.attempts = attempts


class DurableStepTimeoutError(DurableStepError):
    """One attempt of a step ran past its timeout."""

    code = ErrorCode.STEP_TIMEOUT


class DurableResultNotSerializableError(DurableStepError):
    """A step or agent returned a value that cannot be recorded as JSON."""

    code = ErrorCode.RESULT_NOT_SERIALIZABLE


class DurableEventError(DurableError):
    """An event wait or an event payload went wrong."""


class DurableAwaitEventTimeoutError(DurableEventError):
    """``await_event`` reached its durable deadline without the event."""

    code = ErrorCode.AWAIT_EVENT_TIMEOUT


class DurableEventPayloadError(DurableEventError):
    """An event payload does not match the type its waiter declared."""

    code = ErrorCode.EVENT_PAYLOAD_INVALID


class DurableApprovalNotFoundError(DurableEventError):
    """No approval has this id: no such run, or its position is not an approval."""

    code = ErrorCode.APPROVAL_NOT_FOUND


class DurableCheckpointNotFoundError(DurableError, LookupError):
    """A run has no context checkpoint of this name (never written, or deleted).

    ``run_id`` and ``name`` say which checkpoint was asked for.
    """

    code = ErrorCode.CHECKPOINT_NOT_FOUND

    def __init__(self, message: str, *, run_id: str = "", name: str = "") -> None:
        super().__init__(message)
        self.run_id = run_id
        self.name = name


class DurableNonCanonicalValueError(DurableError, ValueError):
    """A value has no canonical JSON form (NaN, infinity, non-plain objects)."""

    code = ErrorCode.NON_CANONICAL_VALUE


class DurablePayloadTooLargeError(DurableError, ValueError):
    """A value's JSON is over ``MAX_PAYLOAD_BYTES``, the limit every substrate keeps."""

    code = ErrorCode.PAYLOAD_TOO_LARGE


class DurableRegistrationError(DurableError, TypeError):
    """A step or agent is not registered, or is registered wrongly."""

    code = ErrorCode.REGISTRATION


class DurableStoreError(DurableError):
    """The store is unusable: corrupt data or an unsupported schema version."""

    code = ErrorCode.STORE_ERROR


_BY_CODE: dict[str, type[DurableError]] = {
    cls.code.value: cls
    for cls in (
        DurableRunLeaseHeldError,
        DurableRunLeaseLostError,
        DurableRunInputMismatchError,
        DurableRunInputInvalidError,
        DurableRunDivergenceError,
        DurableStepInputMismatchError,
        DurableRunFailedError,
        DurableRunEndedError,
        DurableRunNotFoundError,
        DurableRunCancelledError,
        DurableChildRunFailedError,
        DurableDelegationError,
        DurableRunRecoveryExhaustedError,
        DurableStepTimeoutError,
        DurableResultNotSerializableError,
        DurableAwaitEventTimeoutError,
        DurableEventPayloadError,
        DurableApprovalNotFoundError,
        DurableCheckpointNotFoundError,
        DurableNonCanonicalValueError,
        DurablePayloadTooLargeError,
        DurableRegistrationError,
        DurableStoreError,
    )
}

UNRECORDABLE_ERRORS: tuple[type[DurableError], ...] = (
    DurableResultNotSerializableError,
    DurableNonCanonicalValueError,
    DurablePayloadTooLargeError,
)
"""Errors of a step result that cannot be recorded. Another attempt would return
the same value, so such a step is never retried and raises the error itself."""

RUN_FATAL_ERRORS: tuple[type[DurableRunError], ...] = (
    DurableRunDivergenceError,
    DurableStepInputMismatchError,
    DurableRunLeaseLostError,
)
"""Errors that end the run with their code even when the agent catches them."""


def error_for_code(code: str | None) -> type[DurableError] | None:
    """The error class recorded under ``code``, used to re-raise on replay."""
    if code is None:
        return None
    return _BY_CODE.get(code)
