"""The web view in headless Chromium: runs appear, tokens stream in, approvals are decided."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from durable_agents.adapters.http import ServerSettings
from tests.http.browser import browser_page, browser_tests_skipped
from tests.http.conftest import TOKEN, client_for
from tests.http.server import ServerThread
from tests.http.support import new_run_id, run_state

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(240),
    pytest.mark.skipif(browser_tests_skipped(), reason="DURABLE_SKIP_BROWSER_TESTS=1 (not CI)"),
]

UI = "http://127.0.0.1:8233/namespaces/default/workflows"
TEXT = " ".join(f"token{n}" for n in range(25))


@pytest.fixture
def served(
    substrate: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[ServerThread]:
    settings = ServerSettings(tokens=(TOKEN,), temporal_ui=UI if substrate == "temporal" else None)
    server = ServerThread(client_for(substrate, request, tmp_path), settings).start()
    yield server
    server.stop()


def _row(run_id: str) -> str:
    return f"document.querySelector('#runs tr[data-run-id={json.dumps(run_id)}]')"


async def test_a_run_started_over_http_appears_and_its_tokens_stream_in(
    served: ServerThread, http: httpx.AsyncClient, substrate: str
) -> None:
    run_id = new_run_id("page")
    # The run waits for `go`, so the page is following it before any token exists.
    started = await http.post(
        "/v1/runs",
        json={"agent": "http.wait", "input": {"text": TEXT, "pace": 0.08}, "run_id": run_id},
    )
    assert started.status_code == 201
    async with browser_page(f"{served.url}/#token={TOKEN}") as page:
        assert await page.evaluate("location.hash") == ""  # the token left the address
        await page.wait_for(f"!!{_row(run_id)}")
        state = await page.wait_for(f"{_row(run_id)}.querySelector('.state').textContent")
        assert state in {"running", "waiting"}
        assert await page.evaluate(f"{_row(run_id)}.children[1].textContent") == "http.wait"
        await page.evaluate(f"{_row(run_id)}.click()")
        await page.wait_for(
            "document.querySelector('#run-id').textContent === " + json.dumps(run_id)
        )
        await page.wait_for("document.querySelector('#stream-state').textContent === '(following)'")
        assert await page.evaluate("!!document.querySelector('#run-ui')")
        ui = await page.evaluate(
            "(() => { const a = document.querySelector('#run-ui'); "
            "return a.hidden ? null : a.getAttribute('href'); })()"
        )
        assert ui == (f"{UI}/{run_id}" if substrate == "temporal" else None)

        sent = await http.post(f"/v1/runs/{run_id}/events/go", json={"payload": {"n": 1}})
        assert sent.status_code == 202
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text, stream = await page.evaluate(
                "[document.querySelector('#stream-text').textContent, "
                "document.querySelector('#stream-state').textContent]"
            )
            if not seen or text != seen[-1]:
                seen.append(text)
            assert TEXT.startswith(text), text
            if text == TEXT or stream == "(ended)":
                break
            await asyncio.sleep(0.02)
        assert seen[-1] == TEXT, seen
        # The words arrived one by one while the page watched, not all at the end.
        assert any(0 < len(partial) < len(TEXT) for partial in seen), seen
        await page.wait_for("document.querySelector('#stream-state').textContent === '(ended)'")
        await page.wait_for("document.querySelector('#run-state').textContent === 'completed'")
        log = await page.evaluate("document.querySelector('#stream-log').textContent")
        assert "run completed" in log


async def test_the_page_approves_a_pending_approval(
    served: ServerThread, http: httpx.AsyncClient
) -> None:
    run_id = new_run_id("page")
    await http.post(
        "/v1/runs",
        json={"agent": "http.ask", "input": {"text": "yes please", "pace": 0.01}, "run_id": run_id},
    )
    await run_state(http, run_id, {"waiting_for_approval"})
    async with browser_page(f"{served.url}/#token={TOKEN}&run={run_id}") as page:
        await page.wait_for("!!document.querySelector('#approvals .approval .approve')")
        assert (
            await page.evaluate(
                "document.querySelector('#approvals .approval .action').textContent"
            )
            == "say"
        )
        await page.evaluate(
            "document.querySelector('#approvals .approval .decided-by').value = 'browser-ana'"
        )
        await page.evaluate("document.querySelector('#approvals .approval .approve').click()")
        # Decided, it is no longer pending: the page takes it away.
        await page.wait_for("!document.querySelector('#approvals .approval')")
        await run_state(http, run_id, {"completed"})
        await page.wait_for("document.querySelector('#stream-text').textContent === 'yes please'")
    steps = (await http.get(f"/v1/runs/{run_id}/steps")).json()
    decisions = [
        s["result"] for s in steps if isinstance(s["result"], dict) and "decided_by" in s["result"]
    ]
    assert decisions
    assert decisions[0]["decided_by"] == "browser-ana"


async def test_the_page_asks_for_a_token_when_it_has_none(served: ServerThread) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as anonymous:
        page = await anonymous.get("/")  # the page holds no data: no token needed
        assert page.status_code == 200
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert (await anonymous.get("/static/app.js")).status_code == 200
        assert (await anonymous.get("/v1/runs")).status_code == 401
    async with browser_page(f"{served.url}/") as page:
        await page.wait_for("!document.querySelector('#login').hidden")
        assert await page.evaluate("document.querySelectorAll('#runs tr').length") == 0
        await page.evaluate(f"document.querySelector('#token').value = {json.dumps(TOKEN)}")
        await page.evaluate("document.querySelector('#login').requestSubmit()")
        await page.wait_for("document.querySelector('#login').hidden")
        await page.wait_for("document.querySelector('#notice').textContent === ''")
        assert await page.evaluate("sessionStorage.getItem('durable-token')") == TOKEN


async def test_the_page_rejects_with_a_reason(
    served: ServerThread, http: httpx.AsyncClient
) -> None:
    run_id = new_run_id("page")
    await http.post(
        "/v1/runs",
        json={"agent": "http.ask", "input": {"text": "no thanks", "pace": 0.01}, "run_id": run_id},
    )
    await run_state(http, run_id, {"waiting_for_approval"})
    async with browser_page(f"{served.url}/#token={TOKEN}&run={run_id}") as page:
        reject = "document.querySelector('#approvals .approval .reject')"
        await page.wait_for(f"!!{reject}")
        await page.evaluate(f"{reject}.click()")  # no reason yet: refused on the page
        await page.wait_for(
            "document.querySelector('#approvals .approval .outcome').textContent"
            " === 'a rejection needs a reason'"
        )
        await page.evaluate(
            "document.querySelector('#approvals .approval .reason').value = 'not today'"
        )
        await page.evaluate(f"{reject}.click()")
        await page.wait_for("!document.querySelector('#approvals .approval')")
    await run_state(http, run_id, {"completed"})
    result = (await http.get(f"/v1/runs/{run_id}/result")).json()["result"]
    assert result == {"said": "", "reason": "not today"}
