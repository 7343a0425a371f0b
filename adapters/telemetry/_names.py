"""The one home of span names, attribute keys and metric names, for both substrates.

A run on Temporal and a run on a local store make the same spans with the same
names and attributes, so a trace reads the same wherever the run ran.
"""

from __future__ import annotations

from typing import Final

TRACER: Final = "durable"
"""The instrumentation scope of every span and metric this project makes."""

# Span names.
RUN: Final = "durable.run"
STEP: Final = "durable.step"
WAIT: Final = "durable.wait"
CHILD: Final = "durable.child"
TURN: Final = "durable.turn"
COMMAND: Final = "durable.command"
"""A ``durable`` command: the span every run it starts or event it sends is under."""
MODEL_CALL: Final = "chat"
"""The model call's span is named ``chat <model>``, as the GenAI conventions name it."""

# Attributes.
SUBSTRATE: Final = "durable.substrate"
"""``temporal`` or ``local``."""
RUN_ID: Final = "durable.run.id"
AGENT: Final = "durable.agent"
RUN_STATUS: Final = "durable.run.status"
"""How the run's execution ended: ``completed``, ``failed``, ``cancelled`` or ``continued``."""
RESUMED: Final = "durable.run.resumed"
"""On a local run: this execution continues one an earlier worker began."""
STEP_INDEX: Final = "durable.step.index"
STEP_INTENT: Final = "durable.step.intent"
STEP_NAME: Final = "durable.step.name"
STEP_ATTEMPT: Final = "durable.step.attempt"
STEP_STATUS: Final = "durable.step.status"
"""``completed`` or ``failed``."""
WAIT_KEY: Final = "durable.wait.key"
WAIT_AS: Final = "durable.wait.state"
"""``waiting`` or ``waiting_for_approval``."""
WAIT_OUTCOME: Final = "durable.wait.outcome"
"""``received`` or ``timed_out``."""
CHILD_RUN_ID: Final = "durable.child.run.id"
CHILD_AGENT: Final = "durable.child.agent"
TURN_INDEX: Final = "durable.turn.index"
TURN_ID: Final = "durable.turn.id"
TURN_SPEAKER: Final = "durable.turn.speaker"
TURN_OUTCOME: Final = "durable.turn.outcome"
"""``committed``, or ``failed`` (the turn failed and halted the conversation)."""
MODEL_COST: Final = "durable.model.cost"

GEN_AI_SYSTEM: Final = "gen_ai.system"
GEN_AI_OPERATION: Final = "gen_ai.operation.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_PROMPT_EVENT: Final = "gen_ai.content.prompt"
"""An event with the prompt, only when the operator turns content on."""
GEN_AI_COMPLETION_EVENT: Final = "gen_ai.content.completion"
GEN_AI_SYSTEM_VALUE: Final = "openai"
"""Every configured model speaks the OpenAI chat-completions API."""

COMMAND_NAME: Final = "durable.command.name"
TRACEPARENT_ENV: Final = "TRACEPARENT"
"""A command's caller's trace context, as the W3C header's value (``00-<trace>-<span>-01``)."""
TRACEPARENT: Final = "traceparent"
"""The W3C header, and the run tag a local run keeps its caller's trace context in."""

# Metric names (OpenTelemetry instruments; Prometheus shows dots as underscores).
STEPS: Final = "durable.steps"
"""Counter: step attempts ended, by ``durable.substrate`` and ``durable.step.status``."""
RETRIES: Final = "durable.step.retries"
"""Counter: step attempts after the first."""
STEP_DURATION: Final = "durable.step.duration"
"""Histogram, seconds: how long one step attempt took."""
MODEL_TOKENS: Final = "durable.model.tokens"
"""Counter: tokens of model calls, by ``gen_ai.token.type`` (``input``/``output``)."""
MODEL_COST_TOTAL: Final = "durable.model.cost"
"""Counter: cost of model calls, in the account's currency."""
RUNS_ACTIVE: Final = "durable.runs.active"
"""Up-down counter: runs executing now, by ``durable.run.state`` (``running``, ``waiting``,
``waiting_for_approval``); summed over workers it is the number of runs in each state."""
RUNS_WAITING_FOR_APPROVAL: Final = "durable.runs.waiting_for_approval"
"""Up-down counter: runs waiting for a person's decision now."""
RUNS_ENDED: Final = "durable.runs.ended"
"""Counter: run executions ended, by ``durable.run.status``."""
RUN_STATE: Final = "durable.run.state"
TOKEN_TYPE: Final = "gen_ai.token.type"
