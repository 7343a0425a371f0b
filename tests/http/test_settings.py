"""The server's settings, its safe default without tokens, and the tables it keeps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from durable import ErrorCode
from durable.conversation import DEFAULT_MAX_DEPTH
from durable_agents.adapters.http import (
    DEFAULT_MAX_BODY_BYTES,
    STATUS_BY_CODE,
    ServerSettings,
    is_depth_exceeded,
    is_loopback,
    parse_traceparent,
)
from durable_agents.adapters.http._serve import http_server, serving_message
from tests.http.conftest import TOKEN, local_client
from tests.http.server import ServerThread
from tests.http.support import assert_problem


def test_settings_from_the_environment() -> None:
    settings = ServerSettings.from_env(
        {
            "DURABLE_API_HOST": "0.0.0.0",
            "DURABLE_API_PORT": "9000",
            "DURABLE_API_TOKENS": f" {TOKEN} ,, second-token-0123456789 ",
            "DURABLE_API_MAX_BODY_BYTES": "65536",
            "DURABLE_API_MAX_DEPTH": "2",
        }
    )
    assert settings == ServerSettings(
        host="0.0.0.0",
        port=9000,
        tokens=(TOKEN, "second-token-0123456789"),
        max_body_bytes=65536,
        max_depth=2,
    )
    defaults = ServerSettings.from_env({})
    assert defaults.host == "127.0.0.1"
    assert defaults.tokens == ()
    assert defaults.open
    assert defaults.max_body_bytes == DEFAULT_MAX_BODY_BYTES
    assert defaults.max_depth == DEFAULT_MAX_DEPTH


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"DURABLE_API_PORT": "http"}, "DURABLE_API_PORT must be a whole number"),
        ({"DURABLE_API_PORT": "70000"}, "from 1 to 65535"),
        ({"DURABLE_API_MAX_BODY_BYTES": "10"}, "at least 1024"),
        ({"DURABLE_API_MAX_DEPTH": "0"}, "DURABLE_API_MAX_DEPTH must be at least 1"),
        ({"DURABLE_API_TOKENS": "short"}, "at least 16 characters"),
        ({"DURABLE_API_TOKENS": "has a space in it, really"}, "no spaces"),
    ],
)
def test_bad_settings_say_what_to_fix(env: dict[str, str], said: str) -> None:
    with pytest.raises(ValueError, match=said):
        ServerSettings.from_env(env)


def test_without_tokens_it_refuses_any_host_but_loopback() -> None:
    assert ServerSettings(host="127.0.0.1").refusal() is None
    assert ServerSettings(host="::1").refusal() is None
    assert ServerSettings(host="localhost").refusal() is None
    for host in ("0.0.0.0", "192.168.1.5", "example.com", "::"):
        refusal = ServerSettings(host=host).refusal()
        assert refusal is not None
        assert "DURABLE_API_TOKENS" in refusal
        assert ServerSettings(host=host, tokens=(TOKEN,)).refusal() is None
    with pytest.raises(ValueError, match=r"refusing to listen on 0\.0\.0\.0"):
        http_server(object(), ServerSettings(host="0.0.0.0"))  # type: ignore[arg-type]


def test_the_start_message_says_how_requests_are_authenticated() -> None:
    assert "without authentication" in serving_message(ServerSettings())
    message = serving_message(ServerSettings(tokens=(TOKEN,), port=9001))
    assert "http://127.0.0.1:9001/" in message
    assert "1 bearer token" in message
    assert TOKEN not in message


def test_loopback_names() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.3.4.5", "::1", "[::1]", "LOCALHOST"]))
    assert not any(map(is_loopback, ["0.0.0.0", "10.0.0.1", "localhost.evil.example", ""]))


def test_every_durable_error_code_has_one_status() -> None:
    assert set(STATUS_BY_CODE) == set(ErrorCode)
    assert STATUS_BY_CODE[ErrorCode.RUN_NOT_FOUND] == 404
    assert STATUS_BY_CODE[ErrorCode.MANIFEST_MISMATCH] == 409
    assert STATUS_BY_CODE[ErrorCode.RUN_ENDED] == 409
    assert STATUS_BY_CODE[ErrorCode.EVENT_PAYLOAD_INVALID] == 422
    assert all(400 <= status < 600 and status != 500 for status in STATUS_BY_CODE.values())


def test_depth_is_exceeded_at_the_limit_as_in_the_reference() -> None:
    assert not is_depth_exceeded(0, 4)
    assert not is_depth_exceeded(3, 4)
    assert is_depth_exceeded(4, 4)
    assert is_depth_exceeded(9, 4)


def test_traceparent_is_kept_only_when_well_formed() -> None:
    good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert parse_traceparent(good) == good
    assert parse_traceparent(f" {good} ") == good
    for bad in (
        None,
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
    ):
        assert parse_traceparent(bad) is None


@pytest.fixture
def open_server(tmp_path: Path) -> Iterator[ServerThread]:
    server = ServerThread(local_client(tmp_path / "open.db"), ServerSettings()).start()
    yield server
    server.stop()


@pytest.mark.slow
async def test_without_tokens_it_answers_only_requests_to_a_loopback_name(
    open_server: ServerThread,
) -> None:
    async with httpx.AsyncClient(base_url=open_server.url, timeout=30) as anonymous:
        assert (await anonymous.get("/v1/runs")).status_code == 200
        port = open_server.url.rsplit(":", 1)[1]
        for host in (f"localhost:{port}", "127.0.0.1", f"[::1]:{port}"):
            response = await anonymous.get("/v1/runs", headers={"Host": host})
            assert response.status_code == 200, host
        rebound = await anonymous.get("/v1/runs", headers={"Host": f"evil.example:{port}"})
        assert_problem(rebound, 421, "misdirected_request")
        assert "DURABLE_API_TOKENS" in rebound.json()["detail"]
