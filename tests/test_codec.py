from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pytest
from pydantic import BaseModel

from durable import (
    MAX_PAYLOAD_BYTES,
    DurableContext,
    DurableError,
    DurableNonCanonicalValueError,
    DurablePayloadTooLargeError,
    DurableResultNotSerializableError,
    ErrorCode,
    JsonCodec,
    agent,
    agent_definition,
    check_arguments,
    event_payload,
)
from durable._codec import MAX_DEPTH


class Point(BaseModel):
    x: int
    y: int


def test_round_trip_restores_the_annotated_type() -> None:
    data, value = JsonCodec(tuple[Point, datetime]).round_trip(
        (Point(x=1, y=2), datetime(2026, 1, 1)), what="step 0"
    )
    assert data == [{"x": 1, "y": 2}, "2026-01-01T00:00:00"]
    assert value == (Point(x=1, y=2), datetime(2026, 1, 1))


def test_values_without_a_json_form_are_refused() -> None:
    with pytest.raises(DurableResultNotSerializableError) as caught:
        JsonCodec(Any).encode({"when": object()}, what="step 2 'score'")
    assert caught.value.code == ErrorCode.RESULT_NOT_SERIALIZABLE
    assert "step 2 'score'" in str(caught.value)


class Reading(BaseModel):
    values: list[float]


@pytest.mark.parametrize(
    ("value", "path"),
    [
        (math.nan, "$"),
        ({"x": math.inf}, "$.x"),
        ([1.0, -math.inf], "$[1]"),
        (Reading(values=[1.0, math.nan]), "$.values[1]"),
    ],
)
def test_non_finite_numbers_are_refused_not_written_as_null(value: Any, path: str) -> None:
    with pytest.raises(DurableNonCanonicalValueError) as caught:
        JsonCodec(Any).encode(value, what="step 2 'score'")
    assert caught.value.code == ErrorCode.NON_CANONICAL_VALUE
    assert f"at {path};" in str(caught.value)


def test_json_over_the_limit_names_the_limit() -> None:
    JsonCodec(str).encode("é" * (MAX_PAYLOAD_BYTES // 2 - 1), what="step 3")
    with pytest.raises(DurablePayloadTooLargeError) as caught:
        JsonCodec(str).encode("é" * (MAX_PAYLOAD_BYTES // 2), what="step 3")
    assert f"over the limit of {MAX_PAYLOAD_BYTES:,} bytes" in str(caught.value)


def test_a_recorded_value_that_no_longer_fits_its_type_is_explained() -> None:
    with pytest.raises(DurableResultNotSerializableError) as caught:
        JsonCodec(Point).decode({"x": "one"}, what="step 1 'locate'")
    message = str(caught.value)
    assert "the recorded value of step 1 'locate'" in message
    assert "keep the old type or start a new run" in message


def test_a_value_that_holds_itself_is_not_serializable_not_a_crash() -> None:
    looped: list[Any] = [1.0]
    looped.append(looped)
    with pytest.raises(DurableResultNotSerializableError):
        JsonCodec(Any).encode(looped, what="step 4")


def test_step_arguments_are_checked_like_recorded_values() -> None:
    check_arguments((1, "two", {"three": 3.0}), what="step 'ok'")
    check_arguments((object(),), what="step 'opaque'")  # no JSON form: the substrate reports it
    with pytest.raises(DurableNonCanonicalValueError, match=r"arguments of step 'x' hold nan at"):
        check_arguments((1, {"x": math.nan}), what="step 'x'")
    with pytest.raises(DurablePayloadTooLargeError, match="the arguments of step 'y'"):
        check_arguments(("x" * MAX_PAYLOAD_BYTES,), what="step 'y'")


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


class Box(BaseModel):
    data: list[int]


@agent(name="tests.codec.boxes", events={"box": Box})
async def boxes(ctx: DurableContext, job: dict[str, Any]) -> None: ...


@pytest.mark.parametrize("depth", [101, 3_000, 10_000])
def test_values_nested_too_deep_are_refused_with_the_limit(depth: int) -> None:
    def refused(call: Any) -> str:
        with pytest.raises(DurablePayloadTooLargeError) as caught:
            call()
        assert caught.value.code == ErrorCode.PAYLOAD_TOO_LARGE
        assert f"more than {MAX_DEPTH} levels deep" in str(caught.value)
        return str(caught.value)

    deep = _nested(depth)
    assert "step 3" in refused(lambda: JsonCodec(Any).encode(deep, what="step 3"))
    assert "arguments of step 'a'" in refused(lambda: check_arguments((deep,), what="step 'a'"))
    assert "event 'k'" in refused(lambda: event_payload({"x": deep}, what="event 'k'"))

    # A typed event's check names the mismatch without printing the payload back.
    definition = agent_definition("tests.codec.boxes")
    with pytest.raises(DurableError, match="fix the payload"):
        definition.check_event("box", {"data": deep})
    assert "levels deep" in refused(lambda: definition.manifest({"data": deep}))


def test_values_at_the_depth_limit_are_kept() -> None:
    value = _nested(MAX_DEPTH)
    assert JsonCodec(Any).round_trip(value, what="step 1") == (value, value)
