"""Runs a workflow's steps as consumers of the log: the loop (``loop``: consume, dispatch,
leases), step execution (``step``: one call with its ``Context``) and the outcome (``outcome``:
commit, failures, retries, suspensions)."""

from engine.runtime.executor.loop import Executor
from engine.runtime.executor.outcome import commit_id
from engine.runtime.executor.stats import ExecutorStats

__all__ = ["Executor", "ExecutorStats", "commit_id"]
