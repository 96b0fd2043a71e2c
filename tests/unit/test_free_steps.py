"""Free-function steps (``@step(workflow=...)``) and ``Workflow.add_step``, as llama-index-workflows."""

from __future__ import annotations

import pytest
from workflows import Workflow as RefWorkflow
from workflows import step as ref_step
from workflows.errors import WorkflowConfigurationError as RefConfigurationError
from workflows.errors import WorkflowValidationError as RefValidationError
from workflows.events import Event as RefEvent
from workflows.events import StartEvent as RefStart
from workflows.events import StopEvent as RefStop

from engine import (
    Context,
    Event,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowConfigurationError,
    WorkflowValidationError,
    step,
)


class Topic(StartEvent):
    topic: str


class Draft(Event):
    text: str


class Writer(Workflow):
    @step
    async def draft(self, ev: Topic) -> Draft:
        return Draft(text=f"about {ev.topic}")


@step(workflow=Writer)
async def publish(ev: Draft, ctx: Context) -> StopEvent:
    await ctx.store.set("published", ev.text)
    return StopEvent(result=[ev.text.upper(), await ctx.store.get("published")])


@step(workflow=Writer, num_workers=2)
def shout(ev: Draft) -> None:  # a plain def free step: runs in a thread
    return None


async def test_free_function_steps_run_with_the_class_methods() -> None:
    assert set(Writer.steps) == {"draft", "publish", "shout"}
    spec = Writer.steps["publish"]
    assert not spec.bound and spec.ctx_param == "ctx" and spec.accepts == (Draft,)
    assert Writer.steps["shout"].num_workers == 2 and not Writer.steps["shout"].is_async
    assert Writer.steps["draft"].bound
    assert await Writer().run(topic="tea") == ["ABOUT TEA", "about tea"]


def test_bare_step_on_a_free_function_needs_its_workflow() -> None:
    with pytest.raises(WorkflowValidationError, match=r"free function: name its workflow"):

        @step
        async def lonely(ev: StartEvent) -> StopEvent:
            return StopEvent()

    with pytest.raises(RefValidationError, match="please pass a workflow class"):  # (as the reference)

        @ref_step
        async def lonely_ref(ev: RefStart) -> RefStop:
            return RefStop()


def test_add_step_refuses_unmarked_functions_and_taken_names() -> None:
    async def unmarked(ev: Draft) -> StopEvent:
        return StopEvent()

    with pytest.raises(WorkflowValidationError, match="missing the @step decorator"):
        Writer.add_step(unmarked)
    with pytest.raises(WorkflowValidationError, match="already has a step 'publish'"):
        Writer.add_step(publish)

    class Other(Workflow):
        @step
        async def draft(self, ev: Topic) -> Draft:
            return Draft(text="x")

    with pytest.raises(WorkflowValidationError, match="already has a step 'draft'"):

        @step(workflow=Other)
        async def draft(ev: Draft) -> StopEvent:
            return StopEvent()

    Other.add_step(publish)  # one function may be a step of two workflows
    assert Other.steps["publish"].fn is publish and "publish" not in Other.__dict__


async def test_a_class_completed_later_and_its_instances_see_the_new_step() -> None:
    class Later(Event):
        n: int

    class Incomplete(Workflow):
        @step
        async def first(self, ev: StartEvent) -> Later | StopEvent:
            return Later(n=1)

    wf = Incomplete()  # has a start and a stop producer; the graph is incomplete
    with pytest.raises(WorkflowValidationError, match="produces Later but no step accepts it"):
        await wf.run()

    @step(workflow=Incomplete)
    async def second(ev: Later) -> StopEvent:  # (Later is local to this test: found all the same)
        return StopEvent(result=ev.n + 1)

    assert await wf.run() == 2  # validated again: the class's steps changed
    assert Incomplete.events["Later"] is Later


def free_steps_are_not_inherited(wf: type, start: type, stop: type, event: type, step_fn: object) -> list[str]:
    """The same program for both libraries: which steps a subclass of a workflow with a free step has."""

    class Mid(event):  # type: ignore[misc,valid-type]
        pass

    class Base(wf):  # type: ignore[misc,valid-type]
        @step_fn  # type: ignore[misc,operator]
        async def a(self, ev: start) -> Mid:  # type: ignore[valid-type]
            return Mid()

    @step_fn(workflow=Base)  # type: ignore[misc,operator]
    async def b(ev: Mid) -> stop:  # type: ignore[valid-type]
        return stop(result="b")

    class Sub(Base):  # type: ignore[misc,valid-type]
        pass

    errors = []
    for cls in (Base, Sub):
        try:
            cls()
            errors.append("ok")
        except Exception as exc:  # (the two libraries' errors are compared by type below)
            errors.append(type(exc).__name__)
    return errors


def test_free_steps_are_not_inherited_as_in_the_reference() -> None:
    ours = free_steps_are_not_inherited(Workflow, StartEvent, StopEvent, Event, step)
    ref = free_steps_are_not_inherited(RefWorkflow, RefStart, RefStop, RefEvent, ref_step)
    assert ours == ref == ["ok", "WorkflowConfigurationError"]
    assert not issubclass(WorkflowConfigurationError, WorkflowValidationError)
    assert not issubclass(RefConfigurationError, RefValidationError)
    assert RefConfigurationError.__name__ == WorkflowConfigurationError.__name__


async def test_an_instance_that_has_run_refuses_steps_added_since() -> None:
    class Extra(Event):
        pass

    class Grown(Workflow):
        @step
        async def go(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result="go")

    ran = Grown()
    assert await ran.run() == "go"

    @step(workflow=Grown)
    async def extra(ev: Extra) -> StopEvent:
        return StopEvent()

    with pytest.raises(WorkflowValidationError, match="after this instance started running"):
        ran.run()
    with pytest.raises(WorkflowValidationError, match="accepts Extra but no step produces it"):
        Grown().run()  # (a new instance runs with them, once the graph is valid)
