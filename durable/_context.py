"""The ``DurableContext`` protocol: the only API an agent is written against.

Every substrate implements it with the same observable behaviour, which the
conformance suite checks:

- ``step`` is identified by position plus intent. A completed step returns its
  recorded result, restored to the step function's return type, without calling
  the function; a recorded failure is raised again.
- ``now`` and ``uuid`` return the same values on replay.
- ``sleep`` and ``await_event`` use durable deadlines, fixed when first reached
  and never restarted by a resume.
- ``emit_event`` is first-emit-wins and returns whether this emit was accepted.
- ``call_agent`` runs another agent as a child run at one position; a resumed
  parent resumes its unfinished children and replays finished ones.
- ``checkpoints`` keeps named JSON snapshots with the run; a replay neither
  rewrites them nor reads anything but what the first execution read.
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import (
    TYPE_CHECKING,
    Any,
    NoReturn,
    Protocol,
    TypeVar,
    TypeVarTuple,
    Unpack,
    overload,
    runtime_checkable,
)

from ._live import LiveEvent
from ._records import StepKind
from ._retry import RetryPolicy

if TYPE_CHECKING:
    from ._approvals import ApprovalDecision, ApprovalRequest, OnTimeout
    from ._checkpoints import ContextCheckpoints
    from ._children import ChildRun
    from .conversation import Conversation, ConversationResult

__all__ = ["UNSET", "DurableContext", "Unset"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class Unset:
    """Marker for "no input fingerprint given", distinct from a fingerprint of ``None``."""

    _instance: Unset | None = None

    def __new__(cls) -> Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset()


@runtime_checkable
class DurableContext(Protocol):
    @property
    def run_id(self) -> str:
        """The run's id; on Temporal, the workflow id."""
        ...

    @property
    def project_id(self) -> str: ...

    @property
    def scenario_id(self) -> str | None: ...

    async def step(
        self,
        intent: str,
        fn: Callable[[Unpack[Ts]], Awaitable[T]],
        *args: *Ts,
        input_fingerprint: object = UNSET,
        kind: StepKind = "logic",
        timeout: timedelta | float | None = None,
        retry: RetryPolicy | None = None,
        heartbeat: timedelta | float | None = None,
    ) -> T:
        """Run the registered step ``fn(*args)`` once; replay its result afterwards.

        ``intent`` labels the step for people and must stay stable across code
        changes. ``input_fingerprint``, when given, is hashed and compared on
        replay to catch a step whose inputs changed. ``timeout``, ``retry`` and
        ``heartbeat`` override the step's registered options for this call.
        """
        ...

    async def now(self) -> datetime:
        """The current UTC time, checkpointed so replay returns the same value."""
        ...

    async def uuid(self) -> _uuid.UUID:
        """A random UUID, checkpointed so replay returns the same value."""
        ...

    async def sleep(self, duration: timedelta | float) -> None:
        """A durable timer: a resume waits only for what is left of ``duration``."""
        ...

    @overload
    async def await_event(self, key: str, *, timeout: timedelta | float | None = None) -> Any: ...
    @overload
    async def await_event(
        self, key: str, *, timeout: timedelta | float | None = None, type: type[T]
    ) -> T: ...
    async def await_event(
        self, key: str, *, timeout: timedelta | float | None = None, type: Any = None
    ) -> Any:
        """Wait for the event ``key``; events sent before the wait are kept.

        The deadline is measured from the first wait, so a resumed run waits
        only for the remainder. Raises ``DurableAwaitEventTimeoutError`` when it
        passes, and ``DurableEventPayloadError`` when the payload does not
        validate as ``type``.
        """
        ...

    async def emit_event(self, key: str, payload: object, *, run_id: str | None = None) -> bool:
        """Emit ``key`` into this run, or into run ``run_id``; first emit wins.

        Returns ``True`` if this emit was accepted, ``False`` if the key had already
        been emitted. A payload the target agent declared another type for raises
        ``DurableEventPayloadError``; an unknown target ``DurableRunNotFoundError``.
        """
        ...

    async def approval(
        self,
        request: ApprovalRequest,
        *,
        timeout: timedelta | float | None = None,
        on_timeout: OnTimeout = "reject",
    ) -> ApprovalDecision:
        """Ask a person to approve ``request`` and wait for the decision.

        The approval's id is ``<run id>:approval-<position>``: the same on replay.
        While it waits the run is ``waiting_for_approval``. The decision is
        approve, edit (its input validated against the request's input type) or
        reject, with who decided, when and why, and is recorded in the run's
        steps. Past ``timeout`` the run gets the decision ``on_timeout`` names
        (``reject``, ``approve``), or ``DurableAwaitEventTimeoutError`` (``raise``).
        """
        ...

    def publish(self, event: LiveEvent) -> bool:
        """Append ``event`` to this run's live stream; a replay never repeats it.

        Returns whether this call appended it: ``False`` while a local resume
        replays code whose entries the interrupted execution already published.
        """
        ...

    async def has_event(self, key: str) -> bool:
        """Whether event ``key`` has arrived, without waiting; replay answers the same."""
        ...

    async def patched(self, change_id: str) -> bool:
        """Whether this run takes the code change ``change_id``.

        ``True`` for a run that reaches this call fresh, ``False`` for a run that
        had already gone past it with the code before the change, so it replays
        the path it recorded. The same answer on every replay and for every later
        call with this id; it takes no position. On Temporal it is
        ``workflow.patched``. See ``durable._patches``.
        """
        ...

    async def deprecate_patch(self, change_id: str) -> None:
        """Mark the old path of ``change_id`` gone, once no run from before it is in flight.

        Every run then takes the change; on Temporal it is ``workflow.deprecate_patch``.
        """
        ...

    @overload
    async def call_agent(
        self,
        agent: Callable[[Any, Any], Awaitable[T]],
        input: Any,
        *,
        run_id: str | None = None,
        timeout: timedelta | float | None = None,
        retry: RetryPolicy | None = None,
    ) -> T: ...
    @overload
    async def call_agent(
        self,
        agent: str,
        input: Any,
        *,
        run_id: str | None = None,
        timeout: timedelta | float | None = None,
        retry: RetryPolicy | None = None,
    ) -> Any: ...
    async def call_agent(
        self,
        agent: Any,
        input: Any,
        *,
        run_id: str | None = None,
        timeout: timedelta | float | None = None,
        retry: RetryPolicy | None = None,
    ) -> Any:
        """Run ``agent`` (a registered agent or its name) as a child run; return its result.

        The child's id is ``run_id`` or ``<this run>/<agent>-<position>``. Its result
        comes back typed by the agent's return annotation; a failure raises
        ``DurableChildRunFailedError`` with the child's run id and error code.
        ``timeout`` bounds the whole child run; ``retry`` runs it again from the
        start when it fails. The run's ``DelegationPolicy`` is checked first and
        a refusal raises ``DurableDelegationError``, spending nothing.
        """
        ...

    @overload
    async def start_agent(
        self,
        agent: Callable[[Any, Any], Awaitable[T]],
        input: Any,
        *,
        run_id: str | None = None,
        timeout: timedelta | float | None = None,
        retry: RetryPolicy | None = None,
    ) -> ChildRun[T]: ...
    @overload
    async def start_agent(
        self,
        agent: str,
        input: Any,
        *,
        run_id: str | None = None,
        timeout: timedelta | float | None = None,
        retry: RetryPolicy | None = None,
    ) -> ChildRun[Any]: ...
    async def start_agent(
        self,
        agent: Any,
        input: Any,
        *,
        run_id: str | None = None,
        timeout: timedelta | float | None = None,
        retry: RetryPolicy | None = None,
    ) -> ChildRun[Any]:
        """``call_agent`` without waiting: await the handle for the result.

        Start several to run children in parallel. A child still in flight when
        this run ends is cancelled, and the run ends only once it has settled.
        """
        ...

    @property
    def checkpoints(self) -> ContextCheckpoints:
        """The run's context checkpoints: named JSON snapshots kept with the run.

        ``write(name, payload)`` and ``delete(name)`` take a position each and
        replay their recorded outcome; ``list()`` and ``read(name)`` answer from
        the run's own writes, the same on replay. Readable from outside the run
        (``durable checkpoints RUN``). See ``durable._checkpoints``.
        """
        ...

    def continue_as_new_suggested(self) -> bool:
        """Whether the substrate asks this run to continue as new (Temporal's history
        limit); never locally, where a run's record has no such limit."""
        ...

    async def continue_as_new(self, input: Any) -> NoReturn:
        """End this execution and start the agent again on ``input``, as the same run.

        Only on Temporal (after ``continue_as_new_suggested``): the new execution
        starts with fresh positions and carries nothing but ``input``.
        """
        ...

    async def conversation(
        self,
        conversation: Conversation,
        *,
        seed: str,
        abort_on: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ConversationResult:
        """Run a multi-agent conversation to its halt and return its result.

        ``headers`` are inbound headers the conversation's policy may propagate
        to its participants (they are recorded with the run: never a secret).

        ``abort_on`` names an event key of this run: once it is emitted, the
        conversation halts before its next turn with ``HaltReason(kind="abort")``.

        It is a child run (``<run>/conversation-<position>``: a child workflow on
        Temporal) whose turns are steps of kind ``llm``. A resumed run never
        repeats a committed turn, and the conversation's usage counts toward
        this run's totals.
        """
        ...
