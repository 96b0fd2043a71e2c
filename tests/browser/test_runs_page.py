"""The runs list, /ui/, in chromium: live rows, filters, pages."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from tests.browser.conftest import Stack, save_doc_screenshot


async def _live(page: Page) -> None:
    """Wait until the page's event stream is connected (the live badge turns on)."""
    await expect(page.locator("#live-state")).to_have_class(re.compile(r"\bon\b"))


async def test_a_run_appears_live_and_its_status_changes_live(stack: Stack, page: Page) -> None:
    await page.goto("/ui/")
    await _live(page)
    run = await stack.client.start("Approve")  # after the page loaded: only the live feed shows it
    row = page.locator(f"#run-{run.run_id}")
    await expect(row).to_be_visible()
    await expect(row.locator("td").first).to_have_text(run.run_id)  # the whole id
    await expect(row.locator(".badge")).to_have_text("waiting")  # its step waits for a Decision
    await expect(page.locator("#no-runs")).to_have_count(0)
    await run.send_event(type="Decision", data={"approved": True})
    await expect(row.locator(".badge")).to_have_text("completed")
    assert await run.result() == {"approved": True}
    await expect(row.locator("td").nth(4)).not_to_have_text("")  # ended
    await expect(row.locator("a").first).to_have_attribute("href", f"/ui/runs/{run.run_id}")


async def test_newest_first_filters_and_older_pages(stack: Stack, page: Page) -> None:
    signups = [await stack.client.start("Signup", name=f"n{i}", age=i) for i in range(3)]
    for s in signups:
        await s.result()
    waiting = await stack.client.start("Approve")
    await page.goto("/ui/")
    rows = page.locator("#runs-body tr")
    await expect(rows).to_have_count(4)
    ids = [await r.get_attribute("id") for r in await rows.all()]
    assert ids == [f"run-{r.run_id}" for r in [waiting, *reversed(signups)]]  # newest first
    await save_doc_screenshot(page, "runs")

    await page.get_by_label("Workflow").select_option("Signup")  # submits the filter form
    await expect(page).to_have_url(re.compile(r"workflow=Signup"))
    await expect(rows).to_have_count(3)
    await expect(page.locator(f"#run-{waiting.run_id}")).to_have_count(0)

    await page.get_by_label("Workflow").select_option("")
    await page.get_by_label("Status").select_option("waiting")
    await expect(page).to_have_url(re.compile(r"status=waiting"))
    await expect(rows).to_have_count(1)
    await expect(page.locator(f"#run-{waiting.run_id} .badge")).to_have_text("waiting")

    # two per page: the newest two, then older ones, then back to the newest
    await page.goto("/ui/?limit=2")
    await expect(rows).to_have_count(2)
    await page.get_by_role("link", name="Older »").click()
    await expect(page).to_have_url(re.compile(r"cursor=\d+"))
    await expect(rows).to_have_count(2)
    older = [await r.get_attribute("id") for r in await rows.all()]
    assert older == [f"run-{signups[1].run_id}", f"run-{signups[0].run_id}"]
    await expect(page.get_by_role("link", name="Older »")).to_have_count(0)
    await expect(page.locator("#live-state")).to_have_count(0)  # an older page is not live
    await page.get_by_role("link", name="« Newest").click()
    await expect(page.locator(f"#run-{waiting.run_id}")).to_be_visible()
    await waiting.send_event(type="Decision", data={"approved": False})


async def test_a_new_run_the_filter_leaves_out_does_not_appear(stack: Stack, page: Page) -> None:
    await page.goto("/ui/?workflow=Approve")
    await _live(page)
    other = await stack.client.start("Signup", name="x", age=1)
    await other.result()
    mine = await stack.client.start("Approve")
    await expect(page.locator(f"#run-{mine.run_id}")).to_be_visible()  # (so the other one came first)
    await expect(page.locator(f"#run-{other.run_id}")).to_have_count(0)
    await mine.send_event(type="Decision", data={"approved": True})


async def test_a_new_run_appears_on_a_status_page_once_it_has_that_status(stack: Stack, page: Page) -> None:
    await page.goto("/ui/?status=waiting")
    await _live(page)
    done = await stack.client.start("Signup", name="x", age=1)
    await done.result()
    waits = await stack.client.start("Approve")  # running first, then waiting
    row = page.locator(f"#run-{waits.run_id}")
    await expect(row.locator(".badge")).to_have_text("waiting")
    await expect(page.locator("#runs-body tr")).to_have_count(1)  # once, and not the completed one
    await waits.send_event(type="Decision", data={"approved": True})
    await expect(row.locator(".badge")).to_have_text("completed")  # the change shows where it is
