"""Fixtures of the browser tests: a real stack (nats-server, the control plane on uvicorn, worker
processes serving ``tests.browser.flows``) and a Playwright page on Debian's chromium.

- ``stack``: the running stack (``Stack``: ``url``, ``token``, ``client``). Parametrize it
  indirectly with ``{"tokens": {"<token>": ["read", ...], ...}}`` for a control plane that
  needs API tokens (the first is ``Stack.token``, the client's).
- ``page``: a Playwright page (async API) whose ``base_url`` is the stack's; after each test a
  screenshot of it goes to ``tests/browser/artifacts/<test>.png`` (git-ignored).
- ``save_doc_screenshot(page, name)``: with ``JETLOOM_SCREENSHOTS=1`` (``make screenshots``),
  the page also goes to ``docs/img/<name>.png`` for the README.

Chromium: ``/usr/bin/chromium`` (``make test`` installs Debian's package where it is missing;
``CHROMIUM`` overrides the path); Playwright's own browser downloads are not used.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from services.client import Client
from services.control.auth import ApiAuth, ApiToken
from services.launcher import ControlPlaneServer
from services.launcher import WorkerProcess as AsyncWorkerProcess
from services.natsserver import EmbeddedNats

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
DOC_IMAGES = ROOT / "docs" / "img"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
HAVE_CHROMIUM = Path(CHROMIUM).exists()
SCREENSHOTS_ENV = "JETLOOM_SCREENSHOTS"
VIEWPORT = {"width": 1280, "height": 800}
FLOWS = ("tests.browser.flows:Signup", "tests.browser.flows:Approve")
WAIT_MS = 15_000  # how long an expectation on the page may take (a loaded machine is slow)
expect.set_options(timeout=WAIT_MS)


@dataclass
class Stack:
    """The stack a browser test drives: the control plane's ``url``, the API ``token`` it needs
    (``None``: open) and an SDK ``client`` of it (with that token)."""

    url: str
    token: str | None
    client: Client
    nats_url: str


@pytest.fixture
async def stack(request: pytest.FixtureRequest, nats_server: EmbeddedNats) -> AsyncIterator[Stack]:
    """nats-server, a control plane on uvicorn (this event loop) and one worker process per
    workflow of ``tests.browser.flows``, ready; all stopped afterwards."""
    options: dict[str, Any] = getattr(request, "param", None) or {}
    tokens: dict[str, list[str]] = options.get("tokens") or {}
    auth = (
        ApiAuth(
            ApiToken(name=f"token{i}", digest=hashlib.sha256(t.encode()).digest(), scopes=frozenset(scopes))
            for i, (t, scopes) in enumerate(tokens.items(), 1)
        )
        if tokens
        else None
    )
    token = next(iter(tokens), None)
    cp = ControlPlaneServer(nats_server.url, port=0, shutdown_grace=1.0, auth=auth)
    await cp.start()
    workers: list[AsyncWorkerProcess] = []
    try:
        for target in FLOWS:
            workers.append(await AsyncWorkerProcess.start(target, nats_server.url, cwd=ROOT))
        for w in workers:
            await w.wait_ready()
        async with Client(cp.url, token=token) as client:
            yield Stack(url=cp.url, token=token, client=client, nats_url=nats_server.url)
    finally:
        for w in workers:
            w.kill()
            await w.stop(timeout=5)
        await cp.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Chromium, headless (``--no-sandbox`` when running as root, as CI does)."""
    if not HAVE_CHROMIUM:
        pytest.fail(f"no chromium at {CHROMIUM}: install Debian's (apt-get install chromium) or set CHROMIUM")
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def page(request: pytest.FixtureRequest, browser: Browser, stack: Stack) -> AsyncIterator[Page]:
    """A page of a fresh browser context at the stack's URL; its screenshot is saved after the
    test under ``tests/browser/artifacts/``."""
    context = await browser.new_context(base_url=stack.url, viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(WAIT_MS)
    p = await context.new_page()
    try:
        yield p
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        try:
            await p.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        finally:
            await context.close()


async def save_doc_screenshot(page: Page, name: str) -> Path | None:
    """With ``JETLOOM_SCREENSHOTS=1``, save the page (its viewport) as ``docs/img/<name>.png``
    (the README's screenshots; ``make screenshots``); otherwise do nothing. Returns the path
    written, or ``None``."""
    if os.environ.get(SCREENSHOTS_ENV) != "1":
        return None
    DOC_IMAGES.mkdir(parents=True, exist_ok=True)
    path = DOC_IMAGES / f"{name}.png"
    await page.screenshot(path=str(path))
    return path
