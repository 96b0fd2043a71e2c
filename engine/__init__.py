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

from engine._lazy import lazy_exports

if TYPE_CHECKING:
    from engine.jetstream.connection import NatsConnectError
    from engine.jetstream.log import JetStreamLog
    from engine.jetstream.retry import LogUnavailableError
    from engine.memory.log import MemoryLog
    from engine.model.errors import (
        AppendError,
        ChildWorkflowError,
        CommitTooLargeError,
        ContextSerdeError,
        ContextStateError,
        DeadLetteredError,
        EventDecodeError,
        EventValidationError,
        InvalidSequenceError,
        JetloomError,
        JetloomWarning,
        LastSeqMismatchError,
        LogError,
        NoLiveWorkerWarning,
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
    from engine.model.events import (
        Event,
        HumanResponseEvent,
        InputRequiredEvent,
        StartEvent,
        StopEvent,
    )
    from engine.model.retry import (
        ConstantDelayRetryPolicy,
        ExponentialBackoffRetryPolicy,
        RetryCondition,
        RetryInfo,
        RetryPolicy,
        StepFailedEvent,
        StepTimeoutError,
        StopCondition,
        WaitStrategy,
        retry_all,
        retry_always,
        retry_any,
        retry_if_exception,
        retry_if_exception_cause_type,
        retry_if_exception_message,
        retry_if_exception_type,
        retry_if_not_exception_message,
        retry_if_not_exception_type,
        retry_never,
        retry_unless_exception_type,
        stop_after_attempt,
        stop_after_delay,
        stop_all,
        stop_any,
        stop_before_delay,
        stop_never,
        time_unit_type,
        wait_chain,
        wait_combine,
        wait_exponential,
        wait_exponential_jitter,
        wait_fixed,
        wait_full_jitter,
        wait_incrementing,
        wait_none,
        wait_random,
        wait_random_exponential,
    )
    from engine.ports.log import EventLog
    from engine.runtime.context import Context, DictState
    from engine.runtime.handler import WorkflowHandler
    from engine.runtime.recovery import RunNotRetryableError
    from engine.runtime.resources import (
        Resource,
        ResourceConfig,
        ResourceDefinition,
        ResourceDescriptor,
        ResourceManager,
    )
    from engine.runtime.serializers import JsonPickleSerializer, JsonSerializer, PickleSerializer
    from engine.state.fold import RunState, fold
    from engine.workflow import Workflow, catch_error, step

# The names below are imported on first use (PEP 562, ``engine._lazy``): ``import engine`` loads
# none of the layers, and ``from engine import Workflow`` only what ``engine.workflow`` needs
# (nats-py, for one, only with ``JetStreamLog``).
#
# llama-index-workflows' module paths: ``engine.events``, ``engine.errors``, ``engine.retry_policy``,
# ``engine.resource`` and ``engine.context`` hold the names of the reference's modules of the same
# name, and every one of those names is also an attribute of ``engine`` (looked up there on first
# use). ``engine.retry_policy`` itself is that module, as ``workflows.retry_policy`` is; its
# function is ``engine.retry_policy.retry_policy``.
_REFERENCE_MODULES = ("context", "errors", "events", "resource", "retry_policy")


def _reference_name(name: str) -> Any:
    """The reference-path module ``name``, or ``name`` from the first of them that lists it."""
    if name in _REFERENCE_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    for short in _REFERENCE_MODULES:
        module = importlib.import_module(f"{__name__}.{short}")
        if name in module.__all__:
            return getattr(module, name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")


if not TYPE_CHECKING:  # (each name imported on first use: engine._lazy)
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "engine.jetstream.connection": ("NatsConnectError",),
            "engine.jetstream.log": ("JetStreamLog",),
            "engine.jetstream.retry": ("LogUnavailableError",),
            "engine.memory.log": ("MemoryLog",),
            "engine.model.errors": (
                "AppendError",
                "ChildWorkflowError",
                "CommitTooLargeError",
                "ContextSerdeError",
                "ContextStateError",
                "DeadLetteredError",
                "EventDecodeError",
                "EventValidationError",
                "InvalidSequenceError",
                "JetloomError",
                "JetloomWarning",
                "LastSeqMismatchError",
                "LogError",
                "NoLiveWorkerWarning",
                "RunConflictError",
                "RunNotFoundError",
                "StepFailedError",
                "WaitTimeoutError",
                "WorkflowCancelledByUser",
                "WorkflowCancelledError",
                "WorkflowConfigurationError",
                "WorkflowDone",
                "WorkflowRuntimeError",
                "WorkflowStepDoesNotExistError",
                "WorkflowTimeoutError",
                "WorkflowValidationError",
                "WorkflowVersionError",
            ),
            "engine.model.events": (
                "Event",
                "HumanResponseEvent",
                "InputRequiredEvent",
                "StartEvent",
                "StopEvent",
            ),
            "engine.model.retry": (
                "ConstantDelayRetryPolicy",
                "ExponentialBackoffRetryPolicy",
                "RetryCondition",
                "RetryInfo",
                "RetryPolicy",
                "StepFailedEvent",
                "StepTimeoutError",
                "StopCondition",
                "WaitStrategy",
                "retry_all",
                "retry_always",
                "retry_any",
                "retry_if_exception",
                "retry_if_exception_cause_type",
                "retry_if_exception_message",
                "retry_if_exception_type",
                "retry_if_not_exception_message",
                "retry_if_not_exception_type",
                "retry_never",
                "retry_unless_exception_type",
                "stop_after_attempt",
                "stop_after_delay",
                "stop_all",
                "stop_any",
                "stop_before_delay",
                "stop_never",
                "time_unit_type",
                "wait_chain",
                "wait_combine",
                "wait_exponential",
                "wait_exponential_jitter",
                "wait_fixed",
                "wait_full_jitter",
                "wait_incrementing",
                "wait_none",
                "wait_random",
                "wait_random_exponential",
            ),
            "engine.ports.log": ("EventLog",),
            "engine.runtime.context": ("Context", "DictState"),
            "engine.runtime.handler": ("WorkflowHandler",),
            "engine.runtime.recovery": ("RunNotRetryableError",),
            "engine.runtime.resources": (
                "Resource",
                "ResourceConfig",
                "ResourceDefinition",
                "ResourceDescriptor",
                "ResourceManager",
            ),
            "engine.runtime.serializers": (
                "JsonPickleSerializer",
                "JsonSerializer",
                "PickleSerializer",
            ),
            "engine.state.fold": ("RunState", "fold"),
            "engine.workflow": ("Workflow", "catch_error", "step"),
        },
        fallback=_reference_name,
    )

__all__ = [
    "AppendError",
    "ChildWorkflowError",
    "CommitTooLargeError",
    "ConstantDelayRetryPolicy",
    "Context",
    "ContextSerdeError",
    "ContextStateError",
    "DeadLetteredError",
    "DictState",
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
    "JetloomWarning",
    "JsonPickleSerializer",
    "JsonSerializer",
    "LastSeqMismatchError",
    "LogError",
    "LogUnavailableError",
    "MemoryLog",
    "NatsConnectError",
    "NoLiveWorkerWarning",
    "PickleSerializer",
    "Resource",
    "ResourceConfig",
    "ResourceDefinition",
    "ResourceDescriptor",
    "ResourceManager",
    "RetryCondition",
    "RetryInfo",
    "RetryPolicy",
    "RunConflictError",
    "RunNotFoundError",
    "RunNotRetryableError",
    "RunState",
    "StartEvent",
    "StepFailedError",
    "StepFailedEvent",
    "StepTimeoutError",
    "StopCondition",
    "StopEvent",
    "WaitStrategy",
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
    "retry_all",
    "retry_always",
    "retry_any",
    "retry_if_exception",
    "retry_if_exception_cause_type",
    "retry_if_exception_message",
    "retry_if_exception_type",
    "retry_if_not_exception_message",
    "retry_if_not_exception_type",
    "retry_never",
    "retry_unless_exception_type",
    "step",
    "stop_after_attempt",
    "stop_after_delay",
    "stop_all",
    "stop_any",
    "stop_before_delay",
    "stop_never",
    "time_unit_type",
    "wait_chain",
    "wait_combine",
    "wait_exponential",
    "wait_exponential_jitter",
    "wait_fixed",
    "wait_full_jitter",
    "wait_incrementing",
    "wait_none",
    "wait_random",
    "wait_random_exponential",
]
