"""The engine's own checks of names and ids (one length limit with the HTTP API, workflow names at
class creation), and a run's end removing its pending timeout schedule on the in-process log."""

from __future__ import annotations

import asyncio
import time

import pytest

from engine import (
    Context,
    StartEvent,
    StepFailedError,
    StopEvent,
    Workflow,
    WorkflowValidationError,
    step,
)
from engine.memory.log import MemoryLog
from engine.model.records import RawRecord, RunStarted
from engine.runtime.commands import append_cancel, append_event, append_start, start_messages
from engine.runtime.recovery import end_run_timeout, run_timeout_at, schedule_run_timeout
from engine.state.fold import RunState, fold
from engine.state.snapshots import decode_snapshot, encode_snapshot
from engine.wire.codec import decode_record
from engine.wire.subjects import NAME_MAX, check_token
from services.control import validation


@pytest.mark.parametrize("value", ["a", "run-1_B", "r" * NAME_MAX])
def test_a_token_of_1_to_name_max_characters_passes(value: str) -> None:
    assert check_token(value, "run id") == value


@pytest.mark.parametrize(
    "value", ["", "r" * (NAME_MAX + 1), "r" * 5_000, "a.b", "a*", ">", "a b", "run\n", "a\x00", "é"]
)
def test_a_bad_token_is_refused_with_the_rule(value: str) -> None:
    with pytest.raises(ValueError, match=r"run id .* 1 to 128 characters"):
        check_token(value, "run id")


def test_a_long_value_is_cut_in_the_error() -> None:
    with pytest.raises(ValueError) as info:
        check_token("r" * 5_000, "run id")
    assert len(str(info.value)) < 200 and "5000 characters" in str(info.value)


def test_the_http_rules_use_the_engine_limit_and_pattern() -> None:
    assert validation.NAME_MAX == NAME_MAX
    assert validation.problem("r" * NAME_MAX) is None
    assert "129 characters" in (validation.problem("r" * (NAME_MAX + 1)) or "")
    # Python's ``$`` matches before a trailing newline: the shared pattern does not let it pass
    assert validation.problem("run\n") == "contains whitespace ('\\n')"


def test_a_workflow_name_longer_than_the_limit_fails_at_class_creation() -> None:
    with pytest.raises(WorkflowValidationError, match=r"workflow class .*Long.*: workflow name 'wwww"):

        class Long(Workflow):
            workflow_name = "w" * (NAME_MAX + 1)

            @step
            async def go(self, ev: StartEvent) -> StopEvent:
                return StopEvent()


def test_a_workflow_class_name_longer_than_the_limit_fails_at_class_creation() -> None:
    with pytest.raises(WorkflowValidationError, match="workflow name"):
        type("C" * (NAME_MAX + 1), (Workflow,), {})
    ok = type("C" * NAME_MAX, (Workflow,), {})
    assert ok.workflow_name == "C" * NAME_MAX


async def test_commands_refuse_bad_ids_before_the_log() -> None:
    log = MemoryLog()
    long = "r" * (NAME_MAX + 1)
    with pytest.raises(ValueError, match="run id"):
        await append_start(log, "W", long, "StartEvent", b"{}")
    with pytest.raises(ValueError, match="run id"):
        await append_event(log, "W", long, "Ping", b"{}")
    with pytest.raises(ValueError, match="workflow"):
        await append_cancel(log, "W.x", "r1")
    with pytest.raises(ValueError, match="event type"):
        await append_event(log, "W", "r1", "P" * (NAME_MAX + 1), b"{}")
    assert await log.read("W", long[:NAME_MAX]) == []


def test_the_deadline_reaches_the_fold_and_snapshots() -> None:
    at = run_timeout_at(5.0, now_ns=1_000)
    assert at == 1_000 + 5_000_000_000
    msgs = start_messages("jetloom", "W", "r1", "StartEvent", b"{}", timeout_at_ns=at)
    raws = [RawRecord(seq=i + 1, subject=m.subject, data=m.data, headers=m.headers, time_ns=1_000) for i, m in enumerate(msgs)]
    st = fold(decode_record(r) for r in raws)
    assert st.timeout_at_ns == at
    again = decode_snapshot(encode_snapshot(st))
    assert again is not None and again.timeout_at_ns == at
    assert RunStarted(workflow="W", run_id="r", start_event="S").timeout_at_ns == 0  # old records
    with pytest.raises(ValueError, match="run timeout"):
        start_messages("jetloom", "W", "r1", "StartEvent", b"{}", new_run=True, timeout_at_ns=at)


async def _types(log: MemoryLog, run_id: str) -> list[str]:
    return [r.subject.rsplit(".", 2)[-2] + "." + r.subject.rsplit(".", 1)[-1] for r in await log.read("W", run_id)]


async def _marker_fired(log: MemoryLog, at_ns: int) -> None:
    """Wait until a timer set for ``at_ns`` (after every deadline of the test) has fired."""
    await schedule_run_timeout(log, "W", "marker", 1.0, at_ns=at_ns)
    deadline = time.monotonic() + 10
    while "sys.RunFailed" not in await _types(log, "marker"):
        assert time.monotonic() < deadline, "the marker timer did not fire"
        await asyncio.sleep(0.01)


async def test_a_cancel_removes_the_pending_timeout_on_the_memory_log() -> None:
    log = MemoryLog()
    at = run_timeout_at(0.2)
    await append_start(log, "W", "r1", "StartEvent", b"{}", timeout_at_ns=at)
    await schedule_run_timeout(log, "W", "r1", 0.2, at_ns=at)
    await append_cancel(log, "W", "r1", "stop")  # (after_end: end_run_timeout)
    await _marker_fired(log, at + 100_000_000)
    assert (await _types(log, "r1"))[-1] == "sys.RunCancelled"
    assert "sys.RunFailed" not in await _types(log, "r1")


async def test_a_schedule_stored_after_the_run_ended_is_removed_at_once() -> None:
    log = MemoryLog()
    at = run_timeout_at(0.2)
    await append_start(log, "W", "r1", "StartEvent", b"{}", timeout_at_ns=at)
    await append_cancel(log, "W", "r1", "ended before its schedule was stored")
    await schedule_run_timeout(log, "W", "r1", 0.2, at_ns=at)  # reads the run: it has ended
    await _marker_fired(log, at + 100_000_000)
    assert "sys.RunFailed" not in await _types(log, "r1")


async def test_a_run_without_timeout_costs_no_removal() -> None:
    log = MemoryLog()
    await append_start(log, "W", "r1", "StartEvent", b"{}")
    st = fold(decode_record(r) for r in await log.read("W", "r1"))
    assert st.timeout_at_ns == 0
    assert await end_run_timeout(log, st) is False
    assert await end_run_timeout(log, RunState("W", "r2")) is False


async def test_without_the_removal_the_timeout_fires_after_the_end() -> None:
    # the guard of the tests above: a schedule nobody removes does append after the end
    log = MemoryLog()
    at = run_timeout_at(0.2)
    await append_start(log, "W", "r1", "StartEvent", b"{}")  # (no deadline: nobody removes it)
    await schedule_run_timeout(log, "W", "r1", 0.2, at_ns=at)
    await append_cancel(log, "W", "r1", "stop")
    await _marker_fired(log, at + 100_000_000)
    assert (await _types(log, "r1"))[-2:] == ["sys.RunCancelled", "sys.RunFailed"]


class _LaggingFollow(MemoryLog):
    """A log whose callback follows never deliver: the handler's view lags the log, as a
    follow over the network can when the run ends just before the handler's timer fires."""

    async def follow_callback(self, workflow, run_id, sink, *, kinds=None):  # type: ignore[no-untyped-def]
        return lambda: None


async def test_a_handler_timeout_appends_nothing_after_an_end_it_has_not_seen_yet() -> None:
    from engine.model.records import OutMessage, RunCompleted
    from engine.runtime.commands import start_messages as _start
    from engine.runtime.handler import WorkflowHandler
    from engine.wire.codec import encode
    from engine.wire.headers import H_RUN, H_TYPE
    from engine.wire.subjects import run_subject

    log = _LaggingFollow()
    ended = asyncio.Event()

    async def prepare() -> None:
        await log.append(_start(log.prefix, "W", "r1", "StartEvent", b"{}"))
        done = RunCompleted(step="go", trigger=2, event_type="StopEvent", event={"result": 1})
        subject = run_subject(log.prefix, "W", "r1", "sys", "RunCompleted")
        await log.append([OutMessage(subject, encode(done), {H_RUN: "r1", H_TYPE: "RunCompleted"})])
        ended.set()

    handler = WorkflowHandler(
        log=log, workflow="W", run_id="r1", events={}, timeout=0.05, prepare=prepare, fresh=True
    )
    await asyncio.wait_for(ended.wait(), 10)
    deadline = time.monotonic() + 10
    while handler._timing_out is None or not handler._timing_out.done():  # the timer fired and acted
        assert time.monotonic() < deadline, "the handler's timeout did not act"
        await asyncio.sleep(0.01)
    assert await _types(log, "r1") == ["sys.RunStarted", "evt.StartEvent", "sys.RunCompleted"]
    handler._task.cancel()


class _Doubler(Workflow):
    @step
    async def go(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=ev.x * 2)


class _Parent(Workflow):
    @step
    async def call(self, ctx: Context, ev: StartEvent) -> StopEvent:
        return StopEvent(result=await ctx.run_workflow(_Doubler, run_id=ev.child, retries=ev.retries, x=2))


@pytest.mark.parametrize(
    ("child", "retries", "why"),
    [("c" * (NAME_MAX + 1), 0, "run_id"), ("c" * (NAME_MAX - 2), 1, "retry suffix")],
)
async def test_a_child_run_id_too_long_fails_the_step_naming_it(child: str, retries: int, why: str) -> None:
    with pytest.raises(StepFailedError) as info:
        await _Parent(timeout=10).run(child=child, retries=retries)
    assert info.value.error_type == "builtins.ValueError" and why in info.value.error_message


async def test_a_child_run_id_of_the_limit_runs() -> None:
    assert await _Parent(timeout=10).run(child="c" * (NAME_MAX - 3), retries=1) == 4
