"""Canonical JSON and the identity hashes, byte-compatible with the TypeScript reference.

The reference canonicalizes with ``JSON.stringify`` over objects whose keys were
sorted with JavaScript's default sort, so three JavaScript rules apply here:

- keys sort by UTF-16 code units, not by Unicode code points;
- integer-like keys ("0", "7", "10") are emitted first in numeric order, because
  JavaScript objects always enumerate array-index keys before other keys;
- numbers print as ``Number.prototype.toString`` prints them (``1e+21``,
  ``1e-7``, ``100000000000000000000``), and integers beyond 2**53 lose the
  precision a JavaScript number would lose.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import socket
from collections.abc import Mapping
from typing import Any

from ._errors import DurableNonCanonicalValueError

__all__ = [
    "canonical_hash",
    "canonical_json",
    "derive_worker_id",
    "js_number",
    "manifest_hash",
    "step_id",
]

_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")
_MAX_ARRAY_INDEX = 2**32 - 2
_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_SAFE_INTEGER = 2**53


def canonical_json(value: object) -> str:
    """Serialize ``value`` to canonical JSON: sorted keys, no whitespace, JS numbers.

    Accepts ``None``, ``bool``, ``int``, ``float``, ``str``, lists, tuples and
    mappings with string keys. Anything else raises
    ``DurableNonCanonicalValueError`` naming the path of the offending value.
    """
    parts: list[str] = []
    _write(value, parts, "$")
    return "".join(parts)


def canonical_hash(value: object) -> str:
    """sha256 (hex) of ``canonical_json(value)`` encoded as UTF-8."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def manifest_hash(manifest: Any) -> str:
    """The run identity hash of a ``DurableRunManifest``.

    Covers project, scenario (``null`` when absent), task id, intent, domain
    and input; tags and task metadata are deliberately left out so that
    relabelling a run does not change its identity.
    """
    task = manifest.task
    return canonical_hash(
        {
            "projectId": manifest.project_id,
            "scenarioId": manifest.scenario_id,
            "taskId": task.id,
            "taskIntent": task.intent,
            "taskDomain": task.domain,
            "input": manifest.input,
        }
    )


def step_id(run_id: str, step_index: int, intent: str) -> str:
    """Stable identifier of a step: hash of (run id, position, intent)."""
    return canonical_hash({"runId": run_id, "stepIndex": step_index, "intent": intent})


def derive_worker_id() -> str:
    """A worker id for this process: ``host:pid:random``.

    The random suffix keeps ids unique when a host and pid pair is reused,
    for example by a restarted container.
    """
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def js_number(value: int | float) -> str:
    """Format a number exactly as JavaScript's ``Number.prototype.toString``."""
    if isinstance(value, int):
        if -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER:
            return str(value)
        value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise DurableNonCanonicalValueError(
            f"{value!r} has no JSON form; replace it with null or a finite number"
        )
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr gives the shortest round-tripping digits, the same digits JavaScript picks.
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    leading_zeros = len(whole + fraction) - len((whole + fraction).lstrip("0"))
    # point = n in ECMA-262: value = 0.d1d2...dk * 10**n
    point = len(whole) - leading_zeros + (int(exponent) if exponent else 0)
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= point <= 21:
        text = digits + "0" * (point - k)
    elif 0 < point <= 21:
        text = digits[:point] + "." + digits[point:]
    elif -6 < point <= 0:
        text = "0." + "0" * -point + digits
    else:
        exp = point - 1
        exp_text = f"+{exp}" if exp >= 0 else str(exp)
        text = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + exp_text
    return sign + text


def _js_string(value: str) -> str:
    text = json.dumps(value, ensure_ascii=False)
    # A Python str can hold lone surrogates; JSON.stringify escapes them as \\uXXXX.
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _ordered_keys(keys: list[str]) -> list[str]:
    indices = sorted(
        (k for k in keys if _ARRAY_INDEX.fullmatch(k) and int(k) <= _MAX_ARRAY_INDEX),
        key=int,
    )
    index_set = set(indices)
    others = sorted((k for k in keys if k not in index_set), key=_utf16_key)
    return indices + others


def _write(value: object, out: list[str], path: str) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_js_string(value))
    elif isinstance(value, int | float):
        try:
            out.append(js_number(value))
        except DurableNonCanonicalValueError:
            raise DurableNonCanonicalValueError(
                f"value at {path} is {value!r}, which has no JSON form; "
                "replace it with null or a finite number"
            ) from None
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out, f"{path}[{i}]")
        out.append("]")
    elif isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise DurableNonCanonicalValueError(
                    f"object at {path} has the non-string key {key!r}; "
                    "canonical JSON needs string keys, so convert the key with str()"
                )
        out.append("{")
        for i, key in enumerate(_ordered_keys(list(value))):
            if i:
                out.append(",")
            out.append(_js_string(key))
            out.append(":")
            _write(value[key], out, f"{path}.{key}")
        out.append("}")
    else:
        raise DurableNonCanonicalValueError(
            f"value at {path} is a {type(value).__name__}, which is not plain JSON; "
            "pass dicts, lists, strings, numbers, booleans or None "
            "(for pydantic models use model_dump(mode='json'))"
        )
