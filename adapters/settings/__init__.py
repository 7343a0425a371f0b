"""All configuration in one typed object, read from the environment once, at start.

``Settings.from_env()`` reads every group from the same environment and reports
every unusable variable at once, naming it and the fix; the worker, the CLI and
``durable serve`` call it once and pass the result down. Activities read the
settings the worker put ``in_use``; outside a worker (a library call, a test)
they read the environment when called.

Groups: ``temporal`` (the connection, ``temporalio.envconfig``'s variables),
``worker``, ``storage``, ``models``, ``forwarding``, ``server`` and ``telemetry``.
"""

from __future__ import annotations

from ._env import EnvGroup, SettingsError, env_name, read
from ._models import MODELS_EXAMPLE, SCRIPTED, ForwardingSettings, ModelsSettings, parse_models
from ._root import Settings, current, in_use
from ._server import DEFAULT_MAX_BODY_BYTES, ServerSettings, is_loopback
from ._storage import StorageSettings
from ._temporal import TemporalSettings
from ._worker import WorkerSettings

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "MODELS_EXAMPLE",
    "SCRIPTED",
    "EnvGroup",
    "ForwardingSettings",
    "ModelsSettings",
    "ServerSettings",
    "Settings",
    "SettingsError",
    "StorageSettings",
    "TemporalSettings",
    "WorkerSettings",
    "current",
    "env_name",
    "in_use",
    "is_loopback",
    "parse_models",
    "read",
]
