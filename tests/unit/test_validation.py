"""Validation: step signatures at class creation, the graph when the workflow is instantiated
(``WorkflowConfigurationError``) or validated (``validate()``, which ``run()`` calls), as
llama-index-workflows does. Errors name the step and the event.

(Deliberate change, issue 18: graph errors were raised at class creation; a class may now be
defined incomplete and completed with ``add_step``. tests/unit/test_validation_at_run.py covers
``run()`` and worker loading.)
"""

from __future__ import annotations

import pytest

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


class A(Event):
    x: int = 0


class B(Event):
    y: int = 0


def test_valid_workflow_records_graph() -> None:
    class Good(Workflow):
        @step
        async def first(self, ev: StartEvent) -> A:
            return A()

        @step(num_workers=3)
        async def second(self, ctx: Context, ev: A) -> StopEvent:
            return StopEvent()

    assert set(Good.steps) == {"first", "second"}
    assert Good.steps["second"].num_workers == 3
    assert Good.steps["second"].ctx_param == "ctx"
    assert Good.steps["first"].ctx_param is None
    assert Good.start_event_class is StartEvent
    assert set(Good.events) == {"StartEvent", "A", "StopEvent"}
    assert Good.workflow_name == "Good"


def test_step_accepting_stop_event_is_named() -> None:
    class Bad(Workflow):
        @step
        async def start(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

        @step
        async def bad(self, ev: StopEvent) -> StopEvent:
            return ev

    with pytest.raises(WorkflowValidationError, match=r"step 'bad' accepts StopEvent") as info:
        Bad().validate()
    assert info.value.step == "bad"


def test_event_produced_but_never_consumed() -> None:
    class Bad(Workflow):
        @step
        async def start(self, ev: StartEvent) -> StopEvent | B:
            return StopEvent()

    with pytest.raises(WorkflowValidationError, match=r"step 'start' produces B but no step accepts it"):
        Bad().validate()


def test_step_that_can_never_run() -> None:
    class Bad(Workflow):
        @step
        async def start(self, ev: StartEvent) -> StopEvent:
            return StopEvent()

        @step
        async def orphan(self, ev: A) -> StopEvent:
            return StopEvent()

    with pytest.raises(WorkflowValidationError, match=r"step 'orphan' accepts A but no step produces it"):
        Bad().validate()


def test_no_stop_event_produced() -> None:
    class Bad(Workflow):
        @step
        async def start(self, ev: StartEvent) -> A:
            return A()

        @step
        async def loop(self, ev: A) -> A:
            return A()

    # (a WorkflowConfigurationError, raised on instantiation)
    with pytest.raises(WorkflowConfigurationError, match="no step produces a StopEvent"):
        Bad()


def test_no_start_event_accepted() -> None:
    class Bad(Workflow):
        @step
        async def loop(self, ev: A) -> A | StopEvent:
            return A()

    with pytest.raises(WorkflowConfigurationError, match="no step accepts a StartEvent"):
        Bad()


def test_missing_annotations_name_the_step() -> None:
    with pytest.raises(WorkflowValidationError, match=r"step 'nohint' has no return annotation"):

        class Bad(Workflow):
            @step
            async def nohint(self, ev: StartEvent):  # type: ignore[no-untyped-def]
                return StopEvent()

    with pytest.raises(WorkflowValidationError, match=r"step 'noev': parameter 'x'"):

        class Bad2(Workflow):
            @step
            async def noev(self, x: int) -> StopEvent:
                return StopEvent()


def test_non_event_return_type_is_rejected() -> None:
    with pytest.raises(WorkflowValidationError, match=r"step 'start': return annotation lists"):

        class Bad(Workflow):
            @step
            async def start(self, ev: StartEvent) -> StopEvent | int:
                return StopEvent()


def test_base_class_without_steps_is_not_validated() -> None:
    class Base(Workflow):
        helper = 1

    with pytest.raises(WorkflowConfigurationError, match="has no steps"):
        Base()


def test_steps_are_inherited() -> None:
    class Base(Workflow):
        @step
        async def start(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result="base")

    class Child(Base):
        @step
        async def start(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result="child")

    assert Child.steps["start"].fn is Child.__dict__["start"]


def test_custom_start_event_and_name() -> None:
    class Begin(StartEvent):
        topic: str

    class Named(Workflow):
        workflow_name = "named-flow"

        @step
        async def start(self, ev: Begin) -> StopEvent:
            return StopEvent(result=ev.topic)

    assert Named.start_event_class is Begin
    assert Named.workflow_name == "named-flow"


def test_bad_workflow_name_is_rejected() -> None:
    with pytest.raises(WorkflowValidationError, match="workflow name .has.dot."):

        class Bad(Workflow):
            workflow_name = "has.dot"

            @step
            async def start(self, ev: StartEvent) -> StopEvent:
                return StopEvent()


def test_num_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="num_workers"):
        step(num_workers=0)
