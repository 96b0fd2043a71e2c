"""The services and workflow pages in chromium, and starting a run from a workflow's form."""

from __future__ import annotations

import re

import httpx
from playwright.async_api import Page, expect

from tests.browser.conftest import Stack


async def test_services_page_lists_each_live_worker(stack: Stack, page: Page) -> None:
    await page.goto("/ui/services")
    rows = page.locator("table.services tbody tr")
    await expect(rows).to_have_count(2)
    await expect(page.locator("table.services")).to_contain_text("Signup")
    await expect(page.locator("table.services")).to_contain_text("Approve")
    await expect(rows.first).to_contain_text(" ago")  # heartbeat age


async def test_workflow_catalog_and_its_schemas(stack: Stack, page: Page) -> None:
    await page.goto("/ui/workflows")
    await expect(page.locator("table.workflows tbody tr")).to_have_count(2)
    await page.get_by_role("link", name="Signup", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/ui/workflows/Signup$"))
    await expect(page.get_by_role("heading", name="Signup")).to_be_visible()
    await expect(page.locator("table.steps")).to_contain_text("register")
    await expect(page.locator("details[open] pre.schema")).to_contain_text('"age"')
    # one input per field, typed; required ones marked
    await expect(page.locator("#start-name")).to_have_attribute("type", "text")
    await expect(page.locator("#start-age")).to_have_attribute("type", "number")
    await expect(page.locator("#start-newsletter")).to_have_attribute("type", "checkbox")
    await expect(page.locator("textarea#start-tags")).to_be_visible()
    await expect(page.locator("label[for=start-age] abbr.req")).to_have_count(1)
    await expect(page.locator("label[for=start-score] abbr.req")).to_have_count(0)


async def test_start_a_run_from_the_form_with_typed_fields(stack: Stack, page: Page) -> None:
    await page.goto("/ui/workflows/Signup")
    await page.locator("#start-name").fill("Ada")
    await page.locator("#start-age").fill("36")
    await page.locator("#start-newsletter").check()
    await page.locator("#start-score").fill("9.5")
    await page.locator("#start-tags").fill('["math", "engines"]')
    await page.get_by_role("button", name="Start").click()
    await expect(page).to_have_url(re.compile(r"/ui/runs/[A-Za-z0-9_-]+$"))
    run_id = page.url.rsplit("/", 1)[1]
    result = await stack.client.handle(run_id, "Signup").result()
    assert result == {"name": "Ada", "age": 36, "newsletter": True, "score": 9.5, "tags": ["math", "engines"]}


async def test_the_form_shows_the_apis_error_for_a_bad_field(stack: Stack, page: Page) -> None:
    await page.goto("/ui/workflows/Signup")
    await page.locator("#start-name").fill("Ada")
    await page.locator("#start-age").fill("36")
    await page.locator("#start-tags").fill('{"not": "a list"}')
    await page.get_by_role("button", name="Start").click()
    error = page.locator("#start-form .form-error")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("tags")
    await expect(page).to_have_url(re.compile(r"/ui/workflows/Signup$"))


async def test_errors_of_pages_are_pages(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        resp = await http.get("/ui/workflows/Nope")
        assert resp.status_code == 404 and resp.headers["content-type"].startswith("text/html")
        assert "no workflow named &#39;Nope&#39;" in resp.text and "<nav>" in resp.text
        resp = await http.get("/ui/?status=bogus")
        assert resp.status_code == 400 and "unknown status" in resp.text
        resp = await http.get("/ui/?workflow=no.dots")
        assert resp.status_code == 400 and resp.headers["content-type"].startswith("text/html")
        resp = await http.get("/ui/?cursor=-1")
        assert resp.status_code == 400 and resp.headers["content-type"].startswith("text/html")
        # (the JSON API's errors stay JSON)
        resp = await http.get("/workflows/Nope")
        assert resp.status_code == 404 and resp.json()["status"] == 404
