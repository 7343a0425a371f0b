"""Typed JSON round trips: what a step returns is recorded as JSON and restored to its type."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from ._errors import (
    DurableEventPayloadError,
    DurableNonCanonicalValueError,
    DurablePayloadTooLargeError,
    DurableResultNotSerializableError,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_PAYLOAD_BYTES",
    "JsonCodec",
    "check_arguments",
    "check_size",
    "dumps",
    "event_payload",
]

T = TypeVar("T")

MAX_PAYLOAD_BYTES = 1024 * 1024
"""The most UTF-8 bytes of JSON a step result, event payload, run input or run result may take.

Temporal refuses a payload over 2 MB by default and then retries the step that
produced it without end; one limit below that, checked before anything is
recorded, makes every substrate accept and refuse exactly the same values.
Pass larger data by reference (a file or object store key) instead."""


def check_size(text: str, *, what: str) -> None:
    """Refuse JSON text over ``MAX_PAYLOAD_BYTES`` with an error that names the limit."""
    if len(text) * 4 <= MAX_PAYLOAD_BYTES:
        return  # no string of this many characters can exceed the limit in UTF-8
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_PAYLOAD_BYTES:
        raise DurablePayloadTooLargeError(
            f"{what} is {size:,} bytes of JSON, over the limit of {MAX_PAYLOAD_BYTES:,} bytes "
            "that every substrate keeps; store large data elsewhere (a file, an object store) "
            "and pass its key or path instead"
        )


MAX_DEPTH = 100
"""The deepest nesting of containers a recorded value may have.

JSON parsers stop somewhere (Python's at its recursion limit, pydantic-core's at
200 levels), and a store must read back every value it wrote; one limit,
checked before anything is recorded, keeps a deeply nested value from ending as
a ``RecursionError`` somewhere between the caller and the store."""


class _TooDeep(Exception):
    pass


def _too_deep(what: str) -> DurablePayloadTooLargeError:
    return DurablePayloadTooLargeError(
        f"{what} nests containers more than {MAX_DEPTH} levels deep, over the limit every "
        "substrate keeps; flatten the data (a list of records rather than a chain of nested "
        "ones) or store it elsewhere and pass its key"
    )


def _non_finite(
    value: Any, path: str, above: frozenset[int] = frozenset()
) -> tuple[str, float] | None:
    """The path and value of the first NaN or infinity inside ``value``, if any.

    Checked on the value itself, because pydantic writes NaN as ``null`` in JSON
    mode, which would record a different value than the one the code holds. A
    container that holds itself is left to the serializer, which refuses it.
    Raises ``_TooDeep`` past ``MAX_DEPTH`` levels of containers.
    """
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, value)
    if isinstance(value, str | int | bytes | type(None)) or id(value) in above:
        return None
    items: Iterable[tuple[str, Any]]
    if isinstance(value, Mapping):
        items = ((f"{path}.{key}", item) for key, item in value.items())
    elif isinstance(value, list | tuple | set | frozenset):
        items = ((f"{path}[{i}]", item) for i, item in enumerate(value))
    elif isinstance(value, BaseModel):
        items = ((f"{path}.{key}", item) for key, item in vars(value).items())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        items = (
            (f"{path}.{field.name}", getattr(value, field.name))
            for field in dataclasses.fields(value)
        )
    else:
        return None
    if len(above) >= MAX_DEPTH:
        raise _TooDeep
    above = above | {id(value)}
    for where, item in items:
        found = _non_finite(item, where, above)
        if found is not None:
            return found
    return None


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
        """The JSON value recorded for ``value``; raises if it has no JSON form.

        NaN and infinities raise ``DurableNonCanonicalValueError``, JSON over
        ``MAX_PAYLOAD_BYTES`` raises ``DurablePayloadTooLargeError``, anything
        else without a JSON form ``DurableResultNotSerializableError``.
        """
        try:
            found = _non_finite(value, "$")
        except _TooDeep:
            raise _too_deep(what) from None
        if found is not None:
            raise DurableNonCanonicalValueError(
                f"{what} holds {found[1]} at {found[0]}; canonical JSON has no NaN or "
                "infinity, so use None or a string for a missing or unbounded number"
            )
        try:
            data = self._adapter.dump_python(value, mode="json")
            text = dumps(data)
        except (PydanticSerializationError, ValueError, TypeError) as exc:
            raise DurableResultNotSerializableError(
                f"{what} returned a value of type {type(value).__name__} that cannot be recorded "
                "as JSON "
                f"({exc}); return JSON-compatible data or a pydantic model, and annotate "
                "the return type so replay can restore it"
            ) from None
        check_size(text, what=what)
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
                f"{self.annotation!r}: {exc.errors(include_url=False, include_input=False)}; "
                "the type changed after the value was recorded, so keep the old type or start "
                "a new run"
            ) from None

    def round_trip(self, value: T, *, what: str) -> tuple[Any, T]:
        """Encode and decode, so a fresh run sees exactly what a replay will see."""
        data = self.encode(value, what=what)
        return data, self.decode(data, what=what)


_ANY: JsonCodec[Any] = JsonCodec(Any)


def event_payload(payload: Any, *, what: str) -> Any:
    """The JSON value an event carries, checked the same way on every substrate.

    Pydantic models become their JSON form; NaN and infinities raise
    ``DurableNonCanonicalValueError`` and oversized payloads
    ``DurablePayloadTooLargeError``, before the event reaches any run.
    """
    try:
        return _ANY.encode(payload, what=f"{what} payload")
    except DurableResultNotSerializableError:
        raise DurableEventPayloadError(
            f"{what} payload of type {type(payload).__name__} is not JSON; send dicts, lists, "
            "strings, numbers, booleans, None or pydantic models"
        ) from None


def check_arguments(args: Sequence[Any], *, what: str) -> None:
    """Refuse step arguments over ``MAX_PAYLOAD_BYTES`` or holding NaN or infinities.

    On Temporal the arguments are the activity's input, recorded in history: too
    large, the run could never schedule the step and would retry its workflow task
    forever; non-finite, they would arrive as ``null``. Checked on every substrate,
    before the step takes a position, so all of them refuse the same calls.
    """
    if _plainly_fine(args):
        return
    try:
        found = _non_finite(list(args), "$")
    except _TooDeep:
        raise _too_deep(f"the arguments of {what}") from None
    if found is not None:
        raise DurableNonCanonicalValueError(
            f"the arguments of {what} hold {found[1]} at {found[0]}; canonical JSON has no "
            "NaN or infinity, so pass None or a string for a missing or unbounded number"
        )
    try:
        text = dumps(_ANY_LIST.dump_python(list(args), mode="json"))
    except (PydanticSerializationError, ValueError, TypeError):
        return  # no JSON form: left to the substrate, which reports it where it serializes
    check_size(text, what=f"the arguments of {what}")


_ANY_LIST: TypeAdapter[list[Any]] = TypeAdapter(list[Any])
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _plainly_fine(args: Sequence[Any]) -> bool:
    """True for the common case, kept cheap: a few finite numbers and short strings.

    A character takes at most 6 bytes of JSON (``\\uXXXX``), a number or literal
    less than 32.
    """
    if not all(type(arg) in _SCALARS for arg in args):
        return False
    if any(type(arg) is float and not math.isfinite(arg) for arg in args):
        return False
    text = sum(len(arg) for arg in args if type(arg) is str)
    return text * 6 + 32 * len(args) <= MAX_PAYLOAD_BYTES
