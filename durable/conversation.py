"""Multi-agent conversations: participants taking turns under a policy.

A ``Conversation`` is defined once, in code, with ``define_conversation`` and
registered by name, like an agent, so every worker and every replay finds the
same participants, turn order and halt predicate. Any agent runs one with
``await ctx.conversation(conversation, seed=...)``; callers outside an agent
use ``durable_agents.agents.conversation.run_conversation``. Either way it is a child run of
the agent ``CONVERSATION_AGENT`` (``agents/conversation.py``), whose turns are
steps of kind ``llm``. ``ConversationDriver`` holds every rule: who speaks
next, when to halt, how a participant's circuit breaker counts failures. This
module does no I/O.
"""

from __future__ import annotations

from ._call_policy import (
    FORWARD_HEADERS,
    REFERENCE_FORWARD_HEADERS,
    AuthMode,
    Backoff,
    CallPolicy,
    ForwardHeaderNames,
    RetryPredicate,
    forward_headers,
    network_errors,
    read_depth,
    transient_errors,
)
from ._conversation_definition import (
    AuthSource,
    Conversation,
    ConversationPolicy,
    DriveState,
    HaltContext,
    HaltPredicate,
    HaltSignal,
    Participant,
    conversation_call,
    conversation_definition,
    conversation_run,
    define_conversation,
)
from ._conversation_driver import (
    Breaker,
    ConversationDriver,
    nested_failure,
    nested_text,
    slugify_speaker,
    turn_id,
    turn_messages,
)
from ._conversation_records import (
    ABORT_EVENT,
    CONVERSATION_AGENT,
    DEFAULT_MAX_DEPTH,
    TURN_STEP,
    BreakerState,
    ConversationEvent,
    ConversationEvents,
    ConversationResult,
    ConversationRun,
    ConversationState,
    ConversationTurn,
    HaltReason,
    TurnUsage,
)

__all__ = [
    "ABORT_EVENT",
    "CONVERSATION_AGENT",
    "DEFAULT_MAX_DEPTH",
    "FORWARD_HEADERS",
    "REFERENCE_FORWARD_HEADERS",
    "TURN_STEP",
    "AuthMode",
    "AuthSource",
    "Backoff",
    "Breaker",
    "BreakerState",
    "CallPolicy",
    "Conversation",
    "ConversationDriver",
    "ConversationEvent",
    "ConversationEvents",
    "ConversationPolicy",
    "ConversationResult",
    "ConversationRun",
    "ConversationState",
    "ConversationTurn",
    "DriveState",
    "ForwardHeaderNames",
    "HaltContext",
    "HaltPredicate",
    "HaltReason",
    "HaltSignal",
    "Participant",
    "RetryPredicate",
    "TurnUsage",
    "conversation_call",
    "conversation_definition",
    "conversation_run",
    "define_conversation",
    "forward_headers",
    "nested_failure",
    "nested_text",
    "network_errors",
    "read_depth",
    "slugify_speaker",
    "transient_errors",
    "turn_id",
    "turn_messages",
]
