"""The deploy files, parsed: the Dockerfile's instructions, compose's services, the k8s
objects; and what the project defines that they must name: settings, entry points."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import BaseSettings

from durable_agents.adapters.settings import Settings, env_name

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
IMAGE = "durable-agents"
"""The image's name in compose (``durable-agents:local``) and in the k8s files."""

RUNTIME = frozenset({"PATH", "VIRTUAL_ENV", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"})
"""The interpreter's and the shell's own variables, which the Dockerfile sets for every
process; no setting of the project."""


def settings_variables() -> frozenset[str]:
    """Every variable the settings model reads (``TEMPORAL_*`` and ``OTEL_*`` included)."""
    found = set()
    for group_field in Settings.model_fields.values():
        group = group_field.annotation
        assert isinstance(group, type)
        assert issubclass(group, BaseSettings)
        prefix = group.model_config.get("env_prefix") or ""
        for name, field in group.model_fields.items():
            if not field.exclude:  # set by code, never read from the environment
                found.add(env_name(field, name, prefix=prefix))
    return frozenset(found)


def key_variables(env: Mapping[str, str]) -> frozenset[str]:
    """The variables the models of ``env``'s ``DURABLE_MODELS`` read their keys from."""
    settings = Settings.from_env({k: v for k, v in env.items() if k == "DURABLE_MODELS"})
    return frozenset(m.api_key_env for m in settings.models.models.values() if m.api_key_env)


def pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def console_scripts() -> dict[str, str]:
    scripts: dict[str, str] = pyproject()["project"]["scripts"]
    return scripts


def _wheel() -> dict[str, Any]:
    wheel: dict[str, Any] = pyproject()["tool"]["hatch"]["build"]["targets"]["wheel"]
    return wheel


def wheel_sources() -> list[str]:
    """What the wheel is built from: ``only-include``."""
    sources: list[str] = _wheel()["only-include"]
    return sources


def wheel_contents() -> set[str]:
    """The top-level names the wheel installs: its sources where ``sources`` puts them."""
    moved: dict[str, str] = _wheel().get("sources", {})
    return {moved.get(path, path).split("/")[0] for path in wheel_sources()}


def longest_step_timeout(modules: str) -> float:
    """Seconds: the longest timeout of a step registered once ``modules`` (comma-separated,
    as ``DURABLE_AGENT_MODULES``) and the worker's own activities are imported, read in a
    process of its own (this one's registry holds every test's steps)."""
    code = (
        "import durable_agents.activities.llm; from durable_agents import worker;"
        f"worker.import_agents(tuple({modules!r}.split(',')));"
        "from durable import registered_steps;"
        "print(max(s.options.timeout.total_seconds() for s in registered_steps().values()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return float(done.stdout)


# The Dockerfile.


@dataclass(frozen=True)
class Instruction:
    stage: int
    """0 for the first ``FROM``'s stage, and so on."""
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        """The JSON array of a ``CMD``/``ENTRYPOINT``; the shell form is refused."""
        assert self.args.startswith("["), f"{self.keyword} {self.args}: use the exec form"
        argv = json.loads(self.args)
        assert isinstance(argv, list)
        assert all(isinstance(a, str) for a in argv)
        return argv

    def words(self) -> list[str]:
        return shlex.split(self.args)


def dockerfile(path: Path = DOCKERFILE) -> list[Instruction]:
    """The instructions, continuation lines joined, comments and blank lines left out."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        keyword, _, args = whole.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(stage, keyword, args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def env_instructions(instructions: list[Instruction]) -> dict[str, str]:
    """Every ``ENV`` the Dockerfile sets (``KEY=value`` pairs)."""
    found = {}
    for instruction in instructions:
        if instruction.keyword == "ENV":
            for word in instruction.words():
                key, eq, value = word.partition("=")
                assert eq, f"ENV {instruction.args}: write KEY=value"
                found[key] = value
    return found


def copies(instructions: list[Instruction]) -> Iterator[tuple[Instruction, list[str], str]]:
    """Each ``COPY`` from the build context: its sources and its destination."""
    for instruction in instructions:
        if instruction.keyword != "COPY":
            continue
        words = instruction.words()
        if any(w.startswith("--from") for w in words):
            continue
        paths = [w for w in words if not w.startswith("--")]
        yield instruction, paths[:-1], paths[-1]


# Compose.

_INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def interpolated(value: str, given: Mapping[str, str]) -> str:
    """``value`` as compose reads it with ``given`` as the shell's variables."""

    def replace(match: re.Match[str]) -> str:
        name, how, default = match.group(1), match.group(2), match.group(3)
        if name in given and (given[name] or how not in (":-", ":?")):
            return given[name]
        if how and how.endswith("?"):
            raise KeyError(f"{name} must be set: {default}")
        return default or ""

    return _INTERPOLATION.sub(replace, value)


def interpolated_names(value: str) -> list[str]:
    return [m.group(1) for m in _INTERPOLATION.finditer(value)]


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping (compose allows a list of ``KEY=value`` too)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def ours(service: Mapping[str, Any]) -> bool:
    """Built from the project's Dockerfile."""
    return "build" in service or str(service.get("image", "")).startswith(f"{IMAGE}:")


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    """Each service this one waits for, with the condition (``service_started`` if none)."""
    given = service.get("depends_on") or {}
    if isinstance(given, list):
        return dict.fromkeys(given, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in given.items()}


# Kubernetes.


def k8s_objects() -> list[dict[str, Any]]:
    """Every object of every ``*.yaml`` in ``deploy/k8s`` but the kustomization."""
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                doc["__file__"] = path.name
                found.append(doc)
    return found


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_spec(workload: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def workloads(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {**of_kind(objects, "Deployment"), **of_kind(objects, "Job")}
