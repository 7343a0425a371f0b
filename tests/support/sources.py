"""Parsing the repository's own source files in a test."""

from __future__ import annotations

import ast
import gc
from pathlib import Path

__all__ = ["parse"]


def parse(path: Path) -> ast.Module:
    """``path``'s syntax tree, parsed with the garbage collector paused.

    CPython 3.11 fails a parse with ``SystemError: AST constructor recursion depth
    mismatch`` when a finalizer runs in the middle of it (a socket or transport
    some earlier test left for the collector, say). Leaks are the servers' to
    fix; a test of source files must not fail for one.
    """
    source = path.read_text(encoding="utf-8")
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(source, filename=str(path))
    finally:
        if enabled:
            gc.enable()
