"""Validation of the names that cross the boundary: run ids, event keys, step intents."""

from __future__ import annotations

import unicodedata

__all__ = ["MAX_NAME_LENGTH", "check_name"]

MAX_NAME_LENGTH = 255
"""Longest run id, event key or intent accepted; Temporal ids fit well within its limits."""


def check_name(value: object, *, what: str) -> str:
    """Return ``value`` if it is a usable name, else raise ``ValueError`` saying how to fix it.

    A name is a non-empty string of at most ``MAX_NAME_LENGTH`` characters with
    no control characters, so it prints, logs and stores the same everywhere.
    """
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must not be empty; pass a readable name such as 'order-1001'")
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(
            f"{what} is {len(value)} characters long; keep it to {MAX_NAME_LENGTH} "
            "and put long data in the payload or input instead"
        )
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise ValueError(
                f"{what} {value!r} contains the control character {char!r}; "
                "remove it (names are printed in logs and the UI)"
            )
    return value
