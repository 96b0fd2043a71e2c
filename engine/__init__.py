"""jetloom's engine: the workflow model, the fold and the event log port. No HTTP; NATS only
behind ``EventLog`` (``engine.log.jetstream``)."""

from .context import Context
from .errors import (
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
from .events import Event, HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent
from .fold import RunState, fold
from .handler import WorkflowHandler
from .log import EventLog, MemoryLog
from .retry import (
    ConstantDelayRetryPolicy,
    ExponentialBackoffRetryPolicy,
    RetryPolicy,
    StepFailedEvent,
)
from .workflow import Workflow, catch_error, step

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
