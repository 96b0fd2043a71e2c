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
from .workflow import Workflow, step

__all__ = [
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
