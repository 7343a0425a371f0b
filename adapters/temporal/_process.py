"""Ending short-lived processes that used a Temporal client."""

from __future__ import annotations

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
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
