"""The step graph is validated when a run starts (and when a worker loads the workflow), as in
llama-index-workflows; an ``InputRequiredEvent`` a step returns goes to the output stream; the
reference's error names (cancel, configuration, unknown step)."""

from __future__ import annotations

import asyncio

import pytest

from engine import (
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    JetloomError,
    MemoryLog,
    StartEvent,
    StepFailedError,
    StopEvent,
    Workflow,
    WorkflowCancelledByUser,
    WorkflowCancelledError,
    WorkflowConfigurationError,
    WorkflowRuntimeError,
    WorkflowStepDoesNotExistError,
    WorkflowValidationError,
    step,
)
from services.loading import load_workflow


class Unused(Event):
    pass


class Dangling(Workflow):
    """Defines fine; its graph is invalid: ``Unused`` is produced and never accepted."""

    @step
    async def go(self, ev: StartEvent) -> StopEvent | Unused:
        return StopEvent(result="went")


class NoStop(Workflow):
    @step
    async def go(self, ev: StartEvent) -> Unused:
        return Unused()


async def test_run_validates_before_anything_is_logged() -> None:
    log = MemoryLog()
    wf = Dangling(log=log)  # (instantiating checks only the configuration)
    with pytest.raises(WorkflowValidationError, match="step 'go' produces Unused but no step accepts it"):
        wf.run(run_id="r1")
    assert await log.read("Dangling", "r1") == []
    with pytest.raises(WorkflowValidationError, match="produces Unused"):
        wf.run(run_id="r1")  # (a failed validation is not remembered as a pass)


async def test_disable_validation_skips_the_checks_at_run_only() -> None:
    wf = Dangling(disable_validation=True)
    assert await wf.run() == "went"
    with pytest.raises(WorkflowValidationError):
        wf.validate()


def test_configuration_errors_are_raised_on_instantiation() -> None:
    with pytest.raises(WorkflowConfigurationError, match="no step produces a StopEvent") as info:
        NoStop()
    # the reference's base (a plain Exception; here JetloomError), not a WorkflowValidationError
    assert not isinstance(info.value, WorkflowValidationError)
    assert isinstance(info.value, JetloomError)


class AskName(InputRequiredEvent):
    prompt: str


class NameGiven(HumanResponseEvent):
    name: str


class Note(InputRequiredEvent):
    text: str


class Greeter(Workflow):
    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> AskName | Note:
        ctx.send_event(Note(text="sent, not returned"))  # no step takes it: to the stream only
        return AskName(prompt="name?")  # returned: to the stream (no step takes it either)

    @step
    async def greet(self, ev: NameGiven) -> StopEvent:
        return StopEvent(result=f"hello {ev.name}")


class Plain(Workflow):
    @step
    async def go(self, ev: StartEvent) -> StopEvent:
        return StopEvent()


async def test_input_required_events_go_to_the_stream_and_pass_validation() -> None:
    wf = Greeter()
    assert wf.validate() is True  # takes human input
    assert Plain().validate() is False
    handler = wf.run()
    seen: list[Event] = []
    async for ev in handler.stream_events():
        assert isinstance(ev, Event)
        seen.append(ev)
        if isinstance(ev, AskName):
            await handler.send_event(NameGiven(name="Ada"))
            break
    assert await handler == "hello Ada"
    assert seen == [Note(text="sent, not returned"), AskName(prompt="name?")]


class Relay(Workflow):
    """A returned ``InputRequiredEvent`` a step accepts goes to that step and to the stream."""

    @step
    async def ask(self, ev: StartEvent) -> AskName:
        return AskName(prompt="relayed")

    @step
    async def answer(self, ev: AskName) -> StopEvent:
        return StopEvent(result=ev.prompt)


async def test_an_accepted_input_request_is_also_delivered() -> None:
    handler = Relay().run()
    streamed = [ev async for ev in handler.stream_events()]
    assert await handler == "relayed"
    assert AskName(prompt="relayed") in streamed


class Misaddressed(Workflow):
    @step
    async def go(self, ctx: Context, ev: StartEvent) -> Unused | None:
        ctx.send_event(Unused(), step="nope")
        return None

    @step
    async def take(self, ev: Unused) -> StopEvent:
        return StopEvent()


async def test_sending_to_a_step_that_does_not_exist() -> None:
    with pytest.raises(StepFailedError) as info:
        await Misaddressed().run()
    assert info.value.error_type == "engine.model.errors.WorkflowStepDoesNotExistError"
    assert "to step 'nope', which workflow 'Misaddressed' does not have" in info.value.error_message
    assert issubclass(WorkflowStepDoesNotExistError, WorkflowRuntimeError)


class Slow(Workflow):
    @step
    async def go(self, ev: StartEvent) -> StopEvent:
        await asyncio.sleep(30)
        return StopEvent()


async def test_a_cancelled_run_raises_workflow_cancelled_by_user_under_both_names() -> None:
    handler = Slow().run()
    await handler.cancel_run()
    with pytest.raises(WorkflowCancelledByUser):
        await handler
    with pytest.raises(WorkflowCancelledError) as info:
        await handler
    assert type(info.value).__name__ == "WorkflowCancelledByUser"  # (the reference's type name)
    assert type(WorkflowCancelledError("x")) is WorkflowCancelledByUser


def test_a_worker_refuses_an_invalid_workflow_in_one_line() -> None:
    target = f"{__name__}:Dangling"
    with pytest.raises(ValueError) as info:
        load_workflow(target)
    assert str(info.value) == f"{target}: step 'go' produces Unused but no step accepts it"
    with pytest.raises(ValueError, match=r":NoStop: workflow 'NoStop': no step produces a StopEvent"):
        load_workflow(f"{__name__}:NoStop")
    assert isinstance(load_workflow(f"{__name__}:Greeter"), Greeter)


class Parent(Workflow):
    @step
    async def call(self, ctx: Context, ev: StartEvent) -> StopEvent:
        return StopEvent(result=await ctx.run_workflow(Dangling))


async def test_a_child_workflow_is_validated_before_it_runs_here() -> None:
    log = MemoryLog()
    handler = Parent(log=log).run()
    with pytest.raises(StepFailedError) as info:
        await handler
    assert info.value.error_type == "engine.model.errors.WorkflowValidationError"
    assert "produces Unused but no step accepts it" in info.value.error_message
    kinds = [r.subject.rsplit(".", 2)[-2:] for r in await log.read("Parent", handler.run_id)]
    assert ["sys", "StepSuspended"] not in kinds and ["sys", "StepFailed"] in kinds  # (no child started)


class ParentOfNoStop(Workflow):
    @step
    async def call(self, ctx: Context, ev: StartEvent) -> StopEvent:
        return StopEvent(result=await ctx.run_workflow(NoStop))


async def test_a_child_workflow_that_cannot_run_fails_the_parent_step_with_its_configuration_error() -> None:
    log = MemoryLog()
    handler = ParentOfNoStop(log=log).run()
    with pytest.raises(StepFailedError) as info:
        await handler
    assert info.value.error_type == "engine.model.errors.WorkflowConfigurationError"
    assert "no step produces a StopEvent" in info.value.error_message
    kinds = [r.subject.rsplit(".", 2)[-2:] for r in await log.read("ParentOfNoStop", handler.run_id)]
    assert ["sys", "StepSuspended"] not in kinds  # (no child started)
