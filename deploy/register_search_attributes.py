"""Register the search attributes agent runs carry on a Temporal cluster's namespace.

    TEMPORAL_ADDRESS=temporal:7233 TEMPORAL_NAMESPACE=default \\
        python deploy/register_search_attributes.py

It connects as the worker does (``TEMPORAL_*`` variables, a profile file, TLS,
an API key; see ``deploy/README.md``). Idempotent: attributes that already exist
are left alone. The embedded dev server registers them itself. Temporal Cloud
namespaces take them through the cloud console or ``tcld`` instead.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from durable_agents.adapters.settings import SettingsError, TemporalSettings
from durable_agents.adapters.temporal import (
    SEARCH_ATTRIBUTES,
    TemporalConnectError,
    connect,
    exit_without_teardown,
)


async def register(settings: TemporalSettings) -> list[str]:
    """Add the missing attributes; return the names added."""
    client = await connect(settings)
    namespace = settings.namespace
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    missing = {
        name: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{kind.upper()}")
        for name, kind in SEARCH_ATTRIBUTES.items()
        if name not in listed.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    return sorted(missing)


def main() -> None:
    try:
        settings = TemporalSettings.from_env()
        added = asyncio.run(register(settings))
    except (SettingsError, TemporalConnectError) as exc:
        print(f"register_search_attributes: {exc}", file=sys.stderr)
        exit_without_teardown(2)
    namespace = settings.namespace
    print(f"{namespace}: added {', '.join(added)}" if added else f"{namespace}: all present")
    exit_without_teardown(0)


if __name__ == "__main__":
    main()
