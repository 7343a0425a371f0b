"""A step attempt and a model call: their span and their metrics, in one place for both
substrates (the local runner and the Temporal step activity call the same code)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import Span

from . import _metrics as metrics
from . import _names as names
from . import _spans as spans

__all__ = [
    "ModelCall",
    "child_attributes",
    "command_span",
    "model_call",
    "run_attributes",
    "set_trace_content",
    "step_attempt",
    "trace_content",
    "turn_attributes",
    "wait_attributes",
]

_content = False


def set_trace_content(enabled: bool) -> None:
    """Whether model-call spans carry prompts and completions (``DURABLE_TRACE_CONTENT``)."""
    global _content
    _content = enabled


def trace_content() -> bool:
    return _content


@contextmanager
def step_attempt(
    *,
    substrate: str,
    run_id: str,
    index: int | None,
    intent: str | None,
    name: str,
    attempt: int,
) -> Iterator[Span]:
    """One attempt of a step: a ``durable.step`` span, and the step metrics when it ends."""
    attributes: dict[str, Any] = {
        names.SUBSTRATE: substrate,
        names.RUN_ID: run_id,
        names.STEP_NAME: name,
        names.STEP_ATTEMPT: attempt,
    }
    if index is not None:
        attributes[names.STEP_INDEX] = index
    if intent is not None:
        attributes[names.STEP_INTENT] = intent
    started = time.monotonic()
    status = "failed"
    try:
        with spans.span(names.STEP, attributes) as span:
            yield span
            status = "completed"
            span.set_attribute(names.STEP_STATUS, status)
    finally:
        metrics.step_ended(
            substrate=substrate,
            name=name,
            status=status,
            attempt=attempt,
            seconds=time.monotonic() - started,
        )


@dataclass
class ModelCall:
    """The span of a model call under way; ``answered`` records how it ended."""

    span: Span
    model: str

    def answered(
        self,
        *,
        input_tokens: int | None,
        output_tokens: int | None,
        cost: float | None,
        finish_reason: str | None,
        response_model: str | None,
        text: str,
    ) -> None:
        span = self.span
        if input_tokens is not None:
            span.set_attribute(names.GEN_AI_INPUT_TOKENS, input_tokens)
        if output_tokens is not None:
            span.set_attribute(names.GEN_AI_OUTPUT_TOKENS, output_tokens)
        if cost is not None:
            span.set_attribute(names.MODEL_COST, cost)
        if finish_reason is not None:
            span.set_attribute(names.GEN_AI_FINISH_REASONS, [finish_reason])
        if response_model:
            span.set_attribute(names.GEN_AI_RESPONSE_MODEL, response_model)
        if _content:
            span.add_event(names.GEN_AI_COMPLETION_EVENT, {"gen_ai.completion": text})
        metrics.model_used(
            model=self.model, input_tokens=input_tokens, output_tokens=output_tokens, cost=cost
        )


@contextmanager
def model_call(model: str, messages: Sequence[Any]) -> Iterator[ModelCall]:
    """A ``chat <model>`` span with the GenAI attributes; the prompt only if content is on."""
    attributes = {
        names.GEN_AI_SYSTEM: names.GEN_AI_SYSTEM_VALUE,
        names.GEN_AI_OPERATION: names.MODEL_CALL,
        names.GEN_AI_REQUEST_MODEL: model,
    }
    with spans.span(f"{names.MODEL_CALL} {model}", attributes) as span:
        if _content:
            prompt = json.dumps(list(messages), default=str)
            span.add_event(names.GEN_AI_PROMPT_EVENT, {"gen_ai.prompt": prompt})
        yield ModelCall(span, model)


def run_attributes(substrate: str, run_id: str, agent: str) -> dict[str, Any]:
    """The attributes of a ``durable.run`` span."""
    return {names.SUBSTRATE: substrate, names.RUN_ID: run_id, names.AGENT: agent}


def wait_attributes(
    substrate: str, run_id: str, index: int, key: str, waiting_as: str
) -> dict[str, Any]:
    """The attributes of a ``durable.wait`` span: for an event, or a person's decision."""
    return {
        names.SUBSTRATE: substrate,
        names.RUN_ID: run_id,
        names.STEP_INDEX: index,
        names.WAIT_KEY: key,
        names.WAIT_AS: waiting_as,
    }


def child_attributes(
    substrate: str, run_id: str, index: int, intent: str, child_run_id: str, child_agent: str
) -> dict[str, Any]:
    """The attributes of a ``durable.child`` span."""
    return {
        names.SUBSTRATE: substrate,
        names.RUN_ID: run_id,
        names.STEP_INDEX: index,
        names.STEP_INTENT: intent,
        names.CHILD_RUN_ID: child_run_id,
        names.CHILD_AGENT: child_agent,
    }


def turn_attributes(run_id: str, index: int, speaker: str, turn_id: str) -> dict[str, Any]:
    """The attributes of a ``durable.turn`` span: one turn of a conversation run."""
    return {
        names.RUN_ID: run_id,
        names.TURN_INDEX: index,
        names.TURN_SPEAKER: speaker,
        names.TURN_ID: turn_id,
    }


@contextmanager
def command_span(command: str, environ: Mapping[str, str] = os.environ) -> Iterator[Span]:
    """A command's span, under the trace its caller names in ``TRACEPARENT`` (if any)."""
    parent = spans.caller_context(environ.get(names.TRACEPARENT_ENV))
    with spans.span(names.COMMAND, {names.COMMAND_NAME: command}, parent=parent) as span:
        yield span
