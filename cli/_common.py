"""What every command shares: exit statuses, bad input, JSON in and out."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from durable import (
    AgentDefinition,
    DelegationPolicy,
    DurableRegistrationError,
    JsonCodec,
    agent_definition,
)

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_CODES",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "agent",
    "decider",
    "json_argument",
    "policy",
    "show",
]

_JSON: JsonCodec[Any] = JsonCodec(Any)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success; a run still running is reported as such",
    EXIT_FAILED: "the run failed, or a durable error: a refused event, a store or server error",
    EXIT_USAGE: "bad input: arguments, JSON, settings, an unknown agent, run or approval",
    EXIT_INTERRUPTED: "interrupted with Ctrl-C",
    EXIT_BROKEN_PIPE: "the reader of the output went away (as with `| head`); nothing is printed",
}
"""Every exit status of ``durable``, as the README's exit-status table lists them."""


class UsageError(Exception):
    """Bad input on the command line: exit status 2."""


def json_argument(text: str, what: str) -> Any:
    """JSON given inline, as ``@FILE`` or as ``-`` for standard input.

    A file or standard input carries values too large for the command line.
    """
    source = what
    try:
        if text == "-":
            source = f"{what} from standard input"
            text = sys.stdin.read()
        elif text.startswith("@"):
            source = f"{what} file {text[1:]!r}"
            text = Path(text[1:]).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(
            f"cannot read {source} ({reason}); give a readable UTF-8 file of JSON"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        hint = (
            """quote it for the shell, for example '{"approved": true}', or pass @FILE or -"""
            if source == what
            else "fix the JSON"
        )
        raise UsageError(
            f"{source} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            f"{hint}"
        ) from None
    except RecursionError:
        raise UsageError(f"{source} is nested too deeply to read; flatten the JSON") from None


def show(value: Any) -> str:
    """A value as indented JSON, for people and for ``jq``."""
    return json.dumps(_JSON.encode(value, what="the output"), indent=2, ensure_ascii=False)


def agent(name: str) -> AgentDefinition:
    """The registered agent ``name``; an unknown one is bad input."""
    try:
        return agent_definition(name)
    except DurableRegistrationError as exc:
        raise UsageError(exc.message) from None


def policy(text: str) -> DelegationPolicy:
    """``--delegation``: a DelegationPolicy as JSON, for this run only."""
    try:
        return DelegationPolicy.model_validate(json_argument(text, "--delegation"))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'the policy'}: {e['msg']}" for e in exc.errors()
        )
        raise UsageError(
            f"--delegation is not a delegation policy ({problems}); give an object such as "
            """'{"allowed_agents": ["research"], "max_calls": 8, "max_depth": 2}'"""
        ) from None


def decider(given: str | None) -> str:
    """``--by``, else the name of the user this process runs as."""
    if given is not None:
        return given
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        raise UsageError(
            "cannot tell who decides (this process has no user name); pass --by NAME"
        ) from None
