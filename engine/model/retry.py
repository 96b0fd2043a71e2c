"""Step retry policies, and the decision a worker takes when a step attempt fails.

A policy is asked after every failed attempt how long to wait before the next one (``next``, the
``RetryPolicy`` protocol of llama-index-workflows, ``workflows.retry_policy``: ``elapsed_time``
seconds since the first attempt, ``attempts`` failed so far, the ``error``; ``None`` means give up).
jetloom makes the wait durable: the failed attempt is recorded as ``sys.StepRetrying`` (with its
error and the delay) and the next attempt is a ``cmd.<step>`` ``Resume(reason="retry")`` scheduled
as a JetStream message schedule, so a retry survives the restart of every process. The fold counts
the attempts (``RunState.attempts``); the delay is drawn (jitter) by the worker and recorded, never
recomputed on replay.

Backoff arithmetic comes from tenacity (``wait_fixed``, ``wait_exponential_jitter``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol, runtime_checkable

import tenacity

from engine.model.durations import seconds
from engine.model.events import (
    StepFailedEvent,  # (defined with the other events; exported here too)
)

__all__ = [
    "ConstantDelayRetryPolicy",
    "ExponentialBackoffRetryPolicy",
    "RetryPolicy",
    "StepFailedEvent",
    "StepTimeoutError",
]


class StepTimeoutError(TimeoutError):
    """A step attempt ran longer than its ``@step(timeout=...)``; it counts as a failed attempt
    (retried by the step's policy like any other error)."""


@runtime_checkable
class RetryPolicy(Protocol):
    """Decides whether a failed step attempt is tried again, and after how long.

    Same protocol as llama-index-workflows' ``RetryPolicy``, so its policies work unchanged.
    """

    def next(self, elapsed_time: float, attempts: int, error: Exception) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to stop retrying.

        Args:
            elapsed_time: seconds since the first attempt of the step on this trigger started
                (from the log's timestamps).
            attempts: attempts that failed so far (1 after the first failure).
            error: the exception the last attempt raised.
        """
        ...


class _Attempt:
    """The one field of tenacity's ``RetryCallState`` its wait strategies read."""

    __slots__ = ("attempt_number",)

    def __init__(self, attempt_number: int) -> None:
        self.attempt_number = attempt_number


def _retries(error: Exception, retry_on: Sequence[type[BaseException]]) -> bool:
    return isinstance(error, tuple(retry_on))


@dataclass(frozen=True)
class ConstantDelayRetryPolicy:
    """Retry after a fixed delay (llama-index-workflows' ``ConstantDelayRetryPolicy``).

    Args:
        maximum_attempts: attempts in all, the first included (default 3); ``1`` never retries.
        delay: seconds (or a timedelta) between a failure and the next attempt (default 5).
        retry_on: exception classes that are retried (default: every ``Exception``); any other
            error fails the step at once.

    Raises:
        ValueError: ``maximum_attempts`` < 1 or a negative delay.
    """

    maximum_attempts: int = 3
    delay: float | timedelta = 5.0
    retry_on: Sequence[type[BaseException]] = field(default=(Exception,))

    def __post_init__(self) -> None:
        if self.maximum_attempts < 1:
            raise ValueError(f"maximum_attempts must be >= 1, got {self.maximum_attempts}")
        if seconds(self.delay) < 0:
            raise ValueError(f"delay must be >= 0, got {self.delay}")

    def next(self, elapsed_time: float, attempts: int, error: Exception) -> float | None:
        if attempts >= self.maximum_attempts or not _retries(error, self.retry_on):
            return None
        return float(tenacity.wait_fixed(seconds(self.delay))(_Attempt(attempts)))  # type: ignore[arg-type]  # tenacity's wait takes a RetryCallState; it reads only attempt_number


@dataclass(frozen=True)
class ExponentialBackoffRetryPolicy:
    """Retry with exponential backoff and jitter: the n-th retry waits
    ``min(initial_delay * multiplier ** (n - 1) + uniform(0, jitter), max_delay)`` seconds
    (tenacity's ``wait_exponential_jitter``, the strategy of Google Cloud Storage's retry guide).

    Args:
        maximum_attempts: attempts in all, the first included (default 5).
        initial_delay: seconds before the first retry, without jitter (default 1).
        multiplier: growth factor per retry (default 2).
        max_delay: cap on any delay, seconds (default 60).
        jitter: at most this many seconds, drawn uniformly, are added to each delay (default 0).
        retry_on: exception classes that are retried (default: every ``Exception``).

    Raises:
        ValueError: ``maximum_attempts`` < 1, ``multiplier`` < 1, or a negative delay or jitter.
    """

    maximum_attempts: int = 5
    initial_delay: float | timedelta = 1.0
    multiplier: float = 2.0
    max_delay: float | timedelta = 60.0
    jitter: float | timedelta = 0.0
    retry_on: Sequence[type[BaseException]] = field(default=(Exception,))

    def __post_init__(self) -> None:
        if self.maximum_attempts < 1:
            raise ValueError(f"maximum_attempts must be >= 1, got {self.maximum_attempts}")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier}")
        for name in ("initial_delay", "max_delay", "jitter"):
            if seconds(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def next(self, elapsed_time: float, attempts: int, error: Exception) -> float | None:
        if attempts >= self.maximum_attempts or not _retries(error, self.retry_on):
            return None
        wait = tenacity.wait_exponential_jitter(
            multiplier=seconds(self.initial_delay),
            exp_base=self.multiplier,
            max=seconds(self.max_delay),
            jitter=seconds(self.jitter),
        )
        return float(wait(_Attempt(attempts)))  # type: ignore[arg-type]  # tenacity's wait takes a RetryCallState; it reads only attempt_number
