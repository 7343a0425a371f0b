"""The one settings object: defaults, every variable, every refusal, precedence, secrets,
the README's table, and a worker that stops at start on a bad setting."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from durable_agents.adapters.settings import (
    EnvGroup,
    ModelsSettings,
    ServerSettings,
    Settings,
    SettingsError,
    StorageSettings,
    TemporalSettings,
    WorkerSettings,
    current,
    env_name,
    in_use,
    read,
)

ROOT = Path(__file__).resolve().parents[1]
MODELS = '{"fast": {"base_url": "http://localhost:8000/v1", "model": "qwen"}}'
TOKEN = "a-token-of-twenty-chars"


def _fields() -> dict[str, tuple[type[EnvGroup], str]]:
    """Every variable the settings read: its group and field."""
    found = {}
    for group_field in Settings.model_fields.values():
        group = group_field.annotation
        assert isinstance(group, type)
        assert issubclass(group, BaseSettings)
        prefix = group.model_config.get("env_prefix") or ""
        for name, field in group.model_fields.items():
            if not field.exclude:  # excluded: set by code, not read from the environment
                found[env_name(field, name, prefix=prefix)] = (group, name)
    return found


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})

    assert settings.temporal.embedded
    assert settings.temporal.target == "127.0.0.1:7233"
    assert settings.temporal.namespace == "default"
    assert not settings.temporal.uses_tls
    assert settings.temporal.ui_link("r") == "http://localhost:8233/namespaces/default/workflows/r"
    assert settings.worker.task_queue == "durable-agents"
    assert settings.worker.agent_modules == ("durable_agents.examples.refund",)
    assert settings.worker.lease == timedelta(seconds=30)
    assert settings.worker.worker_limits() == {}
    assert settings.worker.retention is None
    # Paths resolve against the working directory, never the installed package.
    assert settings.storage.data == tmp_path / "data"
    assert settings.storage.local_store == tmp_path / "data" / "durable.db"
    assert settings.storage.blob_root == tmp_path / "data" / "blobs"
    assert settings.models.models == {}
    assert settings.models.default_model == "scripted"
    assert settings.forwarding.authorization is None
    assert settings.server.host == "127.0.0.1"
    assert settings.server.open


EVERY_VARIABLE: dict[str, tuple[str, str, Any]] = {
    # variable: (value, attribute path, expected)
    "TEMPORAL_ADDRESS": ("temporal.internal:7233", "temporal.target", "temporal.internal:7233"),
    "TEMPORAL_NAMESPACE": ("agents", "temporal.namespace", "agents"),
    "TEMPORAL_API_KEY": ("k-123", "temporal.api_key", SecretStr("k-123")),
    "TEMPORAL_TLS": ("true", "temporal.uses_tls", True),
    "TEMPORAL_TLS_SERVER_CA_CERT_DATA": ("PEM", "temporal.tls_server_ca_cert_data", "PEM"),
    "TEMPORAL_TLS_SERVER_NAME": ("t.example", "temporal.tls_server_name", "t.example"),
    "TEMPORAL_DEV_PORT": ("7300", "temporal.target", "127.0.0.1:7300"),
    "TEMPORAL_UI_PORT": ("8300", "temporal.ui_port", 8300),
    "TASK_QUEUE": ("refunds", "worker.task_queue", "refunds"),
    "DURABLE_AGENT_MODULES": ("a.b, c", "worker.agent_modules", ("a.b", "c")),
    "DURABLE_LEASE_SECONDS": ("4.5", "worker.lease", timedelta(seconds=4.5)),
    "DURABLE_WORKER_DRAIN_SECONDS": ("90", "worker.drain", timedelta(seconds=90)),
    "DURABLE_MAX_CONCURRENT_RUNS": ("8", "worker.max_concurrent_runs", 8),
    "DURABLE_MAX_RECOVERY_ATTEMPTS": ("0", "worker.max_recovery_attempts", 0),
    "DURABLE_MAX_WORKFLOW_TASKS": ("20", "worker.max_workflow_tasks", 20),
    "DURABLE_MAX_ACTIVITIES": ("50", "worker.max_activities", 50),
    "DURABLE_MAX_LOCAL_ACTIVITIES": ("5", "worker.max_local_activities", 5),
    "DURABLE_RETENTION": ("30d", "worker.retention", timedelta(days=30)),
    "DURABLE_DATA": ("/srv/durable", "storage.blob_root", Path("/srv/durable/blobs")),
    "DURABLE_STORE": ("/tmp/x.db", "storage.local_store", Path("/tmp/x.db")),
    "DURABLE_BLOBS": ("/srv/blobs", "storage.blob_root", Path("/srv/blobs")),
    "DURABLE_MODELS": (MODELS, "models.models.fast.model", "qwen"),
    "DURABLE_FORWARDED_AUTHORIZATION": (
        "Bearer u",
        "forwarding.authorization",
        SecretStr("Bearer u"),
    ),
    "DURABLE_API_HOST": ("::1", "server.host", "::1"),
    "DURABLE_API_PORT": ("9000", "server.port", 9000),
    "DURABLE_API_TOKENS": (f" {TOKEN} ,, ", "server.tokens", (SecretStr(TOKEN),)),
    "DURABLE_API_MAX_BODY_BYTES": ("65536", "server.max_body_bytes", 65536),
    "DURABLE_API_MAX_DEPTH": ("2", "server.max_depth", 2),
    "OTEL_EXPORTER_OTLP_ENDPOINT": (
        "http://127.0.0.1:4318",
        "telemetry.otlp_endpoint",
        "http://127.0.0.1:4318",
    ),
    "OTEL_EXPORTER_OTLP_PROTOCOL": ("grpc", "telemetry.otlp_protocol", "grpc"),
    "OTEL_TRACES_EXPORTER": ("console", "telemetry.traces_exporter", "console"),
    "OTEL_METRICS_EXPORTER": ("none", "telemetry.metrics_exporter", "none"),
    "OTEL_SERVICE_NAME": ("refunds", "telemetry.service_name", "refunds"),
    "DURABLE_TRACE_CONTENT": ("true", "telemetry.trace_content", True),
    "DURABLE_METRICS_ADDRESS": ("127.0.0.1:9464", "telemetry.metrics_address", "127.0.0.1:9464"),
    "DURABLE_TEMPORAL_METRICS_ADDRESS": (
        "127.0.0.1:9465",
        "telemetry.temporal_metrics_address",
        "127.0.0.1:9465",
    ),
    "DURABLE_EXPORT_QUEUE_SIZE": ("64", "telemetry.export_queue_size", 64),
}
"""Every variable but those that need a file or a partner (tested below)."""
NEEDS_MORE = {
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_CERT_DATA",
    "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "TEMPORAL_TLS_CLIENT_KEY_DATA",
    "TEMPORAL_CONFIG_FILE",
    "TEMPORAL_PROFILE",
    "DURABLE_DEFAULT_MODEL",
}


def _get(settings: Any, path: str) -> Any:
    for part in path.split("."):
        settings = settings[part] if isinstance(settings, dict) else getattr(settings, part)
    return settings


def test_every_variable_is_tested() -> None:
    assert set(EVERY_VARIABLE) | NEEDS_MORE == set(_fields())


@pytest.mark.parametrize(("name", "case"), EVERY_VARIABLE.items(), ids=list(EVERY_VARIABLE))
def test_each_variable(name: str, case: tuple[str, str, Any]) -> None:
    value, path, expected = case
    assert _get(Settings.from_env({name: value}), path) == expected


def test_an_empty_variable_is_unset() -> None:
    assert Settings.from_env({"TEMPORAL_ADDRESS": "", "TASK_QUEUE": ""}) == Settings.from_env({})


def test_file_variables_and_pairs(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem"))
    for path in (ca, cert, key):
        path.write_text("PEM")
    temporal = TemporalSettings.from_env(
        {
            "TEMPORAL_ADDRESS": "ns.acct.tmprl.cloud:7233",
            "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(ca),
            "TEMPORAL_TLS_CLIENT_CERT_PATH": str(cert),
            "TEMPORAL_TLS_CLIENT_KEY_PATH": str(key),
        }
    )
    assert temporal.uses_tls
    assert temporal.describe() == "ns.acct.tmprl.cloud:7233 (TLS, client certificate)"
    tls = temporal.client_profile().tls
    assert tls is not None
    assert (tls.server_root_ca_cert, tls.client_cert, tls.client_private_key) == (ca, cert, key)
    inline = TemporalSettings.from_env(
        {"TEMPORAL_TLS_CLIENT_CERT_DATA": "CERT", "TEMPORAL_TLS_CLIENT_KEY_DATA": "KEY"}
    )
    tls = inline.client_profile().tls
    assert tls is not None
    assert (tls.client_cert, tls.client_private_key) == (b"CERT", b"KEY")
    models = ModelsSettings.from_env({"DURABLE_MODELS": MODELS, "DURABLE_DEFAULT_MODEL": "fast"})
    assert models.default_model == "fast"


REFUSALS = [
    ("TEMPORAL_DEV_PORT", "70000", "TEMPORAL_DEV_PORT must be a port number from 1 to 65535"),
    ("TEMPORAL_UI_PORT", "eighty", "TEMPORAL_UI_PORT must be a whole number, got 'eighty'"),
    ("TEMPORAL_NAMESPACE", " ", "TEMPORAL_NAMESPACE must not be empty"),
    ("TEMPORAL_TLS", "maybe", "TEMPORAL_TLS must be true or false"),
    ("TEMPORAL_TLS_SERVER_CA_CERT_PATH", "/no/ca.pem", "must name an existing file, got '/no/"),
    ("TEMPORAL_TLS_CLIENT_CERT_PATH", "/no/c.pem", "name a PEM file that exists"),
    ("TEMPORAL_TLS_CLIENT_CERT_DATA", "CERT", "needs both a client certificate and its key"),
    ("TEMPORAL_TLS_CLIENT_KEY_DATA", "KEY", "TEMPORAL_TLS_CLIENT_KEY_PATH together"),
    ("TEMPORAL_CONFIG_FILE", "/no/temporal.toml", "TEMPORAL_CONFIG_FILE must name an existing"),
    ("TASK_QUEUE", " ", "TASK_QUEUE must not be empty"),
    ("DURABLE_AGENT_MODULES", " , ", "name at least one module"),
    ("DURABLE_LEASE_SECONDS", "soon", "DURABLE_LEASE_SECONDS must be a number of seconds"),
    ("DURABLE_LEASE_SECONDS", "0", "positive number of seconds"),
    ("DURABLE_WORKER_DRAIN_SECONDS", "a while", "must be a number of seconds, got 'a while'"),
    ("DURABLE_WORKER_DRAIN_SECONDS", "-5", "must be 0 or more seconds, got -5; 0 stops"),
    ("DURABLE_MAX_CONCURRENT_RUNS", "0", "DURABLE_MAX_CONCURRENT_RUNS must be at least 1"),
    ("DURABLE_MAX_ACTIVITIES", "many", "DURABLE_MAX_ACTIVITIES must be a whole number"),
    ("DURABLE_MAX_WORKFLOW_TASKS", "0", "unset it for the default"),
    ("DURABLE_MAX_LOCAL_ACTIVITIES", "-3", "must be at least 1, got -3"),
    ("DURABLE_MAX_RECOVERY_ATTEMPTS", "-1", "must be 0 or more, got -1"),
    ("DURABLE_MAX_RECOVERY_ATTEMPTS", "few", "must be a whole number"),
    ("DURABLE_RETENTION", "30", "DURABLE_RETENTION must be a duration such as 30d"),
    ("DURABLE_MODELS", "not json", r"DURABLE_MODELS must be a JSON object .* e\.g\."),
    ("DURABLE_MODELS", '{"fast": {"model": "m"}}', "DURABLE_MODELS must be a JSON object"),
    ("DURABLE_MODELS", '["fast"]', "DURABLE_MODELS must be a JSON object"),
    ("DURABLE_DEFAULT_MODEL", "gpt", "DURABLE_DEFAULT_MODEL names 'gpt', which DURABLE_MODELS"),
    ("DURABLE_API_PORT", "http", "DURABLE_API_PORT must be a whole number"),
    ("DURABLE_API_PORT", "0", "from 1 to 65535"),
    ("DURABLE_API_HOST", " ", "DURABLE_API_HOST must not be empty"),
    ("DURABLE_API_MAX_BODY_BYTES", "10", "at least 1024"),
    ("DURABLE_API_MAX_DEPTH", "0", "DURABLE_API_MAX_DEPTH must be at least 1"),
    ("DURABLE_API_TOKENS", "short", "at least 16 characters"),
]


@pytest.mark.parametrize(("name", "value", "said"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_every_refusal_names_the_variable_and_the_fix(name: str, value: str, said: str) -> None:
    with pytest.raises(SettingsError, match=said):
        Settings.from_env({name: value})


def test_bad_paths_are_refused(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(SettingsError, match=r"DURABLE_DATA=.*file is a file, not a directory"):
        Settings.from_env({"DURABLE_DATA": str(a_file)})
    with pytest.raises(SettingsError, match=r"DURABLE_BLOBS=.* is a file, not a directory"):
        Settings.from_env({"DURABLE_BLOBS": str(a_file)})
    with pytest.raises(SettingsError, match=r"DURABLE_STORE=.* is a directory; name the database"):
        Settings.from_env({"DURABLE_STORE": str(tmp_path)})


def test_every_bad_variable_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"TEMPORAL_DEV_PORT": "x", "DURABLE_MODELS": "[", "TASK_QUEUE": " "})
    lines = str(caught.value).splitlines()
    assert len(lines) == 3
    assert [line.split()[0] for line in lines] == [
        "TEMPORAL_DEV_PORT",
        "TASK_QUEUE",
        "DURABLE_MODELS",
    ]


def test_constructing_a_group_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASK_QUEUE", "from-the-environment")
    monkeypatch.setenv("DURABLE_API_PORT", "9999")
    assert WorkerSettings().task_queue == "durable-agents"
    assert WorkerSettings(task_queue="given").task_queue == "given"
    assert ServerSettings().port == 8470
    assert WorkerSettings.from_env().task_queue == "from-the-environment"
    with pytest.raises(SettingsError, match="DURABLE_RETENTION must be a positive duration"):
        WorkerSettings(retention=timedelta(0))


def test_precedence_environment_over_profile_file_over_defaults(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("PEM")
    config = tmp_path / "temporal.toml"
    config.write_text(
        '[profile.default]\naddress = "file.example:7233"\nnamespace = "from-file"\n'
        '[profile.cloud]\naddress = "ns.acct.tmprl.cloud:7233"\nnamespace = "ns.acct"\n'
        'api_key = "file-key"\n'
        f'[profile.cloud.tls]\nserver_name = "cloud.example"\nserver_ca_cert_path = "{ca}"\n'
    )
    file_only = TemporalSettings.from_env({"TEMPORAL_CONFIG_FILE": str(config)})
    assert (file_only.target, file_only.namespace) == ("file.example:7233", "from-file")
    assert not file_only.embedded  # a profile naming a server: no embedded server

    env_wins = TemporalSettings.from_env(
        {"TEMPORAL_CONFIG_FILE": str(config), "TEMPORAL_NAMESPACE": "from-env"}
    )
    assert (env_wins.target, env_wins.namespace) == ("file.example:7233", "from-env")

    cloud = TemporalSettings.from_env(
        {"TEMPORAL_CONFIG_FILE": str(config), "TEMPORAL_PROFILE": "cloud"}
    )
    assert cloud.namespace == "ns.acct"
    assert cloud.api_key == SecretStr("file-key")
    assert cloud.tls_server_name == "cloud.example"
    assert cloud.tls_server_ca_cert_path == ca
    assert cloud.uses_tls
    assert "file-key" not in repr(cloud)
    connect = cloud.client_profile().to_client_connect_config()
    assert connect["api_key"] == "file-key"
    assert connect["target_host"] == "ns.acct.tmprl.cloud:7233"

    with pytest.raises(SettingsError, match=r"TEMPORAL_PROFILE=nowhere.*fix the file or the"):
        TemporalSettings.from_env(
            {"TEMPORAL_CONFIG_FILE": str(config), "TEMPORAL_PROFILE": "nowhere"}
        )
    config.write_text("[profile.default]\naddres = 'typo:7233'\n")
    with pytest.raises(SettingsError, match="cannot use TEMPORAL_CONFIG_FILE="):
        TemporalSettings.from_env({"TEMPORAL_CONFIG_FILE": str(config)})


SECRETS = {
    "TEMPORAL_API_KEY": "api-key-secret-value",
    "TEMPORAL_TLS_CLIENT_CERT_DATA": "CERT",
    "TEMPORAL_TLS_CLIENT_KEY_DATA": "private-key-secret-value",
    "DURABLE_API_TOKENS": "token-secret-value-0001",
    "DURABLE_FORWARDED_AUTHORIZATION": "Bearer forwarded-secret-value",
}


def test_secrets_never_show_in_a_repr_or_an_error() -> None:
    settings = Settings.from_env(SECRETS)
    shown = f"{settings!r} {settings} {settings.model_dump()} {settings.temporal.describe()}"
    for name, secret in SECRETS.items():
        if name != "TEMPORAL_TLS_CLIENT_CERT_DATA":  # a certificate is public
            assert secret.split()[-1] not in shown, name
    # A refused secret is named, never echoed.
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"DURABLE_API_TOKENS": "secret with spaces in it"})
    assert "secret with" not in str(caught.value)
    with pytest.raises(SettingsError) as caught:
        TemporalSettings(api_key=["not", "a", "string"])  # type: ignore[arg-type]
    assert "TEMPORAL_API_KEY" in str(caught.value)
    assert "not" not in str(caught.value).replace("TEMPORAL_API_KEY", "")


def test_activities_read_the_settings_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURABLE_DEFAULT_MODEL", "from-env-but-unknown")
    with pytest.raises(SettingsError):
        current(ModelsSettings)  # outside a worker: the environment, as it is now
    settings = Settings.from_env({"DURABLE_MODELS": MODELS, "DURABLE_BLOBS": "/srv/b"})
    with in_use(settings):
        assert current(ModelsSettings).models["fast"].model == "qwen"
        assert current(StorageSettings).blob_root == Path("/srv/b")
    with pytest.raises(SettingsError):
        current(ModelsSettings)


# The README's table, checked against the model.


def _readme_settings() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    table = text.split("| variable | meaning | default |\n", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines()[1:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        rows[cells[0].strip("`")] = cells[2]
    return rows


def _shown(default: Any) -> str:
    if isinstance(default, bool):
        return str(default).lower()
    if default is None or default == ():
        return "unset"
    if default == {}:
        return "none"
    if isinstance(default, tuple):
        return ",".join(default)
    if isinstance(default, timedelta):
        return f"{default.total_seconds():g}"
    return str(default)


def test_the_readme_lists_every_setting_with_its_default() -> None:
    documented = _readme_settings()
    fields = _fields()

    assert set(documented) == set(fields), "the README's table and the settings differ"
    for name, (group, field_name) in fields.items():
        field = group.model_fields[field_name]
        default = field.get_default(call_default_factory=True)
        assert _shown(default) in documented[name], (name, default, documented[name])


# The worker, as a process: a bad setting stops it at start.


def _worker(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TEMPORAL_DEV_PORT": "1", **env},
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"DURABLE_MODELS": "{not json"}, "DURABLE_MODELS must be a JSON object of model settings"),
        ({"DURABLE_MODELS": '{"gpt": "gpt-4o"}'}, 'e.g. {"gpt": {"base_url"'),
        ({"DURABLE_DATA": "{file}"}, "is a file, not a directory; name a directory"),
        (
            {"TEMPORAL_ADDRESS": "x:7233", "TEMPORAL_TLS_SERVER_CA_CERT_PATH": "/no/ca.pem"},
            "TEMPORAL_TLS_SERVER_CA_CERT_PATH must name an existing file",
        ),
    ],
    ids=["bad-json", "wrong-shape", "data-is-a-file", "missing-ca"],
)
@pytest.mark.parametrize("command", ["worker.py", "durable worker"])
def test_the_worker_stops_at_start_on_a_bad_setting(
    env: dict[str, str], said: str, command: str, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("")
    env = {k: v.replace("{file}", str(tmp_path / "file")) for k, v in env.items()}
    args = (
        (str(ROOT / "worker.py"),)
        if command == "worker.py"
        else ("-m", "durable_agents.cli", "worker")
    )
    out = _worker(*args, env=env, cwd=tmp_path)
    assert out.returncode != 0
    assert said in out.stderr
    assert "Traceback" not in out.stderr
    # Stopped before anything started: no dev server, no data directory.
    assert not (tmp_path / "data").exists()


class _PlainGroup(BaseSettings):
    """A group written with pydantic-settings' own conventions, as another package's may be."""

    model_config = SettingsConfigDict(env_prefix="DURABLE_", extra="ignore")

    trace_level: int = 0
    endpoint: str | None = Field(default=None, validation_alias=AliasChoices("OTEL_X", "endpoint"))


def test_any_pydantic_settings_group_reads_only_the_given_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DURABLE_TRACE_LEVEL", "9")
    group = read(_PlainGroup, {"DURABLE_TRACE_LEVEL": "2", "OTEL_X": "http://collector"})
    assert (group.trace_level, group.endpoint) == (2, "http://collector")
    assert read(_PlainGroup, {}).trace_level == 0
    with pytest.raises(SettingsError, match="DURABLE_TRACE_LEVEL must be a whole number"):
        read(_PlainGroup, {"DURABLE_TRACE_LEVEL": "high"})


def test_telemetry_reads_only_its_own_variables() -> None:
    # Generic names a container may set for other reasons are not the OTEL_* ones.
    stray = {"SERVICE_NAME": "web", "TRACES_EXPORTER": "console", "OTLP_ENDPOINT": "http://x:1"}
    assert Settings.from_env(stray).telemetry == Settings.from_env({}).telemetry
