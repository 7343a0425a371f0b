"""Where the Temporal server is and how to reach it: ``temporalio.envconfig``'s variables and
profile file, plus the embedded dev server's ports.

Precedence, as ``temporalio.envconfig`` defines it: an environment variable over the profile
file (``TEMPORAL_CONFIG_FILE``, else the standard location, profile ``TEMPORAL_PROFILE``, else
``default``) over the defaults. With no address from either, the worker starts the embedded
dev server.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from temporalio.envconfig import ClientConfigProfile, ClientConfigTLS, DataSource

from ._env import EnvGroup, SettingsError

__all__ = ["TemporalSettings"]

DEFAULT_NAMESPACE = "default"


class TemporalSettings(EnvGroup):
    """The Temporal connection (``TEMPORAL_*``), read once at start."""

    address: str | None = Field(default=None, validation_alias="TEMPORAL_ADDRESS")
    """host:port of a Temporal server (``namespace.account.tmprl.cloud:7233`` on Temporal
    Cloud); unset, with no profile naming one, starts the embedded dev server."""
    namespace: str = Field(default=DEFAULT_NAMESPACE, validation_alias="TEMPORAL_NAMESPACE")
    """The namespace runs live in."""
    api_key: SecretStr | None = Field(default=None, validation_alias="TEMPORAL_API_KEY")
    """An API key sent as ``authorization: Bearer <key>``; implies TLS unless TEMPORAL_TLS=false."""
    tls: bool | None = Field(default=None, validation_alias="TEMPORAL_TLS")
    """``true`` connects over TLS, ``false`` never; unset: TLS when any TLS setting or an API
    key is given."""
    tls_client_cert_path: FilePath | None = Field(
        default=None, validation_alias="TEMPORAL_TLS_CLIENT_CERT_PATH"
    )
    """The client certificate (PEM) for mTLS."""
    tls_client_cert_data: str | None = Field(
        default=None, validation_alias="TEMPORAL_TLS_CLIENT_CERT_DATA"
    )
    """The client certificate's PEM text, instead of a path."""
    tls_client_key_path: FilePath | None = Field(
        default=None, validation_alias="TEMPORAL_TLS_CLIENT_KEY_PATH"
    )
    """The client certificate's private key (PEM) for mTLS."""
    tls_client_key_data: SecretStr | None = Field(
        default=None, validation_alias="TEMPORAL_TLS_CLIENT_KEY_DATA"
    )
    """The private key's PEM text, instead of a path."""
    tls_server_ca_cert_path: FilePath | None = Field(
        default=None, validation_alias="TEMPORAL_TLS_SERVER_CA_CERT_PATH"
    )
    """The CA that signed the server's certificate; unset trusts the system's roots."""
    tls_server_ca_cert_data: str | None = Field(
        default=None, validation_alias="TEMPORAL_TLS_SERVER_CA_CERT_DATA"
    )
    """The CA's PEM text, instead of a path."""
    tls_server_name: str | None = Field(default=None, validation_alias="TEMPORAL_TLS_SERVER_NAME")
    """The name the server's certificate must carry, when it is not the address's host."""
    profile: str | None = Field(default=None, validation_alias="TEMPORAL_PROFILE")
    """The profile of the configuration file to use; unset: ``default``."""
    config_file: FilePath | None = Field(default=None, validation_alias="TEMPORAL_CONFIG_FILE")
    """A TOML file of ``[profile.NAME]`` connection settings; unset: the standard location
    (``~/.config/temporalio/temporal.toml``), if that file exists."""
    dev_port: int = Field(default=7233, validation_alias="TEMPORAL_DEV_PORT")
    """gRPC port of the embedded dev server."""
    ui_port: int = Field(default=8233, validation_alias="TEMPORAL_UI_PORT")
    """Web UI port of the embedded dev server."""

    fixes: ClassVar[Mapping[str, str]] = {
        **{
            f"TEMPORAL_TLS_{what}_PATH": "name a PEM file that exists and this user can read"
            for what in ("CLIENT_CERT", "CLIENT_KEY", "SERVER_CA_CERT")
        },
        "TEMPORAL_CONFIG_FILE": "name a TOML file of [profile.NAME] tables, or unset it",
    }

    @model_validator(mode="before")
    @classmethod
    def _from_profile_file(cls, data: Any) -> Any:
        """Fill what the environment leaves unset from the profile file, as envconfig does."""
        if not isinstance(data, dict):
            return data
        values = {_name(cls, key): value for key, value in data.items()}
        config_file = values.get("config_file")
        try:
            loaded = ClientConfigProfile.load(
                profile=values.get("profile"),
                config_source=Path(config_file) if config_file else None,
                disable_env=True,
                config_file_strict=True,
            )
        except Exception as exc:  # the loader's own error types are not public
            where = f"TEMPORAL_CONFIG_FILE={config_file}" if config_file else "the profile file"
            raise SettingsError(
                f"cannot use {where} with TEMPORAL_PROFILE={values.get('profile') or 'default'}: "
                f"{exc}; fix the file or the profile name, or unset them"
            ) from None
        from_file: dict[str, Any] = {
            "address": loaded.address,
            "namespace": loaded.namespace,
            "api_key": loaded.api_key,
        }
        if loaded.tls is not None:
            from_file.update(_tls_fields(loaded.tls))
        for name, value in from_file.items():
            if value is not None and values.get(name) is None:
                values[name] = value
        return values

    @field_validator("dev_port", "ui_port")
    @classmethod
    def _port(cls, port: int, info: Any) -> int:
        if not 0 < port < 65536:
            name = "TEMPORAL_DEV_PORT" if info.field_name == "dev_port" else "TEMPORAL_UI_PORT"
            raise ValueError(f"{name} must be a port number from 1 to 65535, got {port}")
        return port

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, namespace: str) -> str:
        if not namespace.strip():
            raise ValueError("TEMPORAL_NAMESPACE must not be empty; unset it for `default`")
        return namespace

    @model_validator(mode="after")
    def _pairs(self) -> TemporalSettings:
        cert = self.tls_client_cert_path or self.tls_client_cert_data
        key = self.tls_client_key_path or self.tls_client_key_data
        if bool(cert) != bool(key):
            raise ValueError(
                "mTLS needs both a client certificate and its key: set "
                "TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH together"
            )
        for what, path, data in (
            ("CLIENT_CERT", self.tls_client_cert_path, self.tls_client_cert_data),
            ("CLIENT_KEY", self.tls_client_key_path, self.tls_client_key_data),
            ("SERVER_CA_CERT", self.tls_server_ca_cert_path, self.tls_server_ca_cert_data),
        ):
            if path is not None and data is not None:
                raise ValueError(
                    f"TEMPORAL_TLS_{what}_PATH and TEMPORAL_TLS_{what}_DATA are both set; "
                    "set only one"
                )
        return self

    @property
    def embedded(self) -> bool:
        """No server is named: the worker starts the embedded dev server on ``dev_port``."""
        return self.address is None

    @property
    def target(self) -> str:
        """The address a client connects to: the configured one, else the embedded server's."""
        return self.address or f"127.0.0.1:{self.dev_port}"

    def ui_link(self, run_id: str | None = None) -> str | None:
        """The UI page of a run on the embedded server (``None`` for other servers)."""
        if not self.embedded:
            return None
        base = f"http://localhost:{self.ui_port}/namespaces/{self.namespace}/workflows"
        return base if run_id is None else f"{base}/{run_id}"

    def client_profile(self) -> ClientConfigProfile:
        """These settings as the envconfig profile a client is made from (holds the secrets)."""
        tls: ClientConfigTLS | None = None
        material = (
            self.tls_client_cert_path,
            self.tls_client_cert_data,
            self.tls_client_key_path,
            self.tls_client_key_data,
            self.tls_server_ca_cert_path,
            self.tls_server_ca_cert_data,
            self.tls_server_name,
        )
        if self.tls is not None or any(v is not None for v in material):
            tls = ClientConfigTLS(
                disabled=None if self.tls is None else not self.tls,
                server_name=self.tls_server_name,
                server_root_ca_cert=_source(
                    self.tls_server_ca_cert_path, self.tls_server_ca_cert_data
                ),
                client_cert=_source(self.tls_client_cert_path, self.tls_client_cert_data),
                client_private_key=_source(
                    self.tls_client_key_path,
                    None if self.tls_client_key_data is None
                    else self.tls_client_key_data.get_secret_value(),
                ),
            )  # fmt: skip
        return ClientConfigProfile(
            address=self.target,
            namespace=self.namespace,
            api_key=None if self.api_key is None else self.api_key.get_secret_value(),
            tls=tls,
        )

    @property
    def uses_tls(self) -> bool:
        """Whether a client connects over TLS (``TEMPORAL_TLS``, else any TLS setting or a key)."""
        if self.tls is not None:
            return self.tls
        profile = self.client_profile()
        return profile.tls is not None or profile.api_key is not None

    def describe(self) -> str:
        """How a client connects, for messages: the address, TLS, and whether a key is sent."""
        how = ["TLS"] if self.uses_tls else []
        if self.tls_client_cert_path or self.tls_client_cert_data:
            how.append("client certificate")
        if self.api_key is not None:
            how.append("API key")
        return self.target + (f" ({', '.join(how)})" if how else "")


def _name(group: type[EnvGroup], key: str) -> str:
    for name, field in group.model_fields.items():
        if key in (name, field.validation_alias):
            return name
    return key


def _source(path: Path | None, data: str | None) -> DataSource | None:
    if path is not None:
        return path
    return None if data is None else data.encode()


def _tls_fields(tls: ClientConfigTLS) -> dict[str, Any]:
    fields: dict[str, Any] = {"tls_server_name": tls.server_name}
    if tls.disabled is not None:
        fields["tls"] = not tls.disabled
    for stem, source in (
        ("tls_client_cert", tls.client_cert),
        ("tls_client_key", tls.client_private_key),
        ("tls_server_ca_cert", tls.server_root_ca_cert),
    ):
        if isinstance(source, Path):
            fields[f"{stem}_path"] = source
        elif source is not None:
            fields[f"{stem}_data"] = source.decode() if isinstance(source, bytes) else source
    return fields
