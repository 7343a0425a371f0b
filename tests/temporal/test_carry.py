"""What a run carries across continue-as-new: packed records, and the live stream's tail."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio.contrib.workflow_streams import WorkflowStreamState
from temporalio.contrib.workflow_streams._types import _WorkflowStreamWireItem

from durable import StepError, StepRecord
from durable_agents.adapters.temporal._carry import (
    CarriedState,
    RaisedError,
    live_tail,
    pack,
    unpack,
)

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _added(i: int) -> StepRecord:
    return StepRecord(
        run_id="r", step_index=i, intent=f"add {i}", kind="logic", input_hash="",
        status="completed", attempts=1, result=i, started_at=AT, completed_at=AT,
    )  # fmt: skip


def _state() -> CarriedState:
    steps = [_added(i) for i in range(3)]
    failed = StepRecord(
        run_id="r", step_index=3, intent="refuse", kind="logic", input_hash="",
        status="failed", attempts=2, error=StepError(message="no", type="ValueError"),
    )  # fmt: skip
    return CarriedState(
        steps=[*steps, failed],
        arrivals=[0, 2, 1, 3],
        raised={3: RaisedError(type="DurableStepFailedError", message="no", details={"code": "x"})},
        events={"go": {"bonus": 1}},
        usage={"input_tokens": 10, "output_tokens": None},
    )


def test_packed_state_comes_back_whole() -> None:
    state = _state()

    assert unpack(pack(state)) == state


def test_packing_is_deterministic_as_workflow_code_must_be() -> None:
    assert pack(_state()) == pack(_state())


def test_packing_compresses_the_records() -> None:
    many = CarriedState(steps=_state().steps * 200)

    assert len(pack(many)) * 10 < len(many.model_dump_json())


def _stream(sizes: list[int], base: int = 0) -> WorkflowStreamState:
    log = [
        _WorkflowStreamWireItem(topic="live", data="x" * size, offset=base + i)
        for i, size in enumerate(sizes)
    ]
    return WorkflowStreamState(log=log, base_offset=base)


def test_the_live_tail_keeps_the_latest_entries_at_their_offsets() -> None:
    tail = live_tail(_stream([100, 100, 100, 100], base=7), limit=250)

    assert tail.base_offset == 9  # two entries dropped: the offsets go on
    assert [len(item.data) for item in tail.log] == [100, 100]


def test_a_stream_with_nothing_to_keep_carries_its_offset() -> None:
    assert live_tail(_stream([], base=5)).base_offset == 5
    tail = live_tail(_stream([500], base=5), limit=100)
    assert (tail.base_offset, tail.log) == (6, [])
