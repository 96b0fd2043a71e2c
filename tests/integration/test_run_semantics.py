"""Run semantics with real worker processes, a real nats-server and the HTTP API: a run timeout
stops the step in flight; a wrong-typed event field fails the step (or gets 422 from outside); a
trigger that does not decode fails its run visibly; a SIGKILLed worker's step reruns elsewhere
within 10 s, while a step longer than ack_wait keeps its lease."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import nats
import pytest

from engine.jetstream.log import JetStreamLog, consumer_name
from engine.model.errors import DeadLetteredError, StepFailedError, WorkflowTimeoutError
from services.client import ApiError, Client
from services.launcher import Launcher, WorkerProcess, load_deployment
from tests.integration.procs import ROOT, eventually

Start = Callable[..., Awaitable[WorkerProcess]]
HELD = "tests.semantics_workflows:Held"


def _files(folder: Path, prefix: str) -> list[Path]:
    return sorted(folder.glob(f"{prefix}-*"))


async def _exists(folder: Path, prefix: str, n: int = 1) -> bool:
    return len(_files(folder, prefix)) >= n


async def test_a_run_timeout_stops_the_step_in_a_worker(client: Client, start_worker: Start, tmp_path: Path) -> None:
    worker = await start_worker(HELD)
    handle = await client.start("Held", dir=str(tmp_path), run_timeout=1.0)
    await eventually(lambda: _exists(tmp_path, "started"), what="the step is running")
    with pytest.raises(WorkflowTimeoutError):
        await asyncio.wait_for(handle.result(), 15)
    # the server fired the timeout (a message schedule); the worker cancels the step
    await eventually(lambda: _exists(tmp_path, "cancelled"), timeout=5, what="the step saw CancelledError")
    (tmp_path / "go").write_text("1")  # a step still running would make its side effect now
    assert await worker.stop() == 0  # after this no process can commit anything of the run
    assert _files(tmp_path, "effect") == []

    view = await handle.status()
    assert view["status"] == "failed" and view["error"]["type"] == "WorkflowTimeoutError"
    types = [f"{r['kind']}.{r['type']}" for r in await handle.events()]
    assert types[-1] == "sys.RunFailed", types
    assert types.count("sys.RunFailed") == 1 and "sys.RunCompleted" not in types


async def test_a_wrong_typed_event_field_fails_the_step_in_a_worker(client: Client, start_worker: Start) -> None:
    await start_worker("tests.semantics_workflows:Mistyped")
    handle = await client.start("Mistyped", how="return", value="x")
    with pytest.raises(StepFailedError) as failed:
        await asyncio.wait_for(handle.result(), 15)
    assert failed.value.step == "make" and failed.value.error_type == "engine.model.errors.EventValidationError"
    assert "Tallied" in failed.value.error_message and "$.count" in failed.value.error_message
    view = await handle.status()
    assert view["status"] == "failed" and "$.count" in view["error"]["message"]
    assert [r["type"] for r in await handle.events() if r["kind"] == "evt"] == ["StartEvent"]
    assert await asyncio.wait_for(client.run("Mistyped", how="return", value=2), 15) == 2


async def test_an_outside_event_with_a_wrong_typed_field_gets_422(
    api: str, client: Client, start_worker: Start
) -> None:
    await start_worker("tests.semantics_workflows:Doorbell")
    handle = await client.start("Doorbell")
    async with httpx.AsyncClient(base_url=api) as http:
        bad = await http.post(f"/runs/{handle.run_id}/events", json={"type": "Nudge", "data": {"n": "x"}})
    assert bad.status_code == 422, bad.text
    body = bad.json()
    assert body["status"] == 422 and "n" in body.get("field", "") + body["error"], body
    with pytest.raises(ApiError) as sdk:
        await client.handle(handle.run_id).send_event(type="Nudge", data={"n": [1]})
    assert sdk.value.status == 422
    assert [r["type"] for r in await handle.events() if r["kind"] == "evt"] == ["StartEvent"]
    await handle.send_event(type="Nudge", data={"n": 4})
    assert await asyncio.wait_for(handle.result(), 15) == 4


async def test_a_dead_lettered_trigger_fails_its_run_visibly(
    nats_url: str, client: Client, start_worker: Start
) -> None:
    await start_worker("tests.semantics_workflows:Doorbell")
    handle = await client.start("Doorbell")
    await eventually(
        lambda: _has_step_done(client, handle.run_id), what="the first step has run (the run waits)"
    )
    subject = f"jetloom.run.Doorbell.{handle.run_id}.evt.Nudge"
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for _ in range(2):  # a corrupt or foreign producer, twice
            await js.publish(subject, b"\x00not json", headers={"Jl-Run": handle.run_id, "Jl-Type": "Nudge"})
    finally:
        await nc.close()

    async def failed() -> bool:
        return (await handle.status())["status"] == "failed"

    await eventually(failed, timeout=15, what="the run failed")
    view = await handle.status()
    err = view["error"]
    assert err["type"] == "DeadLetteredError" and subject in err["message"], err
    dead = err["dead_letter"]
    assert dead["subject"] == subject and dead["step"] == "second" and dead["reason"], dead
    with pytest.raises(DeadLetteredError) as raised:
        await handle.result()
    assert raised.value.step == "second" and subject in str(raised.value)
    log = await JetStreamLog.connect(nats_url)
    try:
        await eventually(lambda: _dead_count(log, subject, 2), timeout=10, what="both messages dead-lettered")
    finally:
        await log.close()
    types = [r["type"] for r in await handle.events() if r["kind"] == "sys"]
    assert types.count("RunFailed") == 1, types  # the second dead letter appended nothing


async def _has_step_done(client: Client, run_id: str) -> bool:
    return any(r["type"] == "StepCompleted" or r.get("completes_step") for r in await client.handle(run_id).events())


async def _dead_count(log: JetStreamLog, subject: str, n: int) -> bool:
    return sum(d.original_subject == subject for d in await log.dead_letters()) >= n


async def test_a_killed_workers_step_reruns_elsewhere_within_10s(
    client: Client, start_worker: Start, tmp_path: Path
) -> None:
    workers = [await start_worker(HELD), await start_worker(HELD)]  # the defaults: ack_wait 6 s
    handle = await client.start("Held", dir=str(tmp_path))
    await eventually(lambda: _exists(tmp_path, "started"), what="the step is running")
    (first,) = _files(tmp_path, "started")
    holder = next(w for w in workers if first.name.startswith(f"started-{w.pid}-"))
    holder.kill()
    killed = time.monotonic()
    await eventually(lambda: _exists(tmp_path, "started", 2), timeout=15, what="the step reran")
    rerun_s = time.monotonic() - killed
    assert rerun_s < 10, f"rerun {rerun_s:.1f}s after the kill"
    (tmp_path / "go").write_text("1")
    assert await asyncio.wait_for(handle.result(), 15) == "done"
    print(f"SIGKILL -> rerun in another worker: {rerun_s:.2f}s")


async def test_a_step_longer_than_ack_wait_keeps_its_lease(
    nats_url: str, client: Client, start_worker: Start, tmp_path: Path
) -> None:
    # a worker made the consumer with the default ack_wait; this one, started with another,
    # applies it to the existing consumer and says so in one line
    first = await start_worker(HELD)
    assert await first.stop() == 0
    changer = await start_worker(HELD, "--ack-wait", "1.5", "--progress-heartbeat", "0.5")
    assert "ack_wait of existing consumers changed to 1.5s" in changer.output()
    await start_worker(HELD, "--ack-wait", "1.5", "--progress-heartbeat", "0.5")  # (a redelivery could go here)
    log = await JetStreamLog.connect(nats_url)
    try:
        info = await log.js.consumer_info(log.stream, consumer_name("Held", "hold"))
        assert info.config.ack_wait == pytest.approx(1.5)
    finally:
        await log.close()
    handle = await client.start("Held", dir=str(tmp_path))
    await eventually(lambda: _exists(tmp_path, "started"), what="the step is running")
    held_since = time.monotonic()
    while time.monotonic() - held_since < 3 * 1.5:  # three ack_waits: no redelivery meanwhile
        assert len(_files(tmp_path, "started")) == 1, "the running step's trigger was redelivered"
        await asyncio.sleep(0.05)
    (tmp_path / "go").write_text("1")
    assert await asyncio.wait_for(handle.result(), 15) == "done"
    assert len(_files(tmp_path, "started")) == 1 and len(_files(tmp_path, "effect")) == 1


async def test_a_deployment_file_sets_the_workers_ack_wait_and_heartbeat(nats_url: str, tmp_path: Path) -> None:
    f = tmp_path / "jetloom.toml"
    service = '[[services]]\nname = "held"\nworkflow = "tests.semantics_workflows:Held"\n'
    f.write_text("[control_plane]\nenabled = false\n\n" + service + "ack_wait_s = 2.5\nprogress_heartbeat_s = 0.5\n")
    dep = load_deployment(f)
    assert (dep.services[0].ack_wait_s, dep.services[0].progress_heartbeat_s) == (2.5, 0.5)
    async with Launcher(nats_url, cwd=ROOT) as launcher:
        await launcher.launch(dep)
        log = await JetStreamLog.connect(nats_url)
        try:
            info = await log.js.consumer_info(log.stream, consumer_name("Held", "hold"))
        finally:
            await log.close()
    assert info.config.ack_wait == pytest.approx(2.5)
    f.write_text(service + "ack_wait_s = 2\nprogress_heartbeat_s = 3\n")
    with pytest.raises(ValueError, match="'held'.*shorter than ack_wait"):
        load_deployment(f)
