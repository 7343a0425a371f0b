"""The step activity: every ``@step`` function runs as an activity named after the step.

One dynamic activity serves every registered step: it finds the step by the
activity type, rebuilds the arguments from the step's annotations, and returns
the result as JSON. Failures keep the original class name as the error type, so
a ``RetryPolicy``'s non-retryable types match exactly as they do locally.
Temporal owns retries; nothing here retries. While a step runs, its activity
heartbeats from a thread (``durable_agents.activities._heartbeat``), so a lost worker is
noticed within the step's heartbeat timeout, not its whole timeout.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

from durable import (
    UNRECORDABLE_ERRORS,
    DurableError,
    attempt_scope,
    live_tokens,
    registered_steps,
    retry_hints,
)
from durable_agents.activities._heartbeat import heartbeating
from durable_agents.adapters.telemetry import step_attempt
from durable_agents.adapters.temporal import ActivityTokens, StepOutcome, step_of_activity

__all__ = ["run_step"]


@activity.defn(dynamic=True)
async def run_step(args: Sequence[RawValue]) -> StepOutcome:
    info = activity.info()
    definition = registered_steps().get(info.activity_type)
    if definition is None:
        raise ApplicationError(
            f"no step named {info.activity_type!r} is registered in this worker; add the module "
            "that defines it to DURABLE_AGENT_MODULES",
            {"code": "registration", "attempt": info.attempt},
            type="DurableRegistrationError",
            non_retryable=True,
        )
    converter = activity.payload_converter()
    details: dict[str, Any] = {"attempt": info.attempt}
    if len(args) != len(definition.params):
        raise ApplicationError(
            f"step {definition.name!r} takes {len(definition.params)} argument(s) but was "
            f"scheduled with {len(args)}; the workflow and the worker run different code",
            {**details, "code": "registration"},
            type="DurableRegistrationError",
            non_retryable=True,
        )
    values = [
        converter.from_payload(raw.payload, hint)
        for raw, hint in zip(args, definition.params, strict=True)
    ]
    position = step_of_activity(info.activity_id)
    try:
        with (
            attempt_scope(info.attempt),
            step_attempt(
                substrate="temporal",
                run_id=info.workflow_id or "",
                index=None if position is None else position[0],
                intent=None if position is None else position[1],
                name=definition.name,
                attempt=info.attempt,
            ),
        ):
            value = await _run(definition.fn, values, position)
    except ApplicationError:
        raise
    except Exception as exc:
        if isinstance(exc, DurableError):
            message, code = exc.message, exc.code.value
        else:
            message, code = str(exc) or repr(exc), None
        retryable, retry_after = retry_hints(exc)
        raise ApplicationError(
            message,
            {**details, "code": code},
            type=type(exc).__name__,
            non_retryable=not retryable,
            next_retry_delay=None if retry_after is None else timedelta(seconds=retry_after),
        ) from exc
    try:
        data = definition.result.encode(value, what=f"step {definition.name!r}")
    except UNRECORDABLE_ERRORS as exc:
        # Deterministic: another attempt would return the same value.
        raise ApplicationError(
            exc.message,
            {**details, "code": exc.code.value},
            type=type(exc).__name__,
            non_retryable=True,
        ) from None
    return StepOutcome(result=data, attempt=info.attempt)


async def _run(
    fn: Callable[..., Awaitable[Any]], values: list[Any], step: tuple[int, str] | None
) -> Any:
    """Call the step, heartbeating, and route any token deltas it streams to the live stream."""
    async with heartbeating():
        if step is None:
            return await fn(*values)
        async with ActivityTokens(*step) as deltas:
            with live_tokens(deltas):
                return await fn(*values)
