"""The HTTP server's settings: one typed model, read once at start from the environment."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass

from durable.conversation import DEFAULT_MAX_DEPTH

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


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """How ``durable serve`` listens and what it accepts; see ``from_env`` for the names."""

    host: str = "127.0.0.1"
    """``DURABLE_API_HOST``: the address to listen on; loopback by default."""
    port: int = 8470
    """``DURABLE_API_PORT``: the port to listen on."""
    tokens: tuple[str, ...] = ()
    """``DURABLE_API_TOKENS``: comma-separated bearer tokens, any of which is accepted.
    With none, the server answers without authentication, and only on a loopback
    host for requests naming a loopback host (so no other machine, and no web page
    through a rebound DNS name, reaches it); it refuses to listen anywhere else."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """``DURABLE_API_MAX_BODY_BYTES``: the largest request body; larger ones get 413."""
    max_depth: int = DEFAULT_MAX_DEPTH
    """``DURABLE_API_MAX_DEPTH``: calls that arrive this many forwarding hops deep
    (``x-durable-forwarded-depth``) or deeper are refused with 413."""
    temporal_ui: str | None = None
    """The Temporal UI's workflows page, set by whoever builds the server for a Temporal
    client; the web view links each run there. Not read from the environment."""

    def __post_init__(self) -> None:
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
            if len(token) < 16 or any(c.isspace() for c in token):
                raise ValueError(
                    "every DURABLE_API_TOKENS entry must be at least 16 characters with no "
                    "spaces; generate one with `python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))'`"
                )

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

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ServerSettings:
        defaults = cls()
        tokens = env.get("DURABLE_API_TOKENS") or ""
        return cls(
            host=env.get("DURABLE_API_HOST") or defaults.host,
            port=_whole(env, "DURABLE_API_PORT", defaults.port),
            tokens=tuple(t.strip() for t in tokens.split(",") if t.strip()),
            max_body_bytes=_whole(env, "DURABLE_API_MAX_BODY_BYTES", defaults.max_body_bytes),
            max_depth=_whole(env, "DURABLE_API_MAX_DEPTH", defaults.max_depth),
        )


def _whole(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
