"""Register the search attributes agent runs carry on a Temporal cluster's namespace.

    TEMPORAL_ADDRESS=temporal:7233 TEMPORAL_NAMESPACE=default \\
        python deploy/register_search_attributes.py

Idempotent: attributes that already exist are left alone. The embedded dev
server registers them itself. Temporal Cloud namespaces take them through the
cloud console or ``tcld`` instead.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.temporal import SEARCH_ATTRIBUTES, exit_without_teardown


async def register(address: str, namespace: str) -> list[str]:
    """Add the missing attributes; return the names added."""
    client = await Client.connect(address, namespace=namespace)
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
    address = os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233")
    namespace = os.environ.get("TEMPORAL_NAMESPACE", "default")
    added = asyncio.run(register(address, namespace))
    print(f"{namespace}: added {', '.join(added)}" if added else f"{namespace}: all present")
    exit_without_teardown(0)


if __name__ == "__main__":
    main()
