"""The one classifier of transient JetStream failures and the one retry policy (engine/jetstream/retry.py)."""

from __future__ import annotations

import logging

import pytest
from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import (
    APIError,
    BadRequestError,
    KeyNotFoundError,
    NoStreamResponseError,
    NotFoundError,
    ServiceUnavailableError,
)

from engine.jetstream.retry import LogUnavailableError, is_transient, retrying
from engine.jetstream.streams import _covers
from engine.model.errors import AppendError, LastSeqMismatchError, LogError


@pytest.mark.parametrize(
    "exc",
    [
        NoRespondersError(),
        NoStreamResponseError(),
        NatsTimeoutError(),
        TimeoutError(),
        ServiceUnavailableError(code=503, err_code=10008, description="JetStream system temporarily unavailable"),
        ServiceUnavailableError(),  # nats-py's "no responders" on a JetStream API request
        APIError(code=500, err_code=10118, description="stream is offline"),
        APIError(code=500, err_code=10009, description="JetStream cluster can not handle request"),
        APIError(code=503, err_code=10163, description="expected last sequence per subject temporarily unavailable"),
        BadRequestError(code=400, err_code=10005, description="no suitable peers for placement, peer offline"),
        AppendError("append rejected: stream is offline", code=10118),
        LogError("no publish ack within 10.0s"),
        LogUnavailableError("direct get on JETLOOM: no responders"),
    ],
)
def test_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        LastSeqMismatchError("append rejected: wrong last sequence: 7", code=10071),
        AppendError("append rejected: maximum payload exceeded", code=10054),
        NotFoundError(code=404, err_code=10059, description="stream not found"),
        BadRequestError(code=400, err_code=10058, description="stream name already in use"),
        ServiceUnavailableError(code=503, err_code=10023, description="insufficient resources"),
        BadRequestError(code=400, err_code=10005, description="no suitable peers for placement, tags not matched"),
        ConnectionClosedError(),  # closed for good: rebuilt elsewhere, not retried here
        KeyNotFoundError(),  # (an APIError without APIError's attributes)
        ValueError("bad key"),
    ],
)
def test_not_transient(exc: BaseException) -> None:
    assert not is_transient(exc)


async def test_retries_transient_failures_then_returns(caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise NoRespondersError
        return "stored"

    with caplog.at_level(logging.WARNING, logger="jetloom.log"):
        assert await retrying("append to JETLOOM", flaky, retry_for=5, initial_s=0.01) == "stored"
    assert len(calls) == 3
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "append to JETLOOM: NoRespondersError: nats: no responders available for request; retrying for up to 5s",
        "append to JETLOOM: succeeded at attempt 3",
    ]


async def test_a_failure_that_outlasts_the_budget_is_log_unavailable() -> None:
    calls = []

    async def down() -> None:
        calls.append(1)
        raise APIError(code=500, err_code=10118, description="stream is offline")

    with pytest.raises(LogUnavailableError, match="stream is offline .gave up after 0.3s") as info:
        await retrying("read of run r1", down, retry_for=0.3, initial_s=0.01, max_wait_s=0.05)
    assert isinstance(info.value, LogError)  # (what callers already catch)
    assert isinstance(info.value.__cause__, APIError)
    assert len(calls) > 2


async def test_other_errors_pass_at_once() -> None:
    calls = []

    async def refused() -> None:
        calls.append(1)
        raise LastSeqMismatchError("append rejected: wrong last sequence", code=10071)

    with pytest.raises(LastSeqMismatchError):
        await retrying("append", refused, retry_for=5)
    assert len(calls) == 1


async def test_no_budget_still_names_the_unavailability() -> None:
    async def down() -> None:
        raise NoRespondersError

    with pytest.raises(LogUnavailableError):
        await retrying("x", down, retry_for=0)


@pytest.mark.parametrize(
    ("pattern", "subject", "covered"),
    [
        ("jetloom.run.>", "jetloom.run.>", True),
        ("jetloom.>", "jetloom.run.>", True),
        ("jetloom.*.>", "jetloom.run.>", True),
        ("jetloom.run.*", "jetloom.run.>", False),
        ("jetloom.dlq.>", "jetloom.run.>", False),
        (">", "jetloom.run.>", True),
        ("jetloom.run", "jetloom.run.>", False),
    ],
)
def test_subject_cover(pattern: str, subject: str, covered: bool) -> None:
    assert _covers(pattern, subject) is covered
