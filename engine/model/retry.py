"""Step retry policies, and the decision a worker takes when a step attempt fails.

A policy is asked after every failed attempt how long to wait before the next one (``next``, the
``RetryPolicy`` protocol of llama-index-workflows, ``workflows.retry_policy``: ``elapsed_time``
seconds since the first attempt, ``attempts`` failed so far, the ``error``; ``None`` means give up).
jetloom makes the wait durable: the failed attempt is recorded as ``sys.StepRetrying`` (with its
error and the delay) and the next attempt is a ``cmd.<step>`` ``Resume(reason="retry")`` scheduled
as a JetStream message schedule, so a retry survives the restart of every process. The fold counts
the attempts (``RunState.attempts``); the delay is drawn (jitter) by the worker and recorded, never
recomputed on replay.

Policies are built as in llama-index-workflows' ``workflows.retry_policy``, with the same names,
signatures and meaning: ``retry_policy(retry=..., wait=..., stop=...)`` composes a retry condition
(``retry_*``: is this error retried?), a wait strategy (``wait_*``: seconds before retry ``n``,
``n`` from 0) and a stop condition (``stop_*``: give up after this many failures or seconds?).
Conditions combine with ``|`` and ``&``, waits with ``+``. The arithmetic of the deterministic
strategies and the exception-type predicates is tenacity's (called through its public
``RetryCallState``); the random strategies draw from ``random.Random(seed)`` when a ``seed`` is
given, as the reference does, so a seeded draw gives the reference's value.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, cast, runtime_checkable

import tenacity

from engine.model.durations import seconds
from engine.model.events import (
    StepFailedEvent,  # (defined with the other events; exported here too)
)

__all__ = [
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
    "retry_policy",
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
]

time_unit_type = int | float | timedelta
"""A duration the strategies take: seconds (``int`` or ``float``) or a ``timedelta`` (as
llama-index-workflows' ``time_unit_type``)."""

_ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


class StepTimeoutError(TimeoutError):
    """A step attempt ran longer than its ``@step(timeout=...)``; it counts as a failed attempt
    (retried by the step's policy like any other error)."""


@dataclass(frozen=True)
class RetryInfo:
    """Where the running step stands in its retries (llama-index-workflows' ``RetryInfo``).

    Attributes:
        retry_number: 0 on the first attempt, 1 on the first retry, and so on.
        elapsed_seconds: seconds since the first attempt began (0.0 on the first attempt).
        last_exception: the exception the previous attempt raised; ``None`` on the first attempt.
        last_failed_at: when the previous attempt failed, a timezone-aware UTC datetime; ``None``
            on the first attempt.
    """

    retry_number: int
    elapsed_seconds: float
    last_exception: Exception | None
    last_failed_at: datetime | None


@runtime_checkable
class RetryPolicy(Protocol):
    """Decides whether a failed step attempt is tried again, and after how long.

    Same protocol as llama-index-workflows' ``RetryPolicy``, so its policies work unchanged; a
    policy whose ``next`` takes no ``seed`` works too (jetloom's executor never passes one: the
    delay it draws is recorded in the log, so a replay reads it instead of drawing again).
    """

    def next(
        self, elapsed_time: float, attempts: int, error: Exception, *, seed: int | None = None
    ) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to stop retrying.

        Args:
            elapsed_time: seconds since the first failure of the step on this trigger (from the
                log's timestamps; 0 at the first failure).
            attempts: attempts that failed so far (1 after the first failure).
            error: the exception the last attempt raised.
            seed: seeds the random draw of a jittered wait (``None``: unseeded).
        """
        ...


class RetryCondition(Protocol):
    """Whether an error is retried (llama-index-workflows' ``RetryCondition``)."""

    def __call__(self, error: BaseException) -> bool: ...


class WaitStrategy(Protocol):
    """Seconds to wait before retry ``attempts`` (0 for the first retry), as
    llama-index-workflows' ``WaitStrategy``; ``seed`` seeds a random draw."""

    def __call__(self, attempts: int, *, seed: int | None = None) -> float: ...


class StopCondition(Protocol):
    """Whether to give up after ``attempts`` failures, ``elapsed_time`` seconds in, the next wait
    being ``upcoming_sleep`` seconds (llama-index-workflows' ``StopCondition``)."""

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool: ...


# ---- tenacity's strategies, called with its public RetryCallState --------------------------------

_RETRYING = tenacity.Retrying()


def _state(attempt_number: int, since_start: float = 0.0, upcoming_sleep: float = 0.0) -> tenacity.RetryCallState:
    """A tenacity call state at ``attempt_number`` (1-based), ``since_start`` seconds in."""
    state = tenacity.RetryCallState(_RETRYING, None, (), {})
    state.attempt_number = attempt_number
    state.start_time = 0.0
    state.outcome_timestamp = since_start
    state.upcoming_sleep = upcoming_sleep
    return state


def _failed(error: BaseException) -> tenacity.RetryCallState:
    """A tenacity call state whose attempt raised ``error``."""
    state = tenacity.RetryCallState(_RETRYING, None, (), {})
    state.set_exception((type(error), error, error.__traceback__))
    return state


def _uniform(low: float, high: float, seed: int | None) -> float:
    """A uniform draw in ``[low, high]``: from ``random.Random(seed)`` when seeded (the same draw
    as the reference's for the same seed), else from the ``random`` module."""
    return random.Random(seed).uniform(low, high) if seed is not None else random.uniform(low, high)


# ---- retry conditions -----------------------------------------------------------------------------


class _Condition:
    """A retry condition that combines with ``&`` (both) and ``|`` (either), as tenacity's."""

    def __call__(self, error: BaseException) -> bool:
        raise NotImplementedError

    def __and__(self, other: RetryCondition) -> retry_all:
        return retry_all(self, other)

    def __rand__(self, other: RetryCondition) -> retry_all:
        return retry_all(other, self)

    def __or__(self, other: RetryCondition) -> retry_any:
        return retry_any(self, other)

    def __ror__(self, other: RetryCondition) -> retry_any:
        return retry_any(other, self)


class retry_if_exception(_Condition):
    """Retry when ``predicate(error)`` is true (llama-index-workflows' and tenacity's
    ``retry_if_exception``).

    Args:
        predicate: called with the exception the attempt raised.
    """

    def __init__(self, predicate: Callable[[BaseException], bool]) -> None:
        self.predicate = predicate
        self._tenacity: tenacity.retry_base = tenacity.retry_if_exception(predicate)

    def __call__(self, error: BaseException) -> bool:
        return bool(self._tenacity(_failed(error)))


class retry_if_exception_type(retry_if_exception):
    """Retry when the error is an instance of ``exception_types`` (default: any ``Exception``).

    Args:
        exception_types: a class or a tuple of classes.
    """

    def __init__(self, exception_types: _ExceptionTypes = Exception) -> None:
        super().__init__(lambda error: isinstance(error, exception_types))
        self.exception_types = exception_types
        self._tenacity = tenacity.retry_if_exception_type(exception_types)


class retry_if_not_exception_type(retry_if_exception):
    """Retry unless the error is an instance of ``exception_types`` (default: any ``Exception``).

    Args:
        exception_types: a class or a tuple of classes that are never retried.
    """

    def __init__(self, exception_types: _ExceptionTypes = Exception) -> None:
        super().__init__(lambda error: not isinstance(error, exception_types))
        self.exception_types = exception_types
        self._tenacity = tenacity.retry_if_not_exception_type(exception_types)


class retry_unless_exception_type(retry_if_not_exception_type):
    """The same as ``retry_if_not_exception_type`` (the name tenacity also uses)."""


class retry_if_exception_message(_Condition):
    """Retry when ``str(error)`` equals ``message``, or when the regular expression ``match`` is
    found anywhere in it (``re.search``, as llama-index-workflows; tenacity anchors it at the start).

    Args:
        message: the exact message.
        match: a pattern (string or compiled).

    Raises:
        TypeError: neither or both of ``message`` and ``match`` given.
    """

    def __init__(self, message: str | None = None, match: str | re.Pattern[str] | None = None) -> None:
        if (message is None) == (match is None):
            raise TypeError(f"{type(self).__name__}() takes exactly one of 'message' or 'match'")
        self.message = message
        self.match = match
        self._pattern = re.compile(match) if isinstance(match, str) else match

    def __call__(self, error: BaseException) -> bool:
        text = str(error)
        if self._pattern is None:
            return text == self.message
        return self._pattern.search(text) is not None


class retry_if_not_exception_message(retry_if_exception_message):
    """Retry unless the message matches (the negation of ``retry_if_exception_message``)."""

    def __call__(self, error: BaseException) -> bool:
        return not super().__call__(error)


class retry_if_exception_cause_type(_Condition):
    """Retry when an exception down the error's ``__cause__`` chain (``raise ... from``; not the
    implicit ``__context__``) is an instance of ``exception_types`` (tenacity's
    ``retry_if_exception_cause_type``, which also stops on a cyclic chain).

    Args:
        exception_types: a class or a tuple of classes (default: any ``Exception``).
    """

    def __init__(self, exception_types: _ExceptionTypes = Exception) -> None:
        self.exception_types = exception_types
        self._tenacity = tenacity.retry_if_exception_cause_type(exception_types)

    def __call__(self, error: BaseException) -> bool:
        return bool(self._tenacity(_failed(error)))


class retry_any(_Condition):
    """Retry when any of ``retries`` says so (what ``a | b`` builds)."""

    def __init__(self, *retries: RetryCondition) -> None:
        self.retries = retries

    def __call__(self, error: BaseException) -> bool:
        return any(condition(error) for condition in self.retries)


class retry_all(_Condition):
    """Retry when all of ``retries`` say so (what ``a & b`` builds)."""

    def __init__(self, *retries: RetryCondition) -> None:
        self.retries = retries

    def __call__(self, error: BaseException) -> bool:
        return all(condition(error) for condition in self.retries)


class retry_always(_Condition):
    """Retry every error."""

    def __call__(self, error: BaseException) -> bool:
        return True


class retry_never(_Condition):
    """Retry no error."""

    def __call__(self, error: BaseException) -> bool:
        return False


# ---- wait strategies ------------------------------------------------------------------------------


class _Wait:
    """A wait strategy that adds up with ``+`` and ``sum()`` (the waits are summed)."""

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        raise NotImplementedError

    def __add__(self, other: WaitStrategy) -> wait_combine:
        return wait_combine(self, other)

    def __radd__(self, other: object) -> Any:
        if other == 0:  # sum() starts from 0
            return self
        if callable(other):
            return wait_combine(cast(WaitStrategy, other), self)
        return NotImplemented


class wait_fixed(_Wait):
    """Wait ``wait`` seconds (or a timedelta) before every retry (tenacity's ``wait_fixed``)."""

    def __init__(self, wait: time_unit_type) -> None:
        self.wait = seconds(wait)
        self._tenacity = tenacity.wait_fixed(self.wait)

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        return float(self._tenacity(_state(attempts + 1)))


class wait_none(wait_fixed):
    """Retry at once."""

    def __init__(self) -> None:
        super().__init__(0)


class wait_exponential(_Wait):
    """Wait ``multiplier * exp_base ** n`` seconds before retry ``n`` (0 first), kept within
    ``[min, max]`` (tenacity's ``wait_exponential``; an exponent that overflows gives ``max``).

    Args:
        multiplier: seconds before the first retry (default 1).
        exp_base: growth factor per retry (default 2).
        max: cap, seconds or a timedelta (default 60).
        min: floor, seconds or a timedelta (default 0).
    """

    def __init__(
        self,
        multiplier: int | float = 1.0,
        exp_base: int | float = 2.0,
        max: time_unit_type = 60.0,
        min: time_unit_type = 0.0,
    ) -> None:
        self.multiplier = float(multiplier)
        self.exp_base = float(exp_base)
        self.max = seconds(max)
        self.min = seconds(min)
        self._tenacity = tenacity.wait_exponential(self.multiplier, self.max, self.exp_base, self.min)

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        return float(self._tenacity(_state(attempts + 1)))


class wait_incrementing(_Wait):
    """Wait ``start + increment * n`` seconds before retry ``n`` (0 first), at most ``max`` and
    never below 0 (tenacity's ``wait_incrementing``).

    Args:
        start: seconds before the first retry (default 0).
        increment: seconds added per retry (default 100).
        max: cap, seconds or a timedelta (default: none).
    """

    def __init__(
        self,
        start: time_unit_type = 0.0,
        increment: time_unit_type = 100.0,
        max: time_unit_type = float("inf"),
    ) -> None:
        self.start = seconds(start)
        self.increment = seconds(increment)
        self.max = seconds(max)
        self._tenacity = tenacity.wait_incrementing(self.start, self.increment, self.max)

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        return float(self._tenacity(_state(attempts + 1)))


class wait_random(_Wait):
    """Wait a uniformly drawn number of seconds in ``[min, max]`` (defaults 0 and 1)."""

    def __init__(self, min: time_unit_type = 0.0, max: time_unit_type = 1.0) -> None:
        self.min = seconds(min)
        self.max = seconds(max)

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        return _uniform(self.min, self.max, seed)


class wait_exponential_jitter(_Wait):
    """Wait ``min(initial * exp_base ** n, max)`` seconds plus up to ``jitter`` more (drawn
    uniformly) before retry ``n`` (0 first), at most ``max`` in all.

    Args:
        initial: seconds before the first retry, without jitter (default 1).
        exp_base: growth factor per retry (default 2).
        max: cap, seconds (default 60).
        jitter: at most this many seconds are added (default 1).
    """

    def __init__(self, initial: float = 1.0, exp_base: float = 2.0, max: float = 60.0, jitter: float = 1.0) -> None:
        self.initial = initial
        self.exp_base = exp_base
        self.max = max
        self.jitter = jitter
        self._base = tenacity.wait_exponential(initial, max, exp_base)

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        base = float(self._base(_state(attempts + 1)))
        return min(base + _uniform(0, self.jitter, seed), self.max)


class wait_random_exponential(wait_exponential):
    """Wait a uniformly drawn number of seconds between ``min`` and what ``wait_exponential`` with
    the same arguments gives for retry ``n`` ("full jitter").

    Args:
        multiplier: the first retry's upper bound, seconds (default 1).
        exp_base: growth factor per retry (default 2).
        max: cap, seconds or a timedelta (default 60).
        min: floor, seconds or a timedelta (default 0).
    """

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        return _uniform(self.min, super().__call__(attempts), seed)


def wait_full_jitter(
    multiplier: int | float = 1.0,
    exp_base: int | float = 2.0,
    max: time_unit_type = 60.0,
    min: time_unit_type = 0.0,
) -> wait_random_exponential:
    """Another name of ``wait_random_exponential`` (same arguments)."""
    return wait_random_exponential(multiplier=multiplier, exp_base=exp_base, max=max, min=min)


class wait_chain(_Wait):
    """Retry ``n`` (0 first) waits what ``strategies[n]`` gives; the last one is kept for the
    retries after it.

    Raises:
        ValueError: no strategy given.
    """

    def __init__(self, *strategies: WaitStrategy) -> None:
        if not strategies:
            raise ValueError("wait_chain needs at least one wait strategy")
        self.strategies = strategies

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        return self.strategies[min(attempts, len(self.strategies) - 1)](attempts, seed=seed)


class wait_combine(_Wait):
    """Wait the sum of what ``strategies`` give (what ``a + b`` builds)."""

    def __init__(self, *strategies: WaitStrategy) -> None:
        self.strategies = strategies

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        return sum(strategy(attempts, seed=seed) for strategy in self.strategies)


# ---- stop conditions ------------------------------------------------------------------------------


class _Stop:
    """A stop condition that combines with ``&`` (both) and ``|`` (either)."""

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        raise NotImplementedError

    def __and__(self, other: StopCondition) -> stop_all:
        return stop_all(self, other)

    def __rand__(self, other: StopCondition) -> stop_all:
        return stop_all(other, self)

    def __or__(self, other: StopCondition) -> stop_any:
        return stop_any(self, other)

    def __ror__(self, other: StopCondition) -> stop_any:
        return stop_any(other, self)


class stop_after_attempt(_Stop):
    """Give up once ``max_attempt_number`` attempts failed (tenacity's ``stop_after_attempt``)."""

    def __init__(self, max_attempt_number: int) -> None:
        self.max_attempt_number = max_attempt_number
        self._tenacity = tenacity.stop_after_attempt(max_attempt_number)

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        return bool(self._tenacity(_state(attempts, elapsed_time, upcoming_sleep)))


class stop_after_delay(_Stop):
    """Give up once ``max_delay`` seconds (or a timedelta) have passed (tenacity's
    ``stop_after_delay``)."""

    def __init__(self, max_delay: time_unit_type) -> None:
        self.max_delay = seconds(max_delay)
        self._tenacity = tenacity.stop_after_delay(self.max_delay)

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        return bool(self._tenacity(_state(attempts, elapsed_time, upcoming_sleep)))


class stop_before_delay(_Stop):
    """Give up when the next wait would end ``max_delay`` seconds (or a timedelta) or more in
    (tenacity's ``stop_before_delay``)."""

    def __init__(self, max_delay: time_unit_type) -> None:
        self.max_delay = seconds(max_delay)
        self._tenacity = tenacity.stop_before_delay(self.max_delay)

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        return bool(self._tenacity(_state(attempts, elapsed_time, upcoming_sleep)))


class stop_any(_Stop):
    """Give up when any of ``stops`` says so (what ``a | b`` builds)."""

    def __init__(self, *stops: StopCondition) -> None:
        self.stops = stops

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        return any(stop(attempts, elapsed_time, upcoming_sleep=upcoming_sleep) for stop in self.stops)


class stop_all(_Stop):
    """Give up when all of ``stops`` say so (what ``a & b`` builds)."""

    def __init__(self, *stops: StopCondition) -> None:
        self.stops = stops

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        return all(stop(attempts, elapsed_time, upcoming_sleep=upcoming_sleep) for stop in self.stops)


class stop_never(_Stop):
    """Never give up (bound the retries some other way, e.g. the run's timeout)."""

    def __call__(self, attempts: int, elapsed_time: float, *, upcoming_sleep: float = 0.0) -> bool:
        return False


# ---- policies -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Composed:
    """The policy ``retry_policy`` builds."""

    retry: RetryCondition | None
    wait: WaitStrategy
    stop: StopCondition

    def next(
        self, elapsed_time: float, attempts: int, error: Exception, *, seed: int | None = None
    ) -> float | None:
        if self.retry is not None and not self.retry(error):
            return None
        delay = self.wait(max(attempts - 1, 0), seed=seed)  # failures count from 1, retries from 0
        if self.stop(attempts, elapsed_time, upcoming_sleep=delay):
            return None
        return delay


_FIVE_SECONDS = wait_fixed(5)
_THREE_ATTEMPTS = stop_after_attempt(3)


def retry_policy(
    retry: RetryCondition | None = None,
    wait: WaitStrategy = _FIVE_SECONDS,
    stop: StopCondition = _THREE_ATTEMPTS,
) -> RetryPolicy:
    """A retry policy composed of a retry condition, a wait strategy and a stop condition, as
    llama-index-workflows' ``retry_policy``.

    After failure number ``attempts`` (1 first): no retry if ``retry`` rejects the error; else the
    wait is ``wait(attempts - 1)`` seconds, unless ``stop(attempts, elapsed_time,
    upcoming_sleep=wait)`` gives up.

    Args:
        retry: which errors are retried (default ``None``: every error).
        wait: seconds before each retry (default ``wait_fixed(5)``).
        stop: when to give up (default ``stop_after_attempt(3)``: three attempts in all).

    Returns:
        A ``RetryPolicy``, for ``@step(retry_policy=...)``.
    """
    return _Composed(retry, wait, stop)


@dataclass(frozen=True)
class ConstantDelayRetryPolicy:
    """Retry after a fixed delay (llama-index-workflows' ``ConstantDelayRetryPolicy``, which that
    library deprecates for ``retry_policy(wait=wait_fixed(delay), stop=stop_after_attempt(n))``;
    jetloom keeps it without a warning, and adds ``retry_on``).

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

    def next(
        self, elapsed_time: float, attempts: int, error: Exception, *, seed: int | None = None
    ) -> float | None:
        policy = retry_policy(
            retry_if_exception_type(tuple(self.retry_on)),
            wait_fixed(self.delay),
            stop_after_attempt(self.maximum_attempts),
        )
        return policy.next(elapsed_time, attempts, error, seed=seed)


@dataclass(frozen=True)
class ExponentialBackoffRetryPolicy:
    """Retry with exponential backoff (llama-index-workflows' ``ExponentialBackoffRetryPolicy``,
    which that library deprecates for ``retry_policy(wait=wait_exponential(...), ...)``; jetloom
    keeps it without a warning, and adds ``retry_on`` and a jitter in seconds).

    Without jitter the ``n``-th retry waits ``min(initial_delay * multiplier ** (n - 1),
    max_delay)`` seconds. ``jitter=True`` (the default, as the reference) draws the wait uniformly
    between 0 and that ("full jitter", ``wait_random_exponential``); ``jitter=False`` waits exactly
    that; a number of seconds (or a timedelta) adds up to that much, drawn uniformly, to the wait
    (``wait_exponential_jitter``), still capped at ``max_delay``.

    Args:
        maximum_attempts: attempts in all, the first included (default 5).
        initial_delay: seconds before the first retry, without jitter (default 1).
        multiplier: growth factor per retry (default 2).
        max_delay: cap on any delay, seconds (default 60).
        jitter: ``True`` (default), ``False``, or seconds of added jitter.
        retry_on: exception classes that are retried (default: every ``Exception``).

    Raises:
        ValueError: ``maximum_attempts`` < 1, ``multiplier`` < 1, or a negative delay or jitter.
    """

    maximum_attempts: int = 5
    initial_delay: float | timedelta = 1.0
    multiplier: float = 2.0
    max_delay: float | timedelta = 60.0
    jitter: bool | float | timedelta = True
    retry_on: Sequence[type[BaseException]] = field(default=(Exception,))

    def __post_init__(self) -> None:
        if self.maximum_attempts < 1:
            raise ValueError(f"maximum_attempts must be >= 1, got {self.maximum_attempts}")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier}")
        for name in ("initial_delay", "max_delay", "jitter"):
            if seconds(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def _wait(self) -> WaitStrategy:
        initial, cap = seconds(self.initial_delay), seconds(self.max_delay)
        if self.jitter is True:
            return wait_random_exponential(multiplier=initial, exp_base=self.multiplier, max=cap)
        if self.jitter is False or seconds(self.jitter) == 0:
            return wait_exponential(multiplier=initial, exp_base=self.multiplier, max=cap)
        return wait_exponential_jitter(initial, self.multiplier, cap, seconds(self.jitter))

    def next(
        self, elapsed_time: float, attempts: int, error: Exception, *, seed: int | None = None
    ) -> float | None:
        policy = retry_policy(
            retry_if_exception_type(tuple(self.retry_on)), self._wait(), stop_after_attempt(self.maximum_attempts)
        )
        return policy.next(elapsed_time, attempts, error, seed=seed)
