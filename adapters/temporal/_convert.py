"""Translations between the durable contract and Temporal's types.

Errors cross the workflow boundary as ``ApplicationError``s whose ``type`` is the
durable error's class name and whose first detail carries its code and fields,
so the client rebuilds exactly the error the workflow raised.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import temporalio.common
from temporalio.api.failure.v1 import Failure
from temporalio.exceptions import ApplicationError, CancelledError

from durable import (
    DurableChildRunFailedError,
    DurableDelegationError,
    DurableError,
    DurableRunCancelledError,
    DurableRunDivergenceError,
    DurableStepFailedError,
    RetryPolicy,
    StepError,
    error_for_code,
)
from durable._failures import cancelled_error, input_mismatch_error

__all__ = [
    "activity_id",
    "durable_error_from",
    "failure_error",
    "step_of_activity",
    "temporal_retry_policy",
    "to_application_error",
]

NONDETERMINISM = "NondeterminismError"


def failure_error(failure: Failure) -> StepError:
    """An activity attempt's failure as the server keeps it, in a step record's terms."""
    if failure.HasField("timeout_failure_info"):
        # Locally the same attempt fails with DurableStepTimeoutError: name it alike.
        return StepError(
            message=failure.message, type="DurableStepTimeoutError", code="step_timeout"
        )
    kind = failure.application_failure_info.type or "ActivityFailure"
    return StepError(message=failure.message, type=kind)


@functools.cache
def temporal_retry_policy(policy: RetryPolicy) -> temporalio.common.RetryPolicy | None:
    """The same policy in Temporal's terms: the fields map one to one.

    ``None`` for the default policy, which is Temporal's own default: the command
    then carries no policy at all. Cached, as policies are frozen and few.
    """
    if policy == RetryPolicy():
        return None
    return temporalio.common.RetryPolicy(
        initial_interval=policy.initial_interval,
        backoff_coefficient=policy.backoff_coefficient,
        maximum_interval=policy.maximum_interval,
        maximum_attempts=policy.maximum_attempts,
        non_retryable_error_types=list(policy.non_retryable_error_types) or None,
    )


_FINGERPRINT = re.compile(r" \[([0-9a-f]{16})\]$")
_ACTIVITY_ID_MISMATCH = re.compile(
    r"Activity id of (?:scheduled event|recorded marker) '(.*)' does not match "
    r"activity id of (?:local )?activity command '(.*)'"
)
"""Temporal's words for a step (an activity, or a local activity's marker) whose id changed."""


def activity_id(index: int, intent: str, input_hash: str = "") -> str:
    """Position, intent and input fingerprint: Temporal compares ids on replay.

    So a renamed or moved step and a step whose inputs changed are both caught
    the moment replay reaches them, before any later command could mask them.
    """
    suffix = f" [{input_hash[:16]}]" if input_hash else ""
    return f"{index}:{intent}{suffix}"


def step_of_activity(value: str) -> tuple[int, str] | None:
    """The position and intent in an ``activity_id``; ``None`` for an id it did not make."""
    position, _, rest = _split_activity_id(value)[0].partition(":")
    return (int(position), rest) if position.isdigit() and rest else None


def _split_activity_id(value: str) -> tuple[str, str]:
    match = _FINGERPRINT.search(value)
    return (value[: match.start()], match.group(1)) if match else (value, "")


def to_application_error(error: DurableError) -> ApplicationError:
    details: dict[str, Any] = {"code": error.code.value}
    if isinstance(error, DurableStepFailedError):
        details.update(
            intent=error.intent,
            error_type=error.error_type,
            error_code=error.error_code,
            attempts=error.attempts,
        )
    elif isinstance(error, DurableChildRunFailedError):
        details.update(
            child_run_id=error.child_run_id,
            error_type=error.error_type,
            error_code=error.error_code,
        )
    elif isinstance(error, DurableDelegationError):
        details.update(reason=error.reason, agent=error.agent)
    elif isinstance(error, DurableRunCancelledError):
        details.update(reason=error.reason)
    return ApplicationError(error.message, details, type=type(error).__name__, non_retryable=True)


def _nondeterminism(failure: BaseException, run_id: str) -> DurableError:
    ids = _ACTIVITY_ID_MISMATCH.search(str(failure))
    if ids is not None:
        (recorded, recorded_hash), (now, now_hash) = map(_split_activity_id, ids.groups())
        if recorded == now and recorded_hash != now_hash:
            index, _, intent = recorded.partition(":")
            return input_mismatch_error(run_id, int(index), intent, recorded_hash, now_hash)
    return DurableRunDivergenceError(
        f"the recorded history of run {run_id!r} no longer matches the code ({failure}); "
        "steps were added, removed, renamed or reordered, so restore the previous "
        "order or start a new run"
    )


def durable_error_from(failure: BaseException | None, run_id: str = "") -> DurableError | None:
    """The durable error a Temporal failure chain carries, if any."""
    while failure is not None:
        # Temporal reports nondeterminism with its own failure type; its code is TMPRL1100.
        if "TMPRL1100" in str(failure) or getattr(failure, "type", None) == NONDETERMINISM:
            return _nondeterminism(failure, run_id)
        if isinstance(failure, ApplicationError):
            details = failure.details[0] if failure.details else None
            if isinstance(details, dict) and isinstance(details.get("code"), str):
                if failure.type == DurableStepFailedError.__name__:
                    return DurableStepFailedError(
                        failure.message,
                        intent=details.get("intent", ""),
                        error_type=details.get("error_type", ""),
                        error_code=details.get("error_code"),
                        attempts=details.get("attempts", 1),
                    )
                known = _with_details(failure.message, details)
                if known is not None:
                    return known
                cls = error_for_code(details["code"])
                if cls is not None:
                    return cls(failure.message)
        if isinstance(failure, CancelledError):
            return cancelled_error(run_id, failure.message or "no reason given")
        failure = failure.__cause__
    return None


def _with_details(message: str, details: dict[str, Any]) -> DurableError | None:
    """The errors whose attributes travel in the failure's details, rebuilt whole."""
    code = details["code"]
    if code == DurableChildRunFailedError.code:
        return DurableChildRunFailedError(
            message,
            child_run_id=str(details.get("child_run_id", "")),
            error_type=str(details.get("error_type", "")),
            error_code=details.get("error_code"),
        )
    if code == DurableDelegationError.code:
        return DurableDelegationError(
            message, reason=str(details.get("reason", "")), agent=str(details.get("agent", ""))
        )
    if code == DurableRunCancelledError.code:
        return DurableRunCancelledError(message, reason=str(details.get("reason", "")))
    return None
