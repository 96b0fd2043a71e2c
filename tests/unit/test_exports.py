"""The public surface of ``engine`` is pinned: changing it is a deliberate act."""

import engine


def test_engine_exports() -> None:
    assert sorted(engine.__all__) == sorted(
        [
            "ChildWorkflowError",
            "ConstantDelayRetryPolicy",
            "Context",
            "Event",
            "EventDecodeError",
            "EventLog",
            "ExponentialBackoffRetryPolicy",
            "HumanResponseEvent",
            "InputRequiredEvent",
            "JetloomError",
            "MemoryLog",
            "RetryPolicy",
            "RunNotFoundError",
            "RunState",
            "StartEvent",
            "StepFailedEvent",
            "StepFailedError",
            "StopEvent",
            "Workflow",
            "WorkflowCancelledError",
            "WorkflowHandler",
            "WorkflowRuntimeError",
            "WorkflowTimeoutError",
            "WorkflowValidationError",
            "catch_error",
            "fold",
            "step",
        ]
    )
    for name in engine.__all__:  # each a class or function of the engine itself, under its own name
        obj = getattr(engine, name)
        assert callable(obj) and obj.__module__.startswith("engine."), name
        assert obj.__name__ == name, name
