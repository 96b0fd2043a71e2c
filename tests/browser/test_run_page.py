"""The run page (/ui/runs/{id}) in chromium: a real nats-server, the control plane on uvicorn and a
worker process serving tests/browser/run_flows.py. The page shows the run's steps on the timeline,
answers the awaited event through its form and sees the run complete live; the state slider shows
an earlier sequence; rollback and fork do what the API says; a 4xx reason shows on the page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.integration.procs import WorkerProcess

from .conftest import save_doc_screenshot

WF = "Review"
LIVE = 20_000  # ms an expectation on the live page may take (a run's steps, under a loaded CI)


@pytest.fixture
def review(stack: Any) -> Iterator[WorkerProcess]:
    """A worker process serving ``Review``."""
    w = WorkerProcess("tests.browser.run_flows:Review", stack.nats_url)
    try:
        w.wait_ready()
        yield w
    finally:
        w.kill()


def start(api: httpx.Client, **fields: Any) -> str:
    r = api.post(f"/workflows/{WF}/runs", json=fields)
    assert r.status_code in (200, 201, 202), r.text
    return str(r.json()["run_id"])


def records(api: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    r = api.get(f"/runs/{run_id}/events")
    assert r.status_code == 200, r.text
    return list(r.json()["records"])


def waiting_page(page: Page, base: str, run_id: str) -> None:
    """Open the run page and wait until it shows the run waiting for the Verdict."""
    page.goto(f"{base}/ui/runs/{run_id}")
    expect(page.locator("#run-status")).to_have_text("waiting", timeout=LIVE)
    expect(page.locator("form.send-event")).to_be_visible()


def test_answer_the_awaited_event_through_its_form(stack: Any, page: Page, review: WorkerProcess) -> None:
    with httpx.Client(base_url=stack.url) as api:
        run_id = start(api, parts=3)
        page.goto(f"{stack.url}/ui/runs/{run_id}")
        expect(page.locator("#run-id")).to_have_text(run_id)
        # live: the steps appear on the timeline as the worker records them, then the wait
        expect(page.locator("#run-status")).to_have_text("waiting", timeout=LIVE)
        for name in ("split", "check", "gather"):
            expect(page.locator(f".tl-row[data-step={name}] .tl-bar").first).to_be_visible()
        # three parts, the first one twice (it failed once and was retried)
        expect(page.locator(".tl-row[data-step=check] .tl-bar")).to_have_count(4)
        expect(page.locator(".tl-row[data-step=check] .tl-bar.outcome-retrying")).to_have_count(1)
        expect(page.locator(".tl-row[data-step=check] .tl-wait.timer")).to_have_count(3)
        expect(page.locator(".tl-row[data-step=gather] .tl-wait.wait.open")).to_have_count(1)
        expect(page.locator("#run-graph-steps")).to_have_count(1)
        assert page.evaluate("window.jlGraph.getElementById('gather').hasClass('waiting')")
        assert page.evaluate("window.jlGraph.getElementById('check').hasClass('ran')")

        form = page.locator("form.send-event")
        expect(form).to_have_attribute("data-event-type", "Verdict")
        assert form.locator("[name=score]").get_attribute("type") == "number"
        assert form.locator("[name=approved]").get_attribute("type") == "checkbox"
        assert form.locator("textarea[name=notes]").count() == 1  # a list: a JSON textarea
        form.locator("[name=text]").fill("ship it")
        form.locator("[name=score]").fill("9")
        form.locator("[name=approved]").check()
        form.locator("[name=notes]").fill("not json")
        form.get_by_role("button").click()
        expect(form.locator(".result.error")).to_contain_text("notes: not JSON")
        form.locator("[name=notes]").fill('["first", "second"]')
        form.get_by_role("button").click()

        # live, without a reload: the status badge, the result, the log's last records
        expect(page.locator("#run-status")).to_have_text("completed", timeout=LIVE)
        expect(page.locator("#run-result")).to_contain_text('"ship it"')
        expect(page.locator("#run-log .rec").last).to_contain_text("sys.RunCompleted")
        expect(page.locator(".tl-row[data-step=gather] .tl-bar").last).to_have_attribute("data-outcome", "completed")
        view = api.get(f"/runs/{run_id}").json()
        assert view["status"] == "completed"
        assert view["result"] == {"text": "ship it", "score": 9, "approved": True}
        answer = next(r for r in records(api, run_id) if r["type"] == "Verdict")
        assert answer["data"]["notes"] == ["first", "second"]
        # every record the API lists is in the page's log (which may also hold pending-timer
        # messages that the server removed since they fired)
        shown = {int(s) for s in page.locator("#run-log .rec").evaluate_all("els => els.map(e => e.dataset.seq)")}
        assert {r["seq"] for r in records(api, run_id)} <= shown
        page.locator(".executions > summary").click()
        expect(page.locator(".exec-table tr.exec")).to_have_count(len(page.locator(".tl-bar").all()))
        assert page.evaluate("window.jlGraph.getElementById('gather').hasClass('ran')")
        save_doc_screenshot(page, "run")


def test_state_slider_rollback_and_fork(stack: Any, page: Page, review: WorkerProcess) -> None:
    with httpx.Client(base_url=stack.url) as api:
        run_id = start(api, parts=2)
        waiting_page(page, stack.url, run_id)
        recs = records(api, run_id)
        first, last = recs[0]["seq"], recs[-1]["seq"]
        split_done = max(r["seq"] for r in recs if r["type"] == "Part")  # split's commit ends with its parts
        wait_seq = next(r["seq"] for r in recs if r["type"] == "StepSuspended" and r["data"]["kind"] == "event")

        # the state slider: after split's commit, split is done and the checks are pending
        slider = page.locator("#state-at")
        assert int(slider.get_attribute("min") or 0) == first and int(slider.get_attribute("max") or 0) >= last
        slider.fill(str(split_done))
        expect(page.locator("#state-seq")).to_have_text(str(split_done))
        expect(page.locator("#state-done")).to_have_text(f"split@{recs[1]['seq']}")
        expect(page.locator("#state-pending")).to_contain_text("check@")
        expect(page.locator("#state-json")).to_contain_text('"parts": 2')
        expect(page.locator("#state-json")).not_to_contain_text("checked")
        api_state = api.get(f"/runs/{run_id}/state", params={"at": split_done}).json()
        assert page.locator("#state-pending code").count() == len(api_state["pending"]) >= 1

        # a rollback to before the start: the API's 422 reason shows under the form
        rollback = page.locator("form.rollback")
        rollback.locator("[name=to_seq]").fill(str(first))
        page.once("dialog", lambda d: d.accept())
        rollback.get_by_role("button").click()
        expect(rollback.locator(".result.error")).to_contain_text("422")
        reason = api.post(f"/runs/{run_id}/rollback", json={"to_seq": first}).json()["error"]
        expect(rollback.locator(".result.error")).to_contain_text(reason)

        # fork at the wait: a new run waiting for its own Verdict, linked from the page
        fork = page.locator("form.fork")
        fork.locator("[name=at_seq]").fill(str(wait_seq))
        fork.locator("[name=run_id]").fill(f"{run_id}-fork")
        fork.get_by_role("button").click()
        expect(fork.locator(".result.ok a")).to_have_text(f"{run_id}-fork")
        forked = api.get(f"/runs/{run_id}-fork").json()
        assert forked["status"] in ("running", "waiting") and forked["workflow"] == WF
        fork.locator(".result.ok a").click()
        expect(page.locator("#run-id")).to_have_text(f"{run_id}-fork")
        expect(page.locator("#run-status")).to_have_text("waiting", timeout=LIVE)
        expect(page.locator(f".run-facts a[href='/ui/runs/{run_id}']")).to_have_text(run_id)  # forked from

        # answer the original through the API; the page, opened on the ended run, rolls it back
        # to the wait: it reloads and waits for the Verdict again
        sent = api.post(f"/runs/{run_id}/events", json={"type": "Verdict", "data": {"text": "first"}})
        assert sent.status_code == 202, sent.text
        page.goto(f"{stack.url}/ui/runs/{run_id}")
        expect(page.locator("#run-status")).to_have_text("completed", timeout=LIVE)
        rollback = page.locator("form.rollback")
        rollback.locator("[name=to_seq]").fill(str(wait_seq))
        rollback.locator("[name=reason]").fill("again")
        page.once("dialog", lambda d: d.accept())
        rollback.get_by_role("button").click()
        expect(page.locator("#run-status")).to_have_text("waiting", timeout=LIVE)
        expect(page.locator(".tl-marker.marker-rollback").first).to_be_attached()
        expect(page.locator(".rec.rolled-back").first).to_be_attached()  # the undone records, struck through
        marker = [r for r in records(api, run_id) if r["type"] == "RolledBack"]
        assert [m["data"]["to_seq"] for m in marker] == [wait_seq] and marker[0]["data"]["reason"] == "again"
        assert api.get(f"/runs/{run_id}").json()["status"] in ("running", "waiting")
