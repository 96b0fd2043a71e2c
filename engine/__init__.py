"""jetloom's engine: the workflow model (``Workflow``, ``@step``, ``Context``), the fold of a run's
log, and the event logs it runs on (``MemoryLog``; ``JetStreamLog`` on NATS JetStream). No HTTP.

Every error a user may catch is importable from here (the tree is in ``engine.model.errors``).
The packages below are the layers, each importing only the ones under it: ``engine.workflow``,
``engine.runtime``, ``engine.memory`` / ``engine.jetstream``, ``engine.ports``, ``engine.state``,
``engine.wire``, ``engine.model``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from engine.memory.log import MemoryLog
from engine.model.errors import (
    AppendError,
    ChildWorkflowError,
    CommitTooLargeError,
    DeadLetteredError,
    EventDecodeError,
    EventValidationError,
    InvalidSequenceError,
    JetloomError,
    LastSeqMismatchError,
    LogError,
    RunConflictError,
    RunNotFoundError,
    StepFailedError,
    WaitTimeoutError,
    WorkflowCancelledByUser,
    WorkflowCancelledError,
    WorkflowConfigurationError,
    WorkflowDone,
    WorkflowRuntimeError,
    WorkflowStepDoesNotExistError,
    WorkflowTimeoutError,
    WorkflowValidationError,
    WorkflowVersionError,
)
from engine.model.events import Event, HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent
from engine.model.retry import (
    ConstantDelayRetryPolicy,
    ExponentialBackoffRetryPolicy,
    RetryPolicy,
    StepFailedEvent,
    StepTimeoutError,
)
from engine.ports.log import EventLog
from engine.runtime.context import Context
from engine.runtime.handler import WorkflowHandler
from engine.runtime.recovery import RunNotRetryableError
from engine.runtime.resources import (
    Resource,
    ResourceConfig,
    ResourceDefinition,
    ResourceDescriptor,
    ResourceManager,
)
from engine.state.fold import RunState, fold
from engine.workflow import Workflow, catch_error, step

if TYPE_CHECKING:
    from engine.jetstream.connection import NatsConnectError
    from engine.jetstream.log import JetStreamLog
    from engine.jetstream.retry import LogUnavailableError

# The NATS names load nats-py, which a program that runs workflows in-process never needs: they
# are imported on first use (PEP 562), so ``import engine`` stays light.
_LAZY = {
    "JetStreamLog": "engine.jetstream.log",
    "LogUnavailableError": "engine.jetstream.retry",
    "NatsConnectError": "engine.jetstream.connection",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AppendError",
    "ChildWorkflowError",
    "CommitTooLargeError",
    "ConstantDelayRetryPolicy",
    "Context",
    "DeadLetteredError",
    "Event",
    "EventDecodeError",
    "EventLog",
    "EventValidationError",
    "ExponentialBackoffRetryPolicy",
    "HumanResponseEvent",
    "InputRequiredEvent",
    "InvalidSequenceError",
    "JetStreamLog",
    "JetloomError",
    "LastSeqMismatchError",
    "LogError",
    "LogUnavailableError",
    "MemoryLog",
    "NatsConnectError",
    "Resource",
    "ResourceConfig",
    "ResourceDefinition",
    "ResourceDescriptor",
    "ResourceManager",
    "RetryPolicy",
    "RunConflictError",
    "RunNotFoundError",
    "RunNotRetryableError",
    "RunState",
    "StartEvent",
    "StepFailedError",
    "StepFailedEvent",
    "StepTimeoutError",
    "StopEvent",
    "WaitTimeoutError",
    "Workflow",
    "WorkflowCancelledByUser",
    "WorkflowCancelledError",
    "WorkflowConfigurationError",
    "WorkflowDone",
    "WorkflowHandler",
    "WorkflowRuntimeError",
    "WorkflowStepDoesNotExistError",
    "WorkflowTimeoutError",
    "WorkflowValidationError",
    "WorkflowVersionError",
    "catch_error",
    "fold",
    "step",
]
