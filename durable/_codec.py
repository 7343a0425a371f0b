"""Typed JSON round trips: what a step returns is recorded as JSON and restored to its type."""

from __future__ import annotations

import json
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from ._errors import DurableResultNotSerializableError

__all__ = ["JsonCodec", "dumps"]

T = TypeVar("T")


def dumps(value: Any) -> str:
    """Compact JSON text; refuses NaN and infinities rather than writing invalid JSON."""
    return json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))


class JsonCodec(Generic[T]):
    """Converts values of one annotated type to JSON values and back."""

    __slots__ = ("_adapter", "annotation")

    def __init__(self, annotation: Any) -> None:
        self.annotation = annotation
        self._adapter: TypeAdapter[T] = TypeAdapter(annotation)

    def encode(self, value: T, *, what: str) -> Any:
        """The JSON value recorded for ``value``; raises if it has no JSON form."""
        try:
            data = self._adapter.dump_python(value, mode="json")
            dumps(data)
        except (PydanticSerializationError, ValueError, TypeError) as exc:
            raise DurableResultNotSerializableError(
                f"{what} returned a value of type {type(value).__name__} that cannot be recorded "
                "as JSON "
                f"({exc}); return JSON-compatible data or a pydantic model, and annotate "
                "the return type so replay can restore it"
            ) from None
        return data

    def validate(self, data: Any) -> T:
        """Validate a JSON value as the annotated type; raises pydantic's ``ValidationError``."""
        return self._adapter.validate_python(data)

    def decode(self, data: Any, *, what: str) -> T:
        """Restore a recorded JSON value to the annotated type."""
        try:
            return self._adapter.validate_python(data)
        except ValidationError as exc:
            raise DurableResultNotSerializableError(
                f"the recorded value of {what} no longer matches its annotation "
                f"{self.annotation!r}: {exc.errors(include_url=False)}; the type changed "
                "after the value was recorded, so keep the old type or start a new run"
            ) from None

    def round_trip(self, value: T, *, what: str) -> tuple[Any, T]:
        """Encode and decode, so a fresh run sees exactly what a replay will see."""
        data = self.encode(value, what=what)
        return data, self.decode(data, what=what)
