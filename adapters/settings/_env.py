"""How a settings group is read: from one environment mapping, once, with messages that say
which variable is wrong and how to fix it.

Each group is a pydantic-settings model whose fields are named, through their
``validation_alias``, exactly as the environment variables are. Constructing a
group directly never reads the environment (tests and embedders pass values);
``from_env`` reads a mapping, ``os.environ`` by default, and nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar, Self, TypeVar

from pydantic import AliasChoices, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

__all__ = ["EnvGroup", "SettingsError", "env_name", "read"]


class SettingsError(ValueError):
    """A setting the environment gives is unusable; the message names each variable and the fix."""


class _MappingSource(EnvSettingsSource):
    """The environment source over a given mapping instead of the process's environment."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._given = env
        super().__init__(settings_cls, env_ignore_empty=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._given, bool(self.case_sensitive), True, None)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        # A field left out of the settings' dumps is set by code, never by the environment.
        if field.exclude:
            return None, field_name, False
        return super().get_field_value(field, field_name)


def env_name(field: FieldInfo, name: str, *, prefix: str = "") -> str:
    """The environment variable a field is read from: its alias (the first of several), else
    ``prefix`` and its name in capitals."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return alias if isinstance(alias, str) else f"{prefix}{name}".upper()


_PHRASES = {
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "bool_parsing": "must be true or false",
    "path_not_file": "must name an existing file",
    "path_type": "must name a file",
}


class EnvGroup(BaseSettings):
    """A group of settings read from environment variables named by each field's alias."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="ignore",
        case_sensitive=True,
        env_ignore_empty=True,
        populate_by_name=True,
        validate_default=True,
    )

    fixes: ClassVar[Mapping[str, str]] = {}
    """Per variable, what to do when its value is refused for its type."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only what the caller passes: the environment is read by ``from_env`` alone.
        return (init_settings,)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """This group as ``env`` (the process's environment by default) sets it."""
        return read(cls, env)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(describe(type(self), exc)) from None


S = TypeVar("S", bound=BaseSettings)


def read(group: type[S], env: Mapping[str, str] | None = None) -> S:
    """Any pydantic-settings model as ``env`` (the process's environment by default) sets it,
    reading nothing else; an unusable value raises ``SettingsError`` naming its variable."""
    source = _MappingSource(group, os.environ if env is None else env)
    try:
        return group(_build_sources=((source,), {}))
    except ValidationError as exc:
        raise SettingsError(describe(group, exc)) from None


def describe(group: type[BaseSettings], exc: ValidationError) -> str:
    """One line per refused variable: its name, what it must be, what it was (never a secret)."""
    lines = []
    for error in exc.errors():
        field_name = str(error["loc"][0]) if error["loc"] else ""
        field = group.model_fields.get(field_name)
        if field is None:  # loc is the alias when the value came from the environment
            field_name, field = next(
                ((n, f) for n, f in group.model_fields.items() if env_name(f, n) == field_name),
                (field_name, None),
            )
        prefix = group.model_config.get("env_prefix") or ""
        name = env_name(field, field_name, prefix=prefix) if field is not None else field_name
        if error["type"] == "value_error":
            # Our own validators' messages already name the variable and the fix.
            lines.append(str(error["ctx"]["error"]))
            continue
        secret = field is not None and _is_secret(field)
        phrase = _PHRASES.get(error["type"], error["msg"].lower())
        shown = "" if secret else f", got {error['input']!r}"
        fix = getattr(group, "fixes", {}).get(name, "unset it for the default")
        lines.append(f"{name} {phrase}{shown}; {fix}")
    return "\n".join(lines)


def _is_secret(field: FieldInfo) -> bool:
    return "SecretStr" in repr(field.annotation) or field.annotation is SecretStr
