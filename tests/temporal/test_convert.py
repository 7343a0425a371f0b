"""How a failure the server keeps reads in a step record's terms."""

from __future__ import annotations

from temporalio.api.failure.v1 import ApplicationFailureInfo, Failure, TimeoutFailureInfo

from durable_agents.adapters.temporal import failure_error


def test_a_timed_out_attempt_reads_as_the_local_step_timeout() -> None:
    error = failure_error(
        Failure(message="activity StartToClose timeout", timeout_failure_info=TimeoutFailureInfo())
    )

    assert (error.type, error.code) == ("DurableStepTimeoutError", "step_timeout")


def test_an_application_failure_keeps_its_type() -> None:
    failure = Failure(message="boom", application_failure_info=ApplicationFailureInfo(type="E"))

    assert (failure_error(failure).type, failure_error(failure).message) == ("E", "boom")
