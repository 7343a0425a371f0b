from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from temporalio.common import RetryPolicy as TemporalRetryPolicy

from durable import (
    DurableContext,
    DurableRegistrationError,
    DurableRunInputInvalidError,
    ErrorCode,
    RetryPolicy,
    agent,
    agent_definition,
    registered_agents,
    registered_steps,
    retry_hints,
    step,
    step_definition,
)


def test_retry_policy_fields_mirror_temporal() -> None:
    ours = {f.name: f.default for f in dataclasses.fields(RetryPolicy)}
    theirs = {f.name: f.default for f in dataclasses.fields(TemporalRetryPolicy)}
    assert ours.keys() == theirs.keys()
    for name in ("initial_interval", "backoff_coefficient", "maximum_interval", "maximum_attempts"):
        assert ours[name] == theirs[name], name


def test_retry_delays_back_off_to_the_cap() -> None:
    policy = RetryPolicy(
        initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=5)
    )
    assert [policy.delay_before(a).total_seconds() for a in range(2, 7)] == [1, 2, 4, 5, 5]
    assert RetryPolicy().delay_before(30) == timedelta(seconds=100)  # 100 x initial, as Temporal


def test_retry_attempt_limits() -> None:
    assert RetryPolicy().allows_attempt(10_000)
    limited = RetryPolicy(maximum_attempts=3)
    assert limited.allows_attempt(3)
    assert not limited.allows_attempt(4)
    assert not RetryPolicy(non_retryable_error_types=["KeyError"]).retries("KeyError")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial_interval": timedelta(0)}, "initial_interval must be positive"),
        ({"backoff_coefficient": 0.5}, "backoff_coefficient must be >= 1"),
        (
            {"initial_interval": timedelta(seconds=2), "maximum_interval": timedelta(seconds=1)},
            "maximum_interval",
        ),
        ({"maximum_attempts": -1}, "0 means unlimited"),
        ({"non_retryable_error_types": "ValueError"}, "write \\('ValueError',\\)"),
    ],
)
def test_retry_policy_rejects_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)


@step(name="tests.registry.echo", timeout=3)
async def echo(text: str) -> str:
    return text


def test_step_registration_records_options() -> None:
    definition = step_definition(echo)
    assert definition.name == "tests.registry.echo"
    assert definition.options.timeout == timedelta(seconds=3)
    assert definition.options.retry == RetryPolicy()
    assert registered_steps()["tests.registry.echo"] is definition


def _registration_error(action: Any) -> DurableRegistrationError:
    with pytest.raises(DurableRegistrationError) as caught:
        action()
    assert caught.value.code == ErrorCode.REGISTRATION
    return caught.value


def test_unregistered_step_is_explained() -> None:
    async def plain() -> None: ...

    error = _registration_error(lambda: step_definition(plain))
    assert "decorate it with @step" in str(error)


def test_sync_and_nested_functions_are_refused() -> None:
    def sync() -> None: ...

    assert "async def" in str(_registration_error(lambda: step(sync)))  # type: ignore[call-overload]

    async def nested() -> None: ...

    assert "module level" in str(_registration_error(lambda: step(nested)))


async def _other_echo(text: str) -> str:
    return text


def test_duplicate_step_names_are_refused() -> None:
    error = _registration_error(lambda: step(name="tests.registry.echo")(_other_echo))
    assert "unique name" in str(error)


async def _varargs(*values: int) -> int:
    return len(values)


def test_steps_take_fixed_positional_parameters() -> None:
    assert "fixed positional parameters" in str(_registration_error(lambda: step(_varargs)))
    assert step_definition(echo).params == (str,)


def test_zero_step_timeout_is_refused() -> None:
    assert "positive" in str(_registration_error(lambda: step(timeout=0)))


async def _bad_agent(ctx: DurableContext) -> None: ...


@agent(name="tests.registry.greeter")
async def greeter(ctx: DurableContext, name: str) -> str:
    return name


def test_agent_registration() -> None:
    definition = agent_definition("tests.registry.greeter")
    assert definition.fn is greeter
    assert agent_definition(greeter) is definition
    assert "tests.registry.greeter" in registered_agents()


def test_agent_errors() -> None:
    assert "exactly (ctx, input)" in str(_registration_error(lambda: agent(_bad_agent)))
    unknown = _registration_error(lambda: agent_definition("no.such.agent"))
    assert "import the module" in str(unknown)
    assert "decorate it with @agent" in str(_registration_error(lambda: agent_definition(echo)))


@agent(name="tests.registry.counter")
async def counter(ctx: DurableContext, input: dict[str, int]) -> int:
    return len(input)


@agent(name="tests.registry.bag")
async def bag(ctx: DurableContext, input: dict[str, Any]) -> int:
    return len(input)


@pytest.mark.parametrize(
    ("definition", "given", "reason"),
    [
        ("tests.registry.counter", {"n": "many"}, "valid integer"),
        ("tests.registry.bag", {"n": object()}, "no JSON form"),
    ],
)
def test_input_of_the_wrong_type_is_input_invalid_and_a_value_error(
    definition: str, given: dict[str, Any], reason: str
) -> None:
    with pytest.raises(DurableRunInputInvalidError) as refused:
        agent_definition(definition).manifest(given)

    assert isinstance(refused.value, ValueError)  # a bad argument, refused before any write
    assert refused.value.code == ErrorCode.INPUT_INVALID
    message = str(refused.value)
    assert f"the input of agent {definition!r} does not match" in message
    assert reason in message
    assert "send an input of that type" in message
    assert "return" not in message


class _Hinted(Exception):
    def __init__(self, retryable: object = True, retry_after: object = None) -> None:
        self.retryable = retryable
        self.retry_after = retry_after


def test_retry_hints_read_only_well_formed_values() -> None:
    assert retry_hints(ValueError("plain")) == (True, None)
    assert retry_hints(_Hinted(retryable=False, retry_after=2)) == (False, 2.0)
    assert retry_hints(_Hinted(retry_after=0.5)) == (True, 0.5)
    for bad in (True, -1, "soon", float("nan") * 0 - 1):
        assert retry_hints(_Hinted(retry_after=bad)) == (True, None)
    assert retry_hints(None) == (True, None)


def test_a_call_can_override_a_steps_options() -> None:
    options = step_definition(echo).options
    assert options.with_overrides() is options
    tighter = options.with_overrides(
        timeout=0.5, retry=RetryPolicy(maximum_attempts=2), heartbeat=5
    )
    assert tighter.timeout == timedelta(seconds=0.5)
    assert tighter.retry.maximum_attempts == 2
    assert tighter.heartbeat_timeout == timedelta(seconds=5)
    with pytest.raises(ValueError, match="must be positive"):
        options.with_overrides(timeout=0)
    with pytest.raises(ValueError, match="must not be negative"):
        options.with_overrides(heartbeat=-1)
