"""Debian's headless Chromium, driven over the Chrome DevTools protocol with a small client.

Nothing is downloaded: the browser is the system's ``chromium`` package, and
the protocol is JSON over a websocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

SKIP_ENV = "DURABLE_SKIP_BROWSER_TESTS"
"""Set to 1 to skip the browser tests on a machine without Chromium; ignored in CI."""


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Page:
    """One browser tab, attached with a flattened session."""

    def __init__(self, socket: ClientConnection, session: str) -> None:
        self._socket = socket
        self._session = session
        self._ids = 0

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await _call(self._socket, self, method, params, session=self._session)

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` in the page (awaited if it is a promise)."""
        reply = await self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in reply:
            raise AssertionError(f"{expression!r} raised in the page: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def wait_for(self, expression: str, *, timeout: float = 30) -> Any:
        """Evaluate ``expression`` until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                html = await self.evaluate("document.body.innerText")
                raise AssertionError(f"{expression!r} never held; the page shows:\n{html}")
            await asyncio.sleep(0.05)

    def next_id(self) -> int:
        self._ids += 1
        return self._ids


async def _call(
    socket: ClientConnection,
    counter: Page | _Browser,
    method: str,
    params: dict[str, Any] | None,
    *,
    session: str | None = None,
) -> dict[str, Any]:
    message_id = counter.next_id()
    message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
    if session is not None:
        message["sessionId"] = session
    await socket.send(json.dumps(message))
    while True:
        # Events arrive in between; only the answer to this call matters here.
        answer = json.loads(await socket.recv())
        if answer.get("id") == message_id and answer.get("sessionId") == session:
            if "error" in answer:
                raise AssertionError(f"{method} failed: {answer['error']}")
            result: dict[str, Any] = answer["result"]
            return result


class _Browser:
    def __init__(self) -> None:
        self._ids = 10_000

    def next_id(self) -> int:
        self._ids += 1
        return self._ids


@contextlib.asynccontextmanager
async def browser_page(url: str) -> AsyncIterator[Page]:
    """A headless Chromium tab showing ``url``; the browser is killed on the way out."""
    binary = chromium_binary()
    if binary is None:
        raise AssertionError(
            "the browser tests need Chromium: `apt-get install -y chromium` (.ci/run does it); "
            f"set {SKIP_ENV}=1 to skip them on this machine"
        )
    with tempfile.TemporaryDirectory(
        prefix="durable-chromium-", ignore_cleanup_errors=True
    ) as profile:
        process = await asyncio.create_subprocess_exec(
            *[
                binary,
                "--headless=new",
                "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            # Its own process group, so the browser's helper processes go with it.
            start_new_session=True,
        )
        try:
            endpoint = await _devtools_endpoint(Path(profile), process)
            async with connect(endpoint, max_size=None) as socket:
                browser = _Browser()
                target = await _call(socket, browser, "Target.createTarget", {"url": "about:blank"})
                attached = await _call(
                    socket,
                    browser,
                    "Target.attachToTarget",
                    {"targetId": target["targetId"], "flatten": True},
                )
                page = Page(socket, attached["sessionId"])
                await page.call("Page.enable")
                await page.call("Runtime.enable")
                await page.call("Page.navigate", {"url": url})
                await page.wait_for("document.readyState === 'complete'")
                yield page
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await asyncio.wait_for(process.wait(), 30)


async def _devtools_endpoint(profile: Path, process: asyncio.subprocess.Process) -> str:
    """The browser's websocket address, from the file Chromium writes once it listens."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise AssertionError(f"Chromium exited at start with status {process.returncode}")
        with contextlib.suppress(FileNotFoundError):
            lines = marker.read_text().split()
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        await asyncio.sleep(0.05)
    raise AssertionError("Chromium did not open its DevTools port within 60s")


def browser_tests_skipped() -> bool:
    """Only on a developer's machine that asks for it; never in CI."""
    return os.environ.get(SKIP_ENV) == "1" and not os.environ.get("CI")
