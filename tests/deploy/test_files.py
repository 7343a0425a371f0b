"""The deploy files name only what exists: entry points of the wheel, variables of the
settings model, services, volumes, ConfigMaps and Secrets of their own; and a worker's
grace period outlasts its drain and its longest step.

No Docker daemon or cluster is needed: the files are parsed, and the settings they set
are read by the settings model itself.
"""

from __future__ import annotations

import fnmatch
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from durable_agents.adapters.settings import Settings, WorkerSettings
from durable_agents.cli._parser import parser
from tests.deploy.files import (
    COMPOSE,
    DEPLOY,
    DOCKERFILE,
    IMAGE,
    K8S,
    ROOT,
    RUNTIME,
    compose,
    console_scripts,
    containers,
    copies,
    depends_on,
    dockerfile,
    env_instructions,
    environment,
    interpolated,
    interpolated_names,
    k8s_objects,
    key_variables,
    longest_step_timeout,
    of_kind,
    ours,
    pod_spec,
    settings_variables,
    wheel_contents,
    wheel_sources,
    workloads,
)

KNOWN = Settings
TOKEN = "a-token-of-twenty-chars"
REGISTER = "/opt/durable/deploy/register_search_attributes.py"


def _image_paths() -> dict[str, Path]:
    """Files the final image holds from the repository, by their path in the image."""
    steps = dockerfile()
    last = max(s.stage for s in steps)
    found = {}
    for instruction, sources, dest in copies(steps):
        if instruction.stage == last:
            for source in sources:
                found[dest] = ROOT / source
    return found


def check_command(argv: list[str]) -> None:
    """``argv`` starts an entry point the image has: a console script with arguments its
    parser takes, ``python -m`` a module of the wheel, or ``python`` a file copied in."""
    assert argv, "an empty command"
    program, *args = argv
    if program in console_scripts():
        assert console_scripts()[program] == "durable_agents.cli:main"
        parser().parse_args(args)  # exits (status 2) on arguments `durable` does not take
        return
    assert program == "python", f"{argv}: not a console script of pyproject nor python"
    if args[:1] == ["-m"]:
        assert args[1].split(".")[0] in wheel_contents(), argv
        assert importlib.util.find_spec(args[1]) is not None, argv
        return
    copied = _image_paths()
    assert args[0] in copied, f"{args[0]} is not copied into the image"
    assert copied[args[0]].is_file(), copied[args[0]]


def check_variables(names: set[str], env: dict[str, str], where: str) -> None:
    unknown = names - settings_variables() - key_variables(env) - RUNTIME
    assert not unknown, f"{where} sets variables no setting reads: {sorted(unknown)}"


def Settings_variables() -> frozenset[str]:
    from tests.deploy.files import settings_variables

    return settings_variables()


# The Dockerfile.


def test_the_dockerfile_builds_the_wheel_in_one_stage_and_runs_it_as_no_root_in_another() -> None:
    steps = dockerfile()
    froms = [s for s in steps if s.keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage: build the wheel apart from the final image"
    for base in froms:
        image = base.words()[0].replace("${PYTHON_VERSION}", _python_version(steps))
        assert image.startswith("python:3."), image
        assert image.endswith("-slim"), image
        assert int(image.split(":")[1].split(".")[1].split("-")[0]) >= 11, image
    last = max(s.stage for s in steps)
    final = [s for s in steps if s.stage == last]
    runs = " ".join(s.args for s in final if s.keyword == "RUN")
    assert "durable-agents[postgres]" in runs
    assert "dev" not in runs.replace("/dev/", ""), "no dev dependencies in the image"
    users = [s.args for s in final if s.keyword == "USER"]
    assert users, "the final stage sets a USER"
    assert users[-1].split(":")[0] not in ("0", "root"), users
    assert [s for s in final if s.keyword == "VOLUME"], "the data directory is a volume"
    volume = next(s for s in final if s.keyword == "VOLUME").exec_form()
    assert env_instructions(final)["DURABLE_DATA"] in volume


def _python_version(steps: list[Any]) -> str:
    arg = next(s for s in steps if s.keyword == "ARG" and s.args.startswith("PYTHON_VERSION="))
    return str(arg.args.split("=", 1)[1])


def test_the_dockerfile_copies_what_the_wheel_includes_and_nothing_ignored() -> None:
    steps = dockerfile()
    copied = {source for _, sources, _ in copies(steps) for source in sources}
    for part in wheel_sources():
        covered = part in copied or any(part.startswith(f"{folder}/") for folder in copied)
        assert covered, f"the build stage must copy {part} (the wheel is built from it)"
    assert {"pyproject.toml", "README.md"} <= copied  # hatchling reads both
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source in copied:
        assert (ROOT / source).exists(), source
        hits = [p for p in ignored if fnmatch.fnmatch(source, p) or source.startswith(p + "/")]
        assert not hits, f"{source} is copied but .dockerignore leaves it out ({hits})"
    for heavy in (".git", ".venv", "tests", "data"):
        assert heavy in ignored, heavy


def test_the_dockerfile_commands_name_entry_points_that_exist() -> None:
    steps = dockerfile()
    commands = [s for s in steps if s.keyword in ("CMD", "ENTRYPOINT")]
    assert commands, "a default command"
    last = max(s.stage for s in steps)
    assert not [s for s in commands if s.keyword == "ENTRYPOINT"], "CMD alone: easy to replace"
    default = [s for s in commands if s.stage == last][-1].exec_form()
    assert default == ["durable", "worker"], "the default command is the Temporal worker"
    check_command(default)
    # The alternatives the Dockerfile documents for `docker run IMAGE ...`.
    documented = [
        line.split(f"{IMAGE} ", 1)[1].split("#")[0].split()
        for line in DOCKERFILE.read_text().splitlines()
        if line.startswith("#") and "docker run ..." in line and f"{IMAGE} " in line
    ]
    assert len(documented) >= 4, documented
    assert [] in documented  # the default command
    for argv in documented:
        check_command(argv or default)
    assert ["durable", "serve", "--host", "0.0.0.0"] in documented
    assert ["durable", "worker", "--local"] in documented


def test_the_dockerfile_sets_only_settings_variables() -> None:
    env = env_instructions(dockerfile())
    check_variables(set(env), env, "the Dockerfile")
    Settings.from_env({k: v for k, v in env.items() if k not in RUNTIME})


def test_a_command_that_does_not_exist_is_refused() -> None:
    with pytest.raises(SystemExit):
        check_command(["durable", "wroker"])
    with pytest.raises(AssertionError, match="not a console script"):
        check_command(["durable-worker"])
    with pytest.raises(AssertionError):
        check_command(["python", "-m", "tests"])
    with pytest.raises(AssertionError, match="not copied into the image"):
        check_command(["python", "/opt/durable/deploy/nothing.py"])
    with pytest.raises(AssertionError, match="no setting reads"):
        check_variables({"DURABLE_WORKER_DRAIN"}, {}, "a file")


# Compose.


def _service_env(service: dict[str, Any]) -> dict[str, str]:
    """What the service's process sees, with the shell giving only the required token."""
    return {
        k: interpolated(v, {"DURABLE_API_TOKENS": TOKEN}) for k, v in environment(service).items()
    }


def test_compose_services_name_each_other_and_their_volumes() -> None:
    spec = compose()
    services: dict[str, Any] = spec["services"]
    volumes = set(spec.get("volumes") or {})
    for name, service in services.items():
        for other, condition in depends_on(service).items():
            assert other in services, f"{name} depends on {other}, which is no service"
            if condition == "service_healthy":
                assert "healthcheck" in services[other], f"{other} needs a healthcheck"
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in volumes, f"{name} mounts {source}, a volume not declared"
        for key, value in environment(service).items():
            if key in ("TEMPORAL_ADDRESS", "POSTGRES_SEEDS"):
                host = value.rsplit(":", 1)[0] if ":" in value else value
                assert host in services, f"{name}: {key}={value} names no service"
        check = service.get("healthcheck", {}).get("test", [])
        if "--address" in check:
            host = check[check.index("--address") + 1].rsplit(":", 1)[0]
            assert host in services, f"{name}'s healthcheck asks {host}, no service"
        build = service.get("build")
        if build:
            context = (COMPOSE.parent / build["context"]).resolve()
            assert context == ROOT
            assert (context / build["dockerfile"]).resolve() == DOCKERFILE


def test_compose_registers_the_search_attributes_before_any_worker_starts() -> None:
    services: dict[str, Any] = compose()["services"]
    register = services["register-search-attributes"]
    assert register["command"] == ["python", REGISTER]
    check_command(register["command"])
    assert depends_on(register) == {"temporal": "service_healthy"}
    assert register["restart"] == "on-failure"  # until the namespace auto-setup makes exists
    for name in ("worker", "api"):
        waits = depends_on(services[name])
        assert waits.get("register-search-attributes") == "service_completed_successfully"
    assert services["temporal"]["image"].startswith("temporalio/auto-setup:")
    assert environment(services["temporal"])["DB"] == "postgres12"
    assert depends_on(services["temporal"]) == {"postgresql": "service_healthy"}
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")


def test_compose_gives_our_services_only_settings_and_commands_that_exist() -> None:
    services: dict[str, Any] = compose()["services"]
    built = {name: s for name, s in services.items() if ours(s)}
    assert set(built) == {"register-search-attributes", "worker", "api"}
    for name, service in built.items():
        env = _service_env(service)
        check_variables(set(env), env, f"compose service {name}")
        for value in environment(service).values():
            check_variables(set(interpolated_names(value)), env, f"{name}'s interpolation")
        Settings.from_env(env)  # every value is one the settings take
        check_command(service["command"])
    api = built["api"]
    assert api["command"][:2] == ["durable", "serve"]
    assert "/health" in " ".join(api["healthcheck"]["test"])
    with pytest.raises(KeyError, match="DURABLE_API_TOKENS must be set"):
        interpolated(environment(api)["DURABLE_API_TOKENS"], {})


def _seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return float(duration[:-1]) * units[duration[-1]] if duration[-1] in units else float(duration)


def test_compose_stops_the_worker_only_after_its_drain() -> None:
    worker = compose()["services"]["worker"]
    drain = WorkerSettings.from_env(_service_env(worker)).drain.total_seconds()
    grace = _seconds(worker["stop_grace_period"])
    modules = _service_env(worker)["DURABLE_AGENT_MODULES"]
    assert grace > drain, (grace, drain)
    assert drain > longest_step_timeout(modules)


# Kubernetes.


def test_kustomization_lists_every_file_but_the_secret() -> None:
    import yaml

    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == files - {"secret.yaml"}
    assert "PLACEHOLDER" in (K8S / "secret.yaml").read_text()


def test_k8s_references_name_configmaps_and_secrets_and_keys_that_exist() -> None:
    objects = k8s_objects()
    maps, secrets = of_kind(objects, "ConfigMap"), of_kind(objects, "Secret")
    for name, workload in workloads(objects).items():
        for container in containers(workload):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in maps, name
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, name
            for var in container.get("env", []):
                ref = var.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    key = ref["configMapKeyRef"]
                    assert key["key"] in maps[key["name"]]["data"], (name, var)
                if "secretKeyRef" in ref:
                    key = ref["secretKeyRef"]
                    assert key["key"] in secrets[key["name"]]["stringData"], (name, var)
        for volume in pod_spec(workload).get("volumes", []):
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert claim in of_kind(objects, "PersistentVolumeClaim"), claim


def _container_env(objects: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """What the container sees: its ConfigMaps, its own values, and its Secrets' keys (as a
    valid stand-in value)."""
    maps = of_kind(objects, "ConfigMap")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(maps[source["configMapRef"]["name"]]["data"])
    for var in container.get("env", []):
        ref = var.get("valueFrom", {})
        if "configMapKeyRef" in ref:
            env[var["name"]] = maps[ref["configMapKeyRef"]["name"]]["data"][
                ref["configMapKeyRef"]["key"]
            ]
        elif "secretKeyRef" in ref:
            env[var["name"]] = TOKEN
        else:
            env[var["name"]] = str(var["value"])
    return env


def test_k8s_sets_only_settings_and_runs_commands_that_exist() -> None:
    objects = k8s_objects()
    for name, workload in workloads(objects).items():
        for container in containers(workload):
            env = _container_env(objects, container)
            check_variables(set(env), env, f"{name}/{container['name']}")
            Settings.from_env(env)
            check_command(container["command"])
            assert container["image"] == IMAGE, "kustomization's images: sets the tag"
    for name, secret in of_kind(objects, "Secret").items():
        data = secret["stringData"]
        config = next(iter(of_kind(objects, "ConfigMap").values()))["data"]
        check_variables(set(data), config, f"Secret {name}")
        assert all(value == "" for value in data.values()), "placeholders only: no real keys"


def test_k8s_pods_run_as_no_root() -> None:
    for name, workload in workloads(k8s_objects()).items():
        pod = pod_spec(workload)["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] != 0, name
        for container in containers(workload):
            own = container["securityContext"]
            assert own["allowPrivilegeEscalation"] is False, name
            assert own["capabilities"]["drop"] == ["ALL"], name


def test_the_worker_outlives_its_drain_and_its_longest_step() -> None:
    objects = k8s_objects()
    worker = of_kind(objects, "Deployment")["durable-worker"]
    (container,) = containers(worker)
    env = _container_env(objects, container)
    drain = WorkerSettings.from_env(env).drain.total_seconds()
    grace = pod_spec(worker)["terminationGracePeriodSeconds"]
    longest = longest_step_timeout(env["DURABLE_AGENT_MODULES"])
    assert grace > drain, f"terminationGracePeriodSeconds {grace} must exceed the drain {drain}"
    assert grace > longest, f"terminationGracePeriodSeconds {grace} <= a step's timeout {longest}"
    assert drain > longest, f"the drain {drain} s would cut short a step of {longest} s"
    assert container["command"] == ["durable", "worker"]
    strategy = worker["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0  # the queue keeps a poller during a rollout


def test_the_api_is_probed_and_served() -> None:
    objects = k8s_objects()
    api = of_kind(objects, "Deployment")["durable-api"]
    (container,) = containers(api)
    assert container["command"] == ["durable", "serve"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    env = _container_env(objects, container)
    served = Settings.from_env(env).server
    assert served.refusal() is None  # listens on 0.0.0.0 with the Secret's tokens
    assert any(p["containerPort"] == served.port for p in container["ports"])
    service = of_kind(objects, "Service")["durable-api"]
    labels = api["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_the_job_registers_the_search_attributes() -> None:
    job = of_kind(k8s_objects(), "Job")["durable-register-search-attributes"]
    (container,) = containers(job)
    assert container["command"] == ["python", REGISTER]
    assert pod_spec(job)["restartPolicy"] in ("OnFailure", "Never")
    assert (DEPLOY / "register_search_attributes.py").is_file()


# systemd.


def test_the_systemd_unit_waits_for_the_drain() -> None:
    unit = (DEPLOY / "durable-worker.service").read_text().splitlines()
    env = dict(
        line.removeprefix("Environment=").split("=", 1)
        for line in unit
        if line.startswith("Environment=")
    )
    check_variables(set(env), env, "durable-worker.service")
    drain = WorkerSettings.from_env(env).drain.total_seconds()
    stop = next(line.split("=", 1)[1] for line in unit if line.startswith("TimeoutStopSec="))
    assert float(stop) > drain, "systemd would kill the worker (SIGKILL) while it drains"
    start = next(line.split("=", 1)[1] for line in unit if line.startswith("ExecStart="))
    assert start.split()[1:] == ["worker.py", "--local"]
