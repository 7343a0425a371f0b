"""The workflow sandbox every agent workflow runs in, and what passes through it."""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

__all__ = ["PASSTHROUGH_MODULES", "workflow_runner"]

PASSTHROUGH_MODULES = ("durable", "adapters", "workflows")
"""Imported once and shared with workflows instead of re-imported for every run:

- ``durable``: the ``@agent`` / ``@step`` registries must be the worker's own;
- ``adapters``: the workflow-side context and converters, deterministic code only;
- ``workflows``: the workflow module defines classes and nothing else at import;
  re-importing it for every run cost more than a step's whole workflow-side work.
"""


def workflow_runner(agent_modules: Sequence[str] = ()) -> SandboxedWorkflowRunner:
    """The sandboxed runner, passing through this project and the agent modules.

    Agent modules pass through so the agents registered at the worker's import
    are the ones workflows call. The sandbox still checks what workflow code
    does at run time, such as reading the clock or touching files.
    """
    restrictions = SandboxRestrictions.default.with_passthrough_modules(
        *PASSTHROUGH_MODULES, *agent_modules
    )
    return SandboxedWorkflowRunner(restrictions=restrictions)
