"""How ``durable serve`` listens and what it accepts."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from durable.conversation import DEFAULT_MAX_DEPTH

from ._env import EnvGroup

__all__ = ["DEFAULT_MAX_BODY_BYTES", "ServerSettings", "is_loopback"]

DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024
"""Two MiB: a payload at the substrates' own 1 MiB limit fits, with its JSON envelope."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine (``localhost``, 127.0.0.0/8, ::1)."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class ServerSettings(EnvGroup):
    """Where ``durable serve`` listens, its tokens and limits (``DURABLE_API_*``)."""

    host: str = Field(default="127.0.0.1", validation_alias="DURABLE_API_HOST")
    """The address to listen on; loopback by default."""
    port: int = Field(default=8470, validation_alias="DURABLE_API_PORT")
    """The port to listen on."""
    tokens: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(), validation_alias="DURABLE_API_TOKENS"
    )
    """Comma-separated bearer tokens, any of which is accepted. With none, the server
    answers without authentication, and only on a loopback host for requests naming a
    loopback host (so no other machine, and no web page through a rebound DNS name,
    reaches it); it refuses to listen anywhere else."""
    max_body_bytes: int = Field(
        default=DEFAULT_MAX_BODY_BYTES, validation_alias="DURABLE_API_MAX_BODY_BYTES"
    )
    """The largest request body; larger ones get 413."""
    max_depth: int = Field(default=DEFAULT_MAX_DEPTH, validation_alias="DURABLE_API_MAX_DEPTH")
    """Calls that arrive this many forwarding hops deep (``x-durable-forwarded-depth``) or
    deeper are refused with 413."""
    temporal_ui: str | None = Field(default=None, exclude=True)
    """The Temporal UI's workflows page, set by whoever builds the server for a Temporal
    client; the web view links each run there. Not read from the environment."""

    @field_validator("tokens", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(t.strip() for t in value.split(",") if t.strip())
        return value

    @model_validator(mode="after")
    def _check(self) -> ServerSettings:
        if not 0 < self.port < 65536:
            raise ValueError(
                f"DURABLE_API_PORT must be a port number from 1 to 65535, got {self.port}"
            )
        if not self.host.strip():
            raise ValueError("DURABLE_API_HOST must not be empty; unset it for 127.0.0.1")
        if self.max_body_bytes < 1024:
            raise ValueError(
                f"DURABLE_API_MAX_BODY_BYTES must be at least 1024, got {self.max_body_bytes}; "
                "unset it for 2 MiB"
            )
        if self.max_depth < 1:
            raise ValueError(
                f"DURABLE_API_MAX_DEPTH must be at least 1, got {self.max_depth}; "
                f"unset it for {DEFAULT_MAX_DEPTH}"
            )
        for token in self.tokens:
            value = token.get_secret_value()
            if len(value) < 16 or any(c.isspace() for c in value):
                raise ValueError(
                    "every DURABLE_API_TOKENS entry must be at least 16 characters with no "
                    "spaces; generate one with `python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))'`"
                )
        return self

    @property
    def open(self) -> bool:
        """No tokens: every request is let in (only ever on loopback)."""
        return not self.tokens

    def refusal(self) -> str | None:
        """Why these settings must not be served, or ``None`` when they may."""
        if self.open and not is_loopback(self.host):
            return (
                f"refusing to listen on {self.host} without DURABLE_API_TOKENS: anyone who "
                "reaches that address could start, decide and cancel runs. Set "
                "DURABLE_API_TOKENS to one or more comma-separated tokens, or listen on "
                "127.0.0.1"
            )
        return None
