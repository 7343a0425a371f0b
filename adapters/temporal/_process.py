"""Ending short-lived processes that used a Temporal client."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import NoReturn

__all__ = ["exit_without_teardown"]


def exit_without_teardown(code: int) -> NoReturn:
    """Flush output and exit, skipping the interpreter's teardown.

    The Temporal client's native threads can call into Python while the
    interpreter tears down, aborting a short-lived process (sdk-python issue
    300). A command whose work is done and written has nothing left to tear down.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # a reader that went away has nothing to lose
            stream.flush()
    os._exit(code)
