"""The workflow sandbox every agent workflow runs in, and what passes through it."""

from __future__ import annotations

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

__all__ = ["PASSTHROUGH_MODULES", "WORKFLOW_SIDE_MODULES", "workflow_runner"]

WORKFLOW_SIDE_MODULES = tuple(
    f"durable_agents.adapters.temporal.{name}"
    for name in (
        "_carry",
        "_checkpoints",
        "_children",
        "_context",
        "_convert",
        "_messages",
        "_replay",
        "_search",
    )
)
"""The safe face of ``durable_agents.adapters.temporal``: what workflow code runs,
deterministic code only.

Importing the package loads these and nothing else of it; the client, the dev
server and the process helpers stay out of workflows.
"""

PASSTHROUGH_MODULES = (
    "durable",
    "durable_agents.workflows",
    "durable_agents.activities",
    "durable_agents.adapters.blobs",
    "durable_agents.adapters.llm",
    "durable_agents.adapters.telemetry",
    "opentelemetry",
    *WORKFLOW_SIDE_MODULES,
)
"""Imported once and shared with workflows instead of re-imported for every run:

- ``durable``: the ``@agent`` / ``@step`` registries must be the worker's own;
- ``durable_agents.workflows``: the workflow module defines classes and nothing
  else at import; re-importing it for every run cost more than a step's whole
  workflow-side work;
- ``durable_agents.activities``, ``durable_agents.adapters.blobs`` and
  ``durable_agents.adapters.llm``: steps and the types they take, which agents
  name but never run inside a workflow (a step runs as an activity, outside the
  sandbox);
- ``durable_agents.adapters.telemetry`` and ``opentelemetry``: the run's spans
  are made in the workflow by the process's one replay-safe tracer provider;
- the workflow-side modules of ``durable_agents.adapters.temporal``
  (``WORKFLOW_SIDE_MODULES``).

Not ``durable_agents`` itself: that would pass the agent modules under it
(``durable_agents.examples``) through too.

Agent modules are not passed through: each run imports its agent's module inside
the sandbox, so what the agent does at run time, such as reading the clock with
``datetime.now()`` or touching files, is checked there (see ``durable_agents.workflows.agent``).
"""


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandboxed runner, passing through ``PASSTHROUGH_MODULES`` and no agent module:
    a run imports its agent's module inside the sandbox."""
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    return SandboxedWorkflowRunner(restrictions=restrictions)
