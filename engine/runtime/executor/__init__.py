"""Runs a workflow's steps as consumers of the log: the loop (``loop``: consume, dispatch,
leases), step execution (``step``: one call with its ``Context``) and the outcome (``outcome``:
commit, failures, retries, suspensions)."""

from typing import TYPE_CHECKING

from engine._lazy import lazy_exports

if TYPE_CHECKING:
    from engine.runtime.executor.loop import Executor
    from engine.runtime.executor.outcome import commit_id
    from engine.runtime.executor.stats import ExecutorStats
else:  # (imported on first use: engine._lazy)
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "engine.runtime.executor.loop": ("Executor",),
            "engine.runtime.executor.outcome": ("commit_id",),
            "engine.runtime.executor.stats": ("ExecutorStats",),
        },
    )

__all__ = ["Executor", "ExecutorStats", "commit_id"]
