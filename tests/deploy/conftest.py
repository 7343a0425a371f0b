"""The Temporal fixtures the drain tests share with the Temporal tests."""

from tests.temporal.conftest import client, task_queue

__all__ = ["client", "task_queue"]
