"""``DurableAgentsPlugin``: everything a Temporal client and worker need to host agents."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
from collections.abc import Iterable

from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import DataConverter, DefaultPayloadConverter
from temporalio.plugin import SimplePlugin
from temporalio.worker import ReplayerConfig, WorkerConfig, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError

import durable_agents.agents.chat
import durable_agents.agents.conversation  # noqa: F401  (the conversation agent and its turn step)
from durable_agents.activities.checkpoints import get_checkpoint, put_checkpoint
from durable_agents.activities.events import send_event
from durable_agents.activities.steps import run_step
from durable_agents.adapters.telemetry import tracing_interceptors
from durable_agents.adapters.temporal import workflow_runner
from durable_agents.workflows.agent import AgentWorkflow

__all__ = ["DurableAgentsPlugin", "import_agent_modules"]

PLUGIN_NAME = "durable_agents.DurableAgentsPlugin"


class DurableAgentsPlugin(SimplePlugin):
    """Hosts every registered agent and step next to a worker's own workflows.

    On a client (``Client.connect(..., plugins=[...])``) it sets the pydantic
    data converter, and every worker made from that client gets the rest; on a
    ``Worker(..., plugins=[...])`` alone the client must already convert with
    pydantic. The worker gets the agent workflow, the step, event and checkpoint
    activities, a sandbox that passes this project's workflow-side modules
    through, the tracing interceptor (``durable_agents.adapters.telemetry``), and
    ``NondeterminismError`` as a workflow failure (the caller sees it as a
    divergence instead of a task retried forever).

    ``agent_modules`` are imported here, so their ``@agent`` and ``@step``
    functions are registered before the worker starts.
    """

    def __init__(self, agent_modules: Iterable[str] = ()) -> None:
        self.agent_modules = tuple(agent_modules)
        import_agent_modules(self.agent_modules)
        super().__init__(
            PLUGIN_NAME,
            data_converter=_pydantic_converter,
            workflows=[AgentWorkflow],
            activities=[run_step, send_event, put_checkpoint, get_checkpoint],
            workflow_runner=self._sandbox,
            workflow_failure_exception_types=[NondeterminismError],
            # Trace context from clients into runs, and from runs into steps and children;
            # spans are made only in a process that ran configure_telemetry.
            interceptors=tracing_interceptors(),
        )

    def configure_worker(self, config: WorkerConfig) -> WorkerConfig:
        converter = config["client"].data_converter
        if not _converts_with_pydantic(converter):
            kind = converter.payload_converter_class.__name__
            raise ValueError(
                "DurableAgentsPlugin: the worker's client does not use the pydantic data "
                f"converter (its payload converter is {kind}), so agent inputs and step results "
                "would not round-trip. Pass the plugin to "
                "Client.connect(..., plugins=[DurableAgentsPlugin(...)]) instead of only to the "
                "Worker, or connect with data_converter=temporalio.contrib.pydantic."
                "pydantic_data_converter"
            )
        return super().configure_worker(config)

    def configure_replayer(self, config: ReplayerConfig) -> ReplayerConfig:
        config = super().configure_replayer(config)
        # Replaying, a nondeterminism is the finding, raised by the replay: as a workflow
        # failure the replayer would wait for history that never comes.
        kept = [
            kind
            for kind in config.get("workflow_failure_exception_types", ())
            if kind is not NondeterminismError
        ]
        config["workflow_failure_exception_types"] = kept
        return config

    def _sandbox(self, existing: WorkflowRunner | None) -> WorkflowRunner:
        ours = workflow_runner()
        if existing is None:
            return ours
        if isinstance(existing, SandboxedWorkflowRunner):
            # Keep the worker's own restrictions; add what agents need passed through.
            passthrough = ours.restrictions.passthrough_modules
            return dataclasses.replace(
                existing,
                restrictions=existing.restrictions.with_passthrough_modules(*passthrough),
            )
        return existing  # an unsandboxed runner, chosen by the worker's owner


def import_agent_modules(modules: Iterable[str]) -> None:
    """Import the modules that define agents, so their agents and steps are registered."""
    for name in modules:
        ours = _ours_by_a_bare_name(name)
        if ours is not None:
            raise ImportError(
                f"agent module {name!r} is this project's {ours!r}: name it {ours!r} "
                "(under a bare name it would be a second copy, registering its agents twice, "
                "and an installed project has no such module)"
            )
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(
                f"cannot import agent module {name!r} ({exc}); check the module path "
                "and that it is installed where the worker runs"
            ) from exc


def _ours_by_a_bare_name(name: str) -> str | None:
    """``durable_agents.<name>`` when ``name`` is one of this package's modules named
    without it (``examples.refund``): a checkout imports it as a second copy, an
    installed project not at all. ``None`` for any other name, such as a module of
    the user's own that shares a first part with ours (``agents``)."""
    ours = f"{__package__}.{name}"
    try:
        mine = importlib.util.find_spec(ours)
    except ImportError:  # no such package of ours
        return None
    if mine is None or mine.origin is None:
        return None
    try:
        found = importlib.util.find_spec(name)
    except ImportError:  # not importable under that name: installed, ours is meant
        return ours
    if found is None:
        return ours
    same = found.origin is not None and os.path.samefile(found.origin, mine.origin)
    return ours if same else None


def _pydantic_converter(existing: DataConverter | None) -> DataConverter:
    """The pydantic converter, keeping any codec or failure converter already set."""
    if existing is None:
        return DataConverter(payload_converter_class=PydanticPayloadConverter)
    if _converts_with_pydantic(existing):
        return existing
    if existing.payload_converter_class is DefaultPayloadConverter:
        return dataclasses.replace(existing, payload_converter_class=PydanticPayloadConverter)
    raise ValueError(
        "DurableAgentsPlugin needs the pydantic payload converter, but the client sets "
        f"{existing.payload_converter_class.__name__}; subclass "
        "temporalio.contrib.pydantic.PydanticPayloadConverter for custom payloads, or leave "
        "the payload converter unset (a payload codec and failure converter are kept)"
    )


def _converts_with_pydantic(converter: DataConverter) -> bool:
    return issubclass(converter.payload_converter_class, PydanticPayloadConverter)
