"""The Temporal fixtures the CLI tests share with the Temporal tests."""

from tests.temporal.conftest import agents_client, client, task_queue

__all__ = ["agents_client", "client", "task_queue"]
