"""Retries, error routing, retry-from-failure, cancel and run timeouts against a real
nats-server, real worker processes and the HTTP API."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from engine.model.errors import (
    NoLiveWorkerWarning,
    StepFailedError,
    WorkflowCancelledError,
    WorkflowTimeoutError,
)
from services.client import ApiError, Client
from services.launcher import WorkerProcess
from tests.integration.procs import eventually
from tests.retry_workflows import BROKEN_ENV

Start = Callable[..., Awaitable[WorkerProcess]]


def _ts(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(record["time"].replace("Z", "+00:00")).timestamp()


async def _ended(client: Client, run_id: str) -> dict[str, Any]:
    view: dict[str, Any] = {}

    async def check() -> bool:
        nonlocal view
        view = await client.handle(run_id).status()
        return view["status"] in ("completed", "failed", "cancelled")

    await eventually(check, what=f"run {run_id} ended")
    return view


async def test_retries_with_backoff_are_records_in_the_log(client: Client, start_worker: Start) -> None:
    await start_worker("tests.retry_workflows:Flaky")
    handle = await client.start("Flaky", key=uuid.uuid4().hex, fail_times=3)
    assert await asyncio.wait_for(handle.result(), 30) == {"attempts": 4}

    records = await handle.events()
    retrying = [r for r in records if r["type"] == "StepRetrying"]
    assert [r["data"]["attempt"] for r in retrying] == [1, 2, 3]
    assert all(r["data"]["error_type"] == "builtins.ConnectionError" for r in retrying)
    assert [r["data"]["message"] for r in retrying] == [f"attempt {i} failed" for i in (1, 2, 3)]
    assert "Traceback" in retrying[0]["data"]["traceback"]
    delays = [r["data"]["delay_ms"] / 1e3 for r in retrying]
    for i, d in enumerate(delays):  # 0.2 * 2**i plus at most 0.05 s of jitter
        assert 0.2 * 2**i <= d <= 0.2 * 2**i + 0.05
    assert delays == sorted(delays)
    resumes = [r for r in records if r["kind"] == "cmd"]
    assert [(r["data"]["reason"], r["data"]["attempt"]) for r in resumes] == [
        ("retry", 2),
        ("retry", 3),
        ("retry", 4),
    ]
    for rt, resume in zip(retrying, resumes, strict=True):  # each attempt waited its delay
        assert _ts(resume) - _ts(rt) >= rt["data"]["delay_ms"] / 1e3 - 0.05
    (done,) = [r for r in records if r["type"] == "StepCompleted"]
    assert done["data"]["attempt"] == 4
    assert not any(r["type"] == "StepFailed" for r in records)


async def test_exhausted_retries_go_to_the_catch_error_step(client: Client, start_worker: Start) -> None:
    await start_worker("tests.retry_workflows:Guarded")
    handle = await client.start("Guarded", what="bricks")
    result = await asyncio.wait_for(handle.result(), 30)
    assert result == {
        "step": "work",
        "error_type": "builtins.ValueError",
        "message": "cannot work on bricks",
        "attempts": 2,
        "event": {"what": "bricks"},
    }
    records = await handle.events()
    assert [r["type"] for r in records if r["kind"] == "sys"] == [
        "RunStarted",
        "StepRetrying",
        "StepFailed",
        "RunCompleted",  # recover's whole commit (a one-message commit)
    ]
    (failed,) = [r for r in records if r["type"] == "StepFailed"]
    assert failed["data"]["handled_by"] == "recover" and failed["data"]["attempt"] == 2
    (routed,) = [r for r in records if r["type"] == "StepFailedEvent"]
    assert routed["target"] == "recover"
    listed, _ = await client.runs(workflow="Guarded")
    assert [r["status"] for r in listed] == ["completed"]  # a handled failure ends nothing


async def test_retry_a_failed_run_after_fixing_the_worker(
    client: Client, start_worker: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BROKEN_ENV, "1")
    broken = await start_worker("tests.retry_workflows:Fixable")
    handle = await client.start("Fixable", text="fixed")
    with pytest.raises(StepFailedError, match="broken in this build"):
        await asyncio.wait_for(handle.result(), 30)
    listed, _ = await client.runs(workflow="Fixable", status="failed")
    assert [r["run_id"] for r in listed] == [handle.run_id]

    with pytest.raises(ApiError) as not_found:
        await client.handle("nosuchrun").retry()
    assert not_found.value.status == 404

    await broken.stop()
    monkeypatch.delenv(BROKEN_ENV)
    res = await handle.retry()  # no worker yet: the reopened run waits for one
    assert (res["status"], res["step"], res["attempt"]) == ("running", "check", 2)
    # result() reads past the failure the retry reopened and follows the run to its new end
    result = asyncio.ensure_future(handle.result())
    await start_worker("tests.retry_workflows:Fixable")  # the "fixed" build
    assert await asyncio.wait_for(result, 30) == "FIXED"

    with pytest.raises(ApiError) as conflict:  # a completed run cannot be retried
        await handle.retry()
    assert conflict.value.status == 409
    assert conflict.value.body is not None and conflict.value.body["status"] == 409

    listed, _ = await client.runs(workflow="Fixable")
    assert [(r["run_id"], r["status"]) for r in listed] == [(handle.run_id, "completed")]
    records = await handle.events()
    completed = [r for r in records if r["type"] == "StepCompleted" or r.get("completes_step")]
    assert [r["step"] for r in completed] == ["prepare", "check"]  # prepare did not run again
    (resume,) = [r for r in records if r["kind"] == "cmd"]
    assert resume["data"]["reason"] == "manual"
    # prepare's commit is its one event (a first attempt); check's, at its second, a StepCompleted
    assert completed[0]["kind"] == "evt" and completed[0]["worker"]
    assert completed[1]["type"] == "StepCompleted" and completed[1]["data"]["attempt"] == 2


async def test_cancel_stops_an_in_flight_step_and_nothing_commits_after(
    client: Client, start_worker: Start, tmp_path: Path
) -> None:
    worker = await start_worker("tests.retry_workflows:Stubborn")
    handle = await client.start("Stubborn", dir=str(tmp_path), seconds=60)

    async def exists(name: str) -> bool:
        return (tmp_path / name).exists()

    await eventually(lambda: exists("started"), what="the long step is running")
    t0 = time.monotonic()
    await handle.cancel("enough")
    await eventually(lambda: exists("cancelled"), timeout=5, what="the step saw CancelledError")
    assert time.monotonic() - t0 < 5
    assert await worker.stop() == 0  # after this no process can commit anything of the run

    with pytest.raises(WorkflowCancelledError):
        await asyncio.wait_for(handle.result(), 10)
    records = await handle.events()
    types = [f"{r['kind']}.{r['type']}" for r in records]
    assert types[-1] == "sys.RunCancelled", types
    assert "sys.StepCompleted" not in types and "sys.RunCompleted" not in types


async def test_a_run_timeout_fires_with_no_process_running_the_run(client: Client, start_worker: Start) -> None:
    # register the workflow, then stop every worker: only the log holds the timeout
    w = await start_worker("tests.retry_workflows:Stubborn")
    assert await w.stop() == 0
    started = time.monotonic()
    with pytest.warns(NoLiveWorkerWarning, match="'Stubborn'"):  # no process runs it: said so
        handle = await client.start("Stubborn", dir="/nonexistent", seconds=60, run_timeout=1.0)
    assert any(r["kind"] == "sch" for r in await handle.events())  # the pending timeout
    view = await _ended(client, handle.run_id)
    assert time.monotonic() - started >= 1.0
    assert view["status"] == "failed" and view["error"]["type"] == "WorkflowTimeoutError"
    with pytest.raises(WorkflowTimeoutError):
        await handle.result()
    records = await handle.events()
    assert [r["type"] for r in records if r["kind"] == "sys"] == ["RunStarted", "RunFailed"]


async def test_bad_retry_and_timeout_requests_get_clear_errors(client: Client, start_worker: Start) -> None:
    await start_worker("tests.retry_workflows:Fixable")
    handle = await client.start("Fixable", text="ok")
    await handle.result()
    with pytest.raises(ApiError) as exc:
        await handle.retry()
    assert exc.value.status == 409 and "not failed" in exc.value.reason
    with pytest.raises(ApiError) as bad:
        await client.start("Fixable", text="x", run_timeout=-1)
    assert bad.value.status == 400
