"""The local substrate: ``run_durable``, ``LocalClient`` and the stores. No server needed.

Stores: ``InMemoryStore`` (tests), ``FileStore`` (a directory, several
processes), ``SqliteStore`` (the embedded default) and ``PostgresStore``.
"""

import typing

from ._approvals import decide_approval, pending_approvals
from ._cancel import cancel_run
from ._client import LocalClient
from ._compat import check_runs
from ._context import LocalContext
from ._events import send_event
from ._file import FileStore
from ._lease_keeper import KeptLease, LeaseKeeper
from ._live import LivePublisher, watch_run
from ._memory import InMemoryStore
from ._retention import PurgeReport, RetentionSweep, parse_duration, purge
from ._runner import RunResult, resume_run, run_durable
from ._slots import RunSlots
from ._sqlite import SqliteStore, Synchronous
from ._store import DurableRunStore, EmitResult, PurgeCounts, Resumed
from ._worker import LocalWorker

__all__ = [
    "DurableRunStore",
    "EmitResult",
    "FileStore",
    "InMemoryStore",
    "KeptLease",
    "LeaseKeeper",
    "LivePublisher",
    "LocalClient",
    "LocalContext",
    "LocalWorker",
    "PostgresStore",
    "PurgeCounts",
    "PurgeReport",
    "Resumed",
    "RetentionSweep",
    "RunResult",
    "RunSlots",
    "SqliteStore",
    "Synchronous",
    "cancel_run",
    "check_runs",
    "decide_approval",
    "parse_duration",
    "pending_approvals",
    "purge",
    "resume_run",
    "run_durable",
    "send_event",
    "watch_run",
]


if typing.TYPE_CHECKING:
    from ._postgres import PostgresStore


def __getattr__(name: str) -> object:
    # psycopg is only needed by PostgresStore; import it on first use.
    if name == "PostgresStore":
        from ._postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
