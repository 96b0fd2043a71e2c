"""jetloom's engine: the workflow model, the fold and the event log port. No HTTP; NATS only
behind ``EventLog`` (``engine.jetstream.log``)."""

from engine.memory.log import MemoryLog
from engine.model.errors import (
    ChildWorkflowError,
    EventDecodeError,
    JetloomError,
    RunNotFoundError,
    StepFailedError,
    WorkflowCancelledError,
    WorkflowRuntimeError,
    WorkflowTimeoutError,
    WorkflowValidationError,
)
from engine.model.events import Event, HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent
from engine.model.retry import (
    ConstantDelayRetryPolicy,
    ExponentialBackoffRetryPolicy,
    RetryPolicy,
    StepFailedEvent,
)
from engine.ports.log import EventLog
from engine.runtime.context import Context
from engine.runtime.handler import WorkflowHandler
from engine.state.fold import RunState, fold
from engine.workflow import Workflow, catch_error, step

__all__ = [
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
