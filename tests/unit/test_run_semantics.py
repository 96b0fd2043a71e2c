"""Run semantics in process, on the memory log: a run timeout stops the run's step in flight and
nothing of the run commits after its terminal record; an event with a wrong-typed field fails the
step that emits it; a trigger that does not decode fails its run instead of leaving it running."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from engine import MemoryLog, StepFailedError, WorkflowTimeoutError
from engine.model.errors import DeadLetteredError, EventValidationError
from engine.model.events import encode_checked, encode_event
from engine.model.records import OutMessage, RawRecord, RunFailed
from engine.runtime.executor import Executor
from engine.runtime.inprocess import start_run
from engine.state.fold import fold
from engine.wire.codec import decode_record
from engine.wire.headers import H_RUN, H_TYPE
from engine.wire.subjects import run_subject
from tests.semantics_workflows import Doorbell, Held, Mistyped, Nudge, Tallied


async def _until(check: Callable[[], Any], timeout: float = 5.0, what: str = "") -> None:
    """Wait until ``check()`` (or, for a coroutine function, what it returns) is true."""
    deadline = time.monotonic() + timeout
    while True:
        ok = check()
        if asyncio.iscoroutine(ok):
            ok = await ok
        if ok:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.01)


def _files(folder: Path, prefix: str) -> list[str]:
    return sorted(p.name for p in folder.glob(f"{prefix}-*"))


async def _kinds(log: MemoryLog, workflow: str, run_id: str) -> list[str]:
    return [".".join(r.subject.split(".")[-2:]) for r in await log.read(workflow, run_id)]


async def _run_timing_out(log: MemoryLog, folder: Path) -> tuple[Executor, str]:
    """Start a Held run with a 0.3 s timeout on an executor that outlives it (a worker serving
    other runs); returns once the run has failed with WorkflowTimeoutError."""
    ex = Executor(Held(), log)
    await ex.start()
    handler = start_run(log, Held, start_event=None, run_id=None, fields={"dir": str(folder)}, timeout=0.3)
    await _until(lambda: bool(_files(folder, "started")), what="the step is running")
    with pytest.raises(WorkflowTimeoutError):
        await asyncio.wait_for(handler, 10)
    return ex, handler.run_id


async def test_a_run_timeout_cancels_the_step_in_flight(tmp_path: Path) -> None:
    log = MemoryLog()
    ex, run_id = await _run_timing_out(log, tmp_path)
    try:
        await _until(lambda: bool(_files(tmp_path, "cancelled")), what="the step saw CancelledError")
        (tmp_path / "go").write_text("1")  # a step still running would make its side effect now
        await asyncio.sleep(0)
        assert _files(tmp_path, "effect") == []
        assert ex.stats.cancelled == 1
        kinds = await _kinds(log, "Held", run_id)
        assert kinds[-1] == "sys.RunFailed" and "sys.RunCompleted" not in kinds, kinds
        st = fold(decode_record(r) for r in await log.read("Held", run_id))
        assert st.status == "failed" and st.error.error_type == "WorkflowTimeoutError"  # type: ignore[union-attr]
    finally:
        await ex.stop(grace=0)


class _NoNotices(MemoryLog):
    """A memory log whose record-type follows never deliver: as if the notice of a run's end
    came after the step's commit was sent."""

    async def follow_type(self, workflow: str, kind: str, type_name: str, sink: Callable[[RawRecord], None]):  # type: ignore[override]
        return lambda: None


async def test_a_commit_racing_the_terminal_record_does_not_land_after_it(tmp_path: Path) -> None:
    log = _NoNotices()
    ex, run_id = await _run_timing_out(log, tmp_path)
    try:
        (tmp_path / "go").write_text("1")  # the step finishes after the timeout: its commit is refused
        await _until(lambda: bool(_files(tmp_path, "effect")), what="the step ran to its end")
        await _until(lambda: ex.stats.cancelled == 1, what="the commit was dropped")
        kinds = await _kinds(log, "Held", run_id)
        assert kinds[-1] == "sys.RunFailed" and "sys.RunCompleted" not in kinds, kinds
    finally:
        await ex.stop(grace=0)


@pytest.mark.parametrize("how", ["return", "send", "stream"])
async def test_a_wrong_typed_field_fails_the_step_that_emits_it(how: str) -> None:
    with pytest.raises(StepFailedError) as failed:
        await asyncio.wait_for(Mistyped(timeout=10).run(how=how, value="x"), 10)
    err = failed.value
    assert err.step == "make" and err.error_type == "engine.model.errors.EventValidationError"
    name, field = ("TallyReport", "$.total") if how == "stream" else ("Tallied", "$.count")
    assert name in err.error_message and field in err.error_message, err.error_message
    assert await asyncio.wait_for(Mistyped(timeout=10).run(how=how, value=3), 10) == (1 if how == "stream" else 3)


def test_encode_checked_names_the_event_and_field_and_costs_one_decode() -> None:
    with pytest.raises(ValidationError, match="count"):  # pydantic validates on construction
        Tallied(count="x")  # type: ignore[arg-type]
    bad = Tallied(count=0)
    bad.count = "x"  # type: ignore[assignment]  # ... but not on assignment: encode_checked finds it
    with pytest.raises(EventValidationError, match=r"Tallied .*\$\.count"):
        encode_checked(bad)
    ev = Tallied(count=7)
    assert encode_checked(ev) == encode_event(ev)
    n = 20_000
    t0 = time.perf_counter()
    for _ in range(n):
        encode_event(ev)
    t1 = time.perf_counter()
    for _ in range(n):
        encode_checked(ev)
    t2 = time.perf_counter()
    extra_us = ((t2 - t1) - (t1 - t0)) / n * 1e6
    print(f"encode_checked costs {extra_us:.2f} µs more per event than encode_event")
    assert extra_us < 20  # (≈ 0.8 µs on the 2-core machine; a loose bound for a loaded one)


async def test_an_outside_event_with_a_wrong_typed_field_is_refused() -> None:
    log = MemoryLog()
    wf = Doorbell(timeout=10, log=log)
    handler = wf.run()
    bad = Nudge(n=0)
    bad.n = "x"  # type: ignore[assignment]  # (construction validates; assignment does not)
    with pytest.raises(EventValidationError, match=r"Nudge .*\$\.n"):
        await handler.send_event(bad)
    await handler.send_event(Nudge(n=5))
    assert await asyncio.wait_for(handler, 10) == 5
    kinds = await _kinds(log, "Doorbell", handler.run_id)
    assert kinds.count("evt.Nudge") == 1  # the refused one never reached the log


async def test_a_trigger_that_does_not_decode_fails_its_run_once() -> None:
    log = MemoryLog()
    ex = Executor(Doorbell(), log)  # (a worker: it outlives the run, and so sees the second message)
    await ex.start()
    handler = start_run(log, Doorbell, start_event=None, run_id=None, fields={}, timeout=10)
    run_id = handler.run_id
    await _until(lambda: log.read("Doorbell", run_id), what="the run started")
    subject = run_subject(log.prefix, "Doorbell", run_id, "evt", "Nudge")
    bad = OutMessage(subject, b'{"$type":"Nudge","n":"not a number"}', {H_RUN: run_id, H_TYPE: "Nudge"})
    await log.append([bad])  # what a corrupt or foreign producer might publish
    with pytest.raises(DeadLetteredError) as dead:
        await asyncio.wait_for(handler, 10)
    assert dead.value.step == "second" and subject in dead.value.message
    await log.append([bad])  # again, after the run failed: dead-lettered, and the run fails once

    async def both_dead() -> bool:
        return len(await log.dead_letters()) == 2

    await _until(both_dead, what="both messages dead-lettered")
    records = [decode_record(r) for r in await log.read("Doorbell", run_id)]
    failed = [r.body for r in records if isinstance(r.body, RunFailed)]
    assert len(failed) == 1 and failed[0].error_type == "DeadLetteredError"
    ref = failed[0].dead_letter
    assert ref is not None and ref.subject == subject and ref.step == "second" and "$.n" in ref.reason
    assert fold(records).status == "failed"
    assert ex.stats.dead_lettered == 2
    await ex.stop(grace=0)
