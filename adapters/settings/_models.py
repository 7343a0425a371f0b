"""The models a worker may call, and the authorization its conversations forward."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import (
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import NoDecode

from durable_agents.adapters.llm import ModelSettings

from ._env import EnvGroup

__all__ = ["MODELS_EXAMPLE", "SCRIPTED", "ForwardingSettings", "ModelsSettings", "parse_models"]

SCRIPTED = "scripted"
"""The offline model: answers from the prompt itself, for demos without an endpoint."""
MODELS_EXAMPLE = (
    '{"gpt": {"base_url": "https://api.openai.com/v1", "model": "gpt-4o-mini", '
    '"api_key_env": "OPENAI_API_KEY"}}'
)
_CATALOG: TypeAdapter[dict[str, ModelSettings]] = TypeAdapter(dict[str, ModelSettings])


def parse_models(raw: str | None) -> dict[str, ModelSettings]:
    """``DURABLE_MODELS``: a JSON object of model settings by name."""
    if not raw:
        return {}
    try:
        return _CATALOG.validate_python(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        raise ValueError(
            f"DURABLE_MODELS must be a JSON object of model settings, e.g. {MODELS_EXAMPLE}; "
            f"it failed with {exc}"
        ) from None


class ModelsSettings(EnvGroup):
    """The models a worker may call; their API keys stay in variables named by ``api_key_env``."""

    models: Annotated[dict[str, ModelSettings], NoDecode] = Field(
        default_factory=dict, validation_alias="DURABLE_MODELS"
    )
    """The models a worker may call, as JSON; none: only ``scripted``."""
    default_model: str = Field(default=SCRIPTED, validation_alias="DURABLE_DEFAULT_MODEL")
    """What ``model="default"`` means on this worker."""

    @field_validator("models", mode="before")
    @classmethod
    def _json(cls, value: Any) -> Any:
        return parse_models(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _default_is_known(self) -> ModelsSettings:
        if self.default_model != SCRIPTED and self.default_model not in self.models:
            known = ", ".join(sorted([*self.models, SCRIPTED]))
            raise ValueError(
                f"DURABLE_DEFAULT_MODEL names {self.default_model!r}, which DURABLE_MODELS does "
                f"not define (known: {known}); add it to DURABLE_MODELS or name a known model"
            )
        return self


class ForwardingSettings(EnvGroup):
    """What a conversation participant with ``auth_source="forward-user"`` sends on."""

    authorization: SecretStr | None = Field(
        default=None, validation_alias="DURABLE_FORWARDED_AUTHORIZATION"
    )
    """The ``Authorization`` value forwarded to such participants' endpoints; unset: none."""
