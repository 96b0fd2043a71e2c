"""Child workflows in one process on the memory log: results, typed failures, retries, timeouts,
cancellation reaching the child, and a replayed parent step that does not start a second child."""

from __future__ import annotations

import pytest

from engine import Context, HumanResponseEvent, MemoryLog, StartEvent, StopEvent, Workflow, step
from engine.model.errors import (
    ChildWorkflowError,
    StepFailedError,
    WorkflowCancelledError,
    WorkflowTimeoutError,
)
from engine.model.records import StepSuspended
from engine.runtime.children import child_run_id
from engine.state.fold import fold
from engine.wire.codec import decode_record
from tests.integration.procs import eventually


class Double(Workflow):
    @step
    async def double(self, ev: StartEvent) -> StopEvent:
        if ev.x < 0:
            raise ValueError(f"negative: {ev.x}")
        return StopEvent(result=ev.x * 2)


class Twice(Workflow):
    """Doubles ``x`` twice, through two child runs in one step."""

    @step
    async def call(self, ctx: Context, ev: StartEvent) -> StopEvent:
        await ctx.store.set("calls", await ctx.store.get("calls", 0) + 1)
        a = await ctx.run_workflow(Double, x=ev.x)
        b = await ctx.run_workflow(Double, x=a)
        return StopEvent(result=b)


class Careful(Workflow):
    """Catches its child's failure."""

    @step
    async def call(self, ctx: Context, ev: StartEvent) -> StopEvent:
        try:
            return StopEvent(result=await ctx.run_workflow(Double, x=ev.x))
        except ChildWorkflowError as e:
            return StopEvent(
                result={
                    "status": e.status,
                    "type": e.error_type,
                    "message": e.error_message,
                    "step": e.child_step,
                    "child": e.child_workflow,
                }
            )


class Careless(Workflow):
    @step
    async def call(self, ctx: Context, ev: StartEvent) -> StopEvent:
        return StopEvent(result=await ctx.run_workflow(Double, x=ev.x))


FLAKY_FAILURES: dict[str, int] = {}


class Flaky(Workflow):
    """Fails while ``FLAKY_FAILURES[key]`` is positive (counting it down), then returns "ok"."""

    @step
    async def go(self, ev: StartEvent) -> StopEvent:
        if FLAKY_FAILURES.get(ev.key, 0) > 0:
            FLAKY_FAILURES[ev.key] -= 1
            raise RuntimeError("flaky")
        return StopEvent(result="ok")


class Retrying(Workflow):
    @step
    async def call(self, ctx: Context, ev: StartEvent) -> StopEvent:
        return StopEvent(result=await ctx.run_workflow(Flaky, retries=ev.retries, key=ev.key))


class Go(HumanResponseEvent):
    pass


class Waiter(Workflow):
    """A child that waits for a ``Go`` (or sleeps ``nap`` seconds first, when given)."""

    @step
    async def wait(self, ctx: Context, ev: StartEvent) -> StopEvent:
        if ev.get("nap"):
            await ctx.sleep(ev.nap)
        await ctx.wait_for_event(Go, timeout=None)
        return StopEvent(result="went")


class Impatient(Workflow):
    @step
    async def call(self, ctx: Context, ev: StartEvent) -> StopEvent:
        try:
            return StopEvent(result=await ctx.run_workflow(Waiter, timeout=ev.timeout))
        except ChildWorkflowError as e:
            return StopEvent(result=e.status)


class Holder(Workflow):
    @step
    async def call(self, ctx: Context, ev: StartEvent) -> StopEvent:
        return StopEvent(result=await ctx.run_workflow(Waiter))


async def suspended_children(log: MemoryLog, workflow: str, run_id: str) -> list[StepSuspended]:
    """Every child wait the run recorded, in order (also those of completed steps)."""
    records = [decode_record(r) for r in await log.read(workflow, run_id)]
    return [r.body for r in records if isinstance(r.body, StepSuspended) and r.body.kind == "child"]


async def test_in_process_child_results_come_back_and_replays_start_no_second_child() -> None:
    log = MemoryLog()
    wf = Twice(timeout=10, log=log)
    handler = wf.run(x=3)
    assert await handler == 12
    parent = fold(decode_record(r) for r in await log.read("Twice", handler.run_id))
    assert parent.state["calls"] == 1  # the state change of the suspended runs was not committed
    trigger = 2  # RunStarted, then the start event
    runs = [child_run_id(handler.run_id, trigger, "call", w) for w in ("w1", "w2")]
    for run, x in zip(runs, (3, 6), strict=True):
        child = fold(decode_record(r) for r in await log.read("Double", run))
        assert child.status == "completed" and child.result is not None
        assert child.result.event["result"] == 2 * x
        assert child.parent is not None and child.parent.run_id == handler.run_id
    kinds = [r.subject.split(".", 4)[-1] for r in await log.read("Twice", handler.run_id)]
    assert kinds.count("sys.StepSuspended") == 2
    assert kinds.count("cmd.call") == 2  # one Resume per child
    assert kinds.count("sys.StepCompleted") == 1


async def test_a_failing_child_reaches_the_parent_as_a_typed_error() -> None:
    log = MemoryLog()
    got = await Careful(timeout=10, log=log).run(x=-1)
    assert got == {
        "status": "failed",
        "type": "builtins.ValueError",
        "message": "negative: -1",
        "step": "double",
        "child": "Double",
    }
    with pytest.raises(StepFailedError) as info:
        await Careless(timeout=10, log=log).run(x=-2)
    assert info.value.error_type == "engine.model.errors.ChildWorkflowError"
    assert "negative: -2" in info.value.error_message


async def test_retries_start_a_new_child_run_per_attempt() -> None:
    log = MemoryLog()
    FLAKY_FAILURES["a"] = 2
    handler = Retrying(timeout=10, log=log).run(retries=2, key="a")
    assert await handler == "ok"
    children = await suspended_children(log, "Retrying", handler.run_id)
    assert [w.wait for w in children] == ["w1", "w1-r1", "w1-r2"]

    FLAKY_FAILURES["b"] = 2
    with pytest.raises(StepFailedError, match="flaky"):
        await Retrying(timeout=10, log=log).run(retries=1, key="b")


async def test_a_child_that_outlives_its_timeout_is_cancelled() -> None:
    log = MemoryLog()
    handler = Impatient(timeout=10, log=log).run(timeout=0.2)
    assert await handler == "timed_out"
    (wait,) = await suspended_children(log, "Impatient", handler.run_id)
    assert wait.child_run is not None
    child = fold(decode_record(r) for r in await log.read("Waiter", wait.child_run))
    assert child.status == "cancelled"


async def test_cancelling_the_parent_cancels_the_child() -> None:
    log = MemoryLog()
    handler = Holder(timeout=10, log=log).run()

    async def child_waiting() -> bool:
        for w in await suspended_children(log, "Holder", handler.run_id):
            assert w.child_run is not None
            child = fold(decode_record(r) for r in await log.read("Waiter", w.child_run))
            if child.waits:
                return True
        return False

    await eventually(child_waiting, timeout=10, what="the child waits for Go")
    (wait,) = await suspended_children(log, "Holder", handler.run_id)
    assert wait.child_run is not None
    await handler.cancel_run("enough")
    with pytest.raises(WorkflowCancelledError):
        await handler
    child = fold(decode_record(r) for r in await log.read("Waiter", wait.child_run))
    assert child.status == "cancelled"



class Boom(HumanResponseEvent):
    pass


class Doomed(Workflow):
    """Awaits a child; a ``Boom`` sent from outside fails the run meanwhile."""

    @step
    async def begin(self, ctx: Context, ev: StartEvent) -> StopEvent:
        return StopEvent(result=await ctx.run_workflow(Waiter))

    @step
    async def boom(self, ev: Boom) -> StopEvent:
        raise RuntimeError("boom")


async def child_waiting(log: MemoryLog, workflow: str, run_id: str) -> str | None:
    """The child run ``run_id`` awaits, once that child is itself waiting."""
    for w in await suspended_children(log, workflow, run_id):
        assert w.child_run is not None
        if fold(decode_record(r) for r in await log.read("Waiter", w.child_run)).waits:
            return w.child_run
    return None


async def test_a_run_that_fails_or_times_out_cancels_the_children_it_awaits() -> None:
    log = MemoryLog()
    doomed = Doomed(timeout=10, log=log).run()

    async def waiting() -> bool:
        return await child_waiting(log, "Doomed", doomed.run_id) is not None

    await eventually(waiting, timeout=10, what="the child waits")
    await doomed.send_event(Boom())
    with pytest.raises(StepFailedError, match="boom"):
        await doomed
    timed_out = Holder(timeout=0.3, log=log).run()
    with pytest.raises(WorkflowTimeoutError):
        await timed_out
    for workflow, handler in (("Doomed", doomed), ("Holder", timed_out)):
        (wait,) = await suspended_children(log, workflow, handler.run_id)
        assert wait.child_run is not None
        child = fold(decode_record(r) for r in await log.read("Waiter", wait.child_run))
        assert child.status == "cancelled", workflow
