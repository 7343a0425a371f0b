"""Schemathesis fuzzes the served OpenAPI document: no 500s, and every answer matches it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.generation.case import Case
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
)

from durable import DurableClient
from durable_agents.adapters.http import ServerSettings, create_app
from durable_agents.cli._serve import chat_engine
from tests.http.conftest import TOKEN, local_client
from tests.http.server import ServerThread

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SETTINGS = ServerSettings(tokens=(TOKEN,))
# The document depends on the settings only, never on the client; the first test
# checks it is the one the server serves.
_NO_CLIENT = cast(DurableClient, object())
DOCUMENT = create_app(_NO_CLIENT, SETTINGS, chat=chat_engine(_NO_CLIENT)).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    path = tmp_path_factory.mktemp("fuzz") / "durable.db"
    server = ServerThread(local_client(path), SETTINGS).start()
    yield server
    server.stop()


def test_the_fuzzed_document_is_the_served_one(fuzzed: ServerThread) -> None:
    served = httpx.get(f"{fuzzed.url}/openapi.json", timeout=30)
    assert served.status_code == 200
    assert served.json() == DOCUMENT


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_route_answers_as_documented(case: Case, fuzzed: ServerThread) -> None:
    # Every check but two that judge requests rather than answers. An agent's input
    # and an event's payload are typed by the agent at run time, not in the document,
    # so a body the document allows may be refused (422) by design. And the guards
    # answer before the parameters are read: a call too many hops deep gets 413
    # whatever else is wrong with it.
    case.call_and_validate(
        base_url=fuzzed.url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        excluded_checks=[positive_data_acceptance, negative_data_rejection],
    )
