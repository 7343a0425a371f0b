"""Spans both substrates make, and the trace context that travels with a run.

Safe inside a Temporal workflow: there, spans come from the replay-safe tracer
provider ``configure_telemetry`` installs (temporalio's contrib), which gives
them deterministic ids and ends none while history replays; without it,
workflow code makes no spans at all. Only exception type names reach a span,
never messages, which may quote prompts or inputs.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, Span, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue
from temporalio import workflow
from temporalio.contrib.opentelemetry import ReplaySafeTracerProvider

from . import _names as names

__all__ = [
    "caller_context",
    "current",
    "current_is_traced",
    "finish",
    "open_span",
    "span",
    "task_context",
    "traceparent",
    "with_traceparent",
]

Attributes = Mapping[str, AttributeValue]

_PROPAGATOR = TraceContextTextMapPropagator()
_NOTHING = NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)
_UNKNOWN = object()


def _tracer() -> trace.Tracer | None:
    if getattr(trace, "_TRACER_PROVIDER", _UNKNOWN) is None:
        return None  # none set: asking for it reads the environment, once per step
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider):
        return None  # none configured: its spans would record nothing, at a cost per step
    if workflow.in_workflow() and not isinstance(provider, ReplaySafeTracerProvider):
        return None  # a plain provider would duplicate every span on replay
    return provider.get_tracer(names.TRACER)


def open_span(name: str, attributes: Attributes, *, parent: Context | None = None) -> Span:
    """A started span, not made current; end it with ``finish``."""
    tracer = _tracer()
    if tracer is None:
        return _NOTHING
    return tracer.start_span(name, context=parent, attributes=dict(attributes))


def finish(span: Span, error: BaseException | None = None) -> None:
    """End ``span`` by how its work ended.

    An error ends it with an error status naming the type; a cancellation or a
    continue-as-new ends it marked so. Anything else (a workflow evicted from a
    worker's cache, an interpreter leaving) leaves it open: the execution that
    goes on later ends it.
    """
    if error is None:
        span.end()
    elif isinstance(error, Exception):
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end()
    elif isinstance(error, asyncio.CancelledError):
        span.set_attribute("durable.cancelled", True)
        span.end()
    elif type(error).__name__ == "ContinueAsNewError":
        span.set_attribute(names.RUN_STATUS, "continued")
        span.end()


@contextmanager
def span(name: str, attributes: Attributes, *, parent: Context | None = None) -> Iterator[Span]:
    """A span current for the block, ended by how the block ends (see ``finish``)."""
    opened = open_span(name, attributes, parent=parent)
    if opened is _NOTHING:
        yield opened  # no tracing: nothing to make current, nor to end
        return
    with _made_current(opened):
        try:
            yield opened
        except BaseException as exc:
            finish(opened, exc)
            raise
    finish(opened)


@contextmanager
def _made_current(span: Span) -> Iterator[None]:
    """``span`` current for the block. A coroutine closed from outside (a workflow evicted
    from a worker's cache) leaves its context with it: nothing to restore, and
    OpenTelemetry would log a traceback for the context it cannot reset there."""
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield
    except GeneratorExit:
        raise
    except BaseException:
        otel_context.detach(token)
        raise
    otel_context.detach(token)


@contextmanager
def current(span: Span) -> Iterator[Span]:
    """``span`` current for the block, neither ended nor marked by how the block ends."""
    with _made_current(span):
        yield span


def task_context(span: Span) -> contextvars.Context:
    """A copy of the current context with ``span`` current: for a task that runs under it."""
    copied = contextvars.copy_context()
    copied.run(otel_context.attach, trace.set_span_in_context(span))
    return copied


def traceparent() -> str | None:
    """The current span as a W3C ``traceparent`` value, or ``None`` with no span."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get(names.TRACEPARENT)


def with_traceparent(headers: MutableMapping[str, str]) -> None:
    """Add the current span's ``traceparent`` to outgoing ``headers`` (if there is one).

    A ``traceparent`` the headers already carry is the caller's, forwarded on purpose
    (a conversation's reference headers): it is kept.
    """
    if any(name.lower() == names.TRACEPARENT for name in headers):
        return
    value = traceparent()
    if value is not None:
        headers[names.TRACEPARENT] = value


def caller_context(value: str | None) -> Context | None:
    """The context a caller's ``traceparent`` names; ``None`` for none or a malformed one."""
    if not value:
        return None
    context = _PROPAGATOR.extract({names.TRACEPARENT: value})
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context


def current_is_traced() -> bool:
    return trace.get_current_span().get_span_context().is_valid
