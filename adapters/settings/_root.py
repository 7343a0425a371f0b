"""The settings object: every group, read together; and the settings in use in this process."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings

from durable_agents.adapters.telemetry._settings import TelemetrySettings

from ._env import SettingsError, read
from ._models import ForwardingSettings, ModelsSettings
from ._server import ServerSettings
from ._storage import StorageSettings
from ._temporal import TemporalSettings
from ._worker import WorkerSettings

__all__ = ["Settings", "current", "in_use"]


class Settings(BaseModel):
    """Every group of settings; each field is one group, read by ``from_env``."""

    model_config = ConfigDict(frozen=True)

    temporal: TemporalSettings = Field(default_factory=TemporalSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    forwarding: ForwardingSettings = Field(default_factory=ForwardingSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Every group as ``env`` (the process's environment by default) sets it.

        Raises ``SettingsError`` naming every unusable variable, not only the first.
        """
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        problems: list[str] = []
        for name, field in cls.model_fields.items():
            group = field.annotation
            assert isinstance(group, type), name
            assert issubclass(group, BaseSettings), name
            try:
                values[name] = read(group, env)
            except SettingsError as exc:
                problems.append(str(exc))
        if problems:
            raise SettingsError("\n".join(problems))
        return cls(**values)


_in_use: Settings | None = None
G = TypeVar("G", bound=BaseSettings)


@contextlib.contextmanager
def in_use(settings: Settings) -> Iterator[Settings]:
    """Make ``settings`` what ``current()`` returns in this process until the block ends."""
    global _in_use
    before, _in_use = _in_use, settings
    try:
        yield settings
    finally:
        _in_use = before


def current(group: type[G]) -> G:
    """The ``group`` of the settings a worker put in use, else as the environment sets it now."""
    if _in_use is not None:
        for name, field in Settings.model_fields.items():
            if field.annotation is group:
                value: G = getattr(_in_use, name)
                return value
    return read(group)
