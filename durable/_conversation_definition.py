"""A conversation's definition: its participants and policy, registered by name.

Definitions hold code (turn orders, halt predicates, auth sources, call
policies), so they live in the worker, defined at import, and runs name them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from ._call_policy import FORWARD_HEADERS, AuthMode, CallPolicy, ForwardHeaderNames, read_depth
from ._canonical import canonical_hash
from ._conversation_records import DEFAULT_MAX_DEPTH, ConversationRun, ConversationTurn
from ._errors import DurableRegistrationError
from ._names import check_name
from ._registry import copying_registered

__all__ = [
    "AuthSource",
    "Conversation",
    "ConversationPolicy",
    "DriveState",
    "HaltContext",
    "HaltPredicate",
    "HaltSignal",
    "HaltVerdict",
    "Participant",
    "TurnOrder",
    "conversation_call",
    "conversation_definition",
    "conversation_run",
    "define_conversation",
]

_SECRET_MARKS = ("auth", "token", "secret", "password", "cookie", "api-key", "apikey", "session")
"""Header names holding any of these are taken for credentials and never propagated."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class DriveState:
    """What turn-order functions, auth sources and halt predicates see."""

    transcript: Sequence[ConversationTurn]
    turn_index: int
    spent_credits_cents: float


@dataclass(frozen=True)
class HaltContext(DriveState):
    """What a halt predicate sees: the state after a turn, and that turn."""

    last_turn: ConversationTurn


class HaltSignal(_Frozen):
    """A halt predicate's verdict with its reason, as the reference returns it."""

    halted: Literal[True] = True
    reason: str


AuthSource = AuthMode | Callable[[DriveState], AuthMode]
"""Whether a participant's calls forward the user's authorization: a fixed mode, or a
deterministic function of the conversation's state deciding it turn by turn."""
TurnOrder = Literal["alternate", "round_robin"] | Callable[[DriveState], int]
HaltVerdict = bool | str | HaltSignal | None
HaltPredicate = Callable[[HaltContext], HaltVerdict | Awaitable[HaltVerdict]]
"""Called after every turn; truthy halts (a string or a ``HaltSignal`` gives the reason).
It may be async, but runs in the conversation's workflow code: it must be deterministic
and do no I/O."""


class Participant(_Frozen):
    """One speaker: a model named in the worker's settings, or another conversation."""

    name: str
    label: str | None = None
    model: str | None = None
    conversation: str | None = None
    """A registered conversation that speaks as this participant (nesting)."""
    system: str | None = None
    """This participant's instructions, sent as its system message."""
    call_policy: CallPolicy | None = None
    """Overrides the conversation's ``default_call_policy`` for this participant."""
    auth_source: AuthSource = "forward-user"
    """``forward-user`` forwards the worker's configured user authorization with
    each call; ``agent-owned`` never does, and the model's own key pays."""

    @model_validator(mode="after")
    def _one_backend(self) -> Participant:
        check_name(self.name, what="participant name")
        if (self.model is None) == (self.conversation is None):
            raise ValueError(
                f"participant {self.name!r} needs exactly one of model= (a model in the "
                "worker's settings) or conversation= (a registered conversation)"
            )
        return self

    @property
    def shown_as(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class ConversationPolicy:
    max_turns: int
    max_credits_cents: float | None = None
    turn_order: TurnOrder | None = None
    """``alternate`` (the default for two), ``round_robin`` (for more), or a
    deterministic function of the state returning the next speaker's index."""
    halt_on: HaltPredicate | None = None
    default_call_policy: CallPolicy = field(default_factory=CallPolicy)
    forward_headers: ForwardHeaderNames = FORWARD_HEADERS
    """The names of the forwarding headers; ``REFERENCE_FORWARD_HEADERS`` for gateways
    that speak the reference protocol."""
    propagated_headers: Sequence[str] = ()
    """Inbound headers (given to ``run_conversation(headers=)``) passed on to every
    participant call. They are recorded in the run's input, so secrets are refused."""


@dataclass(frozen=True)
class Conversation:
    name: str
    participants: tuple[Participant, ...]
    policy: ConversationPolicy
    description: str = ""

    def participant(self, name: str) -> Participant:
        for participant in self.participants:
            if participant.name == name:
                return participant
        raise DurableRegistrationError(
            f"conversation {self.name!r} has no participant {name!r}; the worker runs other "
            "code than the one that started the run, so deploy the same definition"
        )

    def call_policy(self, participant: Participant) -> CallPolicy:
        return participant.call_policy or self.policy.default_call_policy

    @property
    def summary(self) -> str:
        names = ", ".join(p.shown_as for p in self.participants)
        return f"conversation {self.name}: {names}"


_conversations: dict[str, Conversation] = {}


def define_conversation(
    name: str,
    *,
    participants: Sequence[Participant | Mapping[str, Any]],
    policy: ConversationPolicy,
    description: str = "",
) -> Conversation:
    """Define and register a conversation, refusing a misconfiguration at once.

    Participant names must be unique, ``alternate`` needs exactly two
    participants, and ``max_turns`` must be positive. Call it at import time in
    the module that defines the agents, so every worker registers it; the
    worker also imports ``durable_agents.agents.conversation``, which runs conversations.
    """
    check_name(name, what="conversation name")
    people = tuple(p if isinstance(p, Participant) else Participant(**p) for p in participants)
    if not people:
        raise DurableRegistrationError(f"conversation {name!r} needs at least one participant")
    names = [p.name for p in people]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DurableRegistrationError(
            f"conversation {name!r} names participant(s) {duplicates} more than once; "
            "each participant needs its own name"
        )
    if policy.max_turns <= 0:
        raise DurableRegistrationError(
            f"conversation {name!r} has max_turns={policy.max_turns}; it must be at least 1"
        )
    if policy.turn_order == "alternate" and len(people) != 2:
        raise DurableRegistrationError(
            f"conversation {name!r} alternates between {len(people)} participants; "
            "alternate needs exactly two (use round_robin for more)"
        )
    if isinstance(policy.turn_order, str) and policy.turn_order not in ("alternate", "round_robin"):
        raise DurableRegistrationError(
            f"conversation {name!r} has turn_order={policy.turn_order!r}; use 'alternate', "
            "'round_robin' or a function of the state"
        )
    if policy.max_credits_cents is not None and policy.max_credits_cents < 0:
        raise DurableRegistrationError(f"conversation {name!r} has a negative max_credits_cents")
    _check_propagated(name, policy)
    conversation = Conversation(name, people, policy, description)
    existing = _conversations.get(name)
    if existing is not None and copying_registered():
        # A workflow sandbox's copy of the defining module: the worker's definition stays.
        return conversation
    if existing is not None and existing.participants != people:
        raise DurableRegistrationError(
            f"conversation name {name!r} is already defined with other participants; "
            "pick another name"
        )
    _conversations[name] = conversation
    return conversation


def _check_propagated(name: str, policy: ConversationPolicy) -> None:
    if isinstance(policy.propagated_headers, str):
        raise DurableRegistrationError(
            f"conversation {name!r} has propagated_headers={policy.propagated_headers!r}; "
            "pass a sequence of header names, such as ('traceparent',)"
        )
    stamped = policy.forward_headers.all()
    for header in policy.propagated_headers:
        lowered = header.lower()
        secret = any(mark in lowered for mark in _SECRET_MARKS)
        if secret or lowered == policy.forward_headers.authorization:
            raise DurableRegistrationError(
                f"conversation {name!r} propagates header {header!r}, a credential; "
                "propagated headers are recorded in the run's input, so forward the user's "
                "authorization with the worker's DURABLE_FORWARDED_AUTHORIZATION setting"
            )
        if lowered in stamped:
            raise DurableRegistrationError(
                f"conversation {name!r} propagates header {header!r}, which every call "
                "already carries as a forwarding header; remove it from propagated_headers"
            )


def conversation_definition(name: str) -> Conversation:
    try:
        return _conversations[name]
    except KeyError:
        known = ", ".join(sorted(_conversations)) or "none"
        raise DurableRegistrationError(
            f"no conversation named {name!r} is defined in this worker (defined: {known}); "
            "import the module that calls define_conversation in DURABLE_AGENT_MODULES"
        ) from None


def conversation_run(
    conversation: Conversation, seed: str, *, headers: Mapping[str, str] | None = None
) -> ConversationRun:
    """The input of a run of ``conversation``, from a caller's inbound ``headers``.

    Only the headers the policy propagates are kept. The inbound forwarding
    headers place the run: its calls go one hop deeper than the inbound depth
    (refused beyond ``DEFAULT_MAX_DEPTH``), under the inbound turn as parent.
    """
    inbound = {k.lower(): v for k, v in (headers or {}).items()}
    names = conversation.policy.forward_headers
    depth = read_depth(inbound, names) + 1
    if depth > DEFAULT_MAX_DEPTH:
        raise ValueError(
            f"conversation {conversation.name!r} was called at hop depth {depth - 1} "
            f"({names.depth}); calls beyond depth {DEFAULT_MAX_DEPTH} are refused"
        )
    wanted = {h.lower() for h in conversation.policy.propagated_headers}
    return ConversationRun(
        conversation=conversation.name,
        seed=seed,
        depth=depth,
        parent_turn=inbound.get(names.turn_id),
        headers={k: v for k, v in sorted(inbound.items()) if k in wanted},
    )


def conversation_call(
    conversation: Conversation, seed: str, abort_on: str | None
) -> tuple[str, str]:
    """The step intent and input fingerprint of ``ctx.conversation``; checks ``abort_on``."""
    if abort_on is not None:
        check_name(abort_on, what="abort_on event key")
    fingerprint = canonical_hash({"conversation": conversation.name, "seed": seed})
    return f"conversation:{conversation.name}", fingerprint
