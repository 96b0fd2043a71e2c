"""The public surface of ``engine`` is pinned: changing it is a deliberate act."""

import engine


def test_engine_exports() -> None:
    assert sorted(engine.__all__) == sorted(
        [
            "ChildWorkflowError",
            "Context",
            "Event",
            "EventDecodeError",
            "EventLog",
            "HumanResponseEvent",
            "InputRequiredEvent",
            "JetloomError",
            "MemoryLog",
            "RunNotFoundError",
            "RunState",
            "StartEvent",
            "StepFailedError",
            "StopEvent",
            "Workflow",
            "WorkflowCancelledError",
            "WorkflowHandler",
            "WorkflowRuntimeError",
            "WorkflowTimeoutError",
            "WorkflowValidationError",
            "fold",
            "step",
        ]
    )
    for name in engine.__all__:
        assert getattr(engine, name) is not None
