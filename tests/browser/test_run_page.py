"""The run page (/ui/runs/{id}) in chromium, on the browser tests' stack (a real nats-server, the
control plane on uvicorn) plus a worker process serving tests/browser/run_flows.py. The page shows
the run's steps on the timeline, answers the awaited event through its form and sees the run
complete live; the state slider shows an earlier sequence; rollback and fork do what the API says;
the API's 4xx reasons show on the page; with API tokens, the login cookie carries the page, its
live stream and its actions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from services.control.ui import run as run_page
from services.launcher import WorkerProcess
from tests.browser.conftest import ROOT, Stack, save_doc_screenshot

WF = "Review"
LIVE = 20_000  # ms an expectation on the live page may take (a run's steps, under a loaded CI)


@pytest.fixture
async def review(stack: Stack) -> AsyncIterator[WorkerProcess]:
    """A worker process serving ``Review``."""
    w = await WorkerProcess.start("tests.browser.run_flows:Review", stack.nats_url, cwd=ROOT)
    try:
        await w.wait_ready()
        yield w
    finally:
        w.kill()
        await w.stop(timeout=5)


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """The JSON API of the stack, to start runs and check what the page shows against it."""
    headers = {"Authorization": f"Bearer {stack.token}"} if stack.token else {}
    async with httpx.AsyncClient(base_url=stack.url, headers=headers) as client:
        yield client


async def start(api: httpx.AsyncClient, **fields: Any) -> str:
    r = await api.post(f"/workflows/{WF}/runs", json=fields)
    assert r.status_code in (200, 201, 202), r.text
    return str(r.json()["run_id"])


async def records(api: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    r = await api.get(f"/runs/{run_id}/events")
    assert r.status_code == 200, r.text
    return list(r.json()["records"])


async def test_answer_the_awaited_event_through_its_form(
    stack: Stack, page: Page, review: WorkerProcess, api: httpx.AsyncClient
) -> None:
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    run_id = await start(api, parts=3)
    await page.goto(f"/ui/runs/{run_id}")
    await expect(page.locator("#run-id")).to_have_text(run_id)
    # live: the steps appear on the timeline as the worker records them, then the wait
    await expect(page.locator("#run-status")).to_have_text("waiting", timeout=LIVE)
    for name in ("split", "check", "gather"):
        await expect(page.locator(f".tl-row[data-step={name}] .tl-bar").first).to_be_visible()
    # three parts, the first one twice (it failed once and was retried), each slept on a timer
    checks = page.locator(".tl-row[data-step=check]")
    await expect(checks.locator(".tl-bar")).to_have_count(4)
    await expect(checks.locator(".tl-bar.outcome-retrying")).to_have_count(1)
    await expect(checks.locator(".tl-retry")).to_have_count(1)
    await expect(checks.locator(".tl-wait.timer")).to_have_count(3)
    await expect(page.locator(".tl-row[data-step=gather] .tl-wait.wait.open")).to_have_count(1)
    assert await page.evaluate("window.jlGraph.getElementById('gather').hasClass('waiting')")
    assert await page.evaluate("window.jlGraph.getElementById('check').hasClass('ran')")
    await expect(page.locator(".run-waiting")).to_contain_text("gather")

    form = page.locator("form.send-event")
    await expect(form).to_have_attribute("data-event-type", "Verdict")
    assert await form.locator("[data-field=score]").get_attribute("type") == "number"
    assert await form.locator("[data-field=approved]").get_attribute("type") == "checkbox"
    await expect(form.locator("textarea[data-field=notes]")).to_have_count(1)  # a list: JSON
    await form.locator("[data-field=text]").fill("ship it")
    await form.locator("[data-field=score]").fill("9")
    await form.locator("[data-field=approved]").check()
    await form.locator("[data-field=notes]").fill("not json")
    await form.get_by_role("button").click()
    # the API's 422 reason, on the page; the run still waits
    await expect(form.locator(".result.error")).to_contain_text("422")
    await expect(form.locator(".result.error")).to_contain_text("notes")
    await expect(page.locator("#run-status")).to_have_text("waiting")
    await form.locator("[data-field=notes]").fill('["first", "second"]')
    await form.get_by_role("button").click()

    # live, without a reload: the status badge, the result, the log's last records
    await expect(page.locator("#run-status")).to_have_text("completed", timeout=LIVE)
    await expect(page.locator("#run-result")).to_contain_text('"ship it"')
    await expect(page.locator("#run-log .rec").last).to_contain_text("sys.RunCompleted")
    await expect(page.locator(".tl-row[data-step=gather] .tl-bar").last).to_have_attribute("data-outcome", "completed")
    view = (await api.get(f"/runs/{run_id}")).json()
    assert view["status"] == "completed"
    assert view["result"] == {"text": "ship it", "score": 9, "approved": True}
    answer = next(r for r in await records(api, run_id) if r["type"] == "Verdict")
    assert answer["data"]["notes"] == ["first", "second"]
    # every record the API lists is in the page's log (which may also hold pending-timer messages
    # that the server removed once they fired)
    shown = await page.locator("#run-log .rec").evaluate_all("els => els.map(e => Number(e.dataset.seq))")
    assert {r["seq"] for r in await records(api, run_id)} <= set(shown)
    await page.locator(".executions > summary").click()
    await expect(page.locator(".exec-table tr.exec")).to_have_count(await page.locator(".tl-bar").count())
    assert await page.evaluate("window.jlGraph.getElementById('gather').hasClass('ran')")
    assert [f for f in failed if "/ui/" in f] == []
    await page.locator(".executions > summary").click()
    await page.evaluate("window.scrollTo(0, 0)")
    await save_doc_screenshot(page, "run")


async def test_state_slider_rollback_and_fork(
    stack: Stack, page: Page, review: WorkerProcess, api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = await start(api, parts=2)
    await page.goto(f"/ui/runs/{run_id}")
    await expect(page.locator("#run-status")).to_have_text("waiting", timeout=LIVE)
    recs = await records(api, run_id)

    # the event log in pages (the control plane serves in this process: a page of 10 records)
    monkeypatch.setattr(run_page, "LOG_PAGE", 10)
    await page.reload()
    await expect(page.locator("#run-log .rec")).to_have_count(10)
    while await page.locator(".log-earlier").count():
        label = await page.locator(".log-earlier").text_content()
        await page.locator(".log-earlier").click()
        await expect(page.get_by_text(label or "")).to_have_count(0)  # replaced by the page before
    shown = await page.locator("#run-log .rec").evaluate_all("els => els.map(e => Number(e.dataset.seq))")
    assert shown == sorted(shown) and set(shown) >= {r["seq"] for r in recs}
    monkeypatch.undo()
    first, last = recs[0]["seq"], recs[-1]["seq"]
    split_done = max(r["seq"] for r in recs if r["type"] == "Part")  # split's commit ends with its parts
    wait_seq = next(r["seq"] for r in recs if r["type"] == "StepSuspended" and r["data"]["kind"] == "event")

    # the state slider: after split's commit, split is done and the checks are pending
    slider = page.locator("#state-at")
    assert int(await slider.get_attribute("min") or 0) == first
    assert int(await slider.get_attribute("max") or 0) >= last
    await slider.fill(str(split_done))
    await expect(page.locator("#state-seq")).to_have_text(str(split_done))
    await expect(page.locator("#state-done")).to_have_text(f"split@{recs[1]['seq']}")
    await expect(page.locator("#state-json")).to_contain_text('"parts": 2')
    await expect(page.locator("#state-json")).not_to_contain_text("checked")
    # the same fold as GET /runs/{id}/state?at=N: the checks of both parts pending
    at = (await api.get(f"/runs/{run_id}/state", params={"at": split_done})).json()
    parts = sorted(r["seq"] for r in recs if r["type"] == "Part")
    assert at["pending"] == [[seq, "check"] for seq in parts], at
    await expect(page.locator("#state-pending")).to_have_text(" ".join(f"check@{seq}" for seq in parts))

    # a rollback to before the start: the API's 422 reason shows under the form
    rollback = page.locator("form.rollback")
    await rollback.locator("[data-field=to_seq]").fill(str(first))
    page.once("dialog", lambda d: d.accept())
    await rollback.get_by_role("button").click()
    reason = (await api.post(f"/runs/{run_id}/rollback", json={"to_seq": first})).json()["error"]
    await expect(rollback.locator(".result.error")).to_have_text(f"422: {reason}")

    # fork at the wait: a new run waiting for its own Verdict, linked from the page
    fork = page.locator("form.fork")
    await fork.locator("[data-field=at_seq]").fill(str(wait_seq))
    await fork.locator("[data-field=run_id]").fill(f"{run_id}-fork")
    await fork.get_by_role("button").click()
    await expect(fork.locator(".result.ok a")).to_have_text(f"{run_id}-fork")
    forked = (await api.get(f"/runs/{run_id}-fork")).json()
    assert forked["workflow"] == WF and forked["status"] in ("running", "waiting")
    await fork.locator(".result.ok a").click()
    await expect(page.locator("#run-id")).to_have_text(f"{run_id}-fork")
    await expect(page.locator("#run-status")).to_have_text("waiting", timeout=LIVE)
    await expect(page.locator(f".run-facts a[href='/ui/runs/{run_id}']")).to_have_text(run_id)  # forked from

    # the original, answered through the API, has ended; its page rolls it back to the wait: the
    # page reloads (the run is live again) and the run waits for the Verdict again
    sent = await api.post(f"/runs/{run_id}/events", json={"type": "Verdict", "data": {"text": "first"}})
    assert sent.status_code == 202, sent.text
    await page.goto(f"/ui/runs/{run_id}")
    await expect(page.locator("#run-status")).to_have_text("completed", timeout=LIVE)
    rollback = page.locator("form.rollback")
    await rollback.locator("[data-field=to_seq]").fill(str(wait_seq))
    await rollback.locator("[data-field=reason]").fill("again")
    page.once("dialog", lambda d: d.accept())
    async with page.expect_response(lambda r: r.url.endswith(f"/runs/{run_id}/rollback")) as answer:
        await rollback.get_by_role("button").click()
    # the API's answer first, so a failure says whether the rollback or the page is at fault
    resp = await answer.value
    assert resp.status == 200, await resp.text()
    await expect(page.locator("#run-status")).to_have_text("waiting", timeout=LIVE)
    await expect(page.locator(".tl-marker.marker-rollback").first).to_be_attached()
    await expect(page.locator(".rec.rolled-back").first).to_be_attached()  # undone records, struck through
    markers = [r for r in await records(api, run_id) if r["type"] == "RolledBack"]
    assert [(m["data"]["to_seq"], m["data"]["reason"]) for m in markers] == [(wait_seq, "again")]
    assert (await api.get(f"/runs/{run_id}")).json()["status"] == "waiting"


TOKEN = "run-page-test-token"


@pytest.mark.parametrize("stack", [{"tokens": {TOKEN: ["read", "run", "admin"]}}], indirect=True)
async def test_with_tokens_the_login_carries_the_page_its_stream_and_its_actions(
    stack: Stack, page: Page, review: WorkerProcess, api: httpx.AsyncClient
) -> None:
    run_id = await start(api, parts=1)
    async with httpx.AsyncClient(base_url=stack.url) as anonymous:
        assert (await anonymous.get(f"/runs/{run_id}")).status_code == 401
    await page.goto(f"/ui/runs/{run_id}")
    await expect(page.locator("#token")).to_be_visible()  # the login page, coming back here after
    await page.locator("#token").fill(TOKEN)
    await page.locator("#token").press("Enter")
    await expect(page.locator("#run-id")).to_have_text(run_id)
    await expect(page.locator("#run-status")).to_have_text("waiting", timeout=LIVE)  # live, over the cookie
    form = page.locator("form.send-event")
    await form.locator("[data-field=text]").fill("logged in")
    await form.get_by_role("button").click()  # POST /runs/{id}/events with the cookie and HX-Request
    await expect(page.locator("#run-status")).to_have_text("completed", timeout=LIVE)
    assert (await api.get(f"/runs/{run_id}")).json()["result"]["text"] == "logged in"


READER = "run-page-reader-token"


@pytest.mark.parametrize("stack", [{"tokens": {TOKEN: ["read", "run", "admin"], READER: ["read"]}}], indirect=True)
async def test_a_read_only_login_sees_the_page_and_the_apis_403_on_its_actions(
    stack: Stack, page: Page, review: WorkerProcess, api: httpx.AsyncClient
) -> None:
    run_id = await start(api, parts=1)
    await page.goto(f"/ui/runs/{run_id}")
    await page.locator("#token").fill(READER)
    await page.locator("#token").press("Enter")
    await expect(page.locator("#run-status")).to_have_text("waiting", timeout=LIVE)
    form = page.locator("form.send-event")
    await form.locator("[data-field=text]").fill("not allowed")
    await form.get_by_role("button").click()
    await expect(form.locator(".result.error")).to_contain_text("403")
    await expect(page.locator("#run-status")).to_have_text("waiting")
    assert not [r for r in await records(api, run_id) if r["type"] == "Verdict"]
