"""The run page's timeline (services.control.ui.timeline) over logs written by real in-process runs
on the memory log: fan-out, retries, durable timers, event waits, failures, cancels, rollbacks."""

from __future__ import annotations

import asyncio

import pytest

from engine import (
    ConstantDelayRetryPolicy,
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    MemoryLog,
    StartEvent,
    StopEvent,
    Workflow,
    step,
)
from engine.model.records import RawRecord
from engine.runtime.recovery import retry_run
from engine.runtime.timetravel import accepts_of, rollback
from services.control.ui.timeline import Execution, Timeline, build_timeline


class Ask(InputRequiredEvent):
    prompt: str


class Answer(HumanResponseEvent):
    text: str


class Part(Event):
    n: int


class Done(Event):
    n: int


class Mixed(Workflow):
    """Fan-out to two ``work`` executions (one fails once and is retried, both sleep), a fan-in that
    then waits for a person's answer."""

    @step
    async def split(self, ctx: Context, ev: StartEvent) -> Part | None:
        for i in range(2):
            ctx.send_event(Part(n=i))
        return None

    @step(retry_policy=ConstantDelayRetryPolicy(maximum_attempts=3, delay=0.01))
    async def work(self, ctx: Context, ev: Part) -> Done:
        if ev.n == 0 and ctx.retry_info().retry_number == 0:
            raise RuntimeError("flaky")
        await ctx.sleep(0.02)
        return Done(n=ev.n)

    @step
    async def join(self, ctx: Context, ev: Done) -> StopEvent | None:
        if ctx.collect_events(ev, [Done, Done]) is None:
            return None
        answer = await ctx.wait_for_event(Answer, waiter_event=Ask(prompt="ok?"))
        return StopEvent(result=answer.text)


class Boom(Workflow):
    @step
    async def explode(self, ev: StartEvent) -> StopEvent:
        raise ValueError("no")


class Waits(Workflow):
    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        answer = await ctx.wait_for_event(Answer, waiter_event=Ask(prompt="?"))
        return StopEvent(result=answer.text)


def types(raws: list[RawRecord]) -> list[str]:
    return [".".join(r.subject.rsplit(".", 2)[1:]) for r in raws]


def only(t: Timeline, step_name: str) -> list[Execution]:
    return next(r.executions for r in t.rows if r.step == step_name)


async def mixed_run() -> tuple[str, list[RawRecord]]:
    log = MemoryLog()
    handler = Mixed(timeout=10, log=log).run()
    async for ev in handler.stream_events():
        if isinstance(ev, Ask):
            await handler.send_event(Answer(text="yes"))
    assert await handler == "yes"
    return handler.run_id, await log.read("Mixed", handler.run_id)


async def test_fan_out_retries_timers_and_an_event_wait() -> None:
    run_id, raws = await mixed_run()
    seq_of = {r.seq: r for r in raws}
    t = build_timeline("Mixed", run_id, raws)
    assert [r.step for r in t.rows] == ["split", "work", "join"]
    assert t.ended and t.start_ns == raws[0].time_ns and t.end_ns == raws[-1].time_ns
    assert t.last_seq == raws[-1].seq

    (split,) = only(t, "split")
    assert split.outcome == "completed" and split.emitted == ["Part", "Part"]
    assert types([seq_of[split.trigger]]) == ["evt.StartEvent"]
    assert split.queued_ns == seq_of[split.trigger].time_ns  # queued when its trigger was appended
    assert split.ran_ms is not None and split.ran_ms > 0 and split.worker

    work = only(t, "work")
    parts = [r.seq for r in raws if r.subject.endswith("evt.Part")]
    first = [e for e in work if e.trigger == parts[0]]
    assert [(e.attempt, e.outcome, e.queued_by) for e in first] == [
        (1, "retrying", "trigger"),
        (2, "completed", "retry"),
    ]
    failed, retried = first
    assert failed.error_type == "builtins.RuntimeError" and failed.message == "flaky"
    assert failed.retry_at_ns is not None and failed.retry_delay_ms == pytest.approx(10, abs=1)
    assert types([seq_of[retried.queued_seq]]) == ["cmd.work"]  # the retry's Resume queued it
    assert retried.queued_ns >= failed.ended_ns  # type: ignore[operator]
    # every work execution that completed slept once on a durable timer the log resolved
    for ex in [retried, *(e for e in work if e.trigger == parts[1])]:
        assert ex.outcome == "completed"
        (timer,) = ex.waits
        assert (timer.kind, timer.resolution) == ("timer", "timer")
        assert timer.fire_at_ns is not None and timer.since_ns <= timer.resolved_ns  # type: ignore[operator]
        assert types([seq_of[timer.seq], seq_of[timer.resolved_seq]]) == ["sys.StepSuspended", "cmd.work"]  # type: ignore[index]

    joins = only(t, "join")
    assert [e.outcome for e in joins] == ["completed", "completed"]  # the first Done only buffered
    (wait,) = joins[1].waits
    assert (wait.kind, wait.event_type, wait.resolution) == ("event", "Answer", "event")
    assert wait.event_schema["required"] == ["text"]
    assert types([seq_of[wait.event_seq]]) == ["evt.Answer"]  # type: ignore[index]
    assert joins[1].emitted == ["RunCompleted"]
    assert [(m.kind, m.seq) for m in t.markers] == [("started", raws[0].seq), ("completed", raws[-1].seq)]
    assert [e.step for e in t.executions][:2] == ["split", "work"]
    assert t.position(t.start_ns) == 0 and t.position(t.end_ns) == 100 and t.position(None) == 100


async def test_a_prefix_shows_what_is_open_up_to_now() -> None:
    run_id, raws = await mixed_run()
    suspended = next(i for i, r in enumerate(raws) if r.subject.endswith("sys.StepSuspended") and b'"event"' in r.data)
    prefix = raws[: suspended + 1]
    now = prefix[-1].time_ns + 5_000_000_000
    t = build_timeline("Mixed", run_id, prefix, now_ns=now)
    assert not t.ended and t.end_ns == now
    join = only(t, "join")[-1]
    assert join.outcome == "suspended" and join.open and join.end_seq is None
    assert join.waits[0].open and join.waits[0].resolved_ns is None
    # the log says nothing of a step until it records something: no row before that
    early = build_timeline("Mixed", run_id, raws[:2])
    assert early.rows == [] and not early.ended and early.end_ns == raws[1].time_ns
    # a retry queued by its Resume and not yet recorded: open, no end, no run time
    resume = next(i for i, r in enumerate(raws) if r.subject.endswith("cmd.work") and b'"retry"' in r.data)
    queued = only(build_timeline("Mixed", run_id, raws[: resume + 1]), "work")[-1]
    assert (queued.attempt, queued.outcome, queued.ran_ms, queued.ended_ns) == (2, "running", None, None)


async def test_a_failed_step_ends_the_run() -> None:
    log = MemoryLog()
    handler = Boom(timeout=10, log=log).run()
    with pytest.raises(Exception, match="no"):
        await handler
    raws = await log.read("Boom", handler.run_id)
    t = build_timeline("Boom", handler.run_id, raws)
    (ex,) = only(t, "explode")
    assert (ex.outcome, ex.error_type, ex.message) == ("failed", "builtins.ValueError", "no")
    assert t.ended and t.markers[-1].kind == "failed" and "explode" in t.markers[-1].label
    # retry from the failure (no worker runs it here): a new attempt, queued, and the run reopened
    resume, _ = await retry_run(log, "Boom", handler.run_id)
    t = build_timeline("Boom", handler.run_id, await log.read("Boom", handler.run_id))
    first, second = only(t, "explode")
    assert (second.attempt, second.queued_by, second.outcome) == (resume.attempt, "manual", "running") == (2, "manual", "running")
    assert not t.ended and first.outcome == "failed"


async def suspended(log: MemoryLog, workflow: str, run_id: str) -> None:
    """Until the run's log holds a ``StepSuspended`` (follows the log's appends, no polling)."""
    async with asyncio.timeout(5):
        async for raw in log.follow(workflow, run_id):
            if raw.subject.endswith("sys.StepSuspended"):
                return


async def test_a_cancel_closes_the_open_wait() -> None:
    log = MemoryLog()
    handler = Waits(timeout=10, log=log).run()
    await suspended(log, "Waits", handler.run_id)
    await handler.cancel_run("bored")
    raws = await log.read("Waits", handler.run_id)
    t = build_timeline("Waits", handler.run_id, raws)
    (ex,) = only(t, "ask")
    assert ex.outcome == "cancelled" and ex.waits[0].resolution == "cancelled"
    assert ex.waits[0].resolved_seq == raws[-1].seq
    assert t.ended and t.markers[-1].kind == "cancelled" and t.markers[-1].label == "cancelled: bored"


async def test_a_rollback_marks_what_it_undid_and_the_rerun() -> None:
    log = MemoryLog()
    handler = Mixed(timeout=10, log=log).run()
    async for ev in handler.stream_events():
        if isinstance(ev, Ask):
            await handler.send_event(Answer(text="yes"))
    await handler
    run_id = handler.run_id
    raws = await log.read("Mixed", run_id)
    wait_seq = next(r.seq for r in raws if r.subject.endswith("sys.StepSuspended") and b'"event"' in r.data)
    # no executor runs any more: the rollback's records are the log's last
    res = await rollback(log, "Mixed", run_id, wait_seq, accepts=accepts_of(Mixed), reason="again")
    t = build_timeline("Mixed", run_id, await log.read("Mixed", run_id))
    joins = only(t, "join")
    assert joins[1].rolled_back and joins[1].outcome == "completed"  # its end came after to_seq
    rerun = joins[-1]
    assert (rerun.queued_by, rerun.epoch, rerun.outcome, rerun.rolled_back) == ("rollback", 1, "running", False)
    assert rerun.queued_seq == res.marker_seq + 1
    assert not t.ended  # the rollback undid the run's end
    kinds = [(m.kind, m.rolled_back) for m in t.markers]
    assert kinds == [("started", False), ("completed", True), ("rollback", False)]
    assert t.markers[-1].label == f"rolled back to seq {wait_seq}: again"
    assert not any(e.rolled_back for e in only(t, "work"))
