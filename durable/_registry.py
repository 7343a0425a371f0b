"""The ``@step`` and ``@agent`` registries.

Steps are registered module-level async functions called by reference with
arguments, never closures: that is what lets Temporal run each one as an
activity whose type is the step's name. Names are a stored contract with runs
in flight, so they are derived once and checked for collisions.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar, get_type_hints, overload

from pydantic import ValidationError

from ._approvals import check_decision_event
from ._codec import JsonCodec
from ._errors import (
    DurableError,
    DurableEventPayloadError,
    DurableRegistrationError,
    DurableResultNotSerializableError,
)
from ._failures import input_invalid_error, input_type_error
from ._patches import check_event_key
from ._records import DelegationPolicy, DurableRunManifest, TaskSpec
from ._retry import (
    DEFAULT_HEARTBEAT_TIMEOUT,
    DEFAULT_STEP_TIMEOUT,
    RetryPolicy,
    StepOptions,
    as_timedelta,
)

__all__ = [
    "AgentDefinition",
    "StepDefinition",
    "agent",
    "agent_definition",
    "copying_registered",
    "registered_agents",
    "registered_steps",
    "registering_copies",
    "step",
    "step_definition",
]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_STEP_ATTR = "__durable_step__"
_AGENT_ATTR = "__durable_agent__"


AsyncFunction = Callable[..., Coroutine[Any, Any, Any]]


@dataclass(frozen=True)
class StepDefinition:
    name: str
    fn: AsyncFunction
    options: StepOptions
    result: JsonCodec[Any]
    params: tuple[Any, ...]
    """Annotations of the positional parameters, to rebuild arguments sent over the wire."""


@dataclass(frozen=True)
class AgentDefinition:
    name: str
    fn: AsyncFunction
    input: JsonCodec[Any]
    output: JsonCodec[Any]
    description: str
    events: Mapping[str, JsonCodec[Any]]
    """Declared payload types of event keys."""
    delegation: DelegationPolicy | None = None
    """What runs of this agent may delegate with ``ctx.call_agent``; ``None`` refuses it."""

    def check_event(self, key: str, payload: Any) -> None:
        """Refuse a payload that does not match its key's declared type, saying why."""
        check_decision_event(key, payload)
        codec = self.events.get(key)
        if codec is None:
            return
        try:
            codec.validate(payload)
        except ValidationError as exc:
            raise DurableEventPayloadError(
                f"event {key!r} of agent {self.name!r} must be {codec.annotation!r}, but "
                f"{exc.errors(include_url=False, include_input=False)}; "
                "fix the payload and send it again"
            ) from None

    def manifest(
        self,
        input: Any,
        *,
        project_id: str = "default",
        scenario_id: str | None = None,
        task: TaskSpec | None = None,
        tags: Mapping[str, str] | None = None,
        delegation: DelegationPolicy | None = None,
    ) -> DurableRunManifest:
        """The manifest of a run of this agent on ``input``: what identifies the run.

        ``delegation``, when given, replaces the agent's own policy for this run.
        """
        label = f"agent {self.name!r}"
        try:
            # Validating first turns JSON from a command line or HTTP body into the typed input.
            value = self.input.validate(input)
        except ValidationError as exc:
            reason = str(exc.errors(include_url=False, include_input=False))
            raise input_type_error(label, self.input.annotation, reason) from None
        try:
            encoded = self.input.encode(value, what=f"the input of {label}")
        except DurableResultNotSerializableError:
            # A value the type accepts but JSON cannot hold: still the caller's input to fix.
            reason = f"it holds a value of type {type(value).__name__} that has no JSON form"
            raise input_type_error(label, self.input.annotation, reason) from None
        if not isinstance(encoded, dict):
            raise DurableRegistrationError(
                f"the input of {label} serializes to a {type(encoded).__name__}, but a run's "
                "input must be a JSON object; make the input a pydantic model, dataclass or dict"
            )
        return DurableRunManifest(
            project_id=project_id,
            scenario_id=scenario_id,
            # The default task comes from the name only: editing docs never changes identity.
            task=task or TaskSpec(id=self.name, intent=self.name, domain="agent"),
            input=encoded,
            tags=dict(tags) if tags is not None else None,
            delegation=delegation,
        )

    def decode_input(self, manifest: DurableRunManifest, *, run_id: str) -> Any:
        """The typed input a run was started with; ``DurableRunInputInvalidError`` if the
        input type changed since so that the recorded input no longer fits it."""
        label = f"agent {self.name!r}"
        try:
            return self.input.decode(manifest.input, what=f"the input of {label}")
        except DurableError as exc:
            raise input_invalid_error(run_id, label, exc) from None


_steps: dict[str, StepDefinition] = {}
_agents: dict[str, AgentDefinition] = {}
_copying: ContextVar[bool] = ContextVar("durable_registering_copies", default=False)


@contextmanager
def registering_copies() -> Iterator[None]:
    """Import copies of modules already registered, leaving the registries as they are.

    A workflow sandbox imports its own copy of an agent's module, so that what
    the agent does at run time is checked there. The copy's ``@agent`` and
    ``@step`` run again: each function of the copy gets its own definition (the
    same name and options, with the copy's types), while the registries keep the
    functions the worker imported, which step activities run by name. A copy
    that takes a name registered to another function is refused as always; a
    name not registered yet is registered as usual.
    """
    token = _copying.set(True)
    try:
        yield
    finally:
        _copying.reset(token)


def copying_registered() -> bool:
    """Whether modules imported now are copies whose registrations must be left out."""
    return _copying.get()


def _check_function(fn: object, what: str) -> AsyncFunction:
    if not inspect.iscoroutinefunction(fn):
        raise DurableRegistrationError(
            f"@{what} needs an 'async def' function, got {fn!r}; make it a coroutine function"
        )
    func: AsyncFunction = fn  # narrowed by iscoroutinefunction
    if "<locals>" in func.__qualname__:
        raise DurableRegistrationError(
            f"@{what} {func.__qualname__!r} is defined inside another function; "
            f"define it at module level so every worker can import it by name"
        )
    return func


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return get_type_hints(fn)
    except Exception as exc:
        raise DurableRegistrationError(
            f"cannot resolve the annotations of {fn.__qualname__!r} ({exc}); "
            "import every type it names at module level"
        ) from None


def _positional_params(fn: AsyncFunction) -> list[inspect.Parameter]:
    params = list(inspect.signature(fn).parameters.values())
    for p in params:
        required_keyword = p.kind is p.KEYWORD_ONLY and p.default is p.empty
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or required_keyword:
            raise DurableRegistrationError(
                f"step {fn.__qualname__!r} takes {p}; ctx.step passes arguments by position, "
                "so give the step fixed positional parameters"
            )
    return [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _same_function(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    # A reloaded module re-registers the same function under the same name.
    return (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


@overload
def step(fn: F, /) -> F: ...
@overload
def step(
    *,
    name: str | None = None,
    timeout: timedelta | float = DEFAULT_STEP_TIMEOUT,
    retry: RetryPolicy | None = None,
    heartbeat: timedelta | float | None = None,
    local: bool = False,
) -> Callable[[F], F]: ...
def step(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    timeout: timedelta | float = DEFAULT_STEP_TIMEOUT,
    retry: RetryPolicy | None = None,
    heartbeat: timedelta | float | None = None,
    local: bool = False,
) -> F | Callable[[F], F]:
    """Register an async function as a durable step.

    ``name`` defaults to the function's name and becomes the activity type on
    Temporal; ``timeout`` bounds one attempt; ``retry`` defaults to Temporal's
    default policy; ``local`` runs the step as a Temporal local activity.

    ``heartbeat`` (default ``DEFAULT_HEARTBEAT_TIMEOUT``, 15 s) is how soon
    Temporal retries the step on another worker once this one is lost. The step
    activity heartbeats from a thread while the step runs, so a step that blocks
    the event loop (``time.sleep``, a synchronous HTTP client, CPU-bound Python)
    keeps its heartbeat and is not retried while it still runs; only native code
    holding the GIL for longer than the timeout could starve it. Heartbeats prove
    the process alive, not the step making progress: a hung step is still bounded
    by ``timeout``. Once the step heartbeats with details itself
    (``activity.heartbeat(x)``), the background heartbeat stops, so it never
    overwrites them, and the step owns its heartbeat from then on.
    ``heartbeat=0`` turns the timeout off; local activities take none.
    """
    attempt_timeout = as_timedelta(timeout, what="step timeout")
    if attempt_timeout == timedelta(0):
        raise DurableRegistrationError("a step timeout must be positive; pass seconds > 0")

    def register(func: F) -> F:
        checked = _check_function(func, "step")
        step_name = name or checked.__name__
        existing = _steps.get(step_name)
        if existing is not None and not _same_function(existing.fn, checked):
            raise DurableRegistrationError(
                f"step name {step_name!r} is already used by "
                f"{existing.fn.__module__}.{existing.fn.__qualname__}; pass @step(name=...) "
                "to give one of them a unique name"
            )
        hints = _hints(checked)
        definition = StepDefinition(
            name=step_name,
            fn=checked,
            options=StepOptions(
                timeout=attempt_timeout,
                retry=retry or RetryPolicy(),
                heartbeat_timeout=DEFAULT_HEARTBEAT_TIMEOUT
                if heartbeat is None
                else as_timedelta(heartbeat, what="heartbeat timeout"),
                local_activity=local,
            ),
            result=JsonCodec(hints.get("return", Any)),
            params=tuple(hints.get(p.name, Any) for p in _positional_params(checked)),
        )
        if existing is None or not _copying.get():
            _steps[step_name] = definition
        setattr(func, _STEP_ATTR, definition)
        return func

    return register(fn) if fn is not None else register


def step_definition(fn: object) -> StepDefinition:
    """The registration of a step function; explains how to register it if missing."""
    definition = getattr(fn, _STEP_ATTR, None)
    if not isinstance(definition, StepDefinition):
        label = getattr(fn, "__qualname__", repr(fn))
        raise DurableRegistrationError(
            f"{label} is not a registered step; decorate it with @step at module level "
            "and pass the function itself (not a lambda or closure) to ctx.step"
        )
    return definition


@overload
def agent(fn: F, /) -> F: ...
@overload
def agent(
    *,
    name: str | None = None,
    description: str | None = None,
    events: Mapping[str, Any] | None = None,
    delegation: DelegationPolicy | None = None,
) -> Callable[[F], F]: ...
def agent(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    events: Mapping[str, Any] | None = None,
    delegation: DelegationPolicy | None = None,
) -> F | Callable[[F], F]:
    """Register ``async def f(ctx, input) -> output`` as an agent named ``name``.

    The name is the workflow type on Temporal. The input annotation types the
    run's input; the return annotation types its result. ``events`` declares the
    payload type of event keys, so a payload of the wrong type is refused to its
    sender before it reaches the run, and ``await_event`` returns that type.
    ``delegation`` lets its runs call other agents as child runs
    (``ctx.call_agent``); without it, delegation is refused, as in the reference.
    """
    declared: dict[str, JsonCodec[Any]] = {
        check_event_key(key): JsonCodec(annotation) for key, annotation in (events or {}).items()
    }

    def register(func: F) -> F:
        checked = _check_function(func, "agent")
        params = list(inspect.signature(checked).parameters.values())
        if len(params) != 2 or any(
            p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params
        ):
            raise DurableRegistrationError(
                f"agent {checked.__qualname__!r} must take exactly (ctx, input); "
                "put every argument into one typed input model"
            )
        agent_name = name or checked.__name__
        existing = _agents.get(agent_name)
        if existing is not None and not _same_function(existing.fn, checked):
            raise DurableRegistrationError(
                f"agent name {agent_name!r} is already used by "
                f"{existing.fn.__module__}.{existing.fn.__qualname__}; pass @agent(name=...)"
            )
        hints = _hints(checked)
        definition = AgentDefinition(
            name=agent_name,
            fn=checked,
            input=JsonCodec(hints.get(params[1].name, Any)),
            output=JsonCodec(hints.get("return", Any)),
            description=description or inspect.getdoc(checked) or agent_name,
            events=declared,
            delegation=delegation,
        )
        if existing is None or not _copying.get():
            _agents[agent_name] = definition
        setattr(func, _AGENT_ATTR, definition)
        return func

    return register(fn) if fn is not None else register


def agent_definition(fn_or_name: object) -> AgentDefinition:
    """The registration of an agent, by function or by name."""
    if isinstance(fn_or_name, str):
        found = _agents.get(fn_or_name)
        if found is None:
            known = ", ".join(sorted(_agents)) or "none"
            raise DurableRegistrationError(
                f"no agent named {fn_or_name!r} is registered (known: {known}); "
                "import the module that defines it (the durable command and worker import "
                "those DURABLE_AGENT_MODULES names)"
            )
        return _as_imported_here(found)
    definition = getattr(fn_or_name, _AGENT_ATTR, None)
    if not isinstance(definition, AgentDefinition):
        label = getattr(fn_or_name, "__qualname__", repr(fn_or_name))
        raise DurableRegistrationError(
            f"{label} is not a registered agent; decorate it with @agent"
        )
    return definition


def _as_imported_here(registered: AgentDefinition) -> AgentDefinition:
    """The agent as its module is imported where this runs: a workflow sandbox's copy, if any.

    A workflow sandbox has modules of its own (``sys.modules`` is the sandbox's
    there), so an agent named there gets the definition of that copy, with the
    copy's types, which the agent code it runs with builds its values from.
    Everywhere else this is ``registered`` itself.
    """
    fn = registered.fn
    found: object = sys.modules.get(fn.__module__)
    for part in fn.__qualname__.split("."):
        found = getattr(found, part, None)
    if found is fn:
        return registered
    copy = getattr(found, _AGENT_ATTR, None)
    if isinstance(copy, AgentDefinition) and copy.name == registered.name:
        return copy
    return registered


def registered_steps() -> dict[str, StepDefinition]:
    return dict(_steps)


def registered_agents() -> dict[str, AgentDefinition]:
    return dict(_agents)
