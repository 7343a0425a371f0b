"""The project's own metrics: steps, retries, step latency, model usage, runs by state.

Instruments come from the global meter provider, which ``configure_telemetry``
sets (wrapped by temporalio's replay-safe provider, so workflow code records
nothing while history replays). Before that, or without it, they record nothing.
The run gauges are up-down counters each worker moves as runs enter and leave a
state: summed over workers, they count the runs in each state.
"""

from __future__ import annotations

from opentelemetry import metrics

from . import _names as names

__all__ = [
    "RunGauge",
    "model_used",
    "run_ended",
    "run_state",
    "step_ended",
]

_meter = metrics.get_meter(names.TRACER)
_steps = _meter.create_counter(names.STEPS, unit="{attempt}", description="Step attempts ended")
_retries = _meter.create_counter(
    names.RETRIES, unit="{attempt}", description="Step attempts after the first"
)
_duration = _meter.create_histogram(
    names.STEP_DURATION, unit="s", description="How long one step attempt took"
)
_tokens = _meter.create_counter(names.MODEL_TOKENS, unit="{token}", description="Model tokens")
_cost = _meter.create_counter(names.MODEL_COST_TOTAL, description="Cost of model calls")
_active = _meter.create_up_down_counter(
    names.RUNS_ACTIVE, unit="{run}", description="Runs executing now, by state"
)
_approvals = _meter.create_up_down_counter(
    names.RUNS_WAITING_FOR_APPROVAL, unit="{run}", description="Runs waiting for a decision"
)
_ended = _meter.create_counter(names.RUNS_ENDED, unit="{run}", description="Runs ended")


def step_ended(*, substrate: str, name: str, status: str, attempt: int, seconds: float) -> None:
    """One step attempt ended, ``completed`` or ``failed``."""
    labels = {names.SUBSTRATE: substrate, names.STEP_NAME: name}
    _steps.add(1, {**labels, names.STEP_STATUS: status})
    _duration.record(seconds, labels)
    if attempt > 1:
        _retries.add(1, labels)


def model_used(
    *, model: str, input_tokens: int | None, output_tokens: int | None, cost: float | None
) -> None:
    """A model call's tokens and cost; unknown counts are not counted."""
    labels = {names.GEN_AI_REQUEST_MODEL: model}
    if input_tokens is not None:
        _tokens.add(input_tokens, {**labels, names.TOKEN_TYPE: "input"})
    if output_tokens is not None:
        _tokens.add(output_tokens, {**labels, names.TOKEN_TYPE: "output"})
    if cost is not None:
        _cost.add(cost, labels)


def run_state(substrate: str, before: str | None, after: str | None) -> None:
    """A run of this worker moved from state ``before`` to ``after`` (``None``: not here)."""
    if before == after:
        return
    if before is not None:
        _active.add(-1, {names.SUBSTRATE: substrate, names.RUN_STATE: before})
        if before == "waiting_for_approval":
            _approvals.add(-1, {names.SUBSTRATE: substrate})
    if after is not None:
        _active.add(1, {names.SUBSTRATE: substrate, names.RUN_STATE: after})
        if after == "waiting_for_approval":
            _approvals.add(1, {names.SUBSTRATE: substrate})


def run_ended(substrate: str, status: str) -> None:
    _ended.add(1, {names.SUBSTRATE: substrate, names.RUN_STATUS: status})


class RunGauge:
    """One run's place in the run gauges, moved as the run changes state.

    In a workflow, moves made while history replays record nothing (the replay-safe
    meter provider drops them) but still track the state, so the worker that goes on
    moves the run out of the state the first worker moved it into.
    """

    def __init__(self, substrate: str) -> None:
        self.substrate = substrate
        self.state: str | None = None

    def move(self, state: str | None) -> None:
        run_state(self.substrate, self.state, state)
        self.state = state

    def end(self, status: str) -> None:
        self.move(None)
        run_ended(self.substrate, status)
