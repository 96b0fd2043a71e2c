"""Retry policies, the fold's attempts and retry-from-failure, error-handler validation, and step
timeouts, retries and error routing in-process on the memory log."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from engine import (
    ConstantDelayRetryPolicy,
    Context,
    ExponentialBackoffRetryPolicy,
    StartEvent,
    StepFailedError,
    StepFailedEvent,
    StopEvent,
    Workflow,
    WorkflowValidationError,
    catch_error,
    fold,
    step,
)
from engine.memory.log import MemoryLog
from engine.model.records import Record, Resume, RunFailed, RunStarted, StepFailed, StepRetrying
from engine.model.retry import StepTimeoutError
from engine.runtime.recovery import RunNotRetryableError, retry_resume
from engine.state.fold import RunState

# ---- policies -------------------------------------------------------------------------------------


def test_constant_delay_policy_stops_after_maximum_attempts() -> None:
    p = ConstantDelayRetryPolicy(maximum_attempts=3, delay=0.5)
    assert [p.next(0, n, ValueError()) for n in (1, 2, 3)] == [0.5, 0.5, None]


def test_exponential_backoff_grows_is_capped_and_jitters_within_bounds() -> None:
    p = ExponentialBackoffRetryPolicy(maximum_attempts=10, initial_delay=1, multiplier=2, max_delay=5, jitter=False)
    assert [p.next(0, n, ValueError()) for n in range(1, 6)] == [1, 2, 4, 5, 5]
    j = ExponentialBackoffRetryPolicy(initial_delay=1, jitter=0.5)
    for _ in range(50):
        d = j.next(0, 2, ValueError())
        assert d is not None and 2 <= d <= 2.5


def test_only_listed_exceptions_retry() -> None:
    p = ConstantDelayRetryPolicy(delay=0, retry_on=(ConnectionError,))
    assert p.next(0, 1, ConnectionResetError()) == 0
    assert p.next(0, 1, ValueError()) is None


@pytest.mark.parametrize(
    "kwargs", [{"maximum_attempts": 0}, {"delay": -1}]
)
def test_bad_constant_policy(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ConstantDelayRetryPolicy(**kwargs)


def test_bad_step_options() -> None:
    with pytest.raises(ValueError, match="timeout"):
        step(timeout=0)
    with pytest.raises(ValueError, match="next"):
        step(retry_policy=object())


# ---- the fold -------------------------------------------------------------------------------------


class Log:
    def __init__(self) -> None:
        self.seq = itertools.count(1)
        self.records: list[Record] = []

    def add(self, kind: str, body: Any, type_name: str | None = None) -> int:
        s = next(self.seq)
        name = type_name or type(body).__name__
        self.records.append(Record(s, kind, name, "wf", "r1", s * 1000, body))
        return s


def _failed_log() -> tuple[Log, int]:
    log = Log()
    log.add("sys", RunStarted(workflow="wf", run_id="r1", start_event="StartEvent"))
    trig = log.add("evt", {"x": 1}, "StartEvent")
    log.add("sys", StepRetrying(step="s", trigger=trig, attempt=1, error_type="E", message="m"))
    log.add("sys", StepFailed(step="s", trigger=trig, attempt=2, error_type="E", message="m"))
    return log, trig


def test_fold_counts_attempts_and_reopens_a_failed_run_on_a_manual_resume() -> None:
    log, trig = _failed_log()
    st = fold(log.records)
    assert st.status == "failed" and st.attempt_of(trig, "s") == 3
    resume = retry_resume(st)
    assert (resume.step, resume.trigger, resume.attempt, resume.reason) == ("s", trig, 3, "manual")
    log.add("cmd", resume, "s")
    st = fold(log.records)
    assert st.status == "running" and st.error is None and st.ended_ns is None
    assert (trig, "s") not in st.done and st.retried_from[(trig, "s")] == 2


def test_a_manual_resume_for_another_step_or_a_running_run_changes_nothing() -> None:
    log, trig = _failed_log()
    log.add("cmd", Resume(step="other", trigger=trig, reason="manual", attempt=1), "other")
    assert fold(log.records).status == "failed"
    with pytest.raises(RunNotRetryableError, match="not failed"):
        retry_resume(fold(log.records[:2]))


def test_a_run_timeout_is_not_retryable() -> None:
    log = Log()
    log.add("sys", RunStarted(workflow="wf", run_id="r1", start_event="StartEvent"))
    log.add("sys", RunFailed(error_type="WorkflowTimeoutError", message="late"))
    with pytest.raises(RunNotRetryableError, match="not in a step"):
        retry_resume(fold(log.records))


def test_a_handled_failure_does_not_end_the_run() -> None:
    log = Log()
    log.add("sys", RunStarted(workflow="wf", run_id="r1", start_event="StartEvent"))
    trig = log.add("evt", {}, "StartEvent")
    log.add("sys", StepFailed(step="s", trigger=trig, error_type="E", message="m", handled_by="h"))
    st: RunState = fold(log.records)
    assert st.status == "running" and (trig, "s") in st.done and st.steps_failed == 1


# ---- validation -----------------------------------------------------------------------------------


def test_catch_error_steps_are_validated() -> None:
    # (validated with the graph, at validate() / run(), since issue 18; was at class creation)
    class Two(Workflow):
        @step
        async def go(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

        @catch_error
        async def a(self, ev: StepFailedEvent) -> StopEvent:
            return StopEvent()

        @catch_error
        async def b(self, ev: StepFailedEvent) -> StopEvent:
            return StopEvent()

    with pytest.raises(WorkflowValidationError, match="more than one"):
        Two().validate()

    class Unmarked(Workflow):
        @step
        async def go(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

        @step
        async def h(self, ev: StepFailedEvent) -> StopEvent:
            return StopEvent()

    with pytest.raises(WorkflowValidationError, match="mark it @catch_error"):
        Unmarked().validate()


# ---- in-process on the memory log -----------------------------------------------------------------


class Slow(Workflow):
    @step(timeout=0.05, retry_policy=ConstantDelayRetryPolicy(maximum_attempts=2, delay=0))
    async def go(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await asyncio.sleep(10)
        return StopEvent()


class Rescued(Workflow):
    @step
    async def go(self, ev: StartEvent) -> StopEvent:
        raise KeyError("lost")

    @catch_error
    async def rescue(self, ev: StepFailedEvent) -> StopEvent:
        return StopEvent(result=f"{ev.step}: {ev.error_type} after {ev.attempts}")


async def test_a_step_timeout_fails_each_attempt_then_the_run() -> None:
    log = MemoryLog()
    handler = Slow(timeout=10, log=log).run()
    with pytest.raises(StepFailedError) as exc:
        await handler
    assert exc.value.error_type == f"{StepTimeoutError.__module__}.StepTimeoutError"
    types = [r.subject.rsplit(".", 2)[-2:] for r in await log.read("Slow", handler.run_id)]
    assert ["sys", "StepRetrying"] in types and ["cmd", "go"] in types


async def test_catch_error_in_process() -> None:
    assert await Rescued(timeout=10).run() == "go: builtins.KeyError after 1"


class BrokenPolicy:
    """A retry policy whose decision itself raises."""

    def next(self, elapsed_time: float, attempts: int, error: Exception) -> float | None:
        raise RuntimeError("policy is broken")


class PolicyFails(Workflow):
    @step(retry_policy=BrokenPolicy())
    async def go(self, ev: StartEvent) -> StopEvent:
        raise KeyError("step error")


async def test_a_policy_that_raises_fails_the_run_with_its_error_instead_of_hanging_it() -> None:
    # (llama-index-workflows fails the run with the policy's error; the run must not wait for its timeout)
    with pytest.raises(StepFailedError) as exc:
        await asyncio.wait_for(PolicyFails(timeout=30).run(), 10)
    assert exc.value.error_type == "builtins.RuntimeError"
    assert "policy is broken" in str(exc.value)
