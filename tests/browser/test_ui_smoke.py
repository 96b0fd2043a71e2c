"""The skeleton: / goes to the UI, the pages render with their assets, the open-API banner."""

from __future__ import annotations

import httpx
from playwright.async_api import Page, expect

from tests.browser.conftest import Stack


async def test_root_redirects_to_the_runs_page_with_every_asset_served(stack: Stack, page: Page) -> None:
    failed: list[str] = []
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    await page.goto("/")
    assert page.url == f"{stack.url}/ui/"
    await expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    await expect(page.locator(".banner")).to_contain_text("Open API")
    assert await page.evaluate("typeof htmx") == "object"
    assert failed == []
    async with httpx.AsyncClient(base_url=stack.url) as http:
        css = await http.get("/ui/static/ui.css")
        assert css.status_code == 200 and "text/css" in css.headers["content-type"]
