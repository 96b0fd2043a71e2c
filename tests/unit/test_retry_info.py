"""``ctx.retry_info()`` (llama-index-workflows' ``Context.retry_info()``): the attempt number and the
previous failure, read from the run's log, in-process on the memory log; and how a recorded error
is rebuilt."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from engine import (
    ConstantDelayRetryPolicy,
    Context,
    ContextStateError,
    RetryInfo,
    StartEvent,
    StopEvent,
    Workflow,
    step,
)
from engine.runtime.failures import rebuilt_error


class Flaky(Workflow):
    seen: list[RetryInfo] = []

    @step(retry_policy=ConstantDelayRetryPolicy(delay=0.01, maximum_attempts=4))
    async def flaky(self, ctx: Context, ev: StartEvent) -> StopEvent:
        info = ctx.retry_info()
        type(self).seen.append(info)
        if info.retry_number < 2:
            raise ConnectionError(f"attempt {info.retry_number} failed")
        return StopEvent(result=info.retry_number)


async def test_retry_info_counts_retries_and_carries_the_previous_error() -> None:
    Flaky.seen = []
    before = datetime.now(UTC)
    assert await Flaky(timeout=10).run() == 2
    first, second, third = Flaky.seen
    assert first == RetryInfo(retry_number=0, elapsed_seconds=0.0, last_exception=None, last_failed_at=None)
    assert second.retry_number == 1 and third.retry_number == 2
    for info, n in ((second, 0), (third, 1)):
        assert type(info.last_exception) is ConnectionError
        assert str(info.last_exception) == f"attempt {n} failed"
        assert info.last_failed_at is not None and info.last_failed_at.tzinfo is not None
        assert before <= info.last_failed_at <= datetime.now(UTC)
        assert info.elapsed_seconds >= 0.0
    assert second.last_failed_at is not None and third.last_failed_at is not None
    assert third.last_failed_at > second.last_failed_at
    assert third.elapsed_seconds >= 0.01  # (at least one retry delay since the first failure)


def test_rebuilt_error_is_of_the_recorded_class_when_it_imports() -> None:
    err = rebuilt_error("builtins.ValueError", "bad value")
    assert type(err) is ValueError and str(err) == "bad value"
    mine = rebuilt_error(f"{__name__}.NeedsTwo", "boom")
    assert type(mine) is NeedsTwo and mine.args == ("boom",)


@pytest.mark.parametrize("error_type", ["nosuchmodule.Err", f"{__name__}.Local.<locals>.Err", "Plain", "builtins.len"])
def test_rebuilt_error_falls_back_to_a_plain_exception_naming_the_type(error_type: str) -> None:
    err = rebuilt_error(error_type, "boom")
    assert type(err) is Exception and str(err) == f"{error_type}: boom"


class NeedsTwo(Exception):
    def __init__(self, a: Any, b: Any) -> None:
        super().__init__(a, b)


def test_retry_info_outside_a_step_raises() -> None:
    with pytest.raises(ContextStateError, match="retry_info"):
        Context(Flaky()).retry_info()
