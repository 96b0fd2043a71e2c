"""Running workflows on an event log: the step context, the executor, run handles, starting and
cancelling runs, recovery, time travel. Depends on the ports, never on a log implementation."""

from typing import TYPE_CHECKING

from engine._lazy import lazy_exports

if TYPE_CHECKING:
    from engine.runtime.commands import append_cancel, append_event, append_start
    from engine.runtime.context import Context, DictState, StateStore
    from engine.runtime.describe import WorkflowInfo, describe
    from engine.runtime.executor import Executor, ExecutorStats
    from engine.runtime.handler import WorkflowHandler
    from engine.runtime.inprocess import InProcessRuntime, new_run_id, start_run
    from engine.runtime.recovery import RunNotRetryableError, retry_run, schedule_run_timeout
    from engine.runtime.runs import CachedRun, RunCache
    from engine.runtime.serializers import BaseSerializer, JsonSerializer, PickleSerializer
    from engine.runtime.spec import StepSpec, WorkflowDefinition, validate
    from engine.runtime.timetravel import ForkResult, RollbackResult, fork, rollback
else:  # (imported on first use: engine._lazy)
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "engine.runtime.commands": ("append_cancel", "append_event", "append_start"),
            "engine.runtime.context": ("Context", "DictState", "StateStore"),
            "engine.runtime.describe": ("WorkflowInfo", "describe"),
            "engine.runtime.executor": ("Executor", "ExecutorStats"),
            "engine.runtime.handler": ("WorkflowHandler",),
            "engine.runtime.inprocess": ("InProcessRuntime", "new_run_id", "start_run"),
            "engine.runtime.recovery": (
                "RunNotRetryableError",
                "retry_run",
                "schedule_run_timeout",
            ),
            "engine.runtime.runs": ("CachedRun", "RunCache"),
            "engine.runtime.serializers": ("BaseSerializer", "JsonSerializer", "PickleSerializer"),
            "engine.runtime.spec": ("StepSpec", "WorkflowDefinition", "validate"),
            "engine.runtime.timetravel": ("ForkResult", "RollbackResult", "fork", "rollback"),
        },
    )

__all__ = [
    "BaseSerializer",
    "CachedRun",
    "Context",
    "DictState",
    "Executor",
    "ExecutorStats",
    "ForkResult",
    "InProcessRuntime",
    "JsonSerializer",
    "PickleSerializer",
    "RollbackResult",
    "RunCache",
    "RunNotRetryableError",
    "StateStore",
    "StepSpec",
    "WorkflowDefinition",
    "WorkflowHandler",
    "WorkflowInfo",
    "append_cancel",
    "append_event",
    "append_start",
    "describe",
    "fork",
    "new_run_id",
    "retry_run",
    "rollback",
    "schedule_run_timeout",
    "start_run",
    "validate",
]
